"""The C walk and the Python reference agree on random trees, valid or not.

Valid inputs: the results must be identical. Invalid inputs: both must raise
the same exception type, and for errors in the values (not in the kind of
container) the same message.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prioomd import _select_py

K, U, D = 0, 1, 2
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

Args = list[Any]


def _parent(shape: str, i: int, r: int) -> int:
    """Parent of node i (>= 1) from a random number r, for a tree shape."""
    if shape == "deep":  # long chains: the parent is one of the last two nodes
        return i - 1 - r % min(2, i)
    if shape == "wide":  # most nodes directly under the root
        return r % i if r % 4 == 0 else 0
    if shape == "bushy":  # fan-out about 4, a few levels
        return min(i - 1, max(0, (i - 1) // 4 - 1 + r % 3))
    return r % i


@st.composite
def trees(draw: st.DrawFn, max_nodes: int = 60) -> tuple[Args, dict[str, Any]]:
    """Random valid inputs: a tree shape, pools of tied values, tasks."""
    n = draw(st.integers(1, max_nodes))
    shape = draw(st.sampled_from(["any", "deep", "wide", "bushy"]))
    rand = draw(st.lists(st.integers(0, 2**16), min_size=n - 1, max_size=n - 1))
    parent = [-1] + [_parent(shape, i, r) for i, r in enumerate(rand, start=1)]
    # Few distinct values, so that ties in priority and usage are common.
    prio_pool = draw(st.lists(st.integers(0, 12), min_size=1, max_size=4))
    usage_pool = draw(st.lists(st.sampled_from([0, 1, 4096, 10**9, INT64_MAX])
                               | st.integers(0, 10), min_size=1, max_size=4))
    priority = draw(st.lists(st.sampled_from(prio_pool), min_size=n, max_size=n))
    usage = draw(st.lists(st.sampled_from(usage_pool), min_size=n, max_size=n))

    states = draw(st.sampled_from([
        [K], [U], [K, U], [K, K, K, U], [K, U, U, U], [K, K, K, K, K, K, U, D], [K, U, D],
    ]))
    bad_pool = draw(st.lists(st.sampled_from([INT64_MIN, -1000, -1, 0, 1, 7, INT64_MAX])
                             | st.integers(-5, 5), min_size=1, max_size=5))
    start_pool = draw(st.lists(st.integers(0, 4) | st.just(INT64_MAX), min_size=1, max_size=4))
    t = draw(st.integers(0, 2 * n + 3))
    task_arrays = [
        draw(st.lists(st.integers(0, n - 1), min_size=t, max_size=t)),
        draw(st.lists(st.sampled_from(states), min_size=t, max_size=t)),
        draw(st.lists(st.sampled_from(bad_pool), min_size=t, max_size=t)),
        draw(st.lists(st.sampled_from(start_pool), min_size=t, max_size=t)),
    ]
    args: Args = [parent, priority, usage, *task_arrays]
    args = [tuple(a) for a in args] if draw(st.booleans()) else [list(a) for a in args]
    kwargs = {
        "kernel_compat": draw(st.booleans()),
        "max_candidates": draw(st.integers(1, 6) | st.integers(1, 3 * n + 8)
                               | st.just(2**70)),
    }
    return args, kwargs


def outcome(walk: ModuleType, args: Args, kwargs: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "ok", walk.select(*args, **kwargs)
    except Exception as exc:  # the comparison is the point: any type is recorded
        return type(exc).__name__, str(exc)


@settings(max_examples=500, deadline=None)
@given(case=trees())
def test_same_result_on_valid_trees(c_walk: ModuleType, case: tuple[Args, dict[str, Any]]
                                    ) -> None:
    args, kwargs = case
    expected = _select_py.select(*args, **kwargs)
    assert c_walk.select(*args, **kwargs) == expected


@settings(max_examples=60, deadline=None)
@given(case=trees(max_nodes=400))
def test_same_result_on_larger_trees(c_walk: ModuleType,
                                     case: tuple[Args, dict[str, Any]]) -> None:
    args, kwargs = case
    assert c_walk.select(*args, **kwargs) == _select_py.select(*args, **kwargs)


# Bad values for one element; each kind hits a different check of _validate.
BAD_VALUES = st.sampled_from([
    True, False, 1.0, "1", None, 2**63, INT64_MIN - 1, -1, -2, 13, 3, 10**6, INT64_MIN,
])
# Not sequences at all: both raise TypeError, worded differently (len() vs
# PySequence_Check). Sized non-sequences (sets, dicts) are outside the contract:
# the reference happens to iterate or index them, the C walk refuses them.
NOT_SEQUENCES = st.sampled_from([None, 5, 2.5, iter([0]), object()])
# Sequences of another kind than list/tuple behave the same on both.
ODD_SEQUENCES = st.sampled_from(["012", "", b"\x00\x01\x02", b"\xff", range(3), range(-1, 1)])
BAD_MAX_CANDIDATES = st.sampled_from([0, -1, -(2**70), 1.0, "2", None, False, 2.5])


@st.composite
def broken(draw: st.DrawFn) -> tuple[Args, dict[str, Any], bool]:
    """A valid case with 1-3 corruptions; also says whether the message must match."""
    args, kwargs = draw(trees(max_nodes=12))
    args = [list(a) for a in args]
    same_message = True
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["value", "value", "value", "length", "container",
                                     "sequence", "max_candidates", "parent_order"]))
        a = draw(st.integers(0, 6))
        if what == "value" and isinstance(args[a], list) and args[a]:
            args[a][draw(st.integers(0, len(args[a]) - 1))] = draw(BAD_VALUES)
        elif what == "length" and isinstance(args[a], list):
            if args[a] and draw(st.booleans()):
                args[a].pop()
            else:
                args[a].append(0)
        elif what == "container":
            args[a] = draw(NOT_SEQUENCES)
            same_message = False
        elif what == "sequence":
            args[a] = draw(ODD_SEQUENCES)
        elif what == "max_candidates":
            kwargs["max_candidates"] = draw(BAD_MAX_CANDIDATES)
        elif what == "parent_order" and isinstance(args[0], list) and len(args[0]) > 1:
            i = draw(st.integers(1, len(args[0]) - 1))
            args[0][i] = draw(st.sampled_from([i, i + 1, -1, len(args[0]) + 5]))
    return args, kwargs, same_message


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=broken())
def test_same_exception_on_invalid_input(c_walk: ModuleType,
                                         case: tuple[Args, dict[str, Any], bool]) -> None:
    args, kwargs, same_message = case
    py_kind, py_detail = outcome(_select_py, args, kwargs)
    c_kind, c_detail = outcome(c_walk, args, kwargs)
    if py_kind == "ok":  # a corruption may cancel out (e.g. pop then append 0)
        assert (c_kind, c_detail) == (py_kind, py_detail)
        return
    assert c_kind == py_kind, (py_detail, c_detail)
    if same_message:
        assert c_detail == py_detail


def _random_tree(rng: random.Random, n: int, depth_bias: float) -> tuple[Args, dict[str, Any]]:
    parent = [-1] + [max(0, i - 1 - int(rng.expovariate(depth_bias))) if rng.random() < 0.5
                     else rng.randrange(i) for i in range(1, n)]
    priority = [rng.choice((0, 0, 3, 5, 12)) for _ in range(n)]
    usage = [rng.choice((0, 1 << 20, 1 << 30)) for _ in range(n)]
    t = 2 * n
    task_node = [rng.randrange(n) for _ in range(t)]
    task_state = [rng.choice((K, K, K, K, U, U, D)) if rng.random() < 0.2 else K
                  for _ in range(t)]
    task_badness = [rng.randrange(-50, 50) for _ in range(t)]
    task_start = [rng.randrange(10) for _ in range(t)]
    args: Args = [parent, priority, usage, task_node, task_state, task_badness, task_start]
    return args, {"kernel_compat": rng.random() < 0.5, "max_candidates": rng.randint(1, 20)}


def test_same_result_on_big_random_trees(c_walk: ModuleType) -> None:
    rng = random.Random(20240611)
    for _ in range(12):
        args, kwargs = _random_tree(rng, rng.choice((500, 2000, 5000)), rng.choice((0.1, 2.0)))
        assert c_walk.select(*args, **kwargs) == _select_py.select(*args, **kwargs)


@pytest.mark.parametrize("kernel_compat", [False, True])
def test_same_result_on_a_deep_chain(c_walk: ModuleType, kernel_compat: bool) -> None:
    """100 000 levels: both walks are iterative. The bottom holds -1000
    processes, so the exhausted chain is re-walked; the top holds the victim."""
    n = 100_000
    parent = list(range(-1, n - 1))
    args: Args = [parent, [0] * n, [0] * n, [n - 1, n - 1, n // 2, 1],
                  [U, U, K, K], [5, 9, 1, 2], [0, 0, 0, 0]]
    kwargs: dict[str, Any] = {"kernel_compat": kernel_compat, "max_candidates": 3}
    assert c_walk.select(*args, **kwargs) == _select_py.select(*args, **kwargs)


def test_c_walk_on_a_million_cgroups(c_walk: ModuleType) -> None:
    """10^6 nodes in one chain and a wide fan of 10^6: no recursion, no limit.
    Expected by reasoning: the deepest (only) path leads to the one process at
    the bottom; in the fan, the lowest priority, then the largest usage."""
    n = 1_000_000
    chain = list(range(-1, n - 1))
    assert c_walk.select(chain, [0] * n, [0] * n, [n - 1, 0], [K, K], [1, 99], [0, 0]) == (
        0, [(n - 1, 0)])
    fan = [-1] + [0] * (n - 1)
    priority = [5] * n
    priority[777_777] = 4
    priority[777_778] = 4
    usage = [0] * n
    usage[777_778] = 1
    tasks = list(range(1, n))
    assert c_walk.select(fan, priority, usage, tasks, [K] * (n - 1), [0] * (n - 1),
                         [0] * (n - 1), max_candidates=2) == (
        0, [(777_778, 777_777), (777_777, 777_776)])


def test_c_walk_is_reentrant_across_threads(c_walk: ModuleType) -> None:
    """The C walk runs without the GIL on private copies: concurrent calls on
    different trees each get their own, correct, answer."""
    rng = random.Random(7)
    cases = [_random_tree(rng, rng.choice((300, 3000)), 1.0) for _ in range(8)]
    expected = [_select_py.select(*args, **kwargs) for args, kwargs in cases]

    def run(k: int) -> bool:
        args, kwargs = cases[k % len(cases)]
        return all(c_walk.select(*args, **kwargs) == expected[k % len(cases)]
                   for _ in range(20))

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(run, range(32)))


def test_c_walk_survives_an_argument_resized_mid_call(c_walk: ModuleType) -> None:
    """Converting a custom sequence runs Python code, which may resize a list
    the walk has already measured: the C walk must notice, not read past it."""
    parent = [-1, 0, 0]

    class Shrinks:
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> int:
            if i >= 3:
                raise IndexError(i)
            parent.clear()
            return 0

    with pytest.raises(RuntimeError, match="parent changed size"):
        c_walk.select(parent, Shrinks(), [0, 0, 0], [], [], [], [])
    parent[:] = [-1, 0, 0]
    assert c_walk.select(parent, [0, 0, 0], [0, 0, 0], [2], [K], [1], [1]) == (0, [(2, 0)])


# ---------------------------------------------------------------- the lazy walk's steps

STEP_VALUES = st.sampled_from([0, 1, 2, 3, 12, 13, -1, 2**63 - 1, 2**63, INT64_MIN, True])


def _step_outcome(walk: ModuleType, fn: str, args: Args) -> tuple[str, Any]:
    try:
        return "ok", getattr(walk, fn)(*args)
    except Exception as exc:  # the comparison is the point: any type is recorded
        return type(exc).__name__, str(exc)


@settings(max_examples=500, deadline=None)
@given(priority=st.lists(st.integers(0, 3) | STEP_VALUES, max_size=8),
       usage=st.lists(st.integers(0, 3) | STEP_VALUES, max_size=8),
       as_tuple=st.booleans())
def test_choose_child_same_on_both(c_walk: ModuleType, priority: list[Any], usage: list[Any],
                                   as_tuple: bool) -> None:
    """Valid or not (lengths, ranges, types), same answer or same error."""
    args: Args = [tuple(priority), tuple(usage)] if as_tuple else [priority, usage]
    assert _step_outcome(c_walk, "choose_child", args) == _step_outcome(
        _select_py, "choose_child", args)


@settings(max_examples=500, deadline=None)
@given(n=st.integers(0, 10), data=st.data())
def test_pick_task_same_on_both(c_walk: ModuleType, n: int, data: st.DataObject) -> None:
    def column(values: st.SearchStrategy[Any]) -> list[Any]:
        return data.draw(st.lists(values, min_size=n, max_size=n + data.draw(
            st.sampled_from([0, 0, 0, 1]))))
    args: Args = [column(st.sampled_from([K, K, U, D]) | STEP_VALUES),
                  column(st.integers(-2, 2) | STEP_VALUES),
                  column(st.integers(0, 2) | STEP_VALUES)]
    assert _step_outcome(c_walk, "pick_task", args) == _step_outcome(
        _select_py, "pick_task", args)
