"""The one poll loop: PSI triggers, inotify, pidfds, the proc connector, signals.

Thin mechanism (STYLE §2): it turns kernel notifications into ``Event`` values
and decides nothing. Every OS object is opened when it is registered and held
until ``remove``/``close``; an idle ``wait`` is one ``poll(2)`` and touches no
cgroup (peers' complaint 9).

Event kinds (``Event.kind``), with ``Event.key`` the caller's registration key:

* ``psi``: a PSI trigger fired (POLLPRI). ``detail``: path, kind.
* ``file-changed``: a watched kernfs file was modified, or a watched config
  file was closed after writing or renamed into place. Coalesced per ``wait``.
* ``gone``: the cgroup behind the key was removed (POLLERR on its PSI fd, or
  IN_DELETE of its directory), or a watched config file's directory was removed
  (``watch_config`` it again once it is back). Everything registered under the
  key is dropped.
* ``proc-exit``: a pid watched with ``watch_pid`` exited (pidfd), or, under
  ``PROC_KEY``, a process (thread-group leader) exited (connector).
* ``proc-fork``: under ``PROC_KEY``, a new process (connector, if asked for).
* ``proc-lost``: the connector's socket overflowed; exits may have been missed.
* ``signal-reload`` (SIGHUP), ``signal-stop`` (SIGTERM, SIGINT).
* ``timeout``: the periodic tick (see ``wait``).

PSI triggers are armed by ``psi_trigger.arm``: without CAP_SYS_RESOURCE the
window is rounded up to a multiple of 2 s, and where no trigger can be armed
the key falls back to polling (``polling_keys()``): the daemon then reads
avg10 on every ``timeout`` tick.
"""

from __future__ import annotations

import logging
import math
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import inotify_simple

from prioomd import psi_trigger
from prioomd.errors import Vanished, is_gone
from prioomd.proc_connector import ProcConnector, open_connector
from prioomd.psi_trigger import TriggerInfo, rounded_window_us, trigger_spec

__all__ = ["PROC_KEY", "Event", "EventLoop", "ProcEventsInfo", "TriggerInfo",
           "rounded_window_us", "trigger_spec"]

log = logging.getLogger(__name__)

PROC_KEY = "proc-events"

_F = inotify_simple.flags
_FILE_MASK = _F.MODIFY
_CONFIG_MASK = _F.CLOSE_WRITE | _F.MOVED_TO
_GONE_MASK = _F.DELETE | _F.ONLYDIR
_ERR = select.POLLERR | select.POLLHUP | select.POLLNVAL
_SIGNALS = {int(signal.SIGHUP): "signal-reload", int(signal.SIGTERM): "signal-stop",
            int(signal.SIGINT): "signal-stop"}


@dataclass(frozen=True)
class Event:
    kind: str
    key: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProcEventsInfo:
    available: bool
    reason: str


@dataclass(frozen=True)
class _Watch:
    key: str
    role: str  # "file", "config", "config-link" or "gone"
    name: str  # the entry name in a watched directory ("" for a file watch)
    path: str


def config_watch_points(path: str, max_links: int = 40) -> list[tuple[str, str, bool]]:
    """(directory, entry name, is a symlink) of every entry whose change changes what
    ``path`` names: each symlink met while resolving it, in the directory holding it,
    then the final file. Missing entries end the walk (the last one is watched)."""
    points: list[tuple[str, str, bool]] = []
    todo = os.path.abspath(path).split("/")[1:]
    cur = "/"
    while todo:
        name = todo.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            cur = os.path.dirname(cur)
            continue
        here = os.path.join(cur, name)
        try:
            target = os.readlink(here)
        except OSError:  # not a link (or gone): a plain step
            if not todo:
                points.append((cur, name, False))
            cur = here
            continue
        points.append((cur, name, True))
        if len(points) > max_links:  # a loop: ELOOP for open() too
            break
        if target.startswith("/"):
            cur = "/"
        todo[:0] = target.split("/")
    return list(dict.fromkeys(points))


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """The C-level handler already wrote the signal number into the wakeup pipe."""


class EventLoop:
    """``with EventLoop() as loop: ... events = loop.wait(timeout_s)``.

    ``signals``: take over SIGHUP/SIGTERM/SIGINT (main thread only; restored on
    close). ``timer``: gives ``wait``'s timeout when none is passed (the adaptive
    poll interval); without either, ``wait`` blocks until an event. ``clock``:
    monotonic seconds, for the tick (a parameter so tests can drive it)."""

    def __init__(self, *, signals: bool = True, timer: Callable[[], float] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._timer = timer
        self._clock = clock
        self._next_tick: float | None = None
        self._poller = select.poll()
        self._roles: dict[int, tuple[str, str]] = {}  # fd -> (role, key)
        self._psi: dict[str, tuple[int, str, str]] = {}  # key -> (fd, path, kind)
        self._polling: set[str] = set()
        self._pidfds: dict[str, tuple[int, int]] = {}  # key -> (fd, pid)
        self._queued: list[Event] = []
        self._wd_watches: dict[int, list[_Watch]] = {}
        self._conn: ProcConnector | None = None
        self._old_wakeup = -1
        self._old_handlers: dict[int, Any] = {}
        self._sig_r = self._sig_w = -1
        self._ino = inotify_simple.INotify(nonblocking=True)
        self._register(self._ino.fileno(), select.POLLIN, "inotify", "")
        if signals:
            try:
                self._take_signals()  # ValueError outside the main thread
            except BaseException:
                self.close()
                raise

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> EventLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every fd, unsubscribe, restore signal handlers. Idempotent."""
        for key in list(self._psi) + list(self._pidfds) + list(self._polling):
            self.remove(key)
        if self._conn is not None:
            self._unregister(self._conn.fileno())
            self._conn.close()
            self._conn = None
        if not self._ino.closed:
            self._unregister(self._ino.fileno())
            self._ino.close()
        self._wd_watches.clear()
        if self._sig_r >= 0:
            signal.set_wakeup_fd(self._old_wakeup)
            for signum, handler in self._old_handlers.items():
                signal.signal(signum, handler)
            self._unregister(self._sig_r)
            os.close(self._sig_r)
            os.close(self._sig_w)
            self._sig_r = self._sig_w = -1

    def _register(self, fd: int, mask: int, role: str, key: str) -> None:
        self._poller.register(fd, mask)
        self._roles[fd] = (role, key)

    def _unregister(self, fd: int) -> None:
        if self._roles.pop(fd, None) is not None:
            self._poller.unregister(fd)

    def _take_signals(self) -> None:
        self._sig_r, self._sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old_wakeup = signal.set_wakeup_fd(self._sig_w, warn_on_full_buffer=False)
        for signum in _SIGNALS:
            self._old_handlers[signum] = signal.signal(signum, _ignore_signal)
        self._register(self._sig_r, select.POLLIN, "signal", "")

    # --------------------------------------------------------- registration
    def add_psi_trigger(self, key: str, path: str, kind: str, stall_us: int,
                        window_us: int) -> TriggerInfo:
        """Arm a PSI trigger on ``path`` (``/proc/pressure/memory`` or
        ``<cg>/memory.pressure``), see ``psi_trigger.arm``: the window may be
        rounded up to a multiple of 2 s, or the key may fall back to polling.
        Raises ``Vanished`` when the cgroup is gone, ``ValueError`` for an
        impossible request or a key already in use."""
        if key in self._psi or key in self._polling:
            raise ValueError(f"PSI trigger {key!r} is already registered")
        fd, info = psi_trigger.arm(path, kind, stall_us, window_us)
        if fd is None:
            self._polling.add(key)
        else:
            self._psi[key] = (fd, path, kind)
            self._register(fd, select.POLLPRI, "psi", key)
        return info

    def polling_keys(self) -> frozenset[str]:
        """Keys whose PSI trigger fell back to polling: assess them on every timeout."""
        return frozenset(self._polling)

    def watch_file(self, key: str, path: str) -> None:
        """Watch a kernfs file (``memory.events[.local]``, ``cgroup.events``) for
        modification, and its cgroup directory for removal (``gone``), except
        when that directory is a mount point (the cgroup root)."""
        try:
            self._add_watch(path, _FILE_MASK, _Watch(key, "file", "", path))
            cgdir = os.path.dirname(path)
            if not os.path.ismount(cgdir):
                self._add_watch(os.path.dirname(cgdir), _GONE_MASK,
                                _Watch(key, "gone", os.path.basename(cgdir), path))
        except OSError as exc:
            self._drop_watches(key)
            if is_gone(exc):
                raise Vanished(path) from exc
            raise

    def watch_config(self, key: str, path: str) -> None:
        """Watch a regular file that editors replace by rename: its directory, for
        IN_CLOSE_WRITE or IN_MOVED_TO of that name. Behind symlinks, also each link
        on the way (in the directory holding it, IN_CREATE too: a link is replaced by
        rename or by unlink + symlink) and the final file where it lives: editing the
        target or swapping a link (Kubernetes' ..data) is a change. The links are
        followed as they are now: after a change, remove and watch again. OSError when
        no directory on the way exists (watch again later)."""
        refused: OSError | None = None
        watched = False
        for directory, name, is_link in config_watch_points(path):
            try:
                self._add_watch(directory, _CONFIG_MASK | (_F.CREATE if is_link else 0),
                                _Watch(key, "config-link" if is_link else "config", name, path))
                watched = True
            except OSError as exc:  # a link dangling mid-swap: the other points remain
                log.debug("config watch on %s: %s", directory, exc)
                refused = exc
        if not watched and refused is not None:
            raise refused

    def _add_watch(self, path: str, mask: int, watch: _Watch) -> None:
        wd = self._ino.add_watch(path, mask | _F.MASK_ADD)
        self._wd_watches.setdefault(wd, []).append(watch)

    def _drop_watches(self, key: str) -> None:
        for wd in list(self._wd_watches):
            keep = [w for w in self._wd_watches[wd] if w.key != key]
            if keep:
                self._wd_watches[wd] = keep
                continue
            del self._wd_watches[wd]
            try:
                self._ino.rm_watch(wd)
            except OSError:  # EINVAL: the kernel already dropped it
                pass

    def watch_pid(self, key: str, pid: int) -> None:
        """Report ``proc-exit`` under ``key`` once every thread of ``pid`` has exited
        (a pidfd; needs Linux 5.3). Already gone: the event comes on the next wait.
        A key already watched for the same pid keeps its pidfd (it pins the earlier,
        possibly still exiting, instance); for another pid the old watch is dropped."""
        held = self._pidfds.get(key)
        if held is not None:
            if held[1] == pid:
                return
            self._drop_pid(key)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._queued.append(Event("proc-exit", key, {"pid": pid, "source": "pidfd"}))
            return
        self._pidfds[key] = (fd, pid)
        self._register(fd, select.POLLIN, "pid", key)

    def enable_proc_events(self, *, forks: bool = False) -> ProcEventsInfo:
        """Subscribe to the process events connector (CAP_NET_ADMIN). Unavailable:
        the loop works without it; watch victims with ``watch_pid`` instead."""
        if self._conn is not None:
            return ProcEventsInfo(True, "already subscribed")
        try:
            self._conn = open_connector(forks=forks)
        except OSError as exc:
            reason = f"process events connector unavailable: {exc}"
            log.warning("%s; confirming exits with pidfds only", reason)
            return ProcEventsInfo(False, reason)
        self._register(self._conn.fileno(), select.POLLIN, "proc", PROC_KEY)
        return ProcEventsInfo(True, "subscribed to cn_proc exit" + (" and fork" if forks else ""))

    def remove(self, key: str) -> None:
        """Drop everything registered under ``key``; unknown keys are ignored."""
        if key in self._psi:
            fd = self._psi.pop(key)[0]
            self._unregister(fd)
            os.close(fd)
        self._drop_pid(key)
        self._polling.discard(key)
        self._drop_watches(key)

    def _drop_pid(self, key: str) -> None:
        if key in self._pidfds:
            fd = self._pidfds.pop(key)[0]
            self._unregister(fd)
            os.close(fd)

    # ---------------------------------------------------------------- waiting
    def wait(self, timeout_s: float | None = None) -> list[Event]:
        """Block until something happens or ``timeout_s`` (default: the timer) passes;
        never returns an empty list.

        ``timeout`` is a tick, not "nothing else happened": it is due ``timeout_s``
        after the previous tick (a shorter new ``timeout_s`` pulls it in) and comes
        even amid a storm of other events, so periodic sampling never starves."""
        if timeout_s is None and self._timer is not None:
            timeout_s = self._timer()
        if timeout_s is not None:
            due = self._clock() + max(timeout_s, 0.0)
            self._next_tick = due if self._next_tick is None else min(self._next_tick, due)
        out: dict[tuple[str, str], Event] = {}
        for ev in self._queued:
            out.setdefault((ev.kind, ev.key), ev)
        self._queued.clear()
        while True:
            timeout_ms = None
            if out:
                timeout_ms = 0
            elif self._next_tick is not None:
                timeout_ms = math.ceil(max(self._next_tick - self._clock(), 0.0) * 1000)
            ready = self._poller.poll(timeout_ms)
            self._dispatch(ready, out)
            # poll timed out: the tick is due even if the clock disagrees by a hair
            timed_out = not ready and timeout_ms is not None and timeout_ms > 0
            if self._next_tick is not None and (timed_out or self._clock() >= self._next_tick):
                self._next_tick = None
                out[("timeout", "")] = Event("timeout")
            if out:  # else: woken by something irrelevant (a sibling file's inotify)
                return list(out.values())

    def _dispatch(self, ready: list[tuple[int, int]], out: dict[tuple[str, str], Event]) -> None:
        gone: list[str] = []
        for fd, mask in ready:
            role, key = self._roles.get(fd, ("", ""))
            if role == "psi":
                if mask & _ERR:
                    gone.append(key)
                    out.setdefault(("gone", key), Event("gone", key, {"source": "psi"}))
                elif mask & select.POLLPRI:
                    path, kind = self._psi[key][1:]
                    out.setdefault(("psi", key), Event("psi", key, {"path": path, "kind": kind}))
            elif role == "pid":
                held = self._pidfds.get(key)
                if held is None or held[0] != fd:  # not ours any more: never a KeyError
                    self._unregister(fd)
                    continue
                pid = held[1]
                out.setdefault(("proc-exit", key),
                               Event("proc-exit", key, {"pid": pid, "source": "pidfd"}))
                self._drop_pid(key)
            elif role == "inotify":
                self._read_inotify(out, gone)
            elif role == "signal":
                self._read_signals(out)
            elif role == "proc":
                self._read_connector(out)
        for key in gone:
            self.remove(key)

    def _read_inotify(self, out: dict[tuple[str, str], Event], gone: list[str]) -> None:
        for ev in self._ino.read(timeout=0):
            if ev.mask & _F.Q_OVERFLOW:  # events were lost: everything may have changed
                for watches in self._wd_watches.values():
                    for w in watches:
                        if w.role != "gone":
                            out.setdefault(("file-changed", w.key), Event(
                                "file-changed", w.key, {"path": w.path, "overflow": True}))
                continue
            for w in self._wd_watches.get(ev.wd, ()):
                if ev.mask & _F.IGNORED:  # the kernel dropped the watch: file or fs gone
                    self._wd_watches.pop(ev.wd, None)
                    if w.role in ("file", "config", "config-link"):  # config: a directory
                        # on its way went away
                        gone.append(w.key)
                        out.setdefault(("gone", w.key), Event("gone", w.key,
                                                              {"source": "inotify"}))
                elif w.role == "gone" and ev.mask & _F.DELETE and ev.name == w.name:
                    gone.append(w.key)
                    out.setdefault(("gone", w.key), Event("gone", w.key, {"source": "inotify"}))
                elif (w.role == "file" and ev.mask & _F.MODIFY) or (
                        w.role == "config" and ev.mask & _CONFIG_MASK and ev.name == w.name) or (
                        w.role == "config-link" and ev.mask & (_CONFIG_MASK | _F.CREATE)
                        and ev.name == w.name):
                    out.setdefault(("file-changed", w.key),
                                   Event("file-changed", w.key, {"path": w.path}))

    def _read_signals(self, out: dict[tuple[str, str], Event]) -> None:
        while True:
            try:
                data = os.read(self._sig_r, 64)
            except BlockingIOError:
                return
            if not data:
                return
            for signum in data:
                kind = _SIGNALS.get(signum)
                if kind is not None:
                    out.setdefault((kind, ""), Event(kind, "", {"signal": signum}))

    def _read_connector(self, out: dict[tuple[str, str], Event]) -> None:
        assert self._conn is not None
        events, lost = self._conn.read()
        if lost:
            out.setdefault(("proc-lost", PROC_KEY), Event("proc-lost", PROC_KEY))
        for ev in events:
            if ev.pid != ev.tgid:  # a thread, not a process
                continue
            kind = "proc-exit" if ev.kind == "exit" else "proc-fork"
            detail = ({"pid": ev.tgid, "wait_status": ev.status, "source": "connector"}
                      if ev.kind == "exit" else {"pid": ev.tgid, "ppid": ev.parent_tgid})
            out[(kind, f"{PROC_KEY}:{ev.tgid}")] = Event(kind, PROC_KEY, detail)
