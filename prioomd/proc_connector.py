"""The kernel's process events connector (cn_proc): fork and exit notifications.

A raw ``AF_NETLINK``/``NETLINK_CONNECTOR`` socket, read by ``events.EventLoop``.
pyroute2 (0.9.7) has a ``ProcEventSocket``, but its synchronous API runs a
private asyncio loop that drains datagrams into an internal queue, so polling
its ``fileno()`` misses events (measured on this project's host: 25 of 50
child exits seen); and it cannot ask for the kernel-side event filter. The
wire format is four fixed structs, parsed here with ``struct``.

Subscription: kernels >= 6.6 accept ``struct proc_input {op, event_type}`` and
then send only the requested events (exit, optionally fork), which keeps the
cost of a busy host's fork and exec storm off the daemon. Older kernels ignore
that form; there the legacy 4-byte subscription delivers every event and the
unwanted ones are dropped here. Subscribing needs CAP_NET_ADMIN in the
initial user namespace; without it ``open_connector`` raises ``OSError`` and
the caller falls back to pidfds.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from dataclasses import dataclass

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1  # include/uapi/linux/connector.h
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1  # include/uapi/linux/cn_proc.h
PROC_CN_MCAST_IGNORE = 2
PROC_EVENT_NONE = 0x0  # also the "what" of an ack
PROC_EVENT_FORK = 0x1
PROC_EVENT_EXIT = 0x80000000
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_EVENT_HDR = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
_FORK = struct.Struct("=IIII")  # parent pid, parent tgid, child pid, child tgid
_EXIT = struct.Struct("=IIII")  # pid, tgid, exit_code, exit_signal (+ parent pid, tgid)
_U32 = struct.Struct("=I")
_RECV_BYTES = 16384  # one datagram is 76 bytes; this drains a burst per recv


@dataclass(frozen=True)
class ProcEvent:
    """One decoded cn_proc message. ``kind``: "fork", "exit", "ack" or "other".
    fork: ``pid``/``tgid`` of the child, ``parent_tgid``; exit: the exiting task,
    ``status`` its wait status; ack: ``status`` is the kernel's errno, ``seq``/``ack``
    echo the request (``ack`` + 1)."""

    kind: str
    pid: int = 0
    tgid: int = 0
    parent_tgid: int = 0
    status: int = 0
    seq: int = 0
    ack: int = 0


def parse_datagram(data: bytes) -> list[ProcEvent]:
    """Decode one netlink datagram; truncated or foreign messages are skipped."""
    out: list[ProcEvent] = []
    off = 0
    while off + _NLMSGHDR.size <= len(data):
        nl_len, nl_type, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if nl_len < _NLMSGHDR.size or off + nl_len > len(data):
            break
        body = data[off + _NLMSGHDR.size: off + nl_len]
        off += (nl_len + 3) & ~3  # NLMSG_ALIGN
        if nl_type in (NLMSG_ERROR, NLMSG_OVERRUN) or len(body) < _CN_MSG.size + _EVENT_HDR.size:
            continue
        idx, val, seq, ack, _cn_len, _cn_flags = _CN_MSG.unpack_from(body, 0)
        if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC):
            continue
        what, _cpu, _ts = _EVENT_HDR.unpack_from(body, _CN_MSG.size)
        at = _CN_MSG.size + _EVENT_HDR.size
        if what == PROC_EVENT_FORK and len(body) >= at + _FORK.size:
            _ppid, ptgid, cpid, ctgid = _FORK.unpack_from(body, at)
            out.append(ProcEvent("fork", cpid, ctgid, parent_tgid=ptgid, seq=seq, ack=ack))
        elif what == PROC_EVENT_EXIT and len(body) >= at + _EXIT.size:
            pid, tgid, code, _sig = _EXIT.unpack_from(body, at)
            parent = _U32.unpack_from(body, at + 20)[0] if len(body) >= at + 24 else 0
            out.append(ProcEvent("exit", pid, tgid, parent_tgid=parent, status=code,
                                 seq=seq, ack=ack))
        elif what == PROC_EVENT_NONE and len(body) >= at + _U32.size:
            out.append(ProcEvent("ack", status=_U32.unpack_from(body, at)[0], seq=seq, ack=ack))
        else:
            out.append(ProcEvent("other", seq=seq, ack=ack))
    return out


def control_message(op: int, event_mask: int | None, seq: int, ack: int) -> bytes:
    """A subscription request: ``event_mask`` None gives the legacy 4-byte form."""
    payload = _U32.pack(op) if event_mask is None else struct.pack("=II", op, event_mask)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, seq, ack, len(payload), 0)
    size = _NLMSGHDR.size + len(cn) + len(payload)
    return _NLMSGHDR.pack(size, NLMSG_DONE, 0, seq, os.getpid()) + cn + payload


class ProcConnector:
    """A subscribed cn_proc socket. ``read()`` never blocks."""

    def __init__(self, sock: socket.socket, forks: bool) -> None:
        self.sock = sock
        self.forks = forks
        self.unwanted_dropped = 0  # events the kernel did not filter (kernels < 6.6)
        self.early: list[ProcEvent] = []  # events read while waiting for the ack

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> tuple[list[ProcEvent], bool]:
        """Pending fork/exit events, and whether the kernel dropped some (ENOBUFS)."""
        events, self.early = self.early, []
        lost = False
        while True:
            try:
                data = self.sock.recv(_RECV_BYTES)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                lost = True
                continue
            for ev in parse_datagram(data):
                if self._wanted(ev):
                    events.append(ev)
                elif ev.kind != "ack":
                    self.unwanted_dropped += 1
        return events, lost

    def _wanted(self, ev: ProcEvent) -> bool:
        return ev.kind == "exit" or (ev.kind == "fork" and self.forks)

    def close(self) -> None:
        if self.sock.fileno() < 0:
            return
        try:  # pre-6.6 kernels only lower their listener count on an explicit IGNORE
            self.sock.send(control_message(PROC_CN_MCAST_IGNORE, None, 0, 0))
        except OSError:
            pass
        self.sock.close()


def _await_ack(sock: socket.socket, ack: int, timeout_s: float,
               early: list[ProcEvent]) -> int | None:
    """The kernel's errno from the ack of our request, or None if none came. Acks
    are multicast to every listener and the kernel overwrites ``seq`` with its own
    counter, so ours is recognised by ``ack`` (our value + 1) alone."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if not poller.poll(max(1, int(left * 1000))):
            continue
        try:
            data = sock.recv(_RECV_BYTES)
        except BlockingIOError:
            continue
        for ev in parse_datagram(data):
            if ev.kind == "ack" and ev.ack == ack + 1:
                return ev.status
            if ev.kind in ("fork", "exit"):
                early.append(ev)
    return None


def open_connector(*, forks: bool = False, ack_timeout_s: float = 1.0) -> ProcConnector:
    """Open and subscribe. Raises ``OSError`` with the reason when unavailable.

    The legacy subscription goes first because its ack proves the subscription
    (and carries EPERM when we lack CAP_NET_ADMIN); the filtered request follows.
    The kernel sends no ack we could see for the filtered form (the ack's event
    type, NONE, is itself filtered out), and pre-6.6 kernels ignore it silently,
    so ``read()`` drops unwanted events in any case; ``unwanted_dropped`` counts
    them, and stays 0 where the kernel filters."""
    sock = socket.socket(socket.AF_NETLINK,
                         socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                         NETLINK_CONNECTOR)
    try:
        sock.bind((0, CN_IDX_PROC))
        early: list[ProcEvent] = []
        ack = (os.getpid() << 8) & 0x7FFFFFFF
        sock.send(control_message(PROC_CN_MCAST_LISTEN, None, 0, ack))
        status = _await_ack(sock, ack, ack_timeout_s, early)
        if status is None:
            raise OSError(errno.ETIMEDOUT, "cn_proc did not acknowledge the subscription")
        if status != 0:
            raise OSError(status, f"cn_proc refused the subscription: {os.strerror(status)}")
        mask = PROC_EVENT_EXIT | (PROC_EVENT_FORK if forks else 0)
        sock.send(control_message(PROC_CN_MCAST_LISTEN, mask, 0, ack + 2))
        conn = ProcConnector(sock, forks)
        conn.early = [ev for ev in early if conn._wanted(ev)]
        return conn
    except BaseException:
        sock.close()
        raise
