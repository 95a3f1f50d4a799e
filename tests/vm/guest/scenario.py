"""Declarative OOM scenarios on a real kernel: cgroup trees, memory hogs, who died.

Runs inside the test guest only (tests/vm/kh/run.py): it creates cgroups, fills memory
and provokes the kernel's OOM killer.  Example, "priority beats size" without prioomd::

    tree = {"high": {"priority": 10}, "mid": {"priority": 6}, "low": {"priority": 2}}
    with Scenario(tree, base=cg_parent) as sc:
        sc.hog("high", "45%")
        sc.hog("low", "10%")
        sc.hog("mid", leak=True, ready=False)
        victim = sc.wait_first_death(timeout=120)   # the kernel picks /high, the biggest

Tree description: {path relative to `base`: settings}.  Missing ancestors are created;
every created cgroup with children gets the memory (and pids) controller for them.
Settings, applied in order after the whole tree exists:

    "memory.max": "64M"          any cgroup interface file (a key with a dot); sizes for
    "memory.high": "10%"         memory.{min,low,high,max,swap.max,zswap.max} may be ints,
    "memory.swap.max": 0         "64M"/"1G"/"512K", "max", or "N%" of the guest's MemTotal
    "memory.oom.group": 1        bools and ints are written as decimal
    "priority": 10               -> xattr trusted.prioomd.priority = b"10"
    "use_priority_oom": True     -> xattr trusted.prioomd.use_priority_oom = b"1"
    "xattrs": {"user.x": "5"}    any other xattrs

What a scenario reports (`report()`): the deaths of its workloads in order with their
signal and time, the memory.events deltas of every cgroup it created, the kernel's own
OOM kill count (/proc/vmstat oom_kill) and the kernel's "Killed process" records read
from /dev/kmsg, each mapped to the workload it hit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")
HOG = Path(__file__).resolve().with_name("hog.py")
TENANT = Path(__file__).resolve().with_name("tenant.py")
PRIORITY_XATTR = "trusted.prioomd.priority"
USE_PRIORITY_OOM_XATTR = "trusted.prioomd.use_priority_oom"
# "Priority beats size" (spec §3.5 in miniature): with priority OOM /low (priority 2)
# must die first although it is the smallest; the kernel alone kills /high, the biggest.
# Start: hog("high", "45%"), hog("low", "10%"), hog("mid", leak=True, ready=False).
PRIORITY_BEATS_SIZE: Mapping[str, Mapping[str, Any]] = {
    "high": {"priority": 10},
    "mid": {"priority": 6},
    "low": {"priority": 2},
}
SIZE_FILES = frozenset(
    f"memory.{k}" for k in ("min", "low", "high", "max", "swap.max", "zswap.max")
)
PAGE = os.sysconf("SC_PAGE_SIZE")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# "Out of memory: Killed process 345 (python3) total-vm:..." and the
# "Memory cgroup out of memory: ..." variant (mm/oom_kill.c __oom_kill_process).
_KILLED_RE = re.compile(rb"^(?P<why>[^:;]*): Killed process (?P<pid>\d+) \((?P<comm>.*?)\)")


class ScenarioError(RuntimeError):
    """The scenario could not be set up as described (a write refused, a hog failed)."""


class ScenarioTimeout(AssertionError):
    """Something awaited did not happen in time; the message carries the report."""


# --- environment ---------------------------------------------------------------------


def in_guest() -> bool:
    """True inside a guest booted by tests/vm/kh/run.py (never on a real host)."""
    try:
        return "khjob=" in Path("/proc/cmdline").read_text()
    except OSError:
        return False


def skip_all_in(here: Path, items: Sequence[Any], reason: str | None) -> None:
    """Mark every collected test under `here` skipped with `reason` (None: run them).
    The in-guest conftests use it so their tests never run on a host by accident."""
    if reason is None:
        return
    import pytest  # only the conftests call this; scenario itself needs no pytest

    mark = pytest.mark.skip(reason=reason)
    for item in items:
        if here in item.path.parents:
            item.add_marker(mark)


def has_memory_controller(root: Path = CGROUP_ROOT) -> bool:
    try:
        return "memory" in (root / "cgroup.controllers").read_text().split()
    except OSError:
        return False


def meminfo(key: str = "MemTotal") -> int:
    """A /proc/meminfo value in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            value, *unit = rest.split()
            return int(value) * (1024 if unit == ["kB"] else 1)
    raise KeyError(key)


def vmstat(key: str = "oom_kill") -> int:
    for line in Path("/proc/vmstat").read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    raise KeyError(key)


def parse_keyed(text: str) -> dict[str, int]:
    """'key value' lines (memory.events, cgroup.events, memory.stat) to a dict."""
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


def parse_size(value: int | str, total: int | None = None) -> int | str:
    """64M, 1G, 512K, 123, 'max', or 'N%' of `total` (default MemTotal), page-aligned."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        return value
    s = value.strip()
    if s == "max":
        return s
    if s.endswith("%"):
        total = meminfo() if total is None else total
        return int(total * float(s[:-1]) / 100) // PAGE * PAGE
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?", s, re.IGNORECASE)
    if not m:
        raise ValueError(f"not a size: {value!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


# --- records ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Death:
    name: str  # the workload's name
    cgroup: str | None  # its cgroup, relative to the scenario's base (None: ours)
    pid: int
    at_s: float  # seconds since the scenario started (when we saw it die)
    returncode: int  # Popen style: -N for death by signal N

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None

    @property
    def how(self) -> str:
        if self.returncode < 0:
            return signal.Signals(-self.returncode).name
        return f"exit {self.returncode}"


@dataclasses.dataclass(frozen=True)
class KernelKill:
    """One "Killed process" record of the kernel's OOM killer (from /dev/kmsg)."""

    pid: int
    comm: str
    why: str  # "Out of memory" (global) or "Memory cgroup out of memory"
    at_s: float  # seconds since the scenario started, from the kernel's own timestamp
    workload: str | None  # the scenario workload with that pid, if any


@dataclasses.dataclass
class Workload:
    name: str
    cgroup: str | None  # relative to the scenario's base; None: the runner's own
    argv: Sequence[str]
    popen: subprocess.Popen[bytes]
    pidfd: int
    started_s: float
    ready_fd: int = -1  # read end of the hog's ready pipe
    ready_bytes: int | None = None
    death: Death | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.death is None


@dataclasses.dataclass(frozen=True)
class Report:
    # In the order the runner saw them: under memory pressure that can lag the kernel's
    # kill by seconds (the runner's pages are reclaimed too); kernel_kills has the
    # kernel's own order and timestamps.
    deaths: tuple[Death, ...]
    events: Mapping[str, Mapping[str, int]]  # cgroup -> nonzero memory.events deltas
    oom_kill_global: int  # /proc/vmstat oom_kill delta: every kernel OOM kill
    kernel_kills: tuple[KernelKill, ...]
    elapsed_s: float

    @property
    def victims(self) -> list[str]:
        return [d.name for d in self.deaths]

    def __str__(self) -> str:
        lines = [f"scenario report after {self.elapsed_s:.1f} s:"]
        for d in self.deaths:
            lines.append(f"  died  {d.at_s:7.2f} s  {d.name:<12} pid {d.pid:<6} {d.how}")
        if not self.deaths:
            lines.append("  no workload died")
        for k in self.kernel_kills:
            lines.append(
                f"  kernel {k.at_s:7.2f} s  killed pid {k.pid} ({k.comm}) "
                f"[{k.workload or 'not a workload'}]: {k.why}"
            )
        for cg, ev in self.events.items():
            items = " ".join(f"{k}={v}" for k, v in ev.items())
            lines.append(f"  memory.events {cg or '.'}: {items}")
        lines.append(f"  /proc/vmstat oom_kill +{self.oom_kill_global}")
        return "\n".join(lines)


# --- the scenario ------------------------------------------------------------------------


class Scenario:
    """A cgroup tree under `base`, workloads in it, and what happened to them.

    Use as a context manager: entering builds the tree, leaving kills every workload
    (cgroup.kill on every created cgroup) and removes the cgroups it created.
    """

    def __init__(
        self,
        tree: Mapping[str, Mapping[str, Any]] | None = None,
        base: str | os.PathLike[str] = CGROUP_ROOT,
        *,
        python: str = sys.executable,
        controllers: Sequence[str] = ("memory", "pids"),
    ):
        self.base = Path(base)
        self.tree = {self._norm(k): dict(v) for k, v in (tree or {}).items()}
        self.python = python
        self.controllers = tuple(controllers)
        self.mem_total = meminfo("MemTotal")
        self.created: list[str] = []  # relative paths, parents first
        self.workloads: dict[str, Workload] = {}
        self.deaths: list[Death] = []
        self.t0 = time.monotonic()
        self._events0: dict[str, dict[str, int]] = {}
        self._event_fds: dict[str, int] = {}
        self._vmstat0 = vmstat("oom_kill")
        self._kmsg = -1
        self._kernel_kills: list[KernelKill] = []

    # -- paths and files --

    @staticmethod
    def _norm(cg: str) -> str:
        return cg.strip("/")

    def path(self, cg: str = "") -> Path:
        cg = self._norm(cg)
        return self.base / cg if cg else self.base

    def read(self, cg: str, key: str) -> str:
        return (self.path(cg) / key).read_text()

    def write(self, cg: str, key: str, value: int | str | bool) -> None:
        if isinstance(value, bool):
            text = "1" if value else "0"
        elif key in SIZE_FILES:
            text = str(parse_size(value, self.mem_total))
        else:
            text = str(value)
        p = self.path(cg) / key
        try:
            with open(p, "w") as f:
                f.write(text)
        except OSError as e:
            raise ScenarioError(f"cannot write {text!r} to {p}: {e.strerror}") from e

    def setxattr(self, cg: str, name: str, value: int | str | bytes | bool) -> None:
        if isinstance(value, bool):
            value = int(value)
        data = value if isinstance(value, bytes) else str(value).encode()
        try:
            os.setxattr(self.path(cg), name, data)
        except OSError as e:
            raise ScenarioError(f"cannot set xattr {name} on {self.path(cg)}: {e}") from e

    def events(self, cg: str = "", *, local: bool = False) -> dict[str, int]:
        """memory.events (or memory.events.local) of `cg` now."""
        return parse_keyed(self.read(cg, "memory.events.local" if local else "memory.events"))

    def event_delta(self, cg: str, key: str) -> int:
        cg = self._norm(cg)
        return self.events(cg).get(key, 0) - self._events0.get(cg, {}).get(key, 0)

    def current(self, cg: str = "") -> int:
        """memory.current of `cg` in bytes."""
        return int(self.read(cg, "memory.current"))

    def populated(self, cg: str = "") -> bool:
        return parse_keyed(self.read(cg, "cgroup.events")).get("populated", 0) == 1

    def size(self, value: int | str) -> int:
        """parse_size against this guest's MemTotal ("45%" -> bytes)."""
        n = parse_size(value, self.mem_total)
        if isinstance(n, str):
            raise ValueError(f"not a byte count: {value!r}")
        return n

    # -- the tree --

    def __enter__(self) -> Scenario:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self) -> None:
        nodes: dict[str, dict[str, Any]] = {}
        for cg in sorted(self.tree, key=lambda c: c.count("/")):
            parts = cg.split("/")
            for i in range(1, len(parts)):
                nodes.setdefault("/".join(parts[:i]), {})
            nodes[cg] = self.tree[cg]
        parents = {"/".join(c.split("/")[:-1]) for c in nodes}
        self._enable_controllers("")
        for cg in sorted(nodes, key=lambda c: c.count("/")):
            p = self.path(cg)
            if not p.exists():
                p.mkdir()
                self.created.append(cg)
            if cg in parents:
                self._enable_controllers(cg)
        for cg, settings in nodes.items():
            self.apply(cg, settings)
        self._open_kmsg()
        for cg in ["", *nodes]:
            self._watch(cg)
        self._vmstat0 = vmstat("oom_kill")
        self.t0 = time.monotonic()

    def apply(self, cg: str, settings: Mapping[str, Any]) -> None:
        for key, value in settings.items():
            if key == "priority":
                self.setxattr(cg, PRIORITY_XATTR, int(value))
            elif key == "use_priority_oom":
                self.setxattr(cg, USE_PRIORITY_OOM_XATTR, int(bool(value)))
            elif key == "xattrs":
                for name, v in value.items():
                    self.setxattr(cg, name, v)
            elif "." in key:
                self.write(cg, key, value)
            else:
                raise ScenarioError(f"{cg}: unknown setting {key!r}")

    def _enable_controllers(self, cg: str) -> None:
        have = self.read(cg, "cgroup.controllers").split()
        on = self.read(cg, "cgroup.subtree_control").split()
        for c in self.controllers:
            if c in have and c not in on:
                self.write(cg, "cgroup.subtree_control", f"+{c}")

    def _watch(self, cg: str) -> None:
        cg = self._norm(cg)
        p = self.path(cg) / "memory.events"
        if cg in self._event_fds or not p.exists():
            return
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
        self._event_fds[cg] = fd
        self._events0[cg] = parse_keyed(os.pread(fd, 4096, 0).decode())

    # -- workloads --

    def spawn(
        self,
        cg: str | None,
        argv: Sequence[str],
        *,
        name: str | None = None,
        oom_score_adj: int | None = 0,
        pass_fds: Sequence[int] = (),
        stdout: Any = subprocess.DEVNULL,
        stderr: Any = None,
    ) -> Workload:
        """Start `argv` inside cgroup `cg` (None: our own cgroup) as a workload.

        The child joins the cgroup between fork and exec, so all of its memory is charged
        there.  oom_score_adj is set the same way (our own may be -1000, see conftest).
        """
        procs = os.fspath(self.path(cg) / "cgroup.procs") if cg is not None else None
        adj = None if oom_score_adj is None else str(oom_score_adj).encode()

        def enter() -> None:  # runs in the child between fork and exec
            if procs is not None:
                fd = os.open(procs, os.O_WRONLY)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
            if adj is not None:
                fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
                os.write(fd, adj)
                os.close(fd)

        rel = self._norm(cg) if cg is not None else None
        name = name or rel or os.path.basename(argv[0])
        n = 2
        base_name = name
        while name in self.workloads:
            name, n = f"{base_name}#{n}", n + 1
        try:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                pass_fds=tuple(pass_fds),
                preexec_fn=enter,
            )
        except subprocess.SubprocessError as e:  # enter() failed in the child
            raise ScenarioError(f"cannot start {argv[0]} in {procs or 'our cgroup'}: {e}") from e
        w = Workload(
            name=name,
            cgroup=rel,
            argv=list(argv),
            popen=popen,
            pidfd=os.pidfd_open(popen.pid),
            started_s=time.monotonic() - self.t0,
        )
        self.workloads[name] = w
        return w

    def hog(
        self,
        cg: str,
        hold: int | str = 0,
        *,
        rate: int | str = 0,
        leak: bool = False,
        cap: int | str = 0,
        name: str | None = None,
        ready: bool = True,
        timeout: float = 60.0,
        oom_score_adj: int | None = 0,
        fill: str = "zero",
        program: Path = HOG,
        args: Sequence[str] = (),
    ) -> Workload:
        """A memory hog in `cg`: holds `hold` bytes, then grows by `rate` bytes/s (or
        as fast as it can with leak=True) up to `cap` (0: until killed).

        Sizes as in parse_size ("45%" of MemTotal, "64M", ints).  With ready=True this
        returns once `hold` bytes are resident (ScenarioError if the hog dies first).
        fill="random" writes incompressible data (for zram/zswap); "zero" is faster.
        program=TENANT (tenant.py) with its `args` makes a hog that fights back.
        """
        if fill not in ("zero", "random"):
            raise ValueError(f"fill must be 'zero' or 'random', not {fill!r}")
        r, wfd = os.pipe2(os.O_CLOEXEC)
        argv = [
            self.python,
            "-I",
            "-S",
            os.fspath(program),
            str(self.size(hold)),
            "leak" if leak else str(self.size(rate)),
            str(self.size(cap)),
            str(wfd),
            fill,
            *args,
        ]
        try:
            w = self.spawn(cg, argv, name=name, oom_score_adj=oom_score_adj, pass_fds=[wfd])
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(wfd)
        w.ready_fd = r
        if ready:
            self.wait_ready(w, timeout)
        return w

    def wait_ready(self, w: Workload, timeout: float = 60.0) -> int:
        """Wait for a hog's "ready" line; returns the bytes it holds."""
        deadline = time.monotonic() + timeout
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ScenarioTimeout(f"hog {w.name} not ready in {timeout} s\n{self.report()}")
            rd, _, _ = select.select([w.ready_fd], [], [], left)
            if rd:
                chunk = os.read(w.ready_fd, 64)
                if not chunk:
                    self._reap()
                    how = w.death.how if w.death else "closed its ready pipe"
                    raise ScenarioError(f"hog {w.name} died before ready ({how})\n{self.report()}")
                buf += chunk
        w.ready_bytes = int(buf.split()[1])
        return w.ready_bytes

    # -- waiting --

    def _reap(self) -> None:
        for w in self.workloads.values():
            if w.death is None:
                rc = w.popen.poll()
                if rc is not None:
                    w.death = Death(w.name, w.cgroup, w.pid, time.monotonic() - self.t0, rc)
                    self.deaths.append(w.death)
                    os.close(w.pidfd)
                    w.pidfd = -1

    def _sleep(self, timeout: float) -> None:
        """Sleep until a workload dies, a memory.events file changes, or `timeout`."""
        p = select.poll()
        for w in self.workloads.values():
            if w.pidfd >= 0:
                p.register(w.pidfd, select.POLLIN)
        for fd in self._event_fds.values():
            p.register(fd, select.POLLPRI)
        p.poll(max(0, int(timeout * 1000)))
        for fd in self._event_fds.values():
            os.pread(fd, 4096, 0)  # re-arm: kernfs reports a change until it is read

    def wait(self, pred: Callable[[], bool], timeout: float, what: str = "condition") -> None:
        """Wait until pred() is true; ScenarioTimeout (with the report) after `timeout` s.

        pred is checked after every workload death or memory.events change and at least
        every 0.25 s.
        """
        deadline = time.monotonic() + timeout
        while True:
            self._reap()
            if pred():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise ScenarioTimeout(f"{what}: not within {timeout} s\n{self.report()}")
            self._sleep(min(left, 0.25))

    def wait_death(self, *names: str, timeout: float = 60.0) -> list[Death]:
        """Wait until all named workloads died (no names: any workload); their deaths."""
        if names:
            unknown = set(names) - set(self.workloads)
            if unknown:
                raise KeyError(f"no workloads {sorted(unknown)}")
            self.wait(
                lambda: all(not self.workloads[n].alive for n in names),
                timeout,
                f"death of {', '.join(names)}",
            )
            return [d for d in self.deaths if d.name in names]
        self.wait(lambda: bool(self.deaths), timeout, "death of any workload")
        return list(self.deaths)

    def wait_first_death(self, timeout: float = 60.0) -> Death:
        return self.wait_death(timeout=timeout)[0]

    def wait_event(self, cg: str, key: str, at_least: int = 1, timeout: float = 60.0) -> int:
        """Wait until memory.events `key` of `cg` rose by `at_least`; the rise."""
        self.wait(
            lambda: self.event_delta(cg, key) >= at_least,
            timeout,
            f"{cg or '.'} memory.events {key} +{at_least}",
        )
        return self.event_delta(cg, key)

    def wait_empty(self, cg: str = "", timeout: float = 10.0) -> None:
        self.wait(lambda: not self.populated(cg), timeout, f"{cg or '.'} populated 0")

    # -- killing and cleaning up --

    def kill(self, cg: str = "", timeout: float = 10.0) -> None:
        """cgroup.kill on `cg` (its whole subtree) and wait until it is empty."""
        self.write(cg, "cgroup.kill", 1)
        self.wait_empty(cg, timeout)
        self.wait(lambda: all(not w.alive for w in self._in(cg)), timeout, f"{cg} reaped")

    def _in(self, cg: str) -> Iterator[Workload]:
        cg = self._norm(cg)
        for w in self.workloads.values():
            if w.cgroup is None:
                continue
            if not cg or w.cgroup == cg or w.cgroup.startswith(cg + "/"):
                yield w

    def close(self) -> None:
        """Kill every workload, remove the created cgroups, close our fds."""
        for cg in reversed(self.created):
            with contextlib.suppress(OSError):
                self.write(cg, "cgroup.kill", 1)
        for w in self.workloads.values():
            if w.popen.poll() is None:
                with contextlib.suppress(OSError):
                    w.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.popen.wait(timeout=10)
        self._reap()
        for w in self.workloads.values():
            for fd in (w.pidfd, w.ready_fd):
                if fd >= 0:
                    os.close(fd)
            w.pidfd = w.ready_fd = -1
        for fd in self._event_fds.values():
            os.close(fd)
        self._event_fds.clear()
        if self._kmsg >= 0:
            self._read_kmsg()
            os.close(self._kmsg)
            self._kmsg = -1
        for cg in reversed(self.created):
            rmdir_cgroup(self.path(cg))
        self.created.clear()

    # -- reporting --

    def _open_kmsg(self) -> None:
        try:
            self._kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self._kmsg, 0, os.SEEK_END)
        except OSError:
            self._kmsg = -1

    def _read_kmsg(self) -> None:
        pids = {w.pid: w.name for w in self.workloads.values()}
        while self._kmsg >= 0:
            try:
                rec = os.read(self._kmsg, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:  # records were overwritten; go on with the next
                continue
            head, _, msg = rec.partition(b";")
            m = _KILLED_RE.match(msg)
            if m:
                pid = int(m["pid"])
                self._kernel_kills.append(
                    KernelKill(
                        pid=pid,
                        comm=m["comm"].decode(errors="replace"),
                        why=m["why"].decode(errors="replace"),
                        # kmsg stamps are local_clock() (~ CLOCK_MONOTONIC here)
                        at_s=int(head.split(b",")[2]) / 1e6 - self.t0,
                        workload=pids.get(pid),
                    )
                )

    def kernel_kills(self) -> list[KernelKill]:
        """The kernel OOM killer's "Killed process" records since build()."""
        self._read_kmsg()
        return list(self._kernel_kills)

    def report(self) -> Report:
        self._reap()
        events: dict[str, dict[str, int]] = {}
        for cg, ev0 in self._events0.items():
            try:
                now = self.events(cg)
            except OSError:
                continue
            delta = {k: v - ev0.get(k, 0) for k, v in now.items() if v != ev0.get(k, 0)}
            if delta:
                events[cg] = delta
        return Report(
            deaths=tuple(self.deaths),
            events=events,
            oom_kill_global=vmstat("oom_kill") - self._vmstat0,
            kernel_kills=tuple(self.kernel_kills()),
            elapsed_s=time.monotonic() - self.t0,
        )


def rmdir_cgroup(path: Path, timeout: float = 10.0) -> None:
    """Kill everything in the cgroup subtree at `path` and remove it, leaves first."""
    if not path.exists():
        return
    with contextlib.suppress(OSError):
        (path / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + timeout
    while True:
        try:
            populated = parse_keyed((path / "cgroup.events").read_text()).get("populated", 0)
        except FileNotFoundError:
            return
        if not populated or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    for dirpath, _, _ in sorted(os.walk(path), key=lambda t: -t[0].count("/")):
        while True:
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                # EBUSY while dying tasks still pin the cgroup for a moment.
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
