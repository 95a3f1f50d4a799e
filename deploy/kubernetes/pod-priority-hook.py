"""Map the annotation prioomd.io/priority of this node's pods to their cgroup's
trusted.prioomd.priority xattr, which prioomd reads at every decision.

    NODE_NAME=<node> python3 pod-priority-hook.py [--once] [--interval S] [--cgroup-root DIR]

Runs beside prioomd in its DaemonSet (deploy/kubernetes/daemonset.yaml), with the
node's /sys/fs/cgroup and CAP_SYS_ADMIN (trusted.* xattrs). Every --interval seconds
it lists the pods bound to NODE_NAME through the API server (in-cluster service
account; RBAC: get/list pods), and for each pod whose annotation is an integer 0..12
writes it on the pod's cgroup, under either cgroup driver's layout. Bad annotations
(anything but ASCII digits in range) are logged and skipped: pod authors are not
trusted. Pods without the annotation are left alone (an operator may have set the
xattr by hand). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import ssl
import sys
import time
import urllib.parse
import urllib.request

ANNOTATION = "prioomd.io/priority"
XATTR = "trusted.prioomd.priority"
MAX_PRIORITY = 12
SA = "/var/run/secrets/kubernetes.io/serviceaccount"
_UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_QOS = {"Guaranteed": "", "Burstable": "burstable", "BestEffort": "besteffort"}

log = logging.getLogger("prioomd-pod-priority")


def parse_priority(value: object) -> int | None:
    """The annotation's value as a priority, or None when it is not one."""
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() \
            or len(value) > 2:
        return None
    n = int(value)
    return n if 0 <= n <= MAX_PRIORITY else None


def pod_cgroups(uid: str, qos: str) -> list[str]:
    """Where the kubelet puts this pod's cgroup: systemd driver first, then cgroupfs.
    Empty when the uid or the QoS class is not one the kubelet would write."""
    if not isinstance(uid, str) or not _UID.match(uid) or qos not in _QOS:
        return []
    cls = _QOS[qos]
    under = uid.replace("-", "_")
    if cls:
        systemd = f"/kubepods.slice/kubepods-{cls}.slice/kubepods-{cls}-pod{under}.slice"
        cgroupfs = f"/kubepods/{cls}/pod{uid}"
    else:
        systemd = f"/kubepods.slice/kubepods-pod{under}.slice"
        cgroupfs = f"/kubepods/pod{uid}"
    return [systemd, cgroupfs]


def wanted(pods: dict) -> dict[str, tuple[int, str, str]]:
    """pod list (the API's JSON) -> {uid: (priority, qos, namespace/name)}."""
    out = {}
    for pod in pods.get("items", []):
        meta = pod.get("metadata") or {}
        value = (meta.get("annotations") or {}).get(ANNOTATION)
        if value is None:
            continue
        name = f"{meta.get('namespace')}/{meta.get('name')}"
        priority = parse_priority(value)
        if priority is None:
            log.warning("%s: %s=%r is not an integer 0..%d; ignored", name, ANNOTATION,
                        str(value)[:40], MAX_PRIORITY)
            continue
        qos = (pod.get("status") or {}).get("qosClass", "")
        out[str(meta.get("uid"))] = (priority, qos, name)
    return out


def apply(cgroup_root: str, pods: dict) -> int:
    """Write every wanted priority that differs from what the cgroup has; how many."""
    changed = 0
    for uid, (priority, qos, name) in wanted(pods).items():
        for path in pod_cgroups(uid, qos):
            cgdir = os.path.join(cgroup_root, path.lstrip("/"))
            try:
                have = os.getxattr(cgdir, XATTR, follow_symlinks=False)
            except OSError:
                have = None
                if not os.path.isdir(cgdir):
                    continue
            value = str(priority).encode()
            if have != value:
                try:
                    os.setxattr(cgdir, XATTR, value, follow_symlinks=False)
                    changed += 1
                    log.info("%s: %s = %d on %s", name, XATTR, priority, path)
                except OSError as exc:
                    log.warning("%s: cannot set %s on %s: %s", name, XATTR, path, exc.strerror)
            break
    return changed


def list_pods(node: str) -> dict:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    with open(f"{SA}/token", encoding="ascii") as f:
        token = f.read().strip()
    query = urllib.parse.urlencode({"fieldSelector": f"spec.nodeName={node}"})
    host = f"[{host}]" if ":" in host else host
    req = urllib.request.Request(f"https://{host}:{port}/api/v1/pods?{query}",
                                 headers={"Authorization": f"Bearer {token}"})
    ctx = ssl.create_default_context(cafile=f"{SA}/ca.crt")
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        return json.load(resp)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--once", action="store_true")
    p.add_argument("--interval", type=float, default=30.0)
    p.add_argument("--cgroup-root", default="/sys/fs/cgroup")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    node = os.environ.get("NODE_NAME")
    if not node:
        log.error("NODE_NAME is not set (the DaemonSet sets it from spec.nodeName)")
        return 2
    try:  # part of prioomd's own pod: never a victim (needs CAP_SYS_RESOURCE)
        with open("/proc/self/oom_score_adj", "w", encoding="ascii") as f:
            f.write("-1000")
    except OSError as exc:
        log.warning("cannot set oom_score_adj -1000: %s", exc.strerror)
    while True:
        try:
            apply(args.cgroup_root, list_pods(node))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("cannot list this node's pods: %s", exc)
        if args.once:
            return 0
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
