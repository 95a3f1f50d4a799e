"""inotify(7): the few calls the loop and discovery use, on libc through ctypes.

The subset of inotify_simple's API that prioomd used (``INotify``, ``flags``,
``read(timeout=0)`` on a non-blocking instance), written here because that
package imports ``ctypes.util`` (and with it shutil, subprocess, tempfile,
bz2, lzma: 1.4 MiB resident for nothing) and runs ``ldconfig -p`` to find a
libc we already have.
"""

from __future__ import annotations

import ctypes
import enum
import os
import struct
from typing import NamedTuple

from prioomd.syscalls import libc


class flags(enum.IntFlag):  # noqa: N801 (inotify_simple's name; include/uapi/linux/inotify.h)
    ACCESS = 0x1
    MODIFY = 0x2
    ATTRIB = 0x4
    CLOSE_WRITE = 0x8
    CLOSE_NOWRITE = 0x10
    OPEN = 0x20
    MOVED_FROM = 0x40
    MOVED_TO = 0x80
    CREATE = 0x100
    DELETE = 0x200
    DELETE_SELF = 0x400
    MOVE_SELF = 0x800
    UNMOUNT = 0x2000
    Q_OVERFLOW = 0x4000
    IGNORED = 0x8000
    ONLYDIR = 0x1000000
    DONT_FOLLOW = 0x2000000
    EXCL_UNLINK = 0x4000000
    MASK_ADD = 0x20000000
    ISDIR = 0x40000000
    ONESHOT = 0x80000000


class Event(NamedTuple):
    wd: int
    mask: int
    cookie: int
    name: str


_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_READ_BYTES = 64 * 1024


def parse_events(data: bytes) -> list[Event]:
    """The events in a buffer ``read(2)`` returned; a truncated tail is dropped."""
    events = []
    pos = 0
    while pos + _HEADER.size <= len(data):
        wd, mask, cookie, length = _HEADER.unpack_from(data, pos)
        pos += _HEADER.size
        if pos + length > len(data):
            break
        name = os.fsdecode(data[pos:pos + length].rstrip(b"\0"))
        pos += length
        events.append(Event(wd, mask, cookie, name))
    return events


def _check(ret: int) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


class INotify:
    """One inotify instance (non-blocking and close-on-exec)."""

    def __init__(self, nonblocking: bool = True) -> None:
        self._fd = _check(libc.inotify_init1(_IN_CLOEXEC | (_IN_NONBLOCK if nonblocking else 0)))

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        # Instances are few (fs.inotify.max_user_instances, 128 by default, for every
        # program of the user): one dropped without close() must not hold its own.
        if getattr(self, "_fd", -1) >= 0:
            self.close()

    def add_watch(self, path: str, mask: int) -> int:
        """The watch descriptor; OSError (ENOENT, ENOSPC, ...) on failure."""
        return _check(libc.inotify_add_watch(self._fd, os.fsencode(path), ctypes.c_uint32(mask)))

    def rm_watch(self, wd: int) -> None:
        _check(libc.inotify_rm_watch(self._fd, wd))

    def read(self, timeout: int = 0) -> list[Event]:
        """Every pending event, without blocking (``timeout`` must be 0)."""
        if timeout != 0:
            raise ValueError("only non-blocking reads (timeout=0) are supported")
        out: list[Event] = []
        while True:
            try:
                data = os.read(self._fd, _READ_BYTES)
            except BlockingIOError:
                return out
            if not data:
                return out
            out.extend(parse_events(data))
