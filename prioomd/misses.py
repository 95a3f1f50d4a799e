"""The kernel's own OOM kills in each armed domain: what prioomd missed.

A cgroup domain's count is its memory.events ``oom_kill`` (read with each sample). The
root's is /proc/vmstat ``oom_kill``, read at most once per ``every_s`` (the file is
large), less the kills the kernel's log files as a cgroup at its own memory.max
(kmsg.py): no enabled domain's, nothing for prioomd to prevent. Only kills positively
identified that way are left out; an unexplained one still counts, so a miss is never
hidden.
"""

from __future__ import annotations

import logging

from prioomd import detect, domains, kmsg

log = logging.getLogger(__name__)


class Misses:
    """Per armed domain: the kernel's kill count when last looked at."""

    def __init__(self, proc_root: str, kmsg_path: str, every_s: float) -> None:
        self.proc_root = proc_root
        self.kmsg_path = kmsg_path
        self.every_s = every_s
        self._log: kmsg.OomKills | None = None
        self._memcg_seen = 0  # kills the log filed at a cgroup's own limit, so far
        self._count: dict[str, int | None] = {}
        self._due: dict[str, float] = {}

    def open(self) -> str:
        """Start following the kernel's log; why it cannot be, or ""."""
        self._log = kmsg.OomKills(self.kmsg_path)
        return self._log.unavailable

    def close(self) -> None:
        if self._log is not None:
            self._log.close()

    def arm(self, dom: domains.Domain) -> None:
        self._count[dom.path] = domains.oom_kills(dom, self.proc_root)
        self._due.pop(dom.path, None)

    def disarm(self, path: str) -> None:
        self._count.pop(path, None)
        self._due.pop(path, None)

    def missed(self, dom: domains.Domain, cur: detect.Sample) -> int:
        """The kernel's kills in ``dom`` since the last look that prioomd did not
        prevent (0 most of the time)."""
        if dom.is_root:
            if cur.taken_at < self._due.get(dom.path, 0.0):
                return 0
            self._due[dom.path] = cur.taken_at + self.every_s
        now = domains.oom_kills(dom, self.proc_root, cur)
        if now is None:
            return 0
        before = self._count.get(dom.path)
        self._count[dom.path] = now
        if before is None or now <= before:
            return 0
        missed = now - before
        if dom.is_root:
            missed -= self._at_own_limits(missed)
        return missed

    def _at_own_limits(self, kills: int) -> int:
        """Of ``kills`` new OOM kills of the host, how many the kernel logged as a
        cgroup at its own memory.max."""
        counts = self._log.read() if self._log is not None else None
        if counts is None:
            return 0
        new = min(max(counts[1] - self._memcg_seen, 0), kills)
        self._memcg_seen = counts[1]
        if new:
            log.info("the kernel's OOM killer killed %d process(es) at a cgroup's own "
                     "memory.max (not an enabled domain: nothing for prioomd to prevent)", new)
        return new
