"""Who prioomd killed, told to the tools that look for it.

After a kill, two marks (issue 10 item 5):

* counters as xattrs on the killed cgroup, as oomd (``trusted.oomd_ooms``,
  ``trusted.oomd_kill``) and systemd-oomd (``user.oomd_ooms``, ``user.oomd_kill``)
  keep theirs: ``trusted.prioomd.ooms`` counts prioomd's kills that took this
  cgroup (or a process of it), ``trusted.prioomd.killed`` the processes they
  targeted. ASCII decimal; only root writes ``trusted.*``, so a tenant cannot
  forge them, and a value we cannot parse restarts at 0.
* the Kubernetes pod UID and container id parsed from the killed cgroup's path
  (``kube_ids``), which the audit record carries: a prioomd kill is a SIGKILL,
  so the runtime reports exit 137 rather than OOMKilled, and a log pipeline can
  join the record to the pod.

Pure parsing apart from the one writing function; names are tenants' text and
only exact kubelet shapes are accepted.
"""

from __future__ import annotations

import logging
import re

from prioomd import cgroupfs
from prioomd.errors import Vanished

log = logging.getLogger(__name__)

XATTR_OOMS = "trusted.prioomd.ooms"
XATTR_KILLED = "trusted.prioomd.killed"
_COUNTER_RE = re.compile(rb"([0-9]{1,18})\n?")

_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
_CID = r"[0-9a-f]{64}"
# systemd driver: kubepods-burstable-pod<uid with _>.slice, kubepods-pod<uid>.slice
_POD_SYSTEMD = re.compile(rf"kubepods(?:-(?:burstable|besteffort))?-pod({_UID})\.slice")
_POD_CGROUPFS = re.compile(rf"pod({_UID})")  # cgroupfs driver: kubepods/burstable/pod<uid>
_CONTAINER_SYSTEMD = re.compile(rf"(cri-containerd|crio|docker)-({_CID})\.scope")
_CONTAINER_CGROUPFS = re.compile(rf"({_CID})")
_QOS = {"burstable": "Burstable", "besteffort": "BestEffort"}


def kube_ids(path: str) -> dict[str, str]:
    """``pod_uid`` (dashed), ``qos_class`` and, when the path reaches one,
    ``container_id`` and ``container_runtime`` of a kubelet cgroup path; {} when
    the path is not under a ``kubepods`` cgroup in a shape the kubelet makes.

    The pod must sit directly under the kubepods (or QoS) cgroup and the
    container directly under the pod: a name a tenant makes deeper down does not
    count."""
    parts = path.strip("/").split("/")
    start = next((i for i, p in enumerate(parts)
                  if p in ("kubepods", "kubepods.slice")), None)
    if start is None:
        return {}
    i, qos = start + 1, "Guaranteed"
    systemd = parts[start].endswith(".slice")
    if i < len(parts):
        level = parts[i].removeprefix("kubepods-").removesuffix(".slice") if systemd \
            else parts[i]
        if level in _QOS:
            qos, i = _QOS[level], i + 1
    if i >= len(parts):
        return {}
    m = (_POD_SYSTEMD if systemd else _POD_CGROUPFS).fullmatch(parts[i])
    expected = "kubepods-pod" if qos == "Guaranteed" else f"kubepods-{qos.lower()}-pod"
    if m is None or (systemd and not parts[i].startswith(expected)):
        return {}
    out = {"pod_uid": m.group(1).replace("_", "-"), "qos_class": qos}
    if i + 1 < len(parts):
        c = parts[i + 1]
        cm = _CONTAINER_SYSTEMD.fullmatch(c)
        if cm is not None:
            runtime = {"cri-containerd": "containerd", "crio": "cri-o"}.get(cm.group(1),
                                                                          cm.group(1))
            out.update(container_id=cm.group(2), container_runtime=runtime)
        elif not systemd and _CONTAINER_CGROUPFS.fullmatch(c):
            out["container_id"] = c
    return out


def parse_counter(raw: bytes | None) -> int:
    """A counter xattr's value; 0 when absent or unparsable."""
    if raw is None:
        return 0
    m = _COUNTER_RE.fullmatch(raw)
    return 0 if m is None else int(m.group(1))


def mark_killed(cgroup_root: str, path: str, processes: int) -> str | None:
    """Add one kill and ``processes`` to the cgroup's counters; None when done,
    else why not (the cgroup is gone, xattrs unsupported...), for a debug log."""
    try:
        cgdir = cgroupfs.rel_to_abs(cgroup_root, path)
        have = cgroupfs.read_xattrs(cgdir, (XATTR_OOMS, XATTR_KILLED))
        cgroupfs.write_xattr(cgdir, XATTR_OOMS,
                             str(parse_counter(have.get(XATTR_OOMS)) + 1).encode())
        cgroupfs.write_xattr(cgdir, XATTR_KILLED,
                             str(parse_counter(have.get(XATTR_KILLED)) + processes).encode())
    except Vanished:
        return f"{path}: gone before its counters were written"
    except (OSError, ValueError) as exc:
        return f"{path}: counters not written: {exc}"
    return None
