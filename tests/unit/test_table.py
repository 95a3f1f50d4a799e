"""table.py: the merge of xattrs, config rules and peer hints, and its explanations."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prioomd.config import Config, HintsConfig, RootConfig, load_config, parse_config
from prioomd.errors import ConfigError
from prioomd.model import Setting
from prioomd.table import (
    ALL_XATTRS,
    HINT_OOMD_AVOID,
    HINT_OOMD_PREFER,
    HINT_SYSTEMD_AVOID,
    HINT_SYSTEMD_OMIT,
    USER_XATTR_PRIORITY,
    USER_XATTR_USE_PRIORITY_OOM,
    XATTR_PRIORITY,
    XATTR_USE_PRIORITY_OOM,
    PriorityTable,
    Resolved,
    parse_priority,
    validate_xattr_value,
)

SRC = "/etc/prioomd/prioomd.toml"
SHIPPED = Path(__file__).resolve().parents[2] / "etc" / "prioomd.toml"
ROOT_UID, USER_UID = 0, 1000


def table(*rules: str, extra: str = "") -> PriorityTable:
    text = extra + "".join(f"[[cgroup]]\n{r}\n" for r in rules)
    return PriorityTable(parse_config(text, SRC))


def resolve(t: PriorityTable, path: str, xattrs: dict[str, bytes] | None = None,
            owner: int | None = ROOT_UID, parent: int | None = ROOT_UID) -> Resolved:
    return t.resolve(path, xattrs or {}, owner, parent)


def prio(t: PriorityTable, path: str, xattrs: dict[str, bytes] | None = None,
         owner: int | None = ROOT_UID, parent: int | None = ROOT_UID) -> tuple[int | bool, str]:
    s = resolve(t, path, xattrs, owner, parent).priority
    return s.value, s.source


# --- constants ------------------------------------------------------------------------


def test_xattr_names() -> None:
    assert XATTR_PRIORITY == "trusted.prioomd.priority"
    assert XATTR_USE_PRIORITY_OOM == "trusted.prioomd.use_priority_oom"
    assert USER_XATTR_PRIORITY == "user.prioomd.priority"
    assert USER_XATTR_USE_PRIORITY_OOM == "user.prioomd.use_priority_oom"
    assert set(ALL_XATTRS) == {
        XATTR_PRIORITY, XATTR_USE_PRIORITY_OOM, USER_XATTR_PRIORITY,
        USER_XATTR_USE_PRIORITY_OOM, "trusted.prioomd.kill", "user.prioomd.kill",
        "trusted.oomd_prefer", "trusted.oomd_avoid", "user.oomd_avoid", "user.oomd_omit"}
    assert len(ALL_XATTRS) == len(set(ALL_XATTRS))


# --- defaults, root, no inheritance -----------------------------------------------------


def test_defaults() -> None:
    r = resolve(PriorityTable(Config()), "/a")
    assert r == Resolved(Setting(0, "default"), Setting(False, "default"), ())
    assert type(r.priority.value) is int and type(r.use_priority_oom.value) is bool


def test_root_has_no_priority() -> None:
    t = PriorityTable(Config())
    r = resolve(t, "/", {XATTR_PRIORITY: b"7"}, ROOT_UID, None)
    assert r.priority == Setting(0, "root: no priority (spec §1.4)")
    assert len(r.warnings) == 1 and "trusted.prioomd.priority" in r.warnings[0]
    assert "/" in r.warnings[0]


def test_root_use_priority_oom_from_root_section_or_trusted_xattr() -> None:
    on = PriorityTable(Config(source=SRC, root=RootConfig(use_priority_oom=True)))
    assert resolve(on, "/").use_priority_oom == Setting(
        True, f"config {SRC} [root] use_priority_oom")
    off = PriorityTable(Config(source=SRC))
    assert resolve(off, "/").use_priority_oom.value is False
    r = resolve(off, "/", {XATTR_USE_PRIORITY_OOM: b"1\n"})
    assert r.use_priority_oom == Setting(True, "xattr trusted.prioomd.use_priority_oom")
    r = resolve(on, "/", {XATTR_USE_PRIORITY_OOM: b"0"})
    assert r.use_priority_oom.value is False


def test_root_ignores_rules_and_user_xattrs() -> None:
    t = table('path = "/**"\nuse_priority_oom = true\npriority = 5')
    r = resolve(t, "/", {USER_XATTR_USE_PRIORITY_OOM: b"1"}, ROOT_UID, None)
    assert r.use_priority_oom == Setting(False, f"config {SRC} [root] use_priority_oom")
    assert r.priority.value == 0
    assert any(USER_XATTR_USE_PRIORITY_OOM in w for w in r.warnings)


def test_nothing_is_inherited() -> None:
    t = table('path = "/a"\npriority = 9\nuse_priority_oom = true')
    assert prio(t, "/a")[0] == 9
    r = resolve(t, "/a/child")
    assert r.priority == Setting(0, "default")
    assert r.use_priority_oom == Setting(False, "default")


# --- config rules -------------------------------------------------------------------------


def test_rule_source_is_human_readable() -> None:
    t = table('path = "/system.slice/sshd.service"\npriority = 12',
              'path = "/system.slice/*"\npriority = 10')
    assert prio(t, "/system.slice/sshd.service") == (
        12, f'config {SRC} [[cgroup]] #1 path "/system.slice/sshd.service"')
    assert prio(t, "/system.slice/cron.service") == (
        10, f'config {SRC} [[cgroup]] #2 path "/system.slice/*"')


def test_exact_beats_glob_whatever_the_order() -> None:
    t = table('path = "/a/*"\npriority = 1', 'path = "/a/b"\npriority = 2')
    assert prio(t, "/a/b")[0] == 2
    t = table('path = "/a/b"\npriority = 2', 'path = "/a/*"\npriority = 1')
    assert prio(t, "/a/b")[0] == 2
    # exact beats even a glob with a longer literal prefix
    t = table('path = "/a/bcdefgh*"\npriority = 1', 'path = "/a/bcdefgh"\npriority = 2')
    assert prio(t, "/a/bcdefgh")[0] == 2


def test_longer_literal_prefix_beats_shorter() -> None:
    t = table('path = "/**"\npriority = 1', 'path = "/system.slice/*"\npriority = 2',
              'path = "/system.slice/batch-*"\npriority = 3')
    assert prio(t, "/system.slice/batch-7.service")[0] == 3
    assert prio(t, "/system.slice/web.service")[0] == 2
    assert prio(t, "/user.slice")[0] == 1


def test_keys_are_resolved_independently() -> None:
    t = table('path = "/a/b"\npriority = 7', 'path = "/a/*"\nuse_priority_oom = true')
    r = resolve(t, "/a/b")
    assert r.priority.value == 7
    assert r.use_priority_oom == Setting(True, f'config {SRC} [[cgroup]] #2 path "/a/*"')


def test_equal_specificity_conflict_at_resolve_time() -> None:
    # Not provable from the patterns (neither matches the other's text), so it loads...
    t = table('path = "/a/*x*"\npriority = 3', 'path = "/a/*y*"\npriority = 4')
    assert prio(t, "/a/xx")[0] == 3
    assert prio(t, "/a/yy")[0] == 4
    # ...and a cgroup that matches both is an error naming both rules and the path.
    with pytest.raises(ConfigError) as info:
        resolve(t, "/a/xy")
    msg = str(info.value)
    assert msg.startswith(SRC)
    assert '[[cgroup]] #1 (path "/a/*x*")' in msg and '[[cgroup]] #2 (path "/a/*y*")' in msg
    assert '"/a/xy"' in msg and "priority (3 vs 4)" in msg


def test_resolve_time_conflict_only_for_the_disputed_key() -> None:
    t = table('path = "/a/*x*"\npriority = 3\nuse_priority_oom = true',
              'path = "/a/*y*"\npriority = 3\nuse_priority_oom = false')
    with pytest.raises(ConfigError, match="use_priority_oom"):
        resolve(t, "/a/xy")
    # a trusted xattr decides before the config is consulted: no error
    r = resolve(t, "/a/xy", {XATTR_USE_PRIORITY_OOM: b"1"})
    assert r.priority.value == 3 and r.use_priority_oom.value is True


def test_conflict_below_the_top_specificity_does_not_matter() -> None:
    t = table('path = "/a/*x*"\npriority = 3', 'path = "/a/*y*"\npriority = 4',
              'path = "/a/xy"\npriority = 5')
    assert prio(t, "/a/xy")[0] == 5


def test_agreeing_equal_rules_are_fine() -> None:
    t = table('path = "/a/*x*"\npriority = 3', 'path = "/a/*y*"\npriority = 3')
    assert prio(t, "/a/xy") == (3, f'config {SRC} [[cgroup]] #1 path "/a/*x*"')


# --- xattrs ---------------------------------------------------------------------------


def test_trusted_xattr_beats_config() -> None:
    t = table('path = "/a"\npriority = 9\nuse_priority_oom = false')
    r = resolve(t, "/a", {XATTR_PRIORITY: b"2", XATTR_USE_PRIORITY_OOM: b"1"})
    assert r.priority == Setting(2, "xattr trusted.prioomd.priority")
    assert r.use_priority_oom == Setting(True, "xattr trusted.prioomd.use_priority_oom")


def test_trusted_xattr_needs_no_ownership() -> None:
    t = PriorityTable(Config())
    assert prio(t, "/a", {XATTR_PRIORITY: b"4\n"}, USER_UID, ROOT_UID)[0] == 4
    assert prio(t, "/a", {XATTR_PRIORITY: b"4"}, None, None)[0] == 4


def test_config_beats_user_xattr() -> None:
    t = table('path = "/a"\npriority = 9')
    assert prio(t, "/a", {USER_XATTR_PRIORITY: b"2"})[0] == 9


def test_user_xattr_honoured_when_owner_owns_the_parent() -> None:
    t = PriorityTable(Config())
    # inside a delegated subtree: user orders its own children
    assert prio(t, "/user.slice/user-1000.slice/user@1000.service/app.slice",
                {USER_XATTR_PRIORITY: b"6"}, USER_UID, USER_UID) == (
        6, "xattr user.prioomd.priority")
    # root-owned both
    assert prio(t, "/a", {USER_XATTR_PRIORITY: b"6"}, ROOT_UID, ROOT_UID)[0] == 6
    r = resolve(t, "/a", {USER_XATTR_USE_PRIORITY_OOM: b"1"}, USER_UID, USER_UID)
    assert r.use_priority_oom == Setting(True, "xattr user.prioomd.use_priority_oom")


def test_delegation_root_cannot_rank_itself() -> None:
    t = PriorityTable(Config())
    r = resolve(t, "/user.slice/user-1000.slice/user@1000.service",
                {USER_XATTR_PRIORITY: b"12", USER_XATTR_USE_PRIORITY_OOM: b"1"},
                USER_UID, ROOT_UID)
    assert r.priority == Setting(0, "default")
    assert r.use_priority_oom == Setting(False, "default")
    assert len(r.warnings) == 2
    for w in r.warnings:
        assert w.startswith("/user.slice/user-1000.slice/user@1000.service: ")
        assert "delegation root cannot rank itself above its siblings" in w


def test_unknown_owner_refuses_user_xattrs() -> None:
    t = PriorityTable(Config())
    r = resolve(t, "/a", {USER_XATTR_PRIORITY: b"5"}, USER_UID, None)
    assert r.priority.value == 0 and r.warnings


# --- peer hints -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [(HINT_OOMD_PREFER, 0), (HINT_OOMD_AVOID, 10), (HINT_SYSTEMD_AVOID, 10),
     (HINT_SYSTEMD_OMIT, 12)],
)
def test_hint_mapping(name: str, expected: int) -> None:
    t = PriorityTable(Config())
    assert prio(t, "/a", {name: b"1"}) == (expected, f"hint {name}")


def test_hint_mapping_is_configurable() -> None:
    t = PriorityTable(Config(hints=HintsConfig(oomd_avoid=4, oomd_omit=5, oomd_prefer=1)))
    assert prio(t, "/a", {HINT_SYSTEMD_AVOID: b"1"})[0] == 4
    assert prio(t, "/a", {HINT_SYSTEMD_OMIT: b"1"})[0] == 5
    assert prio(t, "/a", {HINT_OOMD_PREFER: b"1"})[0] == 1


def test_hints_disabled() -> None:
    t = PriorityTable(Config(hints=HintsConfig(enabled=False)))
    assert prio(t, "/a", {HINT_SYSTEMD_OMIT: b"1"}) == (0, "default")


@pytest.mark.parametrize(
    ("present", "winner"),
    [
        ((HINT_OOMD_PREFER, HINT_OOMD_AVOID), HINT_OOMD_PREFER),  # oomd: prefer wins
        ((HINT_SYSTEMD_OMIT, HINT_SYSTEMD_AVOID), HINT_SYSTEMD_OMIT),  # systemd: omit wins
        ((HINT_OOMD_AVOID, HINT_SYSTEMD_OMIT), HINT_OOMD_AVOID),  # trusted before user
        ((HINT_OOMD_PREFER, HINT_SYSTEMD_OMIT, HINT_SYSTEMD_AVOID), HINT_OOMD_PREFER),
    ],
)
def test_hint_precedence(present: tuple[str, ...], winner: str) -> None:
    t = PriorityTable(Config())
    assert prio(t, "/a", dict.fromkeys(present, b"1"))[1] == f"hint {winner}"


def test_hint_values() -> None:
    t = PriorityTable(Config())
    for on in (b"1", b"1\n", b"yes", b"true", b"ON"):
        assert prio(t, "/a", {HINT_SYSTEMD_AVOID: on})[0] == 10, on
    r = resolve(t, "/a", {HINT_SYSTEMD_AVOID: b"0", HINT_SYSTEMD_OMIT: b"no"})
    assert r.priority == Setting(0, "default") and r.warnings == ()
    r = resolve(t, "/a", {HINT_SYSTEMD_AVOID: b"maybe", HINT_SYSTEMD_OMIT: b"1"})
    assert r.priority.value == 12
    assert len(r.warnings) == 1 and "user.oomd_avoid" in r.warnings[0]
    assert "b'maybe'" in r.warnings[0]


def test_hints_rank_below_prioomd_sources() -> None:
    t = table('path = "/a"\npriority = 3')
    assert prio(t, "/a", {HINT_SYSTEMD_OMIT: b"1"})[0] == 3
    t = PriorityTable(Config())
    assert prio(t, "/a", {HINT_SYSTEMD_OMIT: b"1", USER_XATTR_PRIORITY: b"2"})[0] == 2
    assert prio(t, "/a", {HINT_SYSTEMD_OMIT: b"1", XATTR_PRIORITY: b"1"})[0] == 1


def test_user_hints_follow_the_delegation_rule() -> None:
    t = PriorityTable(Config())
    r = resolve(t, "/d", {HINT_SYSTEMD_OMIT: b"1", HINT_OOMD_AVOID: b"1"}, USER_UID, ROOT_UID)
    assert r.priority == Setting(10, "hint trusted.oomd_avoid")  # trusted: no ownership rule
    r = resolve(t, "/d", {HINT_SYSTEMD_OMIT: b"1"}, USER_UID, ROOT_UID)
    assert r.priority == Setting(0, "default")
    assert "delegation root" in r.warnings[0]
    assert prio(t, "/d/e", {HINT_SYSTEMD_OMIT: b"1"}, USER_UID, USER_UID)[0] == 12


def test_hints_do_not_set_use_priority_oom() -> None:
    t = PriorityTable(Config())
    assert resolve(t, "/a", {HINT_SYSTEMD_OMIT: b"1"}).use_priority_oom.value is False


# --- hostile xattr values ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"13", b"abc", b"-1", b"", b" 5", b"5 ", b"5\n\n", b"\n", b"+5", b"0x5", b"5.0",
            b"\xff", "٥".encode(), b"12345678901234567890", b"5\x00", b"1e1"],
)
def test_bad_priority_xattr_falls_through_with_warning(raw: bytes) -> None:
    t = table('path = "/a"\npriority = 9')
    r = resolve(t, "/a", {XATTR_PRIORITY: raw, USER_XATTR_PRIORITY: raw})
    assert r.priority.value == 9  # trusted ignored -> config
    assert len(r.warnings) == 2
    assert r.warnings[0].startswith("/a: xattr trusted.prioomd.priority = ")
    assert repr(raw)[:20] in r.warnings[0]
    assert "0..12" in r.warnings[0]


@pytest.mark.parametrize("raw", [b"2", b"01", b"", b"yes", b"true", b"1 ", b"-0"])
def test_bad_use_priority_oom_xattr_falls_through(raw: bytes) -> None:
    r = resolve(PriorityTable(Config()), "/a", {XATTR_USE_PRIORITY_OOM: raw})
    assert r.use_priority_oom == Setting(False, "default")
    assert len(r.warnings) == 1 and "trusted.prioomd.use_priority_oom" in r.warnings[0]


def test_good_xattr_values() -> None:
    for raw, value in ((b"0", 0), (b"12", 12), (b"7\n", 7), (b"05", 5)):
        assert parse_priority(raw) == value
    t = PriorityTable(Config())
    assert resolve(t, "/a", {XATTR_USE_PRIORITY_OOM: b"0\n"}).use_priority_oom == Setting(
        False, "xattr trusted.prioomd.use_priority_oom")


def test_long_values_are_shortened_in_warnings() -> None:
    r = resolve(PriorityTable(Config()), "/a", {XATTR_PRIORITY: b"x" * 10_000})
    assert len(r.warnings[0]) < 300


_uids = st.sampled_from([None, 0, 1000, 1001])


@given(xattrs=st.dictionaries(st.sampled_from(ALL_XATTRS), st.binary(max_size=24)),
       owner=_uids, parent=_uids,
       path=st.sampled_from(["/", "/a", "/a/b", "/system.slice/x.service"]))
def test_arbitrary_xattrs_never_raise(xattrs: dict[str, bytes], owner: int | None,
                                      parent: int | None, path: str) -> None:
    t = _HYPOTHESIS_TABLE
    r = t.resolve(path, xattrs, owner, parent)
    assert type(r.priority.value) is int and 0 <= r.priority.value <= 12
    assert type(r.use_priority_oom.value) is bool
    assert r.priority.source and r.use_priority_oom.source
    assert all(isinstance(w, str) and w.startswith(path) for w in r.warnings)
    lines = t.explain(path, xattrs, owner, parent)
    assert any("<- wins" in line for line in lines)


_HYPOTHESIS_TABLE = table('path = "/a/*"\npriority = 4', 'path = "/system.slice/*"\n'
                          "use_priority_oom = true")


# --- explain ---------------------------------------------------------------------------------


def test_explain_lists_every_source_and_the_winner() -> None:
    t = table('path = "/s/*"\npriority = 10', 'path = "/s/sshd.service"\npriority = 12',
              'path = "/**"\npriority = 1', 'path = "/x"\npriority = 2')
    lines = t.explain("/s/sshd.service", {USER_XATTR_PRIORITY: b"3", HINT_SYSTEMD_AVOID: b"1"},
                      ROOT_UID, ROOT_UID)
    text = "\n".join(lines)
    assert lines[0].startswith("cgroup /s/sshd.service")
    assert lines[1] == (f'priority = 12 from config {SRC} [[cgroup]] #2 path '
                        '"/s/sshd.service" (most specific matching config rule)')
    winner = next(i for i, line in enumerate(lines) if line.endswith("<- wins"))
    assert '#2 path "/s/sshd.service"' in lines[winner]
    # matching rules in order of specificity, then the lower layers, shadowed
    order = [i for i, line in enumerate(lines) if "[[cgroup]]" in line and "wins" not in line
             and not line.startswith("priority")]
    assert '#1 path "/s/*"' in lines[order[0]] and '#3 path "/**"' in lines[order[1]]
    assert '#4 path "/x"' not in text  # not matching: not listed
    assert "xattr trusted.prioomd.priority: not set" in text
    assert "xattr user.prioomd.priority: b'3'  (shadowed)" in text
    assert "hint user.oomd_avoid" in text
    assert "use_priority_oom = false from default" in text


def test_explain_reports_conflicts_and_warnings_without_raising() -> None:
    t = table('path = "/a/*x*"\npriority = 3', 'path = "/a/*y*"\npriority = 4')
    lines = t.explain("/a/xy", {XATTR_PRIORITY: b"99"}, USER_UID, ROOT_UID)
    assert any(line.startswith("priority: UNRESOLVED: ") for line in lines)
    assert any(line.startswith("warning: /a/xy: xattr trusted.prioomd.priority") for line in lines)


def test_explain_root() -> None:
    t = PriorityTable(load_config(SHIPPED))
    lines = t.explain("/", {}, ROOT_UID, None)
    assert "priority = 0 from root: no priority (spec §1.4)" in lines[1]
    assert any(line.startswith("use_priority_oom = true from config") for line in lines)


# --- validate_xattr_value ------------------------------------------------------------------


def test_validate_xattr_value() -> None:
    assert validate_xattr_value(XATTR_PRIORITY, "7") == b"7"
    assert validate_xattr_value(USER_XATTR_PRIORITY, " 12\n") == b"12"
    assert validate_xattr_value(XATTR_PRIORITY, "0") == b"0"
    assert validate_xattr_value(XATTR_USE_PRIORITY_OOM, "1") == b"1"
    assert validate_xattr_value(XATTR_USE_PRIORITY_OOM, "false") == b"0"
    assert validate_xattr_value(USER_XATTR_USE_PRIORITY_OOM, "on") == b"1"
    for bad in ("13", "-1", "abc", "", "5.0", "٥"):
        with pytest.raises(ValueError, match="must be an integer 0..12"):
            validate_xattr_value(XATTR_PRIORITY, bad)
    with pytest.raises(ValueError, match="must be 1 or 0"):
        validate_xattr_value(XATTR_USE_PRIORITY_OOM, "2")
    with pytest.raises(ValueError, match="not an xattr prioomd sets"):
        validate_xattr_value("user.oomd_avoid", "1")


@given(st.text(max_size=10))
def test_validated_values_read_back(text: str) -> None:
    try:
        raw = validate_xattr_value(XATTR_PRIORITY, text)
    except ValueError:
        return
    assert parse_priority(raw) == int(raw)


# --- the shipped file ------------------------------------------------------------------------


def test_shipped_table() -> None:
    t = PriorityTable(load_config(SHIPPED))
    assert prio(t, "/system.slice/sshd.service")[0] == 12
    assert prio(t, "/system.slice/cron.service") == (0, "default")
    assert prio(t, "/system.slice/cron.service", {HINT_SYSTEMD_AVOID: b"1"})[0] == 10


# --- kill granularity ---------------------------------------------------------------------


def kill(t: PriorityTable, path: str, xattrs: dict[str, bytes] | None = None,
         owner: int | None = ROOT_UID, parent: int | None = ROOT_UID) -> tuple[object, str]:
    s = resolve(t, path, xattrs, owner, parent).kill
    return s.value, s.source


def test_kill_defaults_to_process() -> None:
    assert kill(PriorityTable(Config()), "/a") == ("process", "default")


def test_kill_from_rule_most_specific_wins_and_is_independent_of_priority() -> None:
    t = table('path = "/a/*"\nkill = "cgroup"', 'path = "/a/b"\npriority = 3')
    assert kill(t, "/a/b")[0] == "cgroup"  # the exact rule sets no kill: no shadowing
    assert "#1" in kill(t, "/a/b")[1]
    assert kill(t, "/c") == ("process", "default")


def test_kill_trusted_beats_rule_beats_user_xattr() -> None:
    t = table('path = "/a"\nkill = "cgroup"')
    assert kill(t, "/a", {"trusted.prioomd.kill": b"process\n"}) == (
        "process", "xattr trusted.prioomd.kill")
    assert kill(t, "/a", {"user.prioomd.kill": b"process"})[0] == "cgroup"
    assert kill(PriorityTable(Config()), "/b", {"user.prioomd.kill": b"cgroup"}) == (
        "cgroup", "xattr user.prioomd.kill")


def test_user_kill_xattr_follows_the_delegation_rule() -> None:
    r = resolve(PriorityTable(Config()), "/d", {"user.prioomd.kill": b"cgroup"},
                USER_UID, ROOT_UID)
    assert r.kill == Setting("process", "default")
    assert any("user.prioomd.kill" in w and "delegation" in w for w in r.warnings)


@pytest.mark.parametrize("raw", [b"Cgroup", b"cgroup ", b"all", b"", b"process\n\n",
                                 b"\xff", b"cgroup\x00"])
def test_bad_kill_xattr_is_ignored_with_a_warning(raw: bytes) -> None:
    r = resolve(PriorityTable(Config()), "/a", {"trusted.prioomd.kill": raw})
    assert r.kill == Setting("process", "default")
    assert any("trusted.prioomd.kill" in w and "process or cgroup" in w for w in r.warnings)


def test_root_is_never_killed_whole() -> None:
    r = resolve(PriorityTable(Config()), "/", {"trusted.prioomd.kill": b"cgroup"})
    assert r.kill.value == "process"
    assert any("never killed whole" in w for w in r.warnings)


def test_kill_rule_conflict_is_reported() -> None:
    with pytest.raises(ConfigError, match="kill"):
        table('path = "/a"\nkill = "cgroup"', 'path = "/a"\nkill = "process"')


def test_explain_lists_kill_sources() -> None:
    t = table('path = "/a"\nkill = "cgroup"')
    lines = t.explain("/a", {}, ROOT_UID, ROOT_UID)
    assert any(line.startswith('kill = "cgroup" from config') for line in lines)


def test_validate_kill_xattr_value() -> None:
    assert validate_xattr_value("trusted.prioomd.kill", " cgroup\n") == b"cgroup"
    assert validate_xattr_value("user.prioomd.kill", "process") == b"process"
    with pytest.raises(ValueError, match="kill granularity"):
        validate_xattr_value("trusted.prioomd.kill", "group")
