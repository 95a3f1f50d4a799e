"""Is this pid still the process the walk chose, and where is it now?

kill.py asks right before the first signal. Identity is the pidfd (held by the
caller) plus the start time: a new name (prctl, exec) is the same process, a
different start time is another process that took the number. Where the
process is comes from /proc/PID/cgroup, whose text is only a claim (cgroup
names are tenant bytes, printed unescaped), checked against the cgroup tree.
A process no longer under the cgroup the walk chose is "moved": the ranking no
longer holds, and the caller must decide again rather than kill the next one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from prioomd import cgparse, cgroupfs, cgroupns, procfs
from prioomd.errors import Vanished
from prioomd.model import Candidate
from prioomd.procfs import OOM_SCORE_ADJ_MIN, TaskFacts

DELETED = " (deleted)"  # proc_cgroup_show(): the cgroup was removed (zombies only)
LOCATE_TRIES = 8  # reads of a claim the tree did not confirm (a process on the move)


@dataclass(frozen=True)
class Verdict:
    """Why a pid is not (or no longer) the walk's victim; ``final`` ends the kill walk."""

    outcome: str  # "vanished", "refused" or "moved"
    detail: str
    final: bool = False


def check(cand: Candidate, facts: TaskFacts, where: Callable[[], str | None]) -> Verdict | None:
    """None when ``facts`` (read through the pinned pid) are still the candidate's
    process, killable, and ``where()`` (its cgroup now) is under the victim cgroup."""
    pid = cand.pid
    if facts.is_kthread:
        return Verdict("refused", f"pid {pid} is a kernel thread")
    if facts.state in ("Z", "X") or not facts.has_mm:
        return Verdict("vanished", f"pid {pid} already exited")
    if cand.start_ticks and facts.start_ticks != cand.start_ticks:
        return Verdict("vanished", f"pid {pid} started at {facts.start_ticks}, not "
                       f"{cand.start_ticks}: reused")
    if facts.sigkill_pending:  # an in-flight victim: wait for it, as the kernel does
        return Verdict("vanished", f"pid {pid} is already dying: not killing another", True)
    if facts.oom_score_adj == OOM_SCORE_ADJ_MIN:
        return Verdict("refused", f"pid {pid} has oom_score_adj -1000 now")
    now = where()
    if now is None or not under(now, cand.victim_cgroup):
        seen = "an unknown cgroup" if now is None else repr(now)
        return Verdict("moved", f"pid {pid} is in {seen}, no longer under "
                       f"{cand.victim_cgroup!r}: a new decision is needed", True)
    return None


class Locator:
    """Finds the cgroup a process is in, relative to ``cgroup_root``."""

    def __init__(self, cgroup_root: str, proc_root: str = "/proc", *,
                 ns_root: str = "/") -> None:
        self.cgroup_root = cgroup_root
        self.proc_root = proc_root
        self.ns_root = ns_root  # a private cgroup namespace's root in the tree (cgroupns)
        # /proc/PID/cgroup names cgroups from the hierarchy's top, which is
        # above cgroup_root when prioomd is pointed at a subtree.
        try:
            with open("/proc/self/mounts", "rb") as f:
                self.prefix = cgparse.hierarchy_path(cgroup_root, os.fsdecode(f.read()))
        except (OSError, ValueError):
            self.prefix = "/"

    def locate(self, pid: int, tid: int = 0) -> str | None:
        """The cgroup the process is in now, or None when nothing confirms one.

        A process moving between cgroups can leave the claimed cgroup between the
        two reads; the pair is read again then, up to LOCATE_TRIES times, so that
        one hopping as fast as it can between cgroups it owns is still found (a
        claim the tree keeps denying, e.g. a stale one, stays None).
        """
        for _ in range(LOCATE_TRIES):
            found, final = self._claim_checked(pid, tid)
            if found is not None or final:
                return found
        return None

    def _claim_checked(self, pid: int, tid: int) -> tuple[str | None, bool]:
        """One read of /proc/PID/cgroup, checked against the tree: (the location
        or None, and whether None is final: no claim, or none inside the root).

        /proc/PID/cgroup may claim a name ending in " (deleted)". The claim is
        believed where that cgroup's cgroup.threads lists the thread /proc was
        read through (``tid``: the leader when 0, else the live thread of a
        process whose leader exited; cgroup.threads, unlike cgroup.procs, is
        readable in threaded cgroups); failing that, the claim less a
        " (deleted)" suffix (the kernel's mark of a removed cgroup).
        """
        try:
            printed = procfs.read_pid_cgroup(pid, self.proc_root, tid)
        except (OSError, Vanished, ValueError):
            return None, True
        if printed is None:
            return None, True
        printed = cgroupns.to_host(self.ns_root, printed)  # "/../../x" in a pod's namespace
        claims = [printed]
        if printed.endswith(DELETED):
            claims.append(printed[: -len(DELETED)])
        inside = False
        for claim in claims:
            rel = strip_prefix(self.prefix, claim)
            if rel is None:
                continue
            inside = True
            try:
                cgdir = cgroupfs.rel_to_abs(self.cgroup_root, rel)
                if (tid or pid) in cgroupfs.read_threads(cgdir):
                    return rel, True
            except (OSError, Vanished, ValueError):
                continue
        return None, not inside


def strip_prefix(prefix: str, path: str) -> str | None:
    """A hierarchy path as the cgroup root sees it; None when it lies outside."""
    if prefix == "/":
        return path
    if path == prefix:
        return "/"
    return path[len(prefix):] if path.startswith(prefix + "/") else None


def under(path: str, ancestor: str) -> bool:
    return ancestor == "/" or path == ancestor or path.startswith(ancestor + "/")
