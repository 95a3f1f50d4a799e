"""In-flight victims: how long each has had SIGKILL pending, and when to stop waiting.

A process with SIGKILL pending inside the victim subtree makes the kernel wait
rather than kill another (spec §3.3, the un-reaped OOM victim), and the walk
reproduces that (TaskState.DYING). But the kernel does not wait forever: its OOM
reaper takes the victim's memory 2 s after the kill (OOM_REAPER_DELAY, Linux
5.18) and, once reaped or after MAX_OOM_REAP_RETRIES tries 100 ms apart, sets
MMF_OOM_SKIP, after which the victim counts as a skip and no longer blocks
selection. A task stuck in uninterruptible sleep never acts on its SIGKILL, so
without the same bound it would shield every process next to it indefinitely.

``DyingWatch`` remembers, per process (pid and start time), when its SIGKILL
was first seen pending, or sent by us. Past ``timeout_s`` the task is treated
as reaped: ``settle`` relabels it UNKILLABLE, so the walk skips it as the
kernel skips an MMF_OOM_SKIP victim, and hands it out once so that the kill
path can ``process_mrelease`` it. Pure: the caller passes the time.

The kernel waits only for the victims its OOM killer chose; prioomd cannot tell
those from any task with SIGKILL pending, which a tenant can produce at will
(a task of its own, SIGKILLed while stuck on a FUSE mount it serves). So the
bound holds per domain too: once dying tasks have been present in a domain for
``timeout_s`` in a row, all of them are treated as reaped, and a chain of fresh
stuck tasks cannot hold a decision up longer than one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from prioomd.model import Snapshot, Task, TaskState

# The kernel stops waiting for its own victim about 3 s after the kill (2 s reaper
# delay + 10 tries 100 ms apart); prioomd only sees a pending SIGKILL when it
# samples, so it allows a little more.
DEFAULT_TIMEOUT_S = 5.0
# A remembered process not met in any snapshot for this long is forgotten.
FORGET_S = 600.0


@dataclass
class _Dying:
    start_ticks: int | None  # None: noted at our own kill, before any snapshot saw it
    since: float  # SIGKILL first seen pending (or sent by us)
    seen_at: float
    reaped: bool = False


class DyingWatch:
    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self.timeout_s = timeout_s
        self._dying: dict[int, _Dying] = {}
        self._held_since: dict[str, float] = {}  # domain -> dying tasks present since

    def note_kill(self, pid: int, at: float) -> None:
        """We sent SIGKILL to ``pid`` at ``at``: its wait is counted from there."""
        self._dying[pid] = _Dying(None, at, at)

    def settle(self, snapshot: Snapshot, now: float) -> tuple[Snapshot, tuple[Task, ...]]:
        """The snapshot with every task dying for ``timeout_s`` or longer (or in a
        domain held up that long) relabelled UNKILLABLE, and the tasks that
        crossed the bound in this call (to reap)."""
        ages: dict[int, float] = {}  # index of each DYING task -> seconds since SIGKILL
        for i, task in enumerate(snapshot.tasks):
            entry = self._dying.get(task.pid)
            if entry is not None and entry.start_ticks not in (None, task.start_ticks):
                entry = None  # the pid now names another process
            if task.state != TaskState.DYING:
                self._dying.pop(task.pid, None)
                continue
            if entry is None:
                entry = self._dying[task.pid] = _Dying(task.start_ticks, now, now)
            entry.start_ticks, entry.seen_at = task.start_ticks, now
            ages[i] = now - entry.since
        if ages:
            held_s = now - self._held_since.setdefault(snapshot.domain, now)
        else:
            held_s = 0.0
            self._held_since.pop(snapshot.domain, None)
        for pid in [p for p, e in self._dying.items() if now - e.seen_at > FORGET_S]:
            del self._dying[pid]
        tasks = list(snapshot.tasks)
        crossed: list[Task] = []
        for i, age_s in ages.items():
            task = tasks[i]
            if age_s >= self.timeout_s:
                why = f"SIGKILL pending for {age_s:.0f} s: reaped, no longer waited for"
            elif held_s >= self.timeout_s:
                why = (f"dying processes have held up {snapshot.domain} for {held_s:.0f} s: "
                       "reaped, no longer waited for")
            else:
                continue
            tasks[i] = replace(task, state=TaskState.UNKILLABLE, why_unkillable=why)
            entry = self._dying[task.pid]
            if not entry.reaped:
                entry.reaped = True
                crossed.append(task)
        if len(crossed) == 0 and all(tasks[i] is snapshot.tasks[i] for i in ages):
            return snapshot, ()
        return replace(snapshot, tasks=tuple(tasks)), tuple(crossed)
