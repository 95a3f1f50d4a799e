"""options.py: the declarative schema a config section is written in."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from prioomd.options import Check, at_least, check_table, keys_of, option, show_value


@dataclass(frozen=True)
class DemoConfig:
    """[demo]: what a future section ([detect], [kill], ...) looks like."""

    threshold_pct: float = option(10.0, "PSI some avg10 threshold, percent.",
                                  Check(lambda v: 0 < v <= 100, "in (0, 100]"))
    interval_ms: int = option(1000, "Poll interval.", at_least(10))
    unit_name: str | None = option(None, "Optional unit.")
    dry_run: bool = option(False, "Stop before the final syscall.")


def check(table: dict[str, object]) -> tuple[dict[str, object], list[str]]:
    problems: list[str] = []
    values = check_table(table, keys_of(DemoConfig, "demo"), "[demo]", "f.toml", problems)
    return values, problems


def test_keys_of_reads_types_defaults_and_docs() -> None:
    keys = {k.name: k for k in keys_of(DemoConfig, "demo")}
    assert list(keys) == ["threshold_pct", "interval_ms", "unit_name", "dry_run"]
    assert keys["threshold_pct"].kind is float and keys["threshold_pct"].default == 10.0
    assert keys["threshold_pct"].type_phrase() == "a number in (0, 100]"
    assert keys["unit_name"].kind is str and keys["unit_name"].optional
    assert not keys["dry_run"].optional
    assert keys["interval_ms"].doc == "Poll interval."


def test_check_table_accepts_and_converts() -> None:
    values, problems = check({"threshold_pct": 5, "interval_ms": 50, "unit_name": "x",
                              "dry_run": True})
    assert problems == []
    assert values == {"threshold_pct": 5.0, "interval_ms": 50, "unit_name": "x",
                      "dry_run": True}
    assert type(values["threshold_pct"]) is float
    assert DemoConfig(**values).threshold_pct == 5.0  # type: ignore[arg-type]


def test_check_table_messages() -> None:
    values, problems = check({"threshold_pct": True, "interval_ms": 5, "dry_run": "no",
                              "intervall_ms": 3})
    assert values == {}
    assert problems == [
        "f.toml: [demo] threshold_pct = true (a boolean): must be a number in (0, 100]",
        "f.toml: [demo] interval_ms = 5: must be an integer >= 10",
        'f.toml: [demo] dry_run = "no" (a string): must be a boolean (true or false)',
        "f.toml: [demo] intervall_ms = 3: unknown key; did you mean interval_ms? "
        "(known keys: threshold_pct, interval_ms, unit_name, dry_run)",
    ]


def test_unsupported_option_type_is_a_programming_error() -> None:
    @dataclass(frozen=True)
    class Bad:
        names: list[str] = option(None, "no lists yet")

    with pytest.raises(TypeError, match="unsupported option type"):
        keys_of(Bad, "bad")


def test_show_value() -> None:
    assert show_value(True) == "true"
    assert show_value("a\"b") == '"a\\"b"'
    assert show_value(5.0) == "5.0"
    assert show_value({"a": 1}) == "{...}"
    assert show_value([1]) == "[...]"
    assert len(show_value("x" * 500)) < 90


def test_union_of_two_types_is_unsupported() -> None:
    @dataclass(frozen=True)
    class Bad:
        x: int | str = option(0, "ambiguous")

    with pytest.raises(TypeError, match="unsupported option type"):
        keys_of(Bad, "bad")
