"""The post-action gate: after a kill, no new kill in that domain until it has worked.

A pure state machine (no I/O, no clock: every sample carries its ``taken_at``).
After a kill in a domain the gate stays closed until every victim has exited
and then one of:

* the memory came back: MemAvailable (root) or ``memory.max - memory.current``
  (cgroup) rose by at least ``freed_min_bytes`` (or half of what the kill was
  expected to free, whichever is less) since the kill;
* pressure stopped rising: the stall total grew by less than
  ``rising_min_pct`` of the wall time since the victims exited, measured over
  at least ``settle_s``;
* ``delay_s`` passed since the kill;
* the shortage is one no average lags behind (``emergency``: MemAvailable under the
  hard floor again, as a leak faster than the kill freed memory makes it): the next
  victim is needed now, and waiting for the delay hands it to the kernel's OOM
  killer, which takes the biggest.

A victim that has not exited after ``stuck_victim_s`` opens the gate too: it is
stuck in the kernel (D state), and waiting longer only hands the choice to the
kernel's OOM killer, whose reaper gives up on a stuck victim within a second.

Stale averages (STYLE §7): the gate never reads avg10, and when it opens it
returns ``baseline``, the sample taken when the victims exited; the daemon must
use it as ``prev`` for the next assessment, so "rising" is measured only over
time after the kill and the lagging avg10 of the pre-kill stall cannot
cause a second kill.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prioomd.detect import RootSample, Sample, fmt_bytes, stall_rate_pct

MiB = 1 << 20

# systemd-oomd's POST_ACTION_DELAY_USEC (15 s): long enough for avg10 (a 10 s
# exponential average recomputed every 2 s) to forget the pre-kill stall.
DEFAULT_DELAY_S = 15.0
DEFAULT_STUCK_VICTIM_S = 30.0  # twice the delay: the victim is stuck, not slow
DEFAULT_FREED_MIN_BYTES = 64 * MiB  # well above MemAvailable's jitter on an idle host
DEFAULT_SETTLE_S = 1.0  # PSI totals are exact, but under 1 s a pause looks like relief
DEFAULT_RISING_MIN_PCT = 5.0  # the same "rising now" level as detect's thresholds


def free_bytes(sample: Sample) -> int:
    """The quantity a kill should raise: MemAvailable, or room below memory.max
    (minus usage when the cgroup has no limit)."""
    if isinstance(sample, RootSample):
        return sample.mem_available_bytes
    limit = sample.max_bytes if sample.max_bytes is not None else 0
    return limit - sample.usage_bytes


@dataclass(frozen=True)
class GateVerdict:
    open: bool
    reason: str
    baseline: Sample | None = None  # use as ``prev`` for the next assessment


@dataclass
class _Pending:
    remaining: set[int]
    victims: tuple[int, ...]
    at_kill: Sample
    expected_bytes: int
    at_exit: Sample | None = None


@dataclass
class PostActionGate:
    delay_s: float = DEFAULT_DELAY_S
    stuck_victim_s: float = DEFAULT_STUCK_VICTIM_S
    freed_min_bytes: int = DEFAULT_FREED_MIN_BYTES
    settle_s: float = DEFAULT_SETTLE_S
    rising_min_pct: float = DEFAULT_RISING_MIN_PCT
    _pending: dict[str, _Pending] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.delay_s <= self.stuck_victim_s:
            raise ValueError("need 0 <= delay_s <= stuck_victim_s")
        if self.freed_min_bytes < 0 or self.settle_s < 0:
            raise ValueError("freed_min_bytes and settle_s must be >= 0")

    def record_kill(self, domain: str, pids: Iterable[int], at_kill: Sample,
                    expected_bytes: int = 0) -> None:
        """A kill was sent in ``domain``; ``at_kill`` is the sample it was decided on,
        ``expected_bytes`` what the victims held (rss + swap), 0 if unknown."""
        victims = tuple(pids)
        self._pending[domain] = _Pending(set(victims), victims, at_kill, expected_bytes)

    def note_exit(self, pid: int, sample: Sample | None = None) -> None:
        """``pid`` exited (pidfd readable, connector exit, or ESRCH). ``sample``: a
        reading of the victim's domain taken after the exit, if the caller has one;
        otherwise the first sample ``check`` sees after the last exit is used."""
        for pend in self._pending.values():
            if pid in pend.remaining:
                pend.remaining.discard(pid)
                if not pend.remaining and sample is not None and pend.at_exit is None:
                    pend.at_exit = sample

    def waiting(self, domain: str) -> bool:
        return domain in self._pending

    def forget(self, domain: str) -> None:
        """The domain went away (or its config changed): drop its state."""
        self._pending.pop(domain, None)

    def check(self, domain: str, cur: Sample, emergency: bool = False) -> GateVerdict:
        """May ``domain`` be assessed for a new kill, given the fresh sample ``cur``?
        ``emergency``: ``cur`` is short of memory by a measure that does not lag (the
        root's hard floor); it opens the gate as soon as every victim has exited."""
        pend = self._pending.get(domain)
        if pend is None:
            return GateVerdict(True, "no kill pending")
        since_kill = cur.taken_at - pend.at_kill.taken_at
        if pend.remaining:
            if since_kill >= self.stuck_victim_s:
                return self._open(domain, cur, f"victim(s) {sorted(pend.remaining)} still not "
                                  f"gone {since_kill:.1f} s after the kill: treating as stuck")
            return GateVerdict(False, f"waiting for victim(s) {sorted(pend.remaining)} to exit "
                               f"({since_kill:.1f} s since the kill)")
        if pend.at_exit is None:
            pend.at_exit = cur
        if since_kill >= self.delay_s:
            return self._open(domain, cur, f"post-action delay {self.delay_s:g} s passed")
        if emergency:
            return self._open(domain, cur, "the victims exited, and the shortage is back "
                              f"{since_kill:.2f} s after the kill")
        freed = free_bytes(cur) - free_bytes(pend.at_kill)
        need = self.freed_min_bytes
        if pend.expected_bytes > 0:
            need = min(need, pend.expected_bytes // 2)
        if freed >= max(need, 1):
            return self._open(domain, cur, f"memory freed: {fmt_bytes(freed)} "
                              f"(needed {fmt_bytes(need)})")
        settled = cur.taken_at - pend.at_exit.taken_at
        rate = stall_rate_pct(pend.at_exit.psi_some_total_us, cur.psi_some_total_us,
                              pend.at_exit.taken_at, cur.taken_at)
        if settled >= self.settle_s and rate is not None and rate < self.rising_min_pct:
            return self._open(domain, cur, f"pressure no longer rising: stalled {rate:.1f}% "
                              f"of the {settled:.1f} s since the victims exited")
        return GateVerdict(False, f"victims exited; freed {fmt_bytes(freed)} of "
                           f"{fmt_bytes(need)}, waiting up to {self.delay_s:g} s")

    def _open(self, domain: str, cur: Sample, reason: str) -> GateVerdict:
        pend = self._pending.pop(domain)
        baseline = pend.at_exit if pend.at_exit is not None else cur
        return GateVerdict(True, reason, baseline)

