"""Reference idle sampler: the contract that prioomd._idle (C) implements too.

While memory is plentiful the daemon has nothing to decide, yet it must look
at MemAvailable every 0.1-1 s (earlyoom's adaptive sleep: PSI barely rises
before an OOM on a host without swap). ``wait`` does that looking, and waits
on the loop's fds in between, until there is something for the caller:

* an fd is ready: returns it (the caller's loop dispatches it);
* a sample is not quiet: MemAvailable below ``quiet_pct`` of MemTotal, where
  the root's assessment could start to say "threat" (detect.assess_root
  returns None above ``mem_available_pct``), or /proc/meminfo unreadable;
* ``timeout_ms`` passed (the caller's own timers: watchdog, housekeeping).

The sleep between samples is ``next_interval``, the same arithmetic as
detect.next_poll_interval (the C twin is differential-tested against both).
Policy stays in Python: the thresholds come in as numbers.

``thresholds`` is the tuple ``(quiet_pct, floor_pct, swap_free_pct,
mem_fill_bytes_per_s, swap_fill_bytes_per_s, poll_min_s, poll_max_s)``.
A sample is ``(mem_total, mem_available, swap_total, swap_free, taken_at)``,
bytes and monotonic seconds. ``wait`` returns ``(ready, last, crossed)``:
the ready ``(fd, revents)`` pairs, the last sample taken (None if none),
and whether that sample was not quiet.
"""

from __future__ import annotations

import math
import os
import select
import time
from collections.abc import Sequence
from typing import cast

Sample = tuple[int, int, int, int, float]
Thresholds = tuple[float, float, float, float, float, float, float]

_KEYS = {b"MemTotal:": 0, b"MemAvailable:": 1, b"MemFree:": 2, b"SwapTotal:": 3,
         b"SwapFree:": 4}


def parse_meminfo(data: bytes) -> tuple[int, int, int, int] | None:
    """(MemTotal, MemAvailable or MemFree, SwapTotal, SwapFree) in bytes, or None
    when MemTotal is missing or a value is not a number. The first line of each
    key counts; reading stops once all five are found (the kernel prints them
    in its first 16 of some 55 lines; the rest is not read)."""
    vals = [-1] * 5
    found = 0
    for line in data.split(b"\n"):
        parts = line.split()
        if len(parts) >= 2 and parts[0] in _KEYS and vals[_KEYS[parts[0]]] < 0:
            if not parts[1].isdigit() or len(parts[1]) > 15:
                return None
            vals[_KEYS[parts[0]]] = int(parts[1]) * 1024
            found += 1
            if found == 5:
                break
    total, avail, free, swap_total, swap_free = vals
    if total < 0:
        return None
    avail = avail if avail >= 0 else max(free, 0)
    return total, avail, max(swap_total, 0), max(swap_free, 0)


def quiet(s: Sample, t: Thresholds) -> bool:
    """Nothing for the caller: MemAvailable at or above ``quiet_pct`` of MemTotal."""
    return s[0] > 0 and s[1] * 100.0 >= s[0] * t[0]


def next_interval(cur: Sample, t: Thresholds, prev: Sample | None) -> float:
    """detect.next_poll_interval on tuples."""
    total = max(cur[0], 0)
    mem_room = cur[1] - total * t[1] / 100.0
    swap_room = 0.0
    if cur[2] > 0:
        swap_room = max(cur[3] - cur[2] * t[2] / 100.0, 0.0)
    falling = 0.0
    if prev is not None and cur[4] > prev[4]:
        drop = prev[1] + prev[3] - cur[1] - cur[3]
        falling = max(drop, 0) / (cur[4] - prev[4])
    mem_room = max(mem_room, 0.0)
    seconds = mem_room / max(float(t[3]), falling) + swap_room / max(float(t[4]), falling)
    return min(max(seconds, t[5]), t[6])


def _sample(fd: int, now: float) -> Sample | None:
    try:
        data = os.pread(fd, 8192, 0)
    except OSError:
        return None
    parsed = parse_meminfo(data)
    return None if parsed is None else (*parsed, now)


def wait(fds: Sequence[tuple[int, int]], timeout_ms: int | None, meminfo_path: str,
         thresholds: Thresholds, first_sleep_s: float
         ) -> tuple[list[tuple[int, int]], Sample | None, bool]:
    """See the module docstring. ``timeout_ms`` None or negative: no deadline."""
    if len(thresholds) != 7:
        raise TypeError("thresholds must be 7 numbers")
    t = cast(Thresholds, tuple(float(x) for x in thresholds))
    poller = select.poll()
    for fd, mask in fds:
        if fd < 0:
            raise ValueError("fds must be (fd, mask) with fd >= 0")
        poller.register(fd, mask)
    now = time.monotonic()
    deadline = math.inf if timeout_ms is None or timeout_ms < 0 else now + timeout_ms / 1000
    next_sample = now + max(first_sleep_s, 0.0)
    last: Sample | None = None
    try:
        mfd = os.open(meminfo_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        mfd = -1
    try:
        while True:
            wait_s = min(next_sample, deadline) - now
            ready = poller.poll(math.ceil(max(wait_s, 0.0) * 1000))
            if ready:
                return ready, last, False
            now = time.monotonic()
            if now >= deadline:
                return [], last, False
            if now < next_sample:
                continue
            cur = _sample(mfd, now) if mfd >= 0 else None
            if cur is None:
                return [], None, True  # the caller samples itself and says why not
            if not quiet(cur, t):
                return [], cur, True
            next_sample = now + next_interval(cur, t, last)
            last = cur
    finally:
        if mfd >= 0:
            os.close(mfd)
