"""idle.py and its twins _idle (C) / _idle_py: one contract, run against both.

The sampler reads a fake /proc/meminfo given as a path, so every case here
controls what it sees; nothing asserts how fast anything is (bench/idle.py).
"""

from __future__ import annotations

import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prioomd import _idle_py, detect, idle

BACKENDS = sorted(idle.BACKENDS)
GiB = 1 << 30
T = idle.thresholds(detect.RootThresholds())
NEVER_QUIET = (1e300, *T[1:])  # every parsed sample is "not quiet": wait returns at once


def _meminfo(path, total_kb=4 * (GiB >> 10), avail_kb=3 * (GiB >> 10), swap_kb=0,
             swap_free_kb=0):
    # fixed width, written in place with one pwrite: like the kernel's file, the
    # sampler keeps it open and rereads it; it never sees a half-written one
    text = (f"MemTotal:  {total_kb:>12} kB\nMemFree:   {avail_kb // 2:>12} kB\n"
            f"MemAvailable:{avail_kb:>12} kB\nBuffers:   {4716:>12} kB\n"
            f"SwapTotal: {swap_kb:>12} kB\nSwapFree:  {swap_free_kb:>12} kB\n")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, text.encode(), 0)
    finally:
        os.close(fd)
    return path


@pytest.fixture
def meminfo(tmp_path):
    return _meminfo(str(tmp_path / "meminfo"))


@pytest.fixture(params=BACKENDS)
def impl(request):
    return idle.BACKENDS[request.param]


def test_a_ready_fd_comes_back_with_its_events(impl, meminfo):
    r, w = os.pipe()
    try:
        os.write(w, b"x")
        ready, last, crossed = impl.wait([(r, 1), (w, 0)], None, meminfo, T, 0.1)
        assert ready == [(r, 1)] and last is None and crossed is False
    finally:
        os.close(r)
        os.close(w)


def test_plentiful_memory_waits_out_the_timeout_sampling_on_the_way(impl, meminfo):
    ready, last, crossed = impl.wait([], 300, meminfo, T, 0.0)
    assert ready == [] and crossed is False
    assert last is not None and last[:4] == (4 * GiB, 3 * GiB, 0, 0)


def test_a_shortage_ends_the_wait_with_the_sample_that_shows_it(impl, meminfo):
    _meminfo(meminfo, avail_kb=200 * 1024)  # 4.9 %: below mem_available_pct
    ready, last, crossed = impl.wait([], None, meminfo, T, 0.0)
    assert ready == [] and crossed is True and last[1] == 200 * 1024 * 1024


def test_a_shortage_that_comes_during_the_wait_ends_it(impl, meminfo):
    timer = threading.Timer(0.2, _meminfo, (meminfo,), {"avail_kb": 100 * 1024})
    timer.start()
    try:
        ready, last, crossed = impl.wait([], 10_000, meminfo, T, 0.0)
    finally:
        timer.cancel()
    assert crossed is True and last[1] == 100 * 1024 * 1024


def test_an_unreadable_meminfo_hands_back_to_the_caller(impl, tmp_path):
    ready, last, crossed = impl.wait([], None, str(tmp_path / "absent"), T, 0.0)
    assert (ready, last, crossed) == ([], None, True)
    bad = tmp_path / "bad"
    bad.write_text("MemTotal: lots kB\n")
    assert impl.wait([], None, str(bad), T, 0.0) == ([], None, True)


def test_bad_arguments_are_clear_errors(impl, meminfo):
    with pytest.raises(TypeError):
        impl.wait([], 10, meminfo, T[:6], 0.0)
    with pytest.raises(ValueError):
        impl.wait([(-1, 1)], 10, meminfo, T, 0.0)
    with pytest.raises(TypeError):
        impl.wait([("fd", 1)], 10, meminfo, T, 0.0)


def _line(key, value):
    return f"{key}:{value}\n"


meminfo_text = st.lists(st.one_of(
    st.builds(_line, st.sampled_from(["MemTotal", "MemAvailable", "MemFree", "SwapTotal",
                                      "SwapFree", "Cached"]),
              st.one_of(st.integers(0, 10**16).map(lambda n: f" {n} kB"),
                        st.sampled_from(["", " ", "\t12 kB", " 1x kB", " -5 kB", " +5",
                                         "  \x0b7\r", " 99999999999999999999"]))),
    st.text(alphabet=" :\t\n\r\x0baMT0123456789", max_size=30)), max_size=8).map("".join)


@settings(max_examples=150, deadline=None)
@given(text=meminfo_text)
def test_both_twins_parse_any_meminfo_alike(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("mi") / "meminfo"
    path.write_bytes(text.encode("latin-1"))
    results = set()
    for name in BACKENDS:
        _ready, last, crossed = idle.BACKENDS[name].wait([], 1000, str(path), NEVER_QUIET, 0.0)
        results.add((None if last is None else last[:4], crossed))
    assert len(results) == 1
    expected = _idle_py.parse_meminfo(text.encode("latin-1"))
    assert results.pop()[0] == expected


samples = st.tuples(st.integers(0, 1 << 40), st.integers(0, 1 << 40), st.integers(0, 1 << 36),
                    st.integers(0, 1 << 36), st.floats(0, 1e6))


@settings(max_examples=300, deadline=None)
@given(cur=samples, prev=st.none() | samples, fill=st.integers(1, 1 << 34),
       floor=st.floats(0, 50), pmin=st.floats(0.01, 1.0))
def test_the_interval_is_detects_to_the_bit_in_both_twins(cur, prev, fill, floor, pmin):
    t = detect.RootThresholds(mem_available_pct=max(floor, 10.0), mem_available_floor_pct=floor,
                              mem_fill_bytes_per_s=fill, poll_min_s=pmin, poll_max_s=2.0)

    def root(s):
        return detect.RootSample(s[0], s[1], s[2], s[3], None, None, None, s[4])

    want = detect.next_poll_interval(root(cur), t, None if prev is None else root(prev))
    for name in BACKENDS:
        assert idle.BACKENDS[name].next_interval(cur, idle.thresholds(t), prev) == want


def test_idle_wait_hook_primes_its_first_sleep_from_the_daemons_sample(meminfo):
    hook = idle.IdleWait(meminfo, detect.RootThresholds())
    sample = detect.RootSample(4 * GiB, 3 * GiB, 0, 0, None, None, None, 1.0)
    hook.prime(sample, None)
    assert hook(list(), 50) == [] and hook.crossed is False and hook.calls == 1
    assert idle.quiet(sample, detect.RootThresholds())
    assert not idle.quiet(detect.RootSample(4 * GiB, GiB // 4, 0, 0, None, None, None, 1.0),
                          detect.RootThresholds())


@pytest.mark.skipif("c" not in idle.BACKENDS, reason="the C sampler is not built")
def test_the_c_sampler_releases_the_gil_while_it_waits(meminfo):
    r, w = os.pipe()
    try:
        # another thread runs Python while the sampler waits; it ends the wait itself
        writer = threading.Thread(target=lambda: os.write(w, b"x"))
        threading.Timer(0.05, writer.start).start()
        ready, _last, _crossed = idle.BACKENDS["c"].wait([(r, 1)], 30_000, meminfo, T, 0.0)
        writer.join()
        assert ready == [(r, 1)]
    finally:
        os.close(r)
        os.close(w)
