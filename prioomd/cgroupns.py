"""Where prioomd itself sits in the host's cgroup tree: private cgroup namespaces and
its own Kubernetes pod.

A container (every Kubernetes pod on cgroup v2) gets a private cgroup namespace:
/proc/PID/cgroup then names cgroups relative to the namespace's root, the container's
own cgroup, so another pod's process reads as ``/../../kubepods-burstable.slice/...``.
The cgroup tree mounted from the host (a hostPath of /sys/fs/cgroup) still shows the
host's paths. ``locate_self`` finds our own cgroup in that tree (first where
/proc/self/cgroup says, then by a bounded search for our pid), from which the
namespace root follows; ``to_host`` maps a /proc/PID/cgroup path back to the tree.

``exempt_own_pod``: when our cgroup is inside a kubelet pod cgroup, every process of
that pod (the pause container, a sidecar) gets oom_score_adj -1000, the kernel's own
"never kill" mark, which prioomd's walk honours: its own pod is never a victim.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from dataclasses import dataclass

from prioomd import procfs, selfprotect
from prioomd.errors import Vanished

log = logging.getLogger(__name__)

MAX_SEARCH_DIRS = 50_000  # a node's tree has hundreds to a few thousand cgroups
# kubepods-pod<uid>.slice, kubepods-burstable-pod<uid>.slice (systemd driver, uid with
# underscores) and pod<uid> (cgroupfs driver, uid with dashes).
_POD_DIR = re.compile(r"(?:kubepods(?:-[a-z]+)?-pod[0-9a-f_]{36}\.slice|pod[0-9a-f-]{36})\Z")


@dataclass(frozen=True)
class SelfLocation:
    """Our cgroup in the tree under the cgroup root, and the cgroup namespace's root
    there ("/" when we share the host's namespace)."""

    cgroup: str  # e.g. "/kubepods.slice/kubepods-pod<uid>.slice/cri-containerd-<id>.scope"
    ns_root: str


def to_host(ns_root: str, path: str) -> str:
    """A /proc/PID/cgroup path read in a namespace rooted at ``ns_root`` -> its path in
    the host's tree. ``..`` never climbs above "/"."""
    if ns_root == "/":
        return path
    return posixpath.normpath(ns_root + "/" + path.lstrip("/")).replace("//", "/")


def ns_root_of(host_cgroup: str, ns_cgroup: str) -> str | None:
    """The namespace root, given where we are in the host's tree and in our namespace;
    None when the two disagree (we are not where the namespace says)."""
    if ns_cgroup == "/":
        return host_cgroup
    if host_cgroup == ns_cgroup:
        return "/"
    if ".." not in ns_cgroup.split("/") and host_cgroup.endswith(ns_cgroup):
        return host_cgroup[: -len(ns_cgroup)] or "/"  # ns_cgroup starts with "/"
    return None


def pod_of(cgroup: str) -> str | None:
    """The kubelet pod cgroup that contains ``cgroup`` (itself included), or None."""
    parts = cgroup.strip("/").split("/")
    for i in range(len(parts), 0, -1):
        if _POD_DIR.match(parts[i - 1]):
            return "/" + "/".join(parts[:i])
    return None


def _holds(cgdir: str, pid: int) -> bool:
    try:
        with open(os.path.join(cgdir, "cgroup.procs"), "rb") as f:
            return str(pid).encode() in f.read().split()
    except OSError:
        return False


def locate_self(cgroup_root: str, proc_root: str = "/proc", pid: int | None = None,
                max_dirs: int = MAX_SEARCH_DIRS) -> SelfLocation | None:
    """Find the cgroup holding ``pid`` (default: us) under ``cgroup_root``; None when
    it is not in that tree (a subtree root) or cannot be read."""
    pid = os.getpid() if pid is None else pid
    try:
        ns_cgroup = procfs.read_pid_cgroup(pid, proc_root)
    except (OSError, ValueError, Vanished):
        return None
    if ns_cgroup is None:
        return None
    direct = os.path.join(cgroup_root, ns_cgroup.lstrip("/"))
    if ".." not in ns_cgroup.split("/") and _holds(direct, pid):
        return SelfLocation(ns_cgroup, "/")
    seen = 0
    for dirpath, dirnames, _ in os.walk(cgroup_root):
        seen += 1
        if seen > max_dirs:
            log.warning("own cgroup not found in the first %d cgroups of %s", max_dirs,
                        cgroup_root)
            return None
        if _holds(dirpath, pid):
            rel = "/" + os.path.relpath(dirpath, cgroup_root) if dirpath != cgroup_root \
                else "/"
            root = ns_root_of(rel, ns_cgroup)
            return SelfLocation(rel, root) if root is not None else None
        dirnames.sort()
    return None


def exempt_own_pod(cgroup_root: str, where: SelfLocation, proc_root: str = "/proc") -> list[str]:
    """oom_score_adj -1000 on every process of our own pod; log lines saying what was
    done (nothing outside a pod)."""
    pod = pod_of(where.cgroup)
    if pod is None:
        return []
    pods_dir = os.path.join(cgroup_root, pod.lstrip("/"))
    done, notes = [], []
    for dirpath, _, _ in os.walk(pods_dir):
        try:
            with open(os.path.join(dirpath, "cgroup.procs"), "rb") as f:
                pids = [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            continue
        for pid in pids:
            if pid == os.getpid():
                continue
            warning = selfprotect.set_oom_score_adj(proc_root, pid=pid)
            if warning:
                notes.append(warning)
            else:
                done.append(pid)
    notes.append(f"own pod {pod}: {len(done)} other process(es) set to oom_score_adj "
                 "-1000, never a victim")
    return notes
