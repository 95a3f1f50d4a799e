"""gate.py: the post-action gate never lets a lagging average cause a second kill."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prioomd.detect import CgroupSample, GiB, MiB, RootSample, RootThresholds, assess_root
from prioomd.gate import PostActionGate, free_bytes

TOTAL = 16 * GiB


def root(avail: int, total_us: int, at: float, some: float = 80.0,
         full: float = 50.0) -> RootSample:
    return RootSample(TOTAL, avail, 0, 0, some, full, total_us, at)


SHORT = int(TOTAL * 0.08)  # between the 5 % floor and the 10 % guard


def killed_gate(**kw: float) -> tuple[PostActionGate, RootSample]:
    gate = PostActionGate(**kw)
    at_kill = root(SHORT, 10_000_000, 100.0)
    gate.record_kill("/", [4242], at_kill, expected_bytes=2 * GiB)
    return gate, at_kill


def test_no_kill_pending_is_open() -> None:
    verdict = PostActionGate().check("/", root(SHORT, 0, 1.0))
    assert verdict.open and verdict.baseline is None


def test_closed_until_victim_exits() -> None:
    gate, _ = killed_gate()
    recovered = root(TOTAL // 2, 10_000_000, 101.0)
    verdict = gate.check("/", recovered)
    assert not verdict.open and "4242" in verdict.reason
    gate.note_exit(4242)
    verdict = gate.check("/", recovered)
    assert verdict.open and "freed" in verdict.reason
    assert not gate.waiting("/")


def test_other_domains_unaffected() -> None:
    gate, _ = killed_gate()
    assert gate.check("/work.slice", root(SHORT, 0, 101.0)).open


def test_stuck_victim_opens_after_timeout() -> None:
    gate, _ = killed_gate()
    assert not gate.check("/", root(SHORT, 10_000_000, 129.0)).open
    verdict = gate.check("/", root(SHORT, 10_000_000, 130.5))
    assert verdict.open and "stuck" in verdict.reason
    assert verdict.baseline is not None and verdict.baseline.taken_at == 130.5


def test_pressure_stopped_rising_opens_after_settling() -> None:
    gate, _ = killed_gate()
    exit_sample = root(SHORT, 12_000_000, 100.5)
    gate.note_exit(4242, exit_sample)
    assert not gate.check("/", root(SHORT, 12_010_000, 101.0)).open  # too soon to tell
    verdict = gate.check("/", root(SHORT, 12_020_000, 102.0))
    assert verdict.open and "no longer rising" in verdict.reason
    assert verdict.baseline is exit_sample


def test_still_rising_waits_for_delay() -> None:
    gate, _ = killed_gate()
    gate.note_exit(4242, root(SHORT, 12_000_000, 100.5))
    assert not gate.check("/", root(SHORT, 12_900_000, 102.0)).open
    verdict = gate.check("/", root(SHORT, 20_000_000, 115.0))
    assert verdict.open and "delay" in verdict.reason


def test_back_under_the_floor_opens_once_the_victims_are_gone() -> None:
    """A leak faster than the kill freed memory (bench: 200 MiB/s, the first victim's
    107 MiB eaten before the next sample): at the hard floor again nothing lags, and
    waiting for the delay would hand the next kill to the kernel (which took /high in
    2 of 3 runs). Not while a victim is still exiting: its memory is on the way."""
    floor = int(TOTAL * 0.04)
    gate, _ = killed_gate()
    assert not gate.check("/", root(floor, 10_000_000, 100.2), emergency=True).open
    gate.note_exit(4242)
    assert not gate.check("/", root(floor, 12_000_000, 100.4)).open  # not an emergency
    verdict = gate.check("/", root(floor, 12_100_000, 100.5), emergency=True)
    assert verdict.open and "shortage is back" in verdict.reason
    assert not gate.waiting("/")


def test_expected_bytes_lowers_the_freed_bar() -> None:
    gate = PostActionGate()
    gate.record_kill("/", [1], root(SHORT, 0, 1.0), expected_bytes=10 * MiB)
    gate.note_exit(1)
    assert gate.check("/", root(SHORT + 6 * MiB, 10**9, 1.2)).open


def test_cgroup_free_bytes() -> None:
    sample = CgroupSample("/a", 900, 1000, None, {}, None, None, None, 0.0)
    assert free_bytes(sample) == 100
    assert free_bytes(CgroupSample("/a", 900, None, None, {}, None, None, None, 0.0)) == -900


def test_validation() -> None:
    with pytest.raises(ValueError):
        PostActionGate(delay_s=60.0, stuck_victim_s=30.0)


@given(
    avg10=st.lists(st.tuples(st.floats(0.0, 100.0), st.floats(0.0, 100.0)), min_size=1,
                   max_size=30),
    avail_pct=st.lists(st.floats(5.5, 9.9), min_size=1, max_size=30),
    step=st.floats(0.05, 2.0),
)
def test_stale_averages_never_cause_a_second_kill(
        avg10: list[tuple[float, float]], avail_pct: list[float], step: float) -> None:
    """After the kill the stall total stops growing: whatever avg10 still says, and
    however the gate opens, the next assessment (from the gate's baseline) finds no
    threat while memory stays above the floor."""
    t = RootThresholds()
    gate, _ = killed_gate()
    stalled_us = 30_000_000
    gate.note_exit(4242, root(SHORT, stalled_us, 100.2))
    prev: RootSample | None = None
    at = 100.2
    for i, (some, full) in enumerate(avg10):
        at += step
        cur = RootSample(TOTAL, int(TOTAL * avail_pct[i % len(avail_pct)] / 100), 0, 0,
                         some, full, stalled_us, at)
        verdict = gate.check("/", cur)
        if verdict.baseline is not None:
            prev = verdict.baseline
        if verdict.open and prev is not None:
            assert assess_root(prev, cur, t) is None
            prev = cur
