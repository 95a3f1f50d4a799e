"""Fuzzing the TOML config: any text, mutations of the shipped file, and documents
built from the schema with values of every type. A Config or a ConfigError (the
message naming the file), never another exception: a reload must not kill the
daemon whatever was saved into the file."""

from __future__ import annotations

import json
import math
import os
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from prioomd import config
from prioomd.errors import ConfigError
from tests.fuzzing import WORDS, fuzz

SOURCE = "fuzz.toml"
SHIPPED = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "prioomd.toml")
with open(SHIPPED, encoding="utf-8") as _f:
    SHIPPED_LINES = _f.read().split("\n")


def parse(text: str) -> config.Config | None:
    try:
        cfg = config.parse_config(text, SOURCE)
    except ConfigError as exc:
        assert str(exc).startswith(SOURCE), str(exc)
        return None
    assert isinstance(cfg, config.Config)
    return cfg


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string (bar lone surrogates)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


SCALARS = st.one_of(st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=20),
                    st.sampled_from([0, 1, 12, 13, -1, 0.5, 100.0, 100.5, "", "/", "/a/**", "//",
                                     "/a/", "**", "/[", "/\\", "on", "max"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
SECTION_KEYS = {name: [k.name for k in config.schema() if k.section == name]
                for name in config.SECTIONS}
RULE_KEYS = ["path", "priority", "use_priority_oom"]


@st.composite
def documents(draw: st.DrawFn) -> str:
    """Sections and rules of the schema (plus unknown keys), values of any type."""
    out = []
    for section in draw(st.lists(st.sampled_from([*config.SECTIONS, "bogus"]), max_size=4,
                                 unique=True)):
        out.append(f"[{section}]")
        keys = SECTION_KEYS.get(section, []) + ["unknown_key"]
        for key in draw(st.lists(st.sampled_from(keys), max_size=6, unique=True)):
            out.append(f"{key} = {toml_value(draw(VALUES))}")
    for _ in range(draw(st.integers(0, 4))):
        out.append("[[cgroup]]")
        for key in draw(st.lists(st.sampled_from([*RULE_KEYS, "prio"]), max_size=4, unique=True)):
            out.append(f"{key} = {toml_value(draw(VALUES))}")
    return "\n".join(out) + "\n"


@fuzz
@given(st.text())
@example("a = " + "[" * 2000 + "]" * 2000)  # found: tomllib recursed into RecursionError
@example("a = " + "{b = " * 2000 + "1" + "}" * 2000)
def test_arbitrary_text(text: str) -> None:
    parse(text)


@fuzz
@given(documents())
def test_schema_documents_with_values_of_any_type(text: str) -> None:
    parse(text)


@fuzz
@given(st.lists(st.tuples(st.sampled_from(["delete", "duplicate", "replace", "insert"]),
                          st.integers(0, len(SHIPPED_LINES) - 1),
                          st.one_of(WORDS, SCALARS.map(toml_value))), max_size=4))
def test_mutations_of_the_shipped_file(edits: list[tuple[str, int, str]]) -> None:
    lines = list(SHIPPED_LINES)
    for op, at, word in edits:
        at %= max(len(lines), 1)
        if op == "delete" and lines:
            del lines[at]
        elif op == "duplicate" and lines:
            lines.insert(at, lines[at])
        elif op == "replace" and lines:
            key = lines[at].partition("=")[0]
            lines[at] = f"{key}= {word}" if "=" in lines[at] else word
        else:
            lines.insert(at, word)
    parse("\n".join(lines))


PATH_PARTS = st.from_regex(r"[A-Za-z0-9_.@-]{1,12}", fullmatch=True).filter(
    lambda p: p not in (".", ".."))


@fuzz
@given(st.lists(st.tuples(st.lists(PATH_PARTS, min_size=1, max_size=4), st.integers(0, 12),
                          st.booleans()), max_size=6, unique_by=lambda r: tuple(r[0])))
def test_rules_round_trip(rules: list[tuple[list[str], int, bool]]) -> None:
    """Valid literal rules come back as written, in order, numbered from 1."""
    text = "".join(f"[[cgroup]]\npath = {json.dumps('/' + '/'.join(parts))}\n"
                   f"priority = {prio}\nuse_priority_oom = {toml_value(upo)}\n"
                   for parts, prio, upo in rules)
    cfg = config.parse_config(text, SOURCE)
    assert [(r.number, r.path, r.priority, r.use_priority_oom) for r in cfg.rules] == \
        [(i, "/" + "/".join(parts), prio, upo) for i, (parts, prio, upo) in
         enumerate(rules, start=1)]
