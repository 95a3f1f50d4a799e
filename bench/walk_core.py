"""Time the C walk against the Python reference on random cgroup trees.

    .venv/bin/python bench/walk_core.py [--sizes 1000 10000 100000] [--repeat 5]

Trees are shaped like real hosts: a handful of top-level slices, a wide middle
(services, pods) and shallow leaves (containers, scopes), at most 6 levels;
about 2 processes per leaf, kernel threads and a few -1000 daemons in the
root. Each call includes the conversion of the Python lists, i.e. it is what
the daemon pays. Times are the best of --repeat runs (time.perf_counter); the
two walks must return the same result, which is checked on every run.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prioomd import _select_py  # noqa: E402

try:
    from prioomd import _select as _select_c  # type: ignore[attr-defined]  # noqa: E402
except ImportError:
    _select_c = None

KILLABLE, UNKILLABLE = 0, 1
# Children per node by depth: (low, high). Depth 5 nodes are leaves.
FAN_OUT = [(4, 12), (3, 40), (1, 20), (1, 6), (0, 4), (0, 0)]


def make_tree(n: int, rng: random.Random) -> list[list[int]]:
    """select() arguments for a tree of n cgroups (creation order = BFS order)."""
    parent, depth = [-1], [0]
    frontier = [0]
    while len(parent) < n:
        if not frontier:  # the fan-out ran dry early: grow under a random node
            frontier = [rng.randrange(len(parent))]
        nxt = []
        for u in frontier:
            lo, hi = FAN_OUT[min(depth[u], len(FAN_OUT) - 1)]
            for _ in range(rng.randint(lo, hi)):
                if len(parent) == n:
                    break
                parent.append(u)
                depth.append(depth[u] + 1)
                nxt.append(len(parent) - 1)
        frontier = nxt
    has_child = [False] * n
    for p in parent[1:]:
        has_child[p] = True

    priority = [0] + [rng.choice((0, 0, 0, 2, 5, 5, 8, 10, 12)) for _ in range(n - 1)]
    usage = [rng.choice((0, 4096 * rng.randrange(1, 1 << 20))) for _ in range(n)]
    task_node: list[int] = []
    task_state: list[int] = []
    for u in range(n):
        if u == 0:  # kernel threads, init, and some root daemons
            k = 80
        elif has_child[u]:  # cgroup v2: no processes in inner cgroups
            continue
        else:
            k = rng.choice((1, 2, 2, 3))
        for _ in range(k):
            task_node.append(u)
            task_state.append(UNKILLABLE if u == 0 or rng.random() < 0.03 else KILLABLE)
    t = len(task_node)
    task_badness = [rng.randrange(-1000, 1 << 22) for _ in range(t)]
    task_start = [rng.randrange(1 << 40) for _ in range(t)]
    return [parent, priority, usage, task_node, task_state, task_badness, task_start]


def best_of(repeat: int, fn: Callable[..., Any], *args: Any, **kwargs: Any
            ) -> tuple[float, Any]:
    """Best wall time of fn(*args, **kwargs) over repeat runs, and its result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--ranked", type=int, default=10, help="max_candidates of the ranked run")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if _select_c is None:
        print("prioomd._select is not built: `.venv/bin/pip install -e .`", file=sys.stderr)
        return 1

    rng = random.Random(args.seed)
    print(f"{'cgroups':>8} {'tasks':>7} {'max_cand':>8} {'compat':>6} "
          f"{'C ms':>9} {'Python ms':>10} {'speedup':>8}")
    for n in args.sizes:
        tree = make_tree(n, rng)
        for max_candidates in (1, args.ranked):
            for compat in (False, True):
                kw = {"kernel_compat": compat, "max_candidates": max_candidates}
                py_repeat = max(1, args.repeat // 2) if n >= 100_000 else args.repeat
                tc, rc = best_of(args.repeat, _select_c.select, *tree, **kw)
                tp, rp = best_of(py_repeat, _select_py.select, *tree, **kw)
                if rc != rp:
                    print(f"MISMATCH at n={n} {kw}: C {rc} != Python {rp}", file=sys.stderr)
                    return 2
                print(f"{n:>8} {len(tree[3]):>7} {max_candidates:>8} {str(compat):>6} "
                      f"{tc * 1e3:>9.3f} {tp * 1e3:>10.2f} {tp / tc:>7.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
