"""Which domains are enabled, followed from events instead of rescans.

Every cgroup directory carries an inotify watch for IN_CREATE / IN_DELETE /
IN_MOVED_* (its children come and go) and IN_ATTRIB (setxattr, chown or chmod
of a child, or of itself). Each event queues the cgroups it names; ``step``
examines at most ``budget`` of them per wake-up (a ``listxattr`` each, and a
full resolve only where a use_priority_oom xattr or rule may apply), so a
tenant making 2x10^4 cgroups in a second costs the loop a few slices of work,
never one long stall. The first walk is the same queue, run to the end before
the loop starts.

What events cannot show is rechecked on a timer, bounded the same way:
memory.max of enabled cgroups (a write to it notifies nobody); and, past the
cap on watches (``max_watches``: by default a quarter of
``fs.inotify.max_user_watches``, a limit shared with every other program of the
same user, which a host of 10^5 cgroups must not take from them), when the kernel
refuses more, or when the queue overflowed, the unwatched directories are
rescanned round-robin.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable

from prioomd import cgroupfs, domains, inotify, table
from prioomd.domains import ROOT, Domain
from prioomd.errors import Vanished

log = logging.getLogger(__name__)

_F = inotify.flags
_DIR_MASK = (_F.CREATE | _F.DELETE | _F.MOVED_FROM | _F.MOVED_TO | _F.ATTRIB | _F.ONLYDIR
             | _F.DONT_FOLLOW)
BUDGET = 256  # cgroups examined per wake-up: a few ms of work, far below a 50 ms stall
RECHECK_S = 1.0  # memory.max of enabled cgroups without a limit: read this often
WATCH_SHARE = 4  # by default take at most 1/WATCH_SHARE of the user's inotify watches
WATCHES_FALLBACK = 8192  # the cap when fs.inotify.max_user_watches cannot be read
LIMITS_S = 30.0  # memory.max of armed domains: read this often (guard and logs use it)


class Discovery:
    """``domains`` holds the enabled domains, kept current by ``read_events`` +
    ``step``; ``step`` says when it changed. ``budget`` bounds one ``step``."""

    def __init__(self, tbl: table.PriorityTable, cgroup_root: str, *,
                 clock: Callable[[], float], budget: int = BUDGET,
                 max_watches: int = WATCHES_FALLBACK) -> None:
        self.table = tbl
        self.root = cgroup_root
        self.clock = clock
        self.budget = budget
        self.max_watches = max_watches  # a new cap applies to new watches only
        self.domains: dict[str, Domain] = {}
        self._enabled: set[str] = set()  # use_priority_oom on, with or without memory.max
        self._wd_path: dict[int, str] = {}
        self._path_wd: dict[str, int] = {}
        self._todo: dict[str, bool] = {}  # path -> also watch it and list its children
        self._unwatched: list[str] = []  # over the watch limit: rescanned round-robin
        self._limits_said: set[str] = set()
        self._next_recheck = 0.0
        self._next_limits = 0.0
        self._noted: dict[str, str] = {}  # path -> last warning, to say each once
        self._dropped = False  # a domain went away in read_events
        self._ino = inotify.INotify(nonblocking=True)
        self._todo[ROOT] = True

    def fileno(self) -> int:
        return self._ino.fileno()

    def close(self) -> None:
        if not self._ino.closed:
            self._ino.close()

    @property
    def busy(self) -> bool:
        """Work is queued: the caller should come back without sleeping."""
        return bool(self._todo)

    def next_due(self) -> float | None:
        """When ``step`` has timed work to do (clock seconds), None if only events
        can bring any: the enabled cgroups without a limit, the unwatched ones,
        and the limits of armed cgroup domains."""
        due = []
        if self._unwatched or self._enabled - self.domains.keys():
            due.append(self._next_recheck)
        if any(path != ROOT for path in self.domains):
            due.append(self._next_limits)
        return min(due, default=None)

    @property
    def watched(self) -> int:
        return len(self._path_wd)

    @property
    def unwatched(self) -> int:
        """Cgroups past the watch limit, followed by the round-robin rescan."""
        return len(self._unwatched)

    def retable(self, tbl: table.PriorityTable, *, relist: bool = False) -> None:
        """A new config: every known cgroup is examined again (bounded per step);
        ``relist``: and its children listed (events were lost)."""
        self.table = tbl
        for path in self._path_wd:
            self._todo[path] = relist or self._todo.get(path, False)
        for path in self._unwatched:
            self._todo.setdefault(path, True)

    def run_all(self) -> None:
        """Drain the queue (the first walk, before the loop starts)."""
        while self._todo:
            self.step(budget=len(self._todo))

    # ------------------------------------------------------------ events
    def read_events(self) -> None:
        """Queue the cgroups the pending inotify events name."""
        for ev in self._ino.read(timeout=0):
            if ev.mask & _F.Q_OVERFLOW:
                log.warning("cgroup watch queue overflowed: examining every cgroup again")
                self.retable(self.table, relist=True)
                continue
            if ev.mask & _F.IGNORED:
                path = self._wd_path.pop(ev.wd, None)
                if path is not None and self._path_wd.get(path) == ev.wd:
                    del self._path_wd[path]
                continue
            parent = self._wd_path.get(ev.wd)
            if parent is None:
                continue
            if not ev.name:  # the watched directory itself (its xattrs: the root's)
                if ev.mask & _F.ATTRIB:
                    self._todo.setdefault(parent, False)
                continue
            if not ev.mask & _F.ISDIR:  # cgroup files: nothing to do with domains
                continue
            path = _join(parent, ev.name)
            if ev.mask & _F.DELETE:
                self._forget(path, subtree=False)  # rmdir needs an empty cgroup
            elif ev.mask & _F.MOVED_FROM:
                self._forget(path, subtree=True)
            elif ev.mask & (_F.CREATE | _F.MOVED_TO):
                self._todo[path] = True
            elif ev.mask & _F.ATTRIB:
                self._todo.setdefault(path, False)

    def _forget(self, path: str, *, subtree: bool) -> None:
        paths = [path]
        if subtree:
            prefix = path + "/"
            paths += [p for p in self._path_wd if p.startswith(prefix)]
        for p in paths:
            wd = self._path_wd.pop(p, None)
            if wd is not None:
                self._wd_path.pop(wd, None)
                if subtree:
                    try:
                        self._ino.rm_watch(wd)
                    except OSError:
                        pass
            self._todo.pop(p, None)
            self._enabled.discard(p)
            if self.domains.pop(p, None) is not None:
                self._dropped = True
            self._noted.pop(p, None)

    # ------------------------------------------------------------ work
    def step(self, budget: int | None = None) -> bool:
        """Examine at most ``budget`` queued cgroups (and queue what the timers
        say is due). True when ``domains`` changed."""
        before = dict(self.domains)
        dropped, self._dropped = self._dropped, False
        self._queue_due()
        for _ in range(self.budget if budget is None else budget):
            if not self._todo:
                break
            path = next(iter(self._todo))
            scan = self._todo.pop(path)
            try:
                self._examine(path, scan)
            except Vanished:
                self._forget(path, subtree=False)
            except (OSError, ValueError) as exc:  # odd kernel answer: skip it, loudly
                log.warning("%s: not examined for use_priority_oom: %s", path, exc)
        return dropped or self.domains != before

    def _queue_due(self) -> None:
        now = self.clock()
        if now >= self._next_recheck:
            self._next_recheck = now + RECHECK_S
            for path in list(self._enabled - self.domains.keys())[:self.budget]:
                self._todo.setdefault(path, False)
            # the unwatched, round-robin: a fixed share per recheck
            share, self._unwatched = (self._unwatched[:self.budget],
                                      self._unwatched[self.budget:])
            for path in share:
                self._todo[path] = True
        if now >= self._next_limits:
            self._next_limits = now + LIMITS_S
            for path in self.domains:
                self._todo.setdefault(path, False)

    def _examine(self, path: str, scan: bool) -> None:
        cgdir = cgroupfs.rel_to_abs(self.root, path)
        if scan:
            self._watch(path, cgdir)
            for name, _key in cgroupfs.list_children(cgdir):
                child = _join(path, name)
                # a watched child reports its own news; only a relist lists it again
                self._todo.setdefault(child, child not in self._path_wd)
        try:
            names = frozenset(os.listxattr(cgdir, follow_symlinks=False))
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise Vanished(path) from exc
            names = None  # unsupported: resolve reads each name
        dom, enabled, notes = domains.resolve_domain(self.table, self.root, path,
                                                     xattr_names=names)
        note = "; ".join(dict.fromkeys(notes))
        if note and self._noted.get(path) != note:
            log.warning("%s", note)
        if note:
            self._noted[path] = note
        else:
            self._noted.pop(path, None)
        (self._enabled.add if enabled else self._enabled.discard)(path)
        if dom is None:
            self.domains.pop(path, None)
        else:
            self.domains[path] = dom

    def _watch(self, path: str, cgdir: str) -> None:
        if path in self._path_wd:
            return
        if len(self._path_wd) >= self.max_watches:
            self._no_watch(path, f"prioomd's cap of {self.max_watches} inotify watches, "
                                 "[daemon] max_watches")
            return
        try:
            wd = self._ino.add_watch(cgdir, _DIR_MASK)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise Vanished(path) from exc
            self._no_watch(path, f"{exc.strerror}: the kernel's inotify watch limit, "
                                 "fs.inotify.max_user_watches")
            return
        self._wd_path[wd] = path
        self._path_wd[path] = wd


    def _no_watch(self, path: str, why: str) -> None:
        if why not in self._limits_said:  # once per limit, not on every rescan
            self._limits_said.add(why)
            log.warning("%s is not watched (%s): it and every cgroup past the limit are "
                        "rescanned, %d per second", path, why, self.budget)
        self._unwatched.append(path)


def default_max_watches(proc_root: str = "/proc") -> int:
    """A quarter of the user's inotify watches (every program of root shares them)."""
    try:
        with open(os.path.join(proc_root, "sys/fs/inotify/max_user_watches"), "rb") as f:
            return max(1, int(f.read()) // WATCH_SHARE)
    except (OSError, ValueError):
        return WATCHES_FALLBACK


def _join(parent: str, name: str) -> str:
    return "/" + name if parent == ROOT else f"{parent}/{name}"
