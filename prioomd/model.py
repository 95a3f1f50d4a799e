"""Immutable values that flow between prioomd's modules.

A Snapshot is gathered first (snapshot.py, the only code that combines
cgroupfs, procfs and the priority table); policy (select.py) decides on it
without touching the OS; the kill path (kill.py) acts on the Decision.
Paths of cgroups are always relative to the cgroup root and start with "/"
("/" is the root itself).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple


class TaskState(enum.IntEnum):
    """Killability of a process, as the walk sees it (values shared with C)."""

    KILLABLE = 0
    UNKILLABLE = 1  # oom_score_adj -1000, pid 1, kernel thread, zombie, prioomd itself
    DYING = 2  # SIGKILL already pending: an in-flight victim the walk waits for


@dataclass(frozen=True)
class Setting:
    """One effective value of the priority table and where it came from."""

    value: int | bool | str
    source: str  # "default", "xattr trusted.prioomd.priority", "config ... [[cgroup]] #2", ...


@dataclass(frozen=True)
class CgroupNode:
    path: str
    parent: int  # index in Snapshot.nodes, -1 for the domain root
    priority: Setting
    use_priority_oom: Setting
    usage_bytes: int  # memory.current, 0 where the memory controller is absent
    memory_max_bytes: int | None  # None: "max" or no memory controller
    oom_group: bool  # memory.oom.group
    creation_key: tuple[int, int]  # (birth time ns or 0, inode): sibling order
    kill: Setting = Setting("process", "default")  # granularity where the walk stops here


@dataclass(frozen=True)
class Task:
    pid: int
    node: int  # index in Snapshot.nodes
    comm: str
    state: TaskState
    why_unkillable: str  # "" when killable
    badness: int  # the kernel's oom_badness, in pages (may be negative)
    start_ticks: int  # /proc/PID/stat starttime: larger = started later
    rss_bytes: int
    swap_bytes: int
    pte_bytes: int
    oom_score_adj: int


@dataclass(frozen=True)
class Snapshot:
    """Everything one decision in one OOM domain needs, read at one moment."""

    domain: str  # the OOM root, e.g. "/" for global OOM
    nodes: tuple[CgroupNode, ...]  # pre-order, siblings in creation order; nodes[0] is the domain
    tasks: tuple[Task, ...]
    total_pages: int  # the badness basis: RAM+swap (global) or the domain's limit
    taken_at: float  # monotonic seconds


@dataclass(frozen=True)
class Candidate:
    """One ranked kill: a process, or a whole cgroup via memory.oom.group."""

    victim_cgroup: str  # the cgroup where the walk stopped
    pid: int
    comm: str
    badness: int
    rss_bytes: int
    kill_cgroup: str | None  # kill this whole cgroup (memory.oom.group)
    pids: tuple[int, ...]  # every process this kill targets (all killable members
    # of kill_cgroup, else the one pid)
    reason: str
    start_ticks: int = 0  # the process's start time: the kill path's pid-reuse check


@dataclass(frozen=True)
class Decision:
    domain: str
    candidates: tuple[Candidate, ...]  # kill order; the kill path falls through
    outcome: str  # "kill", "none" (nothing killable), "wait" (a previous victim is dying)
    reason: str
    backend: str  # "c" or "python"
    walk: tuple[str, ...] = field(default=())  # path of cgroups the first walk descended


class Attempt(NamedTuple):
    """One candidate the kill path tried, in the order it tried them."""

    target: int | str  # the pid, or the cgroup path of a whole-cgroup kill
    outcome: str  # one of KillResult's outcomes
    detail: str


@dataclass(frozen=True)
class KillResult:
    """What kill.Killer.execute did with a Decision: at most one kill.

    outcome: "killed" (exit confirmed), "dry-run" (stopped at the final
    syscall), "pressure-gone" (the re-check said no), "failed" (a signal went out
    but the exit was not confirmed in time, or every candidate errored),
    "refused" (EPERM/EROFS or protected: none killable), "vanished" (every
    candidate was gone), "moved" (a candidate left the victim cgroup before the
    kill: nothing was sent, the caller decides again), "no-candidate" (the
    decision held none).
    """

    candidate: Candidate | None  # the one acted on (or that would be, in dry-run)
    outcome: str
    attempts: tuple[Attempt, ...]  # index i is decision.candidates[i]
    signal_sent_at: float | None  # monotonic s, after the final signal/cgroup.kill
    exited_at: float | None  # monotonic s, when the exit was confirmed
    freed_bytes: int  # estimate: the victim's rss (memory.current for a cgroup) before
    detail: str
    dry_run: bool = False
    method: str = ""  # "pidfd", "kill", "cgroup.kill", "cgroup.procs" or ""
