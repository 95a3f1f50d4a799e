"""Coverage-guided fuzzing of the C walk (prioomd._select) with atheris/libFuzzer.

Not collected by pytest (tests/fuzz is outside testpaths). Run it with
``bash tests/fuzz/run-atheris.sh [SECONDS]``, which builds an instrumented copy of
_select.c (clang, -fsanitize=fuzzer-no-link,address) outside the source tree and
runs this harness under AddressSanitizer.

Each input becomes one call: a tree and tasks decoded from the fuzzer's bytes,
mostly valid (so the walk itself is covered), with values, lengths and indices
pushed out of range where the bytes say so. The instrumented module must
either raise TypeError/ValueError/OverflowError or return the same result as the
pure-Python twin; when the twin raises, the C walk must raise the same type.
Any crash, ASan report or mismatch stops the run with the input saved.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

import atheris

with atheris.instrument_imports():
    from prioomd import _select_py

ALLOWED = (TypeError, ValueError, OverflowError)
INT64 = 2**63
EXTREMES = [0, 1, -1, 12, 13, INT64 - 1, INT64, -INT64, -INT64 - 1, 2**64, -2]


def _load_instrumented() -> object:
    path = os.environ["PRIOOMD_FUZZ_SELECT_SO"]
    loader = importlib.machinery.ExtensionFileLoader("prioomd._select", path)
    spec = importlib.util.spec_from_file_location("prioomd._select", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


C_WALK = _load_instrumented()


def _value(fdp: atheris.FuzzedDataProvider, lo: int, hi: int) -> object:
    """Mostly in [lo, hi]; sometimes an extreme int or something that is not an int."""
    pick = fdp.ConsumeIntInRange(0, 31)
    if pick < 28:
        return fdp.ConsumeIntInRange(lo, hi)
    if pick < 31:
        return EXTREMES[fdp.ConsumeIntInRange(0, len(EXTREMES) - 1)]
    return [True, 1.0, "1", None][fdp.ConsumeIntInRange(0, 3)]


def decode(data: bytes) -> tuple[list[list[object]], dict[str, object]]:
    fdp = atheris.FuzzedDataProvider(data)
    n = fdp.ConsumeIntInRange(0, 40)
    t = fdp.ConsumeIntInRange(0, 60)
    parent = [-1] + [_value(fdp, 0, i - 1) for i in range(1, n)]
    if parent and fdp.ConsumeIntInRange(0, 15) == 0:
        parent[0] = _value(fdp, -2, 2)
    arrays: list[list[object]] = [
        parent,
        [_value(fdp, 0, 12) for _ in range(n)],
        [_value(fdp, 0, 2**40) for _ in range(n)],
        [_value(fdp, 0, max(n - 1, 0)) for _ in range(t)],
        [_value(fdp, 0, 2) for _ in range(t)],
        [_value(fdp, -(2**20), 2**20) for _ in range(t)],
        [_value(fdp, 0, 100) for _ in range(t)],
    ]
    for _ in range(fdp.ConsumeIntInRange(0, 1)):  # a wrong length, now and then
        a = fdp.ConsumeIntInRange(0, 6)
        if arrays[a] and fdp.ConsumeBool():
            arrays[a].pop()
        else:
            arrays[a].append(0)
    kwargs: dict[str, object] = {"kernel_compat": fdp.ConsumeBool(),
                                 "max_candidates": _value(fdp, 1, 64)}
    return arrays, kwargs


def outcome(walk: object, args: list[list[object]], kwargs: dict[str, object]) -> object:
    try:
        return walk.select(*[list(a) for a in args], **kwargs)  # type: ignore[attr-defined]
    except ALLOWED as exc:
        return type(exc)


def test_one_input(data: bytes) -> None:
    args, kwargs = decode(data)
    c = outcome(C_WALK, args, kwargs)
    py = outcome(_select_py, args, kwargs)
    if c != py:
        raise AssertionError(f"C {c!r} != Python {py!r} on {args!r} {kwargs!r}")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
