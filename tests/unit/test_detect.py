"""detect.py: the threat predicates, the adaptive poll interval and guard math."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prioomd.detect import (
    CgroupSample,
    CgroupThresholds,
    GiB,
    MiB,
    RootSample,
    RootThresholds,
    assess_cgroup,
    assess_root,
    event_delta,
    guard_high_bytes,
    headroom_bytes,
    next_poll_interval,
    oom_kill_delta,
    recheck,
    stall_rate_pct,
)

TOTAL = 16 * GiB
RT = RootThresholds()
CT = CgroupThresholds()


def root(avail_pct: float, *, swap_total: int = 0, swap_free_pct: float = 0.0,
         some: float | None = 0.0, full: float | None = 0.0, total_us: int | None = 0,
         at: float = 100.0) -> RootSample:
    return RootSample(TOTAL, int(TOTAL * avail_pct / 100), swap_total,
                      int(swap_total * swap_free_pct / 100), some, full, total_us, at)


def pair(avail_pct: float, *, some: float = 0.0, full: float = 0.0, stall_s: float = 0.0,
         dt: float = 1.0, **kw: float) -> tuple[RootSample, RootSample]:
    """prev and cur, ``stall_s`` of some-stall accumulated in the ``dt`` between them."""
    prev = root(avail_pct, some=some, full=full, total_us=5_000_000, at=100.0, **kw)
    cur = root(avail_pct, some=some, full=full, total_us=5_000_000 + int(stall_s * 1e6),
               at=100.0 + dt, **kw)
    return prev, cur


@pytest.mark.parametrize(
    ("label", "avail_pct", "kw", "trigger"),
    [
        ("plenty, no swap, calm", 50.0, {}, None),
        ("no swap, below the floor", 3.0, {}, "floor"),
        ("no swap, between floor and guard, calm", 8.0, {}, None),
        ("swap host, RAM low but swap plentiful", 3.0,
         {"swap_total": 8 * GiB, "swap_free_pct": 60.0}, None),
        ("swap host, RAM and swap low", 3.0,
         {"swap_total": 8 * GiB, "swap_free_pct": 5.0}, "floor"),
        ("PSI high but RAM free (complaint 3)", 40.0,
         {"some": 90.0, "full": 70.0, "stall_s": 0.9}, None),
        ("shortage + PSI some high + rising", 8.0, {"some": 55.0, "stall_s": 0.5}, "pressure"),
        ("shortage + PSI full high + rising", 8.0, {"full": 25.0, "stall_s": 0.3}, "pressure"),
        ("shortage + stale PSI (total flat)", 8.0, {"some": 80.0, "full": 60.0}, None),
        ("shortage + PSI rising but below threshold", 8.0, {"some": 10.0, "stall_s": 0.5}, None),
        ("shortage + PSI high, rising too little", 8.0, {"some": 50.0, "stall_s": 0.01}, None),
        ("swap host, RAM short, swap free, thrashing", 7.0,
         {"swap_total": 8 * GiB, "swap_free_pct": 50.0, "some": 60.0, "stall_s": 0.6},
         "pressure"),
    ],
)
def test_assess_root_table(label: str, avail_pct: float, kw: dict, trigger: str | None) -> None:
    prev, cur = pair(avail_pct, **kw)
    threat = assess_root(prev, cur, RT)
    assert (threat.trigger if threat else None) == trigger, label
    if threat is not None:
        assert threat.domain == "/"
        assert "MemAvailable" in threat.reason and "%" in threat.reason
        assert all(k.endswith(("_bytes", "_pct")) for k in threat.numbers)


def test_first_sample_only_floor() -> None:
    assert assess_root(None, root(8.0, some=90.0, total_us=10**9), RT) is None
    threat = assess_root(None, root(2.0), RT)
    assert threat is not None and threat.trigger == "floor"


def test_psi_unavailable_root_falls_back_to_floor() -> None:
    prev = root(8.0, some=None, full=None, total_us=None, at=1.0)
    assert assess_root(prev, root(8.0, some=None, full=None, total_us=None, at=2.0), RT) is None
    got = assess_root(prev, root(1.0, some=None, full=None, total_us=None, at=2.0), RT)
    assert got is not None and got.trigger == "floor"


def test_zero_total_is_harmless() -> None:
    sample = RootSample(0, 0, 0, 0, 0.0, 0.0, 0, 1.0)
    assert assess_root(sample, sample, RT) is None


@pytest.mark.parametrize(
    ("prev", "cur", "prev_at", "cur_at", "want"),
    [
        (0, 500_000, 0.0, 1.0, 50.0),
        (0, 0, 0.0, 1.0, 0.0),
        (None, 5, 0.0, 1.0, None),
        (100, 50, 0.0, 1.0, None),  # counter reset: recreated cgroup
        (0, 5, 1.0, 1.0, None),  # no time passed
    ],
)
def test_stall_rate(prev: int | None, cur: int, prev_at: float, cur_at: float,
                    want: float | None) -> None:
    assert stall_rate_pct(prev, cur, prev_at, cur_at) == want


MAX = 1 * GiB


def cg(usage: int, *, events: dict[str, int] | None = None, some: float | None = 0.0,
       full: float | None = 0.0, total_us: int | None = 0, at: float = 10.0,
       max_bytes: int | None = MAX, high: int | None = None) -> CgroupSample:
    return CgroupSample("/work.slice/job", usage, max_bytes, high, events or {}, some, full,
                        total_us, at)


BASE_EV = {"low": 0, "high": 10, "max": 20, "oom": 1, "oom_kill": 1}


def bump(**inc: int) -> dict[str, int]:
    return {k: v + inc.get(k, 0) for k, v in BASE_EV.items()}


NEAR = MAX - 8 * MiB  # inside the default headroom (max(5 %, 16 MiB) = 51 MiB)


@pytest.mark.parametrize(
    ("label", "usage", "events", "psi", "trigger"),
    [
        ("calm", MAX // 2, bump(), (0.0, 0.0, 0), None),
        ("kernel oom without kill", NEAR, bump(oom=1), (0.0, 0.0, 0), "oom"),
        ("kernel oom with kill: a miss, not a threat", NEAR, bump(oom=1, oom_kill=1),
         (0.0, 0.0, 0), None),
        ("near max + max events + PSI rising", NEAR, bump(max=5), (55.0, 20.0, 600_000),
         "limit"),
        ("near max + high events + PSI full rising", NEAR, bump(high=9), (10.0, 30.0, 300_000),
         "limit"),
        ("near max + max events, PSI stale", NEAR, bump(max=5), (80.0, 60.0, 0), None),
        ("near max, PSI rising, no events", NEAR, bump(), (80.0, 60.0, 900_000), None),
        ("far from max + high events + PSI (user's own memory.high)", MAX // 2, bump(high=50),
         (80.0, 60.0, 900_000), None),
        ("page cache at max, max events, no pressure", MAX - 4096, bump(max=100),
         (0.0, 0.0, 1000), None),
    ],
)
def test_assess_cgroup_table(label: str, usage: int, events: dict[str, int],
                             psi: tuple[float, float, int], trigger: str | None) -> None:
    some, full, stall_us = psi
    prev = cg(usage, events=BASE_EV, some=some, full=full, total_us=1_000_000, at=10.0)
    cur = cg(usage, events=events, some=some, full=full, total_us=1_000_000 + stall_us, at=11.0)
    threat = assess_cgroup(prev, cur, CT)
    assert (threat.trigger if threat else None) == trigger, label
    if threat is not None:
        assert threat.domain == "/work.slice/job"
        assert all(k.endswith(("_bytes", "_pct", "_count")) for k in threat.numbers)


def test_cgroup_without_psi_only_oom_fires() -> None:
    prev = cg(NEAR, events=BASE_EV, some=None, full=None, total_us=None, at=1.0)
    cur = cg(NEAR, events=bump(max=100, high=100), some=None, full=None, total_us=None, at=2.0)
    assert assess_cgroup(prev, cur, CT) is None
    cur = cg(NEAR, events=bump(oom=2), some=None, full=None, total_us=None, at=2.0)
    assert (t := assess_cgroup(prev, cur, CT)) is not None and t.trigger == "oom"


def test_cgroup_first_sample_and_unlimited() -> None:
    assert assess_cgroup(None, cg(NEAR, events=bump(oom=3)), CT) is None
    prev = cg(NEAR, events=BASE_EV, max_bytes=None, some=90.0, total_us=0, at=1.0)
    cur = cg(NEAR, events=bump(max=5), max_bytes=None, some=90.0, total_us=900_000, at=2.0)
    assert assess_cgroup(prev, cur, CT) is None


@pytest.mark.parametrize(
    ("prev", "cur", "want"),
    [({"max": 3}, {"max": 5}, 2), ({"max": 5}, {"max": 5}, 0), ({"max": 9}, {"max": 2}, 2),
     ({}, {"max": 4}, 4), (None, {"max": 4}, 0), ({"max": 1}, {}, 0)],
)
def test_event_delta(prev: dict[str, int] | None, cur: dict[str, int], want: int) -> None:
    assert event_delta(prev, cur, "max") == want


def test_oom_kill_delta_is_the_miss_count() -> None:
    assert oom_kill_delta(cg(1, events=BASE_EV), cg(1, events=bump(oom_kill=2))) == 2
    assert oom_kill_delta(None, cg(1, events=bump(oom_kill=2))) == 0


def test_recheck_dispatches_and_rejects_a_passed_threat() -> None:
    prev, cur = pair(8.0, some=60.0, stall_s=0.5)
    assert recheck(prev, cur, RT, CT) is not None
    relieved = root(30.0, some=60.0, total_us=cur.psi_some_total_us, at=cur.taken_at + 0.01)
    assert recheck(prev, relieved, RT, CT) is None
    c_prev = cg(NEAR, events=BASE_EV)
    assert recheck(c_prev, cg(NEAR, events=bump(oom=1), at=11.0), RT, CT) is not None


@pytest.mark.parametrize("max_bytes", [64 * MiB, 1 * GiB, 100 * GiB])
def test_headroom_bounds(max_bytes: int) -> None:
    room = headroom_bytes(max_bytes, CT)
    assert CT.headroom_min_bytes <= room <= CT.headroom_max_bytes


# ------------------------------------------------------------- adaptive polling


def test_poll_interval_monotonic_in_available_memory() -> None:
    steps = [next_poll_interval(root(pct), RT) for pct in range(0, 101, 2)]
    assert steps == sorted(steps)
    assert steps[0] == RT.poll_min_s and steps[-1] == RT.poll_max_s


def test_poll_interval_shorter_when_falling_faster() -> None:
    cur = root(12.0, at=10.0)
    intervals = [next_poll_interval(cur, RT, root(12.0 + drop, at=9.0))
                 for drop in (0, 10, 40, 80)]
    assert intervals == sorted(intervals, reverse=True)
    assert intervals[-1] < intervals[0]


def test_poll_interval_counts_swap_headroom() -> None:
    no_swap = next_poll_interval(root(5.5), RT)
    with_swap = next_poll_interval(root(5.5, swap_total=8 * GiB, swap_free_pct=80.0), RT)
    assert with_swap > no_swap


@given(
    total=st.integers(0, 1 << 42), avail=st.integers(-(1 << 30), 1 << 42),
    swap_total=st.integers(0, 1 << 40), swap_free=st.integers(0, 1 << 40),
    prev_avail=st.integers(0, 1 << 42), dt=st.floats(-5.0, 5.0, allow_nan=False),
    lo=st.floats(0.01, 1.0), span=st.floats(0.0, 5.0),
)
def test_poll_interval_in_bounds(total: int, avail: int, swap_total: int, swap_free: int,
                                 prev_avail: int, dt: float, lo: float, span: float) -> None:
    t = RootThresholds(poll_min_s=lo, poll_max_s=lo + span)
    cur = RootSample(total, avail, swap_total, swap_free, None, None, None, 10.0)
    prev = RootSample(total, prev_avail, swap_total, swap_free, None, None, None, 10.0 - dt)
    for p in (None, prev):
        got = next_poll_interval(cur, t, p)
        assert t.poll_min_s <= got <= t.poll_max_s


# ---------------------------------------------------------------- guard mode


@pytest.mark.parametrize(
    ("max_bytes", "headroom", "current_high", "want"),
    [
        (None, 64 * MiB, None, None),  # memory.max is "max"
        (1 * GiB, 64 * MiB, None, 1 * GiB - 64 * MiB),
        (1 * GiB, 64 * MiB + 100, None, 1 * GiB - 64 * MiB - 4096),  # page-aligned down
        (100 * MiB, 80 * MiB, None, 50 * MiB),  # floor: half of memory.max
        (1 * GiB, 0, None, None),  # no headroom: memory.high would equal memory.max
        (1 * GiB, 64 * MiB, 512 * MiB, None),  # the admin's memory.high is already lower
        (1 * GiB, 64 * MiB, 2 * GiB, 1 * GiB - 64 * MiB),
        (4096, 4096, None, None),  # too small to guard
    ],
)
def test_guard_high_bytes(max_bytes: int | None, headroom: int, current_high: int | None,
                          want: int | None) -> None:
    assert guard_high_bytes(max_bytes, headroom, current_high_bytes=current_high) == want


@pytest.mark.parametrize(
    "kwargs",
    [{"mem_available_pct": 120.0}, {"mem_available_floor_pct": 20.0},
     {"poll_min_s": 2.0, "poll_max_s": 1.0}, {"poll_min_s": 0.0}, {"mem_fill_bytes_per_s": 0},
     {"poll_max_s": float("inf")}, {"poll_max_s": 61.0}, {"poll_min_s": float("nan")},
     {"mem_available_pct": float("nan")}],
)
def test_root_thresholds_validate(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RootThresholds(**kwargs)


def test_cgroup_thresholds_validate() -> None:
    with pytest.raises(ValueError):
        CgroupThresholds(headroom_min_bytes=2 * GiB)
