"""cgparse: the parsers of cgroup v2 files and of /proc/self/mounts, table-tested with
hostile input (tests/unit/test_fuzz_cgparse.py fuzzes them)."""

from __future__ import annotations

import pytest

from prioomd import cgparse
from prioomd.cgparse import Pressure, PressureLine
from tests import fakefs
from tests.fakefs import HYBRID_MOUNTS, UNIFIED_MOUNTS

BIG = "18446744073709551615"  # what an unsigned long -1 prints as


@pytest.mark.parametrize("text, want", [
    ("0\n", 0), ("123", 123), ("  4096  \n", 4096), (BIG + "\n", int(BIG)),
    ("-5\n", -5), ("+7", 7),
])
def test_parse_int(text, want):
    assert cgparse.parse_int(text) == want


@pytest.mark.parametrize("text", [
    "", "\n", "   ", "max", "1_000", "12 34", "0x10", "1.5", "nan", "\u0661\u0662", "1\x00",
    "--1", "1\n2\n",
])
def test_parse_int_rejects(text):
    with pytest.raises(ValueError):
        cgparse.parse_int(text)


@pytest.mark.parametrize("text, want", [
    ("max\n", None), ("max", None), ("  max \n", None), ("0\n", 0),
    ("9223372036854771712\n", 9223372036854771712), (BIG, int(BIG)),
])
def test_parse_max(text, want):
    assert cgparse.parse_max(text) == want


@pytest.mark.parametrize("text", ["", "\n", "-1", "MAX", "max max", "1k", "max\n0", "inf"])
def test_parse_max_rejects(text):
    with pytest.raises(ValueError):
        cgparse.parse_max(text)


@pytest.mark.parametrize("text, want", [("0", False), ("1\n", True), (" 1 ", True)])
def test_parse_bool01(text, want):
    assert cgparse.parse_bool01(text) is want


@pytest.mark.parametrize("text", ["", "2", "true", "-1", "01", "1 1", "yes"])
def test_parse_bool01_rejects(text):
    with pytest.raises(ValueError):
        cgparse.parse_bool01(text)


@pytest.mark.parametrize("text, want", [
    ("", []), ("\n", []), ("1\n2\n3\n", [1, 2, 3]), ("  5  \n\n7", [5, 7]),
    ("4194304\n", [4194304]), ("30\n10\n20\n", [30, 10, 20]),
])
def test_parse_procs(text, want):
    assert cgparse.parse_procs(text) == want


@pytest.mark.parametrize("text", ["0\n", "-1\n", "abc\n", "1 2\n", "1\x002\n", "1\n\ufffd\n"])
def test_parse_procs_rejects(text):
    with pytest.raises(ValueError):
        cgparse.parse_procs(text)


MEMORY_EVENTS_6X = "low 0\nhigh 12\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n"


@pytest.mark.parametrize("text, want", [
    ("", {}), ("\n\n", {}),
    (MEMORY_EVENTS_6X, {"low": 0, "high": 12, "max": 3, "oom": 1, "oom_kill": 1,
                        "oom_group_kill": 0}),
    ("populated 1\nfrozen 0\n", {"populated": 1, "frozen": 0}),
    ("populated 1\nfrozen 0", {"populated": 1, "frozen": 0}),  # no trailing newline
    (f"pgscan {BIG}\n", {"pgscan": int(BIG)}),
    ("  anon\t4096  \n", {"anon": 4096}),
])
def test_parse_flat_keyed(text, want):
    assert cgparse.parse_flat_keyed(text) == want


@pytest.mark.parametrize("text", [
    "low\n", "low 1 2\n", "low x\n", "low 1\nlow 2\n", "low -\n", "populated 1\nfroz",
])
def test_parse_flat_keyed_rejects(text):
    with pytest.raises(ValueError):
        cgparse.parse_flat_keyed(text)


PSI_6X = ("some avg10=1.23 avg60=0.50 avg300=0.07 total=123456\n"
          "full avg10=0.00 avg60=0.00 avg300=0.00 total=789\n")


def test_parse_pressure_some_and_full():
    got = cgparse.parse_pressure(PSI_6X)
    assert got == Pressure(PressureLine(1.23, 0.5, 0.07, 123456), PressureLine(0.0, 0.0, 0.0, 789))


@pytest.mark.parametrize("text", [
    "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",  # old kernels: no full line
    "some avg10=0.00 avg60=0.00 avg300=0.00 total=0",
])
def test_parse_pressure_without_full(text):
    assert cgparse.parse_pressure(text).full is None


def test_parse_pressure_tolerates_key_order_and_new_keys():
    got = cgparse.parse_pressure("some total=5 avg300=3.00 avg60=2.00 avg10=100.00 new=1\n")
    assert got.some == PressureLine(100.0, 2.0, 3.0, 5)


@pytest.mark.parametrize("text", [
    "", "\n",
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",  # no some
    "some avg10=abc avg60=0.00 avg300=0.00 total=0\n",
    "some avg10=nan avg60=0.00 avg300=0.00 total=0\n",
    "some avg10=inf avg60=0.00 avg300=0.00 total=0\n",
    "some avg10=-1.00 avg60=0.00 avg300=0.00 total=0\n",
    "some avg10=100.01 avg60=0.00 avg300=0.00 total=0\n",
    "some avg10=0.00 avg60=0.00 avg300=0.00\n",  # no total
    "some avg10=0.00 avg60=0.00 avg300=0.00 total=-3\n",
    "some avg10=0.00 avg60=0.00 total=0\n",  # no avg300
    "some avg10=0.00 avg60 avg300=0.00 total=0\n",
    "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nsome avg10=0.00 avg60=0.00 "
    "avg300=0.00 total=0\n",
    PSI_6X + "bogus line\n",
    "some avg10=0.00 avg60=0.00 avg300=0.00 total=0x10\n",
])
def test_parse_pressure_rejects(text):
    with pytest.raises(ValueError):
        cgparse.parse_pressure(text)


@pytest.mark.parametrize("text, want", [
    ("", frozenset()), ("\n", frozenset()), ("cpu memory pids\n", {"cpu", "memory", "pids"}),
    ("cpuset cpu io memory hugetlb pids rdma misc\n", set(fakefs.DEFAULT_CONTROLLERS)),
])
def test_parse_controllers(text, want):
    assert cgparse.parse_controllers(text) == want


@pytest.mark.parametrize("text", ["cpu Memory\n", "cpu;rm\n", "+memory\n", "mem/ory"])
def test_parse_controllers_rejects(text):
    with pytest.raises(ValueError):
        cgparse.parse_controllers(text)


@pytest.mark.parametrize("text, want", [
    (HYBRID_MOUNTS, "/sys/fs/cgroup/unified"),
    (UNIFIED_MOUNTS, "/sys/fs/cgroup"),
    ("", None),
    ("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n", None),
    ("none /mnt/my\\040cgroups\\011x cgroup2 rw 0 0\n", "/mnt/my cgroups\tx"),
    ("none /a\\134b cgroup2 rw 0 0\n", "/a\\b"),
    ("none /first cgroup2 rw 0 0\nnone /second cgroup2 rw 0 0\n", "/first"),
])
def test_find_cgroup2_mount(text, want):
    assert cgparse.find_cgroup2_mount(text) == want


def test_find_cgroup2_mount_rejects_truncated_line():
    with pytest.raises(ValueError):
        cgparse.find_cgroup2_mount("cgroup2 /sys/fs/cgroup\n")



@pytest.mark.parametrize(("root", "expected"), [
    ("/sys/fs/cgroup/unified", "/"),
    ("/sys/fs/cgroup/unified/", "/"),
    ("/sys/fs/cgroup/unified/prioomd-test-1/x", "/prioomd-test-1/x"),
    ("/dev/shm/fake/cgroup", "/"),  # not on a cgroup2 mount: fake trees
    ("/sys/fs/cgroup/unifiedX", "/"),
])
def test_hierarchy_path(root, expected):
    mounts = ("tmpfs /sys/fs/cgroup tmpfs rw 0 0\n"
              "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
              "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n")
    assert cgparse.hierarchy_path(root, mounts) == expected
