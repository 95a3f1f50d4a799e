"""Declarative typed keys of config sections: ``option()``, their checks and docs.

A section is a frozen dataclass whose fields are declared with
``option(default, doc, check)``; the field's annotation (bool, int, float, str,
optionally ``| None``) is its TOML type. ``keys_of`` turns such a class into
``KeyInfo`` rows (for validation, ``--help`` and the docs) and ``check_table``
validates one TOML table against them. Messages name the file, the key and the
value, and say what is allowed.
"""

from __future__ import annotations

import difflib
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Check:
    """A constraint beyond the type: ``ok(value)``, and what is allowed, for messages."""

    ok: Callable[[Any], bool]
    allowed: str  # completes "must be an integer ...": "0..12", ">= 1"


def at_least(minimum: int) -> Check:
    return Check(lambda v: v >= minimum, f">= {minimum}")


def option(default: Any, doc: str, check: Check | None = None) -> Any:
    """Declare one key of a section: its default, its documentation, its constraint."""
    return field(default=default, metadata={"doc": doc, "check": check})


@dataclass(frozen=True)
class KeyInfo:
    """One documented key, as ``schema()`` lists it."""

    section: str  # "daemon", or "[cgroup]" for the keys of a rule
    name: str
    kind: type  # bool, int, float or str
    optional: bool  # True: the key may be absent and then means None
    default: Any
    doc: str
    check: Check | None

    def type_phrase(self) -> str:
        phrase = _KIND_PHRASE[self.kind]
        return f"{phrase} {self.check.allowed}" if self.check else phrase


_KIND_PHRASE: dict[type, str] = {
    bool: "a boolean (true or false)",
    int: "an integer",
    float: "a number",
    str: "a string",
}


def keys_of(cls: type, section: str) -> tuple[KeyInfo, ...]:
    """The KeyInfo of every ``option`` field of a section dataclass."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        hint = hints[f.name]
        kind, optional = hint, False
        if typing.get_origin(hint) in (types.UnionType, typing.Union):  # X | None
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            kind, optional = (args[0] if len(args) == 1 else None), True
        if kind not in _KIND_PHRASE:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported option type {hint!r}")
        default = f.default if f.default is not MISSING else None
        out.append(
            KeyInfo(section, f.name, kind, optional, default,
                    f.metadata.get("doc", ""), f.metadata.get("check"))
        )
    return tuple(out)


def check_table(table: Mapping[str, Any], keys: tuple[KeyInfo, ...], where: str,
                source: str, problems: list[str]) -> dict[str, Any]:
    """Type-check the keys of one table; return the valid ones; append problems.

    ``where`` names the table in messages ("[daemon]", '[[cgroup]] #3 (path "/a")').
    """
    known = {k.name: k for k in keys}
    values = {}
    for name, value in table.items():
        info = known.get(name)
        if info is None:
            problems.append(f"{source}: {where} {name} = {show_value(value)}: "
                            f"{unknown_key_hint(name, list(known))}")
            continue
        problem = check_value(info, value)
        if problem:
            problems.append(f"{source}: {where} {name} = {problem}")
        else:
            values[name] = float(value) if info.kind is float else value
    return values


def check_value(info: KeyInfo, value: Any) -> str | None:
    """None when ``value`` is valid for ``info``, else '<value>: must be ...'."""
    if info.kind is float:
        type_ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif info.kind is int:
        type_ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        type_ok = isinstance(value, info.kind)
    if not type_ok:
        return f"{show_value(value)} ({toml_type(value)}): must be {info.type_phrase()}"
    if info.kind is float and not math.isfinite(value):  # TOML has nan and inf
        return f"{show_value(value)}: must be a finite number" + (
            f" {info.check.allowed}" if info.check else "")
    if info.check and not info.check.ok(value):
        return f"{show_value(value)}: must be {info.type_phrase()}"
    return None


def unknown_key_hint(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown key{hint} (known keys: {', '.join(known)})"


def show_value(value: Any) -> str:
    """A value as it would be written in TOML, shortened (for messages)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = json.dumps(value, ensure_ascii=False)
        return shown if len(shown) <= 80 else shown[:76] + '..."'
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, list):
        return "[...]"
    return str(value)


def toml_type(value: Any) -> str:
    for kind, word in ((bool, "a boolean"), (int, "an integer"), (float, "a float"),
                       (str, "a string"), (dict, "a table"), (list, "an array")):
        if isinstance(value, kind):
            return word
    return "a date/time"
