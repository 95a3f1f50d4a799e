"""Fuzzing the xattr values: any bytes in any of the xattrs prioomd reads, on any
cgroup path, under any owners. The parsers give a value or None, resolve() a
setting (or ConfigError for an ambiguous config, never for an xattr), explain()
lines; a bad value is a warning naming it, shown escaped, never a crash."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from prioomd import table
from prioomd.config import MAX_PRIORITY, parse_config
from prioomd.errors import ConfigError
from prioomd.model import Setting
from tests.fuzzing import fuzz

VALUES = st.one_of(st.binary(max_size=24),
                   st.sampled_from([b"0", b"12", b"13", b"12\n", b"12\n\n", b" 1", b"+1", b"-0",
                                    b"0012", b"1" * 5000, b"\xd9\xa1", b"yes", b"TRUE\n",
                                    b"off", b"\x00", b"\x1b[2J", b"1\x00"]))
XATTRS = st.dictionaries(st.sampled_from(table.ALL_XATTRS), VALUES)
UIDS = st.one_of(st.none(), st.sampled_from([0, 1000, 1001]))
PATHS = st.one_of(st.just("/"), st.lists(st.text(st.characters(exclude_characters="/\x00"),
                                                  min_size=1, max_size=8),
                                          min_size=1, max_size=3).map(lambda p: "/" + "/".join(p)))
TABLES = [table.PriorityTable(parse_config(text, "fuzz.toml")) for text in (
    "",
    "[root]\nuse_priority_oom = true\n[hints]\nenabled = true\n"
    "[[cgroup]]\npath = \"/**\"\npriority = 3\n",
    "[hints]\nenabled = false\n[[cgroup]]\npath = \"/*\"\nuse_priority_oom = true\n",
)]


@fuzz
@given(VALUES)
@example(b"1" * 5000)
def test_value_parsers(raw: bytes) -> None:
    prio = table.parse_priority(raw)
    assert prio is None or (type(prio) is int and 0 <= prio <= MAX_PRIORITY)
    assert table.parse_use_priority_oom(raw) in (None, True, False)
    assert table.parse_hint(raw) in (None, True, False)


@fuzz
@given(st.one_of(st.text(max_size=10), st.integers(-3, 20).map(str)),
       st.sampled_from(table.SETTABLE_XATTRS + ("user.other",)))
def test_validate_round_trip(text: str, name: str) -> None:
    """What `prioomd set` writes is what the reader parses back."""
    try:
        raw = table.validate_xattr_value(name, text)
    except ValueError:
        return
    if name in table.PRIORITY_XATTRS:
        assert table.parse_priority(raw) == int(text.strip())
    else:
        assert table.parse_use_priority_oom(raw) in (True, False)


@fuzz
@given(st.sampled_from(TABLES), PATHS, XATTRS, UIDS, UIDS)
def test_resolve_and_explain_any_xattrs(t: table.PriorityTable, path: str,
                                        xattrs: dict[str, bytes], owner: int | None,
                                        parent_owner: int | None) -> None:
    try:
        r = t.resolve(path, xattrs, owner, parent_owner)
    except ConfigError:
        pass
    else:
        assert isinstance(r.priority, Setting) and isinstance(r.use_priority_oom, Setting)
        assert 0 <= r.priority.value <= MAX_PRIORITY
        for w in r.warnings:
            assert isinstance(w, str)
    lines = t.explain(path, xattrs, owner, parent_owner)
    assert lines and all(isinstance(line, str) for line in lines)
    if "\x1b" not in path:  # a value is shown as a bytes literal: no raw ESC from it
        assert not any("\x1b" in line for line in lines)
