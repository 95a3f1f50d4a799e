"""Fuzzing the C walk's argument checking: malformed arrays, wrong lengths,
out-of-range and negative indices, huge values, objects that are not ints,
sequences that lie about their length or change other arguments while being
read, hostile ``kernel_compat`` and ``max_candidates``. Every call must return a
well-formed result or raise (TypeError, ValueError, OverflowError, RuntimeError,
MemoryError, or the exception a hostile object raised itself), never crash.

A crash would kill pytest, so the calls run in a child process
(``python -m tests.unit.test_fuzz_select FILE``) that writes each case to FILE
before making the call: when the child dies of a signal, the test fails with
the last case. ``PRIOOMD_FUZZ_EXAMPLES`` sets the number of cases, as for the
other fuzz tests. The differential test checks the same exceptions as the
Python twin on near-valid input; this one is about input no caller should send.
"""

from __future__ import annotations

import array
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import fuzz

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALLOWED = (TypeError, ValueError, OverflowError, RuntimeError, MemoryError)


class Boom(Exception):
    """What a hostile object raises from its own hooks: propagating it is fine."""


class Shared:
    """The lists of one call, so that hostile hooks can change them mid-call."""

    lists: list[list[Any]] = []

    @classmethod
    def mutate(cls) -> None:
        for lst in cls.lists:
            lst.clear()
            lst.extend([object()] * 3)


class MutatingInt(int):
    """An int whose str() (used in the C error message) changes the arguments."""

    def __str__(self) -> str:
        Shared.mutate()
        return "mutated"

    __repr__ = __str__


class IndexOnly:
    """Not an int, but has __index__: the contract wants real ints."""

    def __index__(self) -> int:
        Shared.mutate()
        return 0


class LyingSeq:
    """A sequence whose __len__ and __getitem__ disagree, or raise, or mutate."""

    def __init__(self, items: list[Any], length: int, mode: str) -> None:
        self.items, self.length, self.mode = items, length, mode

    def __len__(self) -> int:
        if self.mode == "len_raises":
            raise Boom("len")
        return self.length

    def __getitem__(self, i: int) -> Any:
        if self.mode == "getitem_raises" and i >= 1:
            raise Boom("getitem")
        if self.mode == "mutates":
            Shared.mutate()
        return self.items[i]  # IndexError ends the iteration, wherever __len__ says

    def __iter__(self) -> Iterator[Any]:
        if self.mode == "iter_raises":
            raise Boom("iter")
        return iter(self.items[: self.length] if self.mode != "mutates" else self.items)


class BadBool:
    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __bool__(self) -> bool:
        Shared.mutate()
        if self.mode == "raises":
            raise Boom("bool")
        return True


INT64 = 2**63
VALUES = st.one_of(
    st.integers(-3, 15),
    st.sampled_from([INT64 - 1, INT64, -INT64, -INT64 - 1, 2**64, 2**200, -(2**200), True, False,
                     0.0, 1.5, float("nan"), "1", b"1", None, [], (), object()]),
    st.integers(-3, 15).map(MutatingInt),
    st.just(0).map(lambda _: IndexOnly()),
)


@st.composite
def containers(draw: st.DrawFn, length: int) -> Any:
    n = max(0, length + draw(st.sampled_from([0, 0, 0, 0, -1, 1, 5])))
    items = draw(st.lists(VALUES, min_size=n, max_size=n))
    kind = draw(st.sampled_from(["list", "list", "list", "tuple", "range", "array", "bytes", "str",
                                 "memoryview", "lying", "gen", "dict", "set", "none", "int"]))
    if kind == "list":
        Shared.lists.append(items)
        return items
    if kind == "tuple":
        return tuple(items)
    if kind == "range":
        return range(draw(st.integers(-2, 2)), draw(st.integers(-2, 2)) + n)
    if kind == "array":
        return array.array("q", [draw(st.integers(-2, 12)) for _ in range(n)])
    if kind == "bytes":
        return bytes(draw(st.integers(0, 255)) for _ in range(n))
    if kind == "str":
        return "0" * n
    if kind == "memoryview":
        return memoryview(bytes(n))
    if kind == "lying":
        mode = draw(st.sampled_from(["len_raises", "getitem_raises", "iter_raises", "mutates",
                                     "short", "long"]))
        length = {"short": max(0, n - 2), "long": n + draw(st.integers(1, 10**6))}.get(mode, n)
        return LyingSeq(items, length, mode)
    if kind == "gen":
        return (x for x in items)
    if kind == "dict":
        return dict(enumerate(items))
    if kind == "set":
        return {x for x in items if isinstance(x, int)}
    return None if kind == "none" else n


@st.composite
def valid(draw: st.DrawFn) -> list[list[int]]:
    """A well-formed call: the starting point that the corruptions break."""
    n, t = draw(st.integers(1, 8)), draw(st.integers(0, 10))
    parent = [-1] + [draw(st.integers(0, i - 1)) for i in range(1, n)]
    priority = [draw(st.integers(0, 12)) for _ in range(n)]
    usage = [draw(st.sampled_from([0, 1, 2**40, INT64 - 1])) for _ in range(n)]
    task_node = [draw(st.integers(0, n - 1)) for _ in range(t)]
    task_state = [draw(st.sampled_from([0, 0, 0, 1, 2])) for _ in range(t)]
    badness = [draw(st.sampled_from([0, 5, -5, INT64 - 1, -INT64])) for _ in range(t)]
    start = [draw(st.sampled_from([0, 1, INT64 - 1, -INT64])) for _ in range(t)]
    return [parent, priority, usage, task_node, task_state, badness, start]


@st.composite
def calls(draw: st.DrawFn) -> tuple[list[Any], dict[str, Any]]:
    """A valid call with 0-3 corruptions, each of any kind."""
    args: list[Any] = draw(valid())
    Shared.lists = [a for a in args if isinstance(a, list)]
    kwargs: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 3))):
        what = draw(st.sampled_from(["value", "value", "value", "index", "length", "container",
                                     "alias", "kernel_compat", "max_candidates", "arity",
                                     "keyword"]))
        a = draw(st.integers(0, max(len(args) - 1, 0)))
        if not args:
            break
        if what in ("value", "index") and isinstance(args[a], list) and args[a]:
            i = draw(st.integers(0, len(args[a]) - 1))
            n = len(args[0]) if isinstance(args[0], list) else 0
            args[a][i] = draw(VALUES if what == "value" else
                              st.sampled_from([-1, -2, n, n + 1, i, i + 1, 13, 3, -INT64]))
        elif what == "length":
            n = len(args[a]) if isinstance(args[a], list) else 0
            args[a] = draw(containers(n))
        elif what == "container":
            args[a] = draw(containers(draw(st.integers(0, 8))))
        elif what == "alias":  # one list passed as two arguments
            args[a] = args[draw(st.integers(0, len(args) - 1))]
        elif what == "kernel_compat":
            kwargs["kernel_compat"] = draw(st.sampled_from(
                [True, 0, None, "x", [], BadBool("ok"), BadBool("raises")]))
        elif what == "max_candidates":
            kwargs["max_candidates"] = draw(st.one_of(
                st.integers(-(2**70), 2**70), st.sampled_from([True, 0, 1.0, "2", None]),
                st.integers(1, 5).map(MutatingInt)))
        elif what == "arity":
            cut = draw(st.integers(0, 6))
            args = args[:cut] if draw(st.booleans()) else [*args, False, 1, 2][: 7 + cut % 3 + 1]
        else:
            kwargs[draw(st.sampled_from(["parent", "bogus", "task_start"]))] = []
    return args, kwargs


def _check_result(result: Any, args: list[Any]) -> None:
    status, cands = result
    assert status in (0, 1, 2)
    for victim, task in cands:
        assert type(victim) is int and type(task) is int and victim >= 0 and task >= 0


def _fuzz_in_child(c_walk: ModuleType, case_file: str) -> None:
    with open(case_file, "w", encoding="utf-8") as out:

        @fuzz
        @given(calls())
        def call(case: tuple[list[Any], dict[str, Any]]) -> None:
            args, kwargs = case
            out.seek(0)
            out.truncate()
            out.write(f"args={args!r:.2000} kwargs={kwargs!r:.500}\n")
            out.flush()
            try:
                result = c_walk.select(*args, **kwargs)
            except (*ALLOWED, Boom):
                return
            _check_result(result, args)

        call()


def test_c_walk_never_crashes_on_hostile_arguments(c_walk: ModuleType, tmp_path: Any) -> None:
    case_file = str(tmp_path / "last-case.txt")
    r = subprocess.run([sys.executable, "-m", "tests.unit.test_fuzz_select", case_file],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    if r.returncode < 0:
        with open(case_file, encoding="utf-8") as f:
            last = f.read()
        raise AssertionError(f"the C walk died of {signal.Signals(-r.returncode).name} on: "
                             f"{last}\n{r.stderr[-3000:]}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


if __name__ == "__main__":
    import importlib

    _fuzz_in_child(importlib.import_module("prioomd._select"), sys.argv[1])
