"""swaps: /proc/swaps and zram's mm_stat, and what swap is worth as headroom."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prioomd import detect, domains, swaps

SWAPS = ("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
         "/dev/vda3                               partition\t1048572\t\t0\t\t-2\n"
         "/dev/zram0                              partition\t491516\t\t86596\t\t100\n"
         "/srv/swap\\040file                       file\t\t1024\t\t1024\t\t-3\n")
MiB = 1 << 20


def test_parse_swaps() -> None:
    devs = swaps.parse_swaps(SWAPS)
    assert [(d.path, d.size_bytes, d.used_bytes, d.zram_index) for d in devs] == [
        ("/dev/vda3", 1048572 * 1024, 0, None),
        ("/dev/zram0", 491516 * 1024, 86596 * 1024, 0),
        ("/srv/swap file", 1024 * 1024, 1024 * 1024, None),  # \040 is the kernel's space
    ]
    assert devs[2].free_bytes == 0


@pytest.mark.parametrize("text", ["", "Filename Type Size Used Priority\n",
                                  "h\n/dev/x partition many 0 1\n", "h\n/dev/x part\n",
                                  "h\n/dev/x partition -1 0 1\n"])
def test_parse_swaps_skips_what_does_not_parse(text: str) -> None:
    assert swaps.parse_swaps(text) == []


@given(st.text())
def test_parse_swaps_never_raises(text: str) -> None:
    for d in swaps.parse_swaps(text):
        assert d.size_bytes >= 0 and d.free_bytes >= 0


def test_parse_mm_stat() -> None:
    st_ = swaps.parse_mm_stat("  4096  1024  2048  0  2048  0  0  0  0\n")
    assert st_ == swaps.ZramStat(4096, 1024, 2048)
    for bad in ("", "1 2", "1 -2 3", "a b c"):
        with pytest.raises(ValueError):
            swaps.parse_mm_stat(bad)


@pytest.mark.parametrize(("orig", "used", "gain"), [
    (0, 0, 0.0),             # nothing stored: nothing known, nothing counted
    (300, 100, 2 / 3),       # 3:1 compression frees two thirds of each page
    (100, 100, 0.0),         # incompressible: zram frees nothing
    (100, 130, 0.0),         # worse than nothing (allocator overhead): still 0
])
def test_zram_gain(orig: int, used: int, gain: float) -> None:
    assert swaps.zram_gain([swaps.ZramStat(orig, used, used)]) == pytest.approx(gain)


def test_effective_swap_counts_disks_whole_and_zram_at_its_gain() -> None:
    devs = swaps.parse_swaps(SWAPS)
    disk_total = (1048572 + 1024) * 1024
    assert swaps.effective_swap(devs, {}) == (disk_total, 1048572 * 1024)  # no mm_stat
    third = {0: swaps.ZramStat(300 * MiB, 100 * MiB, 100 * MiB)}
    total, free = swaps.effective_swap(devs, third)
    assert total == disk_total + int(491516 * 1024 * 2 / 3)
    assert free == 1048572 * 1024 + int((491516 - 86596) * 1024 * 2 / 3)


def _proc(tmp_path, swaps_text: str, mm_stat: str | None) -> tuple[str, str]:
    proc, block = tmp_path / "proc", tmp_path / "block"
    (proc / "pressure").mkdir(parents=True)
    (proc / "meminfo").write_text("MemTotal: 1000000 kB\nMemAvailable: 0 kB\n"
                                  "SwapTotal: 491516 kB\nSwapFree: 404920 kB\n")
    (proc / "pressure" / "memory").write_text(
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    (proc / "swaps").write_text(swaps_text)
    if mm_stat is not None:
        (block / "zram0").mkdir(parents=True)
        (block / "zram0" / "mm_stat").write_text(mm_stat)
    return os.fspath(proc), os.fspath(block)


def test_zram_full_of_incompressible_data_is_no_headroom(tmp_path) -> None:
    """The bench's zram scenario: MemAvailable 0, zram 82 % free but holding random
    data. Before, "swap free" kept the floor from firing and the kernel killed the
    high-priority workload; now the floor sees no swap worth counting."""
    zram_only = SWAPS.splitlines()[0] + "\n" + SWAPS.splitlines()[2] + "\n"
    proc, block = _proc(tmp_path, zram_only, "88674304 88100000 89000000 0 0 0 0 0 0\n")
    s = domains.sample_root(proc, lambda: 1.0, sys_block=block)
    assert (s.swap_total_bytes, s.swap_free_bytes) == (0, 0)
    threat = detect.assess_root(None, s, detect.RootThresholds())
    assert threat is not None and threat.trigger == "floor"


def test_disk_swap_keeps_meminfo_numbers(tmp_path) -> None:
    disk_only = SWAPS.splitlines()[0] + "\n" + SWAPS.splitlines()[1] + "\n"
    proc, block = _proc(tmp_path, disk_only, None)
    s = domains.sample_root(proc, lambda: 1.0, sys_block=block)
    assert (s.swap_total_bytes, s.swap_free_bytes) == (491516 * 1024, 404920 * 1024)
