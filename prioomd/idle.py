"""The idle path: sample MemAvailable and wait on the loop's fds outside Python.

``IdleWait`` is a poll hook for ``EventLoop.wait(poll=...)``: while memory is
plentiful it stays in ``_idle.wait`` (C, the GIL released; ``_idle_py`` when
the extension is missing), which reads /proc/meminfo at the adaptive interval
of detect.next_poll_interval and returns only when an fd is ready, MemAvailable
falls below ``mem_available_pct`` (below it detect.assess_root may see a
threat) or the caller's timeout is due. The daemon then takes its own full
sample and decides in Python, as on every wake-up.
"""

from __future__ import annotations

from types import ModuleType

from prioomd import _idle_py, detect, twins

BACKENDS: dict[str, ModuleType] = twins.backends(_idle_py, "prioomd._idle")
DEFAULT_BACKEND = "c" if "c" in BACKENDS else "python"


def thresholds(t: detect.RootThresholds) -> _idle_py.Thresholds:
    """The sampler's thresholds tuple (see _idle_py) from the root's thresholds."""
    return (t.mem_available_pct, t.mem_available_floor_pct, t.swap_free_pct,
            float(t.mem_fill_bytes_per_s), float(t.swap_fill_bytes_per_s),
            t.poll_min_s, t.poll_max_s)


def as_tuple(s: detect.RootSample) -> _idle_py.Sample:
    return (s.mem_total_bytes, s.mem_available_bytes, s.swap_total_bytes, s.swap_free_bytes,
            s.taken_at)


def quiet(s: detect.RootSample, t: detect.RootThresholds) -> bool:
    """The sampler's own test: above it assess_root never sees a threat, so
    nothing but the sampler needs to run."""
    return _idle_py.quiet(as_tuple(s), thresholds(t))


class IdleWait:
    """``__call__(fds, timeout_ms)`` waits as described above; ``prime`` gives
    it the daemon's latest root sample, from which the first sleep is computed.
    ``crossed`` says whether the last return was for a non-quiet sample."""

    def __init__(self, meminfo_path: str, t: detect.RootThresholds, *,
                 backend: str | None = None) -> None:
        self.meminfo_path = meminfo_path
        self.impl = BACKENDS[backend or DEFAULT_BACKEND]
        self.set_thresholds(t)
        self.crossed = False
        self.calls = 0

    def set_thresholds(self, t: detect.RootThresholds) -> None:
        self.t = t
        self._tuple = thresholds(t)
        self._first_sleep_s = t.poll_min_s

    def prime(self, cur: detect.RootSample, prev: detect.RootSample | None) -> None:
        self._first_sleep_s = detect.next_poll_interval(cur, self.t, prev)

    def __call__(self, fds: list[tuple[int, int]], timeout_ms: int | None
                 ) -> list[tuple[int, int]]:
        self.calls += 1
        ready, _last, self.crossed = self.impl.wait(fds, timeout_ms, self.meminfo_path,
                                                    self._tuple, self._first_sleep_s)
        return list(ready)
