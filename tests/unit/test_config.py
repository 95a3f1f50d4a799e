"""config.py: TOML -> validated Config; every error names file, key and value."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from prioomd import config
from prioomd.config import (
    DEFAULT_CONFIG_PATH,
    SECTIONS,
    Config,
    Rule,
    defaults,
    load_config,
    parse_config,
    schema,
)
from prioomd.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "etc" / "prioomd.toml"
SRC = "/etc/prioomd/test.toml"


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, SRC)
    return str(info.value)


def rule(body: str) -> str:
    return f"[[cgroup]]\n{body}\n"


# --- the shipped file ---------------------------------------------------------------


def test_shipped_file_loads() -> None:
    cfg = load_config(SHIPPED)
    assert cfg.source == str(SHIPPED)
    assert cfg.root.use_priority_oom is True
    assert cfg.daemon == config.DaemonConfig()
    assert cfg.hints == config.HintsConfig()
    assert {r.path for r in cfg.rules} >= {"/system.slice/sshd.service"}


def test_shipped_file_commented_examples_are_valid() -> None:
    """Uncommenting every example of the shipped file gives a valid config too."""
    text = SHIPPED.read_text()
    uncommented = re.sub(r"(?m)^#(?=\[\[cgroup\]\]|[a-z_]+ = )", "", text)
    assert uncommented.count("[[cgroup]]") > text.count("\n[[cgroup]]")
    cfg = parse_config(uncommented, "shipped-uncommented")
    assert cfg.daemon.cgroup_root == "/sys/fs/cgroup"
    assert len(cfg.rules) > 5


def test_shipped_file_documents_every_key() -> None:
    text = SHIPPED.read_text()
    for key in schema():
        assert key.name in text, key


# --- defaults and the schema ---------------------------------------------------------


def test_defaults() -> None:
    cfg = Config()
    assert cfg.source == config.BUILTIN_SOURCE
    assert cfg.daemon.cgroup_root is None
    assert cfg.daemon.kernel_compat is False
    assert cfg.daemon.max_candidates == 5
    assert cfg.root.use_priority_oom is False  # the kernel's default
    assert (cfg.hints.enabled, cfg.hints.oomd_avoid, cfg.hints.oomd_omit,
            cfg.hints.oomd_prefer) == (True, 10, 12, 0)
    assert cfg.rules == ()
    assert parse_config("", SRC) == Config(source=SRC)


def test_defaults_programmatic() -> None:
    got = defaults()
    assert {k: got[k] for k in ("daemon", "root", "hints")} == {
        "daemon": {"cgroup_root": None, "kernel_compat": False, "max_candidates": 5,
                   "max_watches": None},
        "root": {"use_priority_oom": False},
        "hints": {"enabled": True, "oomd_avoid": 10, "oomd_omit": 12, "oomd_prefer": 0},
    }
    assert set(got) == {"daemon", "root", "hints", "detect", "kill", "guard", "audit",
                        "metrics"}
    assert got["detect"]["mem_available_floor_pct"] == 5.0
    assert got["kill"]["sigterm_grace_s"] == 0.0 and got["guard"]["enabled"] is True


def test_schema_is_documented_and_typed() -> None:
    keys = schema()
    assert all(k.doc for k in keys)
    by_name = {(k.section, k.name): k for k in keys}
    assert by_name["daemon", "max_candidates"].type_phrase() == "an integer >= 1"
    assert by_name["daemon", "cgroup_root"].optional
    assert by_name["[cgroup]", "priority"].type_phrase() == "an integer 0..12"
    assert {k.name for k in keys if k.section == "[cgroup]"} == {
        "path", "priority", "use_priority_oom", "kill"}


def test_every_section_is_a_config_field() -> None:
    """The three steps of adding a section stay in sync."""
    config_fields = {f.name: f for f in dataclasses.fields(Config)}
    for name, cls in SECTIONS.items():
        assert config_fields[name].default_factory is cls  # type: ignore[comparison-overlap]
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_config_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.source = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.daemon.max_candidates = 3  # type: ignore[misc]


def test_full_valid_config() -> None:
    cfg = parse_config(
        """
        [daemon]
        cgroup_root = "/sys/fs/cgroup/unified"
        kernel_compat = true
        max_candidates = 1
        [root]
        use_priority_oom = true
        [hints]
        enabled = false
        oomd_avoid = 7
        oomd_omit = 11
        oomd_prefer = 1
        [[cgroup]]
        path = "/a"
        priority = 0
        [[cgroup]]
        path = "/b/*"
        use_priority_oom = false
        [[cgroup]]
        path = "/c/**"
        priority = 12
        use_priority_oom = true
        """,
        SRC,
    )
    assert cfg.daemon == config.DaemonConfig("/sys/fs/cgroup/unified", True, 1)
    assert cfg.root.use_priority_oom is True
    assert cfg.hints == config.HintsConfig(False, 7, 11, 1)
    assert [(r.number, r.path, r.priority, r.use_priority_oom) for r in cfg.rules] == [
        (1, "/a", 0, None), (2, "/b/*", None, False), (3, "/c/**", 12, True)]


# --- error messages: file, key, value, what is allowed -------------------------------


@pytest.mark.parametrize(
    ("value", "shown", "allowed"),
    [
        ("13", "13", "must be an integer 0..12"),
        ("-1", "-1", "must be an integer 0..12"),
        ('"abc"', '"abc" (a string)', "must be an integer 0..12"),
        ('"5"', '"5" (a string)', "must be an integer 0..12"),
        ("5.0", "5.0 (a float)", "must be an integer 0..12"),
        ("true", "true (a boolean)", "must be an integer 0..12"),
        ("[5]", "[...] (an array)", "must be an integer 0..12"),
    ],
)
def test_rule_priority_errors(value: str, shown: str, allowed: str) -> None:
    msg = error_of(rule(f'path = "/a/*"\npriority = {value}'))
    assert msg == f'{SRC}: [[cgroup]] #1 (path "/a/*") priority = {shown}: {allowed}'


def test_rule_number_counts_from_one_in_file_order() -> None:
    msg = error_of(rule('path = "/a"\npriority = 1') + rule('path = "/b"\npriority = 1')
                   + rule('path = "/c/*"\npriority = 99'))
    assert msg == f'{SRC}: [[cgroup]] #3 (path "/c/*") priority = 99: must be an integer 0..12'


@pytest.mark.parametrize("value", ["1", '"yes"', '"true"', "0"])
def test_bools_must_be_toml_booleans(value: str) -> None:
    msg = error_of(f"[root]\nuse_priority_oom = {value}")
    assert msg.startswith(f"{SRC}: [root] use_priority_oom = {value} (a")
    assert msg.endswith("must be a boolean (true or false)")
    msg = error_of(rule(f'path = "/a"\nuse_priority_oom = {value}'))
    assert msg.startswith(f'{SRC}: [[cgroup]] #1 (path "/a") use_priority_oom = {value}')
    assert "must be a boolean (true or false)" in msg


def test_daemon_key_errors() -> None:
    assert error_of("[daemon]\nmax_candidates = 0") == (
        f"{SRC}: [daemon] max_candidates = 0: must be an integer >= 1")
    assert error_of('[daemon]\nmax_candidates = "5"') == (
        f'{SRC}: [daemon] max_candidates = "5" (a string): must be an integer >= 1')
    assert error_of('[daemon]\ncgroup_root = "sys/fs/cgroup"') == (
        f'{SRC}: [daemon] cgroup_root = "sys/fs/cgroup": must be a string starting with "/", '
        'without NUL characters')
    assert error_of("[daemon]\ncgroup_root = 1") == (
        f'{SRC}: [daemon] cgroup_root = 1 (an integer): must be a string starting with "/", '
        'without NUL characters')


def test_hint_priorities_are_checked() -> None:
    assert error_of("[hints]\noomd_omit = 13") == (
        f"{SRC}: [hints] oomd_omit = 13: must be an integer 0..12")


def test_unknown_key_with_suggestion() -> None:
    assert error_of("[daemon]\nmax_candidate = 3") == (
        f"{SRC}: [daemon] max_candidate = 3: unknown key; did you mean max_candidates? "
        "(known keys: cgroup_root, kernel_compat, max_candidates, max_watches)")
    msg = error_of(rule('path = "/a"\nprioirty = 3'))
    assert msg == (f'{SRC}: [[cgroup]] #1 (path "/a") prioirty = 3: unknown key; did you mean '
                   "priority? (known keys: path, priority, use_priority_oom, kill)")
    msg = error_of("[hints]\nzzz = 1")
    assert msg.startswith(f"{SRC}: [hints] zzz = 1: unknown key (known keys:")


def test_unknown_section_and_top_level_keys() -> None:
    assert error_of("[deamon]\nx = 1").startswith(
        f"{SRC}: [deamon]: unknown section; did you mean [daemon]?")
    assert error_of("max_candidates = 3") == (
        f"{SRC}: max_candidates = 3: unknown key at the top level; it belongs in [daemon]")
    assert error_of("[cgroups]\npath = '/a'").startswith(
        f"{SRC}: [cgroups]: unknown section; did you mean [cgroup]?")


def test_section_of_wrong_shape() -> None:
    assert error_of("root = true") == f"{SRC}: root = true: must be a table, [root]"
    msg = error_of('[cgroup]\npath = "/a"\npriority = 1')
    assert msg.startswith(f"{SRC}: [cgroup]: cgroup rules are an array of tables")
    assert "[[cgroup]]" in msg
    assert "array of tables" in error_of("cgroup = [1, 2]")


def test_rule_missing_path() -> None:
    msg = error_of(rule("priority = 3"))
    assert msg.startswith(f"{SRC}: [[cgroup]] #1: missing required key path")


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("system.slice/*", 'must be a string starting with "/"'),
        ("", 'must be a string starting with "/"'),
        ("/a/", 'must not end with "/"'),
        ("/a//b", "empty path component"),
        ("/a/x**", '"**" must be a whole path component'),
        ("/a/[bc", 'unclosed "["'),
        ("/a/[z-a]", "reversed range"),
    ],
)
def test_rule_bad_path(path: str, why: str) -> None:
    msg = error_of(rule(f'path = "{path}"\npriority = 1'))
    assert msg.startswith(f'{SRC}: [[cgroup]] #1 (path "{path}") path = "{path}": ')
    assert why in msg


def test_rule_path_wrong_type() -> None:
    msg = error_of(rule("path = 5\npriority = 1"))
    assert msg == (f'{SRC}: [[cgroup]] #1 path = 5 (an integer): must be a string starting '
                   'with "/", without NUL characters')


def test_rule_on_root_points_to_root_section() -> None:
    msg = error_of(rule('path = "/"\npriority = 5'))
    assert msg.startswith(f'{SRC}: [[cgroup]] #1 (path "/") priority = 5: the root cgroup has '
                          "no priority")
    assert "spec §1.4" in msg and "[root]" in msg
    msg = error_of(rule('path = "/"\nuse_priority_oom = true'))
    assert msg.startswith(f'{SRC}: [[cgroup]] #1 (path "/") use_priority_oom = true: ')
    assert "[root]" in msg


def test_rule_setting_nothing() -> None:
    msg = error_of(rule('path = "/a"'))
    assert msg.startswith(f'{SRC}: [[cgroup]] #1 (path "/a"): sets nothing')


def test_bad_toml_has_line_and_column() -> None:
    msg = error_of("[daemon]\nmax_candidates = = 3\n")
    assert msg.startswith(f"{SRC}: invalid TOML: ")
    assert "line 2" in msg and "column" in msg


def test_all_problems_are_reported_together() -> None:
    msg = error_of("[daemon]\nmax_candidates = 0\nkernel_compat = 1\n"
                   + rule('path = "/a"\npriority = 13'))
    lines = msg.splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{SRC}: ") for line in lines)


# --- equally specific rules that disagree: load-time part ------------------------------


def test_identical_patterns_disagreeing_is_an_error() -> None:
    msg = error_of(rule('path = "/a/*"\npriority = 3') + rule('path = "/a/*"\npriority = 4'))
    assert msg.startswith(f'{SRC}: [[cgroup]] #1 (path "/a/*") and [[cgroup]] #2 (path "/a/*") '
                          "are equally specific")
    assert "disagree on priority (3 vs 4)" in msg
    msg = error_of(rule('path = "/a"\nuse_priority_oom = true')
                   + rule('path = "/a"\nuse_priority_oom = false'))
    assert "disagree on use_priority_oom (true vs false)" in msg


def test_identical_class_patterns_disagreeing_is_an_error() -> None:
    # A class does not match its own text, so identity is checked explicitly.
    msg = error_of(rule('path = "/a/[bc]"\npriority = 3') + rule('path = "/a/[bc]"\npriority = 4'))
    assert "equally specific" in msg


def test_equal_specificity_literal_match_is_an_error() -> None:
    msg = error_of(rule('path = "/a/*"\npriority = 3') + rule('path = "/a/?"\npriority = 4'))
    assert 'both match "/a/*"' in msg or 'both match "/a/?"' in msg
    msg = error_of(rule('path = "/a/*"\npriority = 3') + rule('path = "/a/**"\npriority = 4'))
    assert "equally specific" in msg


def test_agreeing_or_independent_rules_are_fine() -> None:
    cfg = parse_config(
        rule('path = "/a/*"\npriority = 3') + rule('path = "/a/*"\npriority = 3')
        + rule('path = "/a/*"\nuse_priority_oom = true')  # another key: no disagreement
        + rule('path = "/a/b*"\npriority = 5')  # more specific
        + rule('path = "/a/c*"\npriority = 6'),  # equally specific, disjoint
        SRC)
    assert len(cfg.rules) == 5


# --- Rule -----------------------------------------------------------------------------


def test_rule_specificity() -> None:
    exact = Rule.make(1, "/system.slice/a.service", 1)
    long_glob = Rule.make(2, "/system.slice/a*", 1)
    short_glob = Rule.make(3, "/system.slice/*", 1)
    anything = Rule.make(4, "/**", 1)
    assert exact.exact and not long_glob.exact
    assert exact.specificity > long_glob.specificity > short_glob.specificity
    assert short_glob.specificity > anything.specificity
    assert Rule.make(5, "/x", 1).specificity > long_glob.specificity  # exact beats any glob
    assert exact.label == '[[cgroup]] #1 (path "/system.slice/a.service")'


# --- files ----------------------------------------------------------------------------


def test_load_missing_explicit_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=f"^{re.escape(str(missing))}: .*not found"):
        load_config(missing)


def test_load_missing_default_file_gives_defaults(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATH", str(tmp_path / "absent.toml"))
    assert load_config() == Config()
    assert DEFAULT_CONFIG_PATH == "/etc/prioomd/prioomd.toml"


def test_load_unreadable_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not a regular file \(a directory\)"):
        load_config(tmp_path)
    locked = tmp_path / "locked.toml"
    locked.write_text("")
    locked.chmod(0)
    if os.geteuid() != 0:  # root reads it anyway
        with pytest.raises(ConfigError, match="cannot read"):
            load_config(locked)
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"[daemon]\n# \xff\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(bad))}: not UTF-8"):
        load_config(bad)


def test_load_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text("[root]\nuse_priority_oom = 1\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(f))}: \\[root\\] use_priority_oom"):
        load_config(f)
    f.write_text("[root]\nuse_priority_oom = true\n")
    assert load_config(str(f)).source == str(f)


def test_shipped_file_states_the_code_defaults_of_the_daemon_sections() -> None:
    """The shipped file writes out the defaults of these sections: they must not drift."""
    shipped = load_config(SHIPPED)
    for name in ("detect", "kill", "guard", "audit", "metrics"):
        assert getattr(shipped, name) == getattr(Config(), name), name


# --- one validation: what run and reload would refuse, check-config refuses (issue 7 #4)


@pytest.mark.parametrize(("body", "key", "value", "other"), [
    ("mem_available_floor_pct = 20.0", "mem_available_floor_pct", "20.0", "mem_available_pct"),
    ("poll_min_s = 5.0", "poll_min_s", "5.0", "poll_max_s"),
    ("headroom_min_mib = 2000", "headroom_min_mib", "2000", "headroom_max_mib"),
    ("trigger_stall_ms = 3000", "trigger_stall_ms", "3000", "trigger_window_ms"),
])
def test_relations_between_keys_name_both(body: str, key: str, value: str, other: str) -> None:
    err = error_of(f"[detect]\n{body}\n")
    assert f"{SRC}: [detect] {key} = {value}: must be <= {other} (" in err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+nan"])
@pytest.mark.parametrize(("section", "key"), [
    ("detect", "poll_max_s"), ("detect", "post_action_delay_s"), ("detect", "psi_some_avg10_pct"),
    ("kill", "confirm_timeout_s"), ("kill", "sigterm_grace_s"), ("kill", "dying_timeout_s"),
])
def test_nan_and_infinities_are_refused(section: str, key: str, value: str) -> None:
    err = error_of(f"[{section}]\n{key} = {value}\n")
    assert f"[{section}] {key} = " in err and "must be a finite number" in err


@pytest.mark.parametrize("body", ["[detect]\npoll_max_s = 61.0", "[detect]\npoll_min_s = 0.001",
                                  "[kill]\nconfirm_timeout_s = 1e300",
                                  "[kill]\nsigterm_grace_s = 3600.0",
                                  "[detect]\npost_action_delay_s = 1e12",
                                  "[kill]\ndying_timeout_s = 1e300"])
def test_waits_are_bounded(body: str) -> None:
    key, value = body.split("\n")[1].split(" = ")
    assert f"{key} = {float(value)}: must be a number" in error_of(body + "\n")


def test_deeply_nested_arrays_are_a_config_error_not_a_crash() -> None:
    err = error_of("x = " + "[" * 3000 + "]" * 3000 + "\n")
    assert err.startswith(f"{SRC}: invalid TOML:") and "nested too deep" in err


def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "prioomd.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"not a regular file \(a FIFO\)"):
        load_config(fifo)  # would block in open() or read() for a writer


@pytest.mark.parametrize(("path", "kind"), [("/dev/null", "a character device"),
                                            (".", "a directory")])
def test_non_regular_files_are_refused(path: str, kind: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"not a regular file ({kind})")):
        load_config(path)


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    target = tmp_path / "target.toml"
    target.write_text("[root]\nuse_priority_oom = true\n")
    link = tmp_path / "prioomd.toml"
    link.symlink_to(target)
    assert load_config(link).root.use_priority_oom is True


@pytest.mark.parametrize("body", ['[daemon]\ncgroup_root = "/sys/fs/cgroup\\u0000x"',
                                  '[audit]\nfile = "/var/log/a\\u0000b"'])
def test_paths_with_nul_are_refused(body: str) -> None:
    """os functions raise ValueError on a NUL byte: run would die of the cgroup root."""
    assert "without NUL characters" in error_of(body + "\n")


def test_an_integer_too_long_to_convert_is_a_config_error():
    """tomllib raises a plain ValueError past Python's int conversion limit (found by
    test_fuzz_config): it is a ConfigError like any other bad TOML, never a crash."""
    with pytest.raises(ConfigError, match="invalid TOML"):
        parse_config("[detect]\npoll_max_s = " + "9" * 5000 + "\n", "p.toml")


def test_rule_kill_granularity() -> None:
    cfg = parse_config('[[cgroup]]\npath = "/a/*"\nkill = "cgroup"\n', SRC)
    assert cfg.rules[0].kill == "cgroup" and cfg.rules[0].priority is None


def test_rule_kill_must_be_process_or_cgroup() -> None:
    with pytest.raises(ConfigError, match='kill = "group": must be a string one of'):
        parse_config('[[cgroup]]\npath = "/a"\nkill = "group"\n', SRC)


@pytest.mark.parametrize("value", ["0", "-5", '"many"', "1.5"])
def test_max_watches_is_a_positive_integer(value):
    with pytest.raises(ConfigError, match=r"\[daemon\] max_watches"):
        config.parse_config(f"[daemon]\nmax_watches = {value}\n", "t.toml")
    assert config.parse_config("[daemon]\nmax_watches = 100\n", "t.toml").daemon.max_watches == 100
