"""The process syscalls behind kill.py and selfprotect.py, and nothing else.

``LinuxSyscalls`` is the real signal sender the ``Killer`` drives; tests pass a
fake with the same methods (the ``Syscalls`` protocol). Features are detected
once, when the object is built (at daemon start), never on the kill path:

* pidfds: ``os.pidfd_open`` / ``signal.pidfd_send_signal`` (Python >= 3.9 built
  against headers that have them), else the raw syscalls through libc's
  ``syscall()``; a kernel without them (< 5.3, ENOSYS) sets ``has_pidfd`` False
  and the Killer falls back to ``kill(2)`` with a start-time guard.
* ``process_mrelease`` (Linux 5.15): only through ``syscall()``; ENOSYS once
  turns it off for the life of the object.

Errors are raised as ``OSError`` with the kernel's errno; kill.py decides what
each errno means (via ``errors.is_gone`` for the "gone" family).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import time
from typing import Protocol

# Syscall numbers from the kernel's unified table (include/uapi/asm-generic/
# unistd.h; arch/x86/entry/syscalls/syscall_64.tbl uses the same numbers).
NR_PIDFD_SEND_SIGNAL = 424  # Linux 5.1
NR_PIDFD_OPEN = 434  # Linux 5.3
NR_PROCESS_MRELEASE = 448  # Linux 5.15

# include/uapi/asm-generic/mman-common.h
MCL_CURRENT = 1
MCL_FUTURE = 2
MCL_ONFAULT = 4  # Linux 4.4

libc = _libc = ctypes.CDLL(None, use_errno=True)  # also inotify.py's
_libc.syscall.restype = ctypes.c_long


def _raw_syscall(nr: int, *args: int) -> int:
    """libc ``syscall(nr, args...)``; raises OSError(errno) on -1."""
    ret = int(_libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args)))
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def malloc_trim() -> None:
    """glibc ``malloc_trim(0)``: give the free heap back before it is locked."""
    trim = getattr(_libc, "malloc_trim", None)  # absent on musl
    if trim is not None:
        trim(ctypes.c_size_t(0))


def mlockall(flags: int) -> None:
    """``mlockall(2)``; raises OSError(errno) on failure."""
    if _libc.mlockall(ctypes.c_int(flags)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Syscalls(Protocol):
    """What the Killer needs from the kernel to signal one process."""

    has_pidfd: bool

    def pidfd_open(self, pid: int) -> int: ...

    def pidfd_send_signal(self, pidfd: int, sig: int) -> None: ...

    def process_mrelease(self, pidfd: int) -> None: ...

    def pidfd_exited(self, pidfd: int) -> bool: ...

    def close(self, fd: int) -> None: ...

    def kill(self, pid: int, sig: int) -> None: ...


class LinuxSyscalls:
    """The real thing. Build once at start: the constructor probes the kernel."""

    def __init__(self) -> None:
        self.has_pidfd = self._probe_pidfd()
        self.has_mrelease = True  # until the kernel says ENOSYS

    def _probe_pidfd(self) -> bool:
        try:
            fd = self.pidfd_open(os.getpid())
        except OSError as exc:
            if exc.errno in (errno.ENOSYS, errno.EINVAL):
                return False
            raise
        os.close(fd)
        return True

    def pidfd_open(self, pid: int) -> int:
        if hasattr(os, "pidfd_open"):
            return os.pidfd_open(pid)
        return _raw_syscall(NR_PIDFD_OPEN, pid, 0)

    def pidfd_send_signal(self, pidfd: int, sig: int) -> None:
        if hasattr(signal, "pidfd_send_signal"):
            signal.pidfd_send_signal(pidfd, sig)
        else:
            _raw_syscall(NR_PIDFD_SEND_SIGNAL, pidfd, sig, 0, 0)

    def process_mrelease(self, pidfd: int) -> None:
        """Reap the address space of a dying process now (we do the oom
        reaper's job). Raises OSError(ENOSYS) once, then returns quietly."""
        if not self.has_mrelease:
            return
        try:
            _raw_syscall(NR_PROCESS_MRELEASE, pidfd, 0)
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                self.has_mrelease = False
            raise

    def pidfd_exited(self, pidfd: int) -> bool:
        """A pidfd polls readable once its process has exited (zombie or reaped)."""
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(0))

    def close(self, fd: int) -> None:
        os.close(fd)

    def kill(self, pid: int, sig: int) -> None:
        os.kill(pid, sig)


def poll_wait(fd: int | None, events: int, timeout_s: float) -> None:
    """Block until ``fd`` reports one of ``events`` (a poll mask) or
    ``timeout_s`` passes; ``fd`` None is a plain sleep. The default waiter of
    the Killer: POLLIN on a pidfd (exit), POLLPRI on ``cgroup.events`` (change)."""
    if timeout_s <= 0:
        return
    if fd is None:
        time.sleep(timeout_s)
        return
    poller = select.poll()
    poller.register(fd, events)
    poller.poll(max(1, int(timeout_s * 1000)))
