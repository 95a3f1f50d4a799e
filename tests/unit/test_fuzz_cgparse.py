"""Fuzzing cgroupfs's parsers: PSI files, memory.events and the other flat keyed
files, limit and flag files, cgroup.procs, controller lists, /proc/self/mounts.
Result or ValueError, nothing else; and what the kernel's format says comes back."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from prioomd import cgparse
from tests.fuzzing import WORDS, fuzz, lines_of, ok_or

PSI_WORDS = st.one_of(WORDS, st.sampled_from(["some", "full", "avg10=0.00", "avg60=12.34",
                                              "avg300=100.00", "avg10=100.01", "total=0",
                                              "total=-1", "avg10=", "avg10=1.", "=1"]))
PCT = st.integers(0, 10000).map(lambda x: f"{x // 100}.{x % 100:02d}")  # "%lu.%02lu"


@fuzz
@given(st.one_of(st.text(), lines_of(PSI_WORDS, separators=st.sampled_from([" ", "=", "\t"]))))
def test_pressure_arbitrary(text: str) -> None:
    p = ok_or(ValueError, cgparse.parse_pressure, text)
    if p is not None:
        assert isinstance(p, cgparse.Pressure)
        for line in (p.some, p.full):
            if line is not None:
                assert 0 <= line.avg10_pct <= 100 and line.total_us >= 0


@fuzz
@given(st.lists(st.tuples(PCT, PCT, PCT, st.integers(0, 2**64 - 1)), min_size=1, max_size=2))
def test_pressure_round_trip(lines: list[tuple[str, str, str, int]]) -> None:
    text = "".join(f"{kind} avg10={a} avg60={b} avg300={c} total={t}\n"
                   for kind, (a, b, c, t) in zip(("some", "full"), lines, strict=False))
    p = cgparse.parse_pressure(text)
    got = [p.some] + ([p.full] if p.full else [])
    assert [(x.avg10_pct, x.avg60_pct, x.avg300_pct, x.total_us) for x in got] == \
        [(float(a), float(b), float(c), t) for a, b, c, t in lines]


EVENT_KEYS = st.sampled_from(["low", "high", "max", "oom", "oom_kill", "oom_group_kill",
                              "populated", "frozen"])


@fuzz
@given(st.one_of(st.text(), lines_of(st.one_of(EVENT_KEYS, WORDS),
                                     separators=st.sampled_from([" ", "\t", "  ", ""]))))
def test_flat_keyed_arbitrary(text: str) -> None:
    """memory.events, cgroup.events, memory.stat."""
    out = ok_or(ValueError, cgparse.parse_flat_keyed, text)
    assert out is None or all(type(v) is int for v in out.values())  # type: ignore[attr-defined]


@fuzz
@given(st.dictionaries(st.from_regex(r"[a-z_]{1,20}", fullmatch=True),
                       st.integers(0, 2**64 - 1), max_size=12))
def test_flat_keyed_round_trip(values: dict[str, int]) -> None:
    text = "".join(f"{k} {v}\n" for k, v in values.items())
    assert cgparse.parse_flat_keyed(text) == values


@fuzz
@given(st.one_of(st.text(), WORDS))
def test_single_value_files(text: str) -> None:
    for parse in (cgparse.parse_int, cgparse.parse_max, cgparse.parse_bool01):
        ok_or(ValueError, parse, text)


@fuzz
@given(st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_limit_round_trip(limit: int | None) -> None:
    """write_memory_high's format back through parse_max."""
    assert cgparse.parse_max(("max" if limit is None else str(limit)) + "\n") == limit


@fuzz
@given(st.one_of(st.text(), lines_of(max_lines=20)))
def test_procs_arbitrary(text: str) -> None:
    pids = ok_or(ValueError, cgparse.parse_procs, text)
    assert pids is None or all(p > 0 for p in pids)  # type: ignore[attr-defined]


@fuzz
@given(st.lists(st.integers(1, 2**22), max_size=50))
def test_procs_round_trip(pids: list[int]) -> None:
    assert cgparse.parse_procs("".join(f"{p}\n" for p in pids)) == pids


@fuzz
@given(st.one_of(st.text(), lines_of(max_lines=1)))
def test_controllers_arbitrary(text: str) -> None:
    ok_or(ValueError, cgparse.parse_controllers, text)


MOUNT_WORDS = st.one_of(WORDS, st.sampled_from(["cgroup2", "cgroup", "/sys/fs/cgroup",
                                                "/a\\040b", "\\134", "\\777", "rw,nosuid"]))


@fuzz
@given(st.one_of(st.text(), lines_of(MOUNT_WORDS, separators=st.just(" "))), st.text())
def test_mounts_arbitrary(text: str, root: str) -> None:
    mounts = ok_or(ValueError, cgparse.cgroup2_mounts, text)
    if mounts is not None:
        path = cgparse.hierarchy_path("/" + root, text)
        assert path.startswith("/")


@fuzz
@given(st.lists(st.text(st.characters(exclude_characters="\x00/ \t\n\\"), min_size=1),
                min_size=1, max_size=4))
@example(["\x1f\x0b\u00a0"])  # found by this test: str.split() split the path there
def test_mounts_round_trip(parts: list[str]) -> None:
    """mangle() escapes space, tab, newline and backslash as octal; they come back."""
    target = "/" + "/".join(parts) + " \t\n\\x"
    mangled = "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in target)
    text = f"proc /proc proc rw 0 0\ncgroup2 {mangled} cgroup2 rw,nosuid 0 0\n"
    assert cgparse.cgroup2_mounts(text) == [target]
