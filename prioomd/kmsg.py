"""Which of the kernel's OOM kills were global: its own ``oom-kill:`` lines in /dev/kmsg.

/proc/vmstat ``oom_kill`` counts every OOM kill of the host, including those of a
cgroup that hit its own ``memory.max`` (a container at its limit). Those are not the
root domain's misses: prioomd never acts on a cgroup limit that is not an enabled
domain. Since Linux 4.19 every OOM kill logs one summary line first,

    oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),...,oom_memcg=/box,...

whose constraint says which kind it was; only a kill whose constraint is not
``CONSTRAINT_MEMCG`` (``NONE``, or the ``CPUSET`` / ``MEMORY_POLICY`` kinds of a
global shortage) is the root domain's. A line counts only from the kernel itself:
userspace can write to /dev/kmsg, but never with facility 0 (the kernel keeps it
for its own records), so a tenant with a writable /dev/kmsg cannot forge one. The
constraint is the line's first field, before any tenant-made text (task and cgroup
names come after it).

Read only when /proc/vmstat says a kill happened, so its cost follows the kills,
not the log's traffic. Without /dev/kmsg (no CAP_SYSLOG, a container without the
device) ``global_kills`` is None and the caller falls back to /proc/vmstat.
"""

from __future__ import annotations

import errno
import logging
import os

log = logging.getLogger(__name__)

KMSG_PATH = "/dev/kmsg"
_RECORD_MAX = 8192  # /dev/kmsg returns one record a read; the kernel's are ~1 KiB at most
_RECORDS_PER_READ = 20_000  # a bound per call: a flooding kernel never stalls the loop
_PREFIX = b"oom-kill:constraint="
_MEMCG = b"CONSTRAINT_MEMCG"


def kernel_message(line: bytes) -> bytes | None:
    """The message of one /dev/kmsg record's first line ("prio,seq,usec,flags[,...];
    message"), if the kernel itself logged it (facility 0)."""
    head, sep, msg = line.partition(b";")
    if not sep:
        return None
    prio = head.split(b",", 1)[0]
    if not prio.isdigit() or int(prio) >> 3 != 0:
        return None
    return msg


def oom_kill_kind(line: bytes) -> str | None:
    """"global" or "memcg" for the kernel's summary line of an OOM kill, else None."""
    msg = kernel_message(line)
    if msg is None or not msg.startswith(_PREFIX):
        return None
    constraint = msg[len(_PREFIX):].split(b",", 1)[0]
    if not constraint:
        return None
    return "memcg" if constraint == _MEMCG else "global"


class OomKills:
    """Counts the kernel's global and cgroup-limit OOM kills logged since it opened."""

    def __init__(self, path: str = KMSG_PATH) -> None:
        self.global_total = 0
        self.memcg_total = 0
        self.fd: int | None = None
        self.unavailable = ""
        self._partial = b""
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_END)  # only what the kernel logs from now on
        except OSError as exc:
            self.close()
            self.unavailable = f"{path}: {exc.strerror or exc}"

    def read(self) -> tuple[int, int] | None:
        """(global, cgroup-limit) OOM kills logged so far, each since start; None when
        /dev/kmsg cannot be read."""
        if self.fd is None:
            return None
        for _ in range(_RECORDS_PER_READ):
            try:
                chunk = os.read(self.fd, _RECORD_MAX)
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten before we read them: go on
                    continue
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break
                self.unavailable = f"read: {exc.strerror or exc}"
                self.close()
                return None
            if not chunk:
                break
            self._take(chunk)
        return self.global_total, self.memcg_total

    def _take(self, chunk: bytes) -> None:
        """/dev/kmsg gives one record a read: its first line, then continuation lines
        that start with a space (a plain file, as in tests, gives several)."""
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()[-_RECORD_MAX:]  # no newline yet: the next read ends it
        for line in lines:
            kind = None if line.startswith(b" ") else oom_kill_kind(line)
            if kind == "global":
                self.global_total += 1
            elif kind == "memcg":
                self.memcg_total += 1

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
