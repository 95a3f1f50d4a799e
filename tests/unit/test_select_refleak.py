"""The C walk leaks neither references nor memory, on success and on errors.

Each scenario calls ``select`` 2000 times after a warm-up and compares, before
and after: the reference counts of the inputs and of chosen elements, the
number of live GC-tracked objects, pymalloc's allocated blocks, the memory
tracemalloc attributes to the calling line (where the C code's PyMem
allocations land) and, on a debug build, ``sys.gettotalrefcount()``. The last
test shows that the same measurement fails for a caller that leaks one
reference or one object per call.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

CALLS = 2000
WARMUP = 200
K, U, D = 0, 1, 2
BIG = 2**40 + 12345  # not a cached small int: its refcount is its own

# Headroom for interpreter noise (free lists, caches filled by the first calls);
# any per-call leak over CALLS calls exceeds it by far.
MAX_BLOCKS = 200
MAX_TRACED_BYTES = 16 * 1024
MAX_OBJECTS = 20
MAX_TOTAL_REFS = 50


@dataclass
class Growth:
    refcounts: list[int]
    objects: int
    blocks: int
    traced_bytes: int
    total_refs: int | None


def _measure(call: Callable[[], object], watched: list[object]) -> Growth:
    """Growth across CALLS calls of call(), after WARMUP calls."""
    for _ in range(WARMUP):
        call()
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        ref0 = [sys.getrefcount(o) for o in watched]
        gc.collect()
        obj0 = len(gc.get_objects())
        blk0 = sys.getallocatedblocks()
        tot0 = sys.gettotalrefcount() if hasattr(sys, "gettotalrefcount") else None
        mem0 = tracemalloc.get_traced_memory()[0]
        for _ in range(CALLS):
            call()
        mem1 = tracemalloc.get_traced_memory()[0]
        gc.collect()
        obj1 = len(gc.get_objects())
        blk1 = sys.getallocatedblocks()
        tot1 = sys.gettotalrefcount() if hasattr(sys, "gettotalrefcount") else None
        ref1 = [sys.getrefcount(o) for o in watched]
        growth = Growth(
            refcounts=[b - a for a, b in zip(ref0, ref1, strict=True)],
            objects=obj1 - obj0,
            blocks=blk1 - blk0,
            traced_bytes=mem1 - mem0,
            total_refs=None if tot0 is None or tot1 is None else tot1 - tot0,
        )
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return growth


def _assert_no_leak(growth: Growth) -> None:
    assert growth.refcounts == [0] * len(growth.refcounts), growth
    assert growth.objects <= MAX_OBJECTS, growth
    assert growth.blocks <= MAX_BLOCKS, growth
    assert growth.traced_bytes <= MAX_TRACED_BYTES, growth
    if growth.total_refs is not None:
        assert growth.total_refs <= MAX_TOTAL_REFS, growth


def _example() -> list[Any]:
    """§3.5's tree with -1000, DYING-free tasks, big ints in every value array."""
    return [
        [-1, 0, 0, 1, 1, 2, 2],
        [0, 10, 8, 5, 6, 7, 8],
        [BIG, 1, 2, 3, 4, BIG, 5],
        [0, 3, 4, 5, 5, 6, 6],
        [K, K, K, U, K, K, U],
        [BIG, 2, 3, 4, -BIG, 6, 7],
        [1, BIG, 3, 4, 5, 6, BIG],
    ]


def _call(walk: ModuleType, args: list[Any], kwargs: dict[str, Any],
          exc: type[Exception] | None) -> Callable[[], object]:
    def call() -> object:
        if exc is None:
            return walk.select(*args, **kwargs)
        try:
            walk.select(*args, **kwargs)
        except exc:
            return None
        raise AssertionError("select() should have failed")
    return call


def _replace(index: int, value: Any) -> list[Any]:
    args = _example()
    args[index] = value
    return args


SCENARIOS = [
    pytest.param(_example(), {}, None, id="ok"),
    pytest.param(_example(), {"max_candidates": 50, "kernel_compat": True}, None,
                 id="ranking-compat"),
    pytest.param([tuple(a) for a in _example()], {"max_candidates": 3}, None, id="tuples"),
    pytest.param([range(-1, 0), range(0, 1), [BIG], range(0, 0), [], (), []], {}, None,
                 id="ranges"),
    pytest.param(_replace(4, [K, K, K, U, K, D, U]), {"max_candidates": 9}, None,
                 id="abort"),
    pytest.param(_replace(5, [BIG, 2, 3, 4, 5, 6, True]), {}, TypeError, id="type-error"),
    pytest.param(_replace(5, [BIG, 2, 3, 4, 5, 6, 2**64]), {}, ValueError,
                 id="int64-overflow"),
    pytest.param(_replace(0, [-1, 0, 0, 1, 1, 2, 7]), {}, ValueError, id="parent-order"),
    pytest.param(_replace(4, [K, K, K, U, K, K, 9]), {}, ValueError, id="bad-state"),
    pytest.param(_replace(6, [1, 2]), {}, ValueError, id="length"),
    pytest.param(_replace(2, None), {}, TypeError, id="not-a-sequence"),
    pytest.param(_replace(3, range(1, 8)), {}, ValueError, id="range-then-error"),
    pytest.param(_example(), {"max_candidates": 0}, ValueError, id="max-candidates"),
    pytest.param(_example(), {"max_candidates": 2**70, "kernel_compat": BIG}, None,
                 id="huge-max-candidates"),
]


def _own_refcount(x: object) -> bool:
    """False for shared singletons (None, bools, cached small ints), whose
    refcount moves with everything else the interpreter does."""
    if x is None or isinstance(x, bool):
        return False
    return not (isinstance(x, int) and -5 <= x <= 256)


@pytest.mark.parametrize(("args", "kwargs", "exc"), SCENARIOS)
def test_no_leak(c_walk: ModuleType, args: list[Any], kwargs: dict[str, Any],
                 exc: type[Exception] | None) -> None:
    items = [x for a in args if isinstance(a, list | tuple) for x in a]
    watched = [x for x in [*args, *kwargs.values(), *items] if _own_refcount(x)]
    _assert_no_leak(_measure(_call(c_walk, args, kwargs, exc), watched))


def test_the_measurement_sees_leaks(c_walk: ModuleType) -> None:
    """A caller that keeps one extra reference to an input, or one result, per
    call is caught: the input's refcount, the live objects and the traced
    memory grow by CALLS. A C-level leak of the same size shows the same way:
    a missing Py_DECREF of an input's PySequence_Fast raises its refcount by
    one per call, a leaked result tuple or list is one more live object (or
    pymalloc block), and a PyMem array that is not freed is traced memory
    attributed to the calling line."""
    args = _example()
    kept: list[object] = []

    def leak_a_reference() -> object:
        kept.append(args[0])
        return c_walk.select(*args)

    growth = _measure(leak_a_reference, [args[0]])
    assert growth.refcounts == [CALLS]
    with pytest.raises(AssertionError):
        _assert_no_leak(growth)

    kept.clear()

    def leak_the_results() -> object:
        result = c_walk.select(*args, max_candidates=3)
        kept.append(result[1])
        return result

    growth = _measure(leak_the_results, [])
    assert growth.objects >= CALLS
    with pytest.raises(AssertionError):
        _assert_no_leak(growth)


STEP_SCENARIOS = [
    pytest.param("choose_child", [[BIG % 13, 3, 3], [BIG, BIG, 7]], None, id="choose-ok"),
    pytest.param("choose_child", [(), ()], None, id="choose-empty"),
    pytest.param("choose_child", [[0, 13], [BIG, 0]], ValueError, id="choose-range"),
    pytest.param("choose_child", [[0, 1], [BIG]], ValueError, id="choose-length"),
    pytest.param("choose_child", [[0], None], TypeError, id="choose-not-a-sequence"),
    pytest.param("pick_task", [[K, U, K], [BIG, -BIG, BIG], [1, BIG, BIG]], None,
                 id="pick-ok"),
    pytest.param("pick_task", [(K, D), (BIG, 1), (BIG, 2)], None, id="pick-abort"),
    pytest.param("pick_task", [[K, 9], [BIG, 1], [1, 2]], ValueError, id="pick-state"),
    pytest.param("pick_task", [[K], [2**64], [1]], ValueError, id="pick-overflow"),
    pytest.param("pick_task", [[K], [BIG], [True]], TypeError, id="pick-type"),
]


@pytest.mark.parametrize(("fn", "args", "exc"), STEP_SCENARIOS)
def test_no_leak_in_the_lazy_steps(c_walk: ModuleType, fn: str, args: list[Any],
                                   exc: type[Exception] | None) -> None:
    call_fn = getattr(c_walk, fn)

    def call() -> object:
        if exc is None:
            return call_fn(*args)
        try:
            call_fn(*args)
        except exc:
            return None
        raise AssertionError(f"{fn}() should have failed")

    items = [x for a in args if isinstance(a, list | tuple) for x in a]
    watched = [x for x in [*args, *items] if _own_refcount(x)]
    _assert_no_leak(_measure(call, watched))
