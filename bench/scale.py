"""Decision time against tree size on a real cgroup v2 tree: lazy walk vs full snapshot.

    sudo .venv/bin/python bench/scale.py [--cgroup-root DIR] [--procs 10000] [--repeat 5]

Creates a private directory ``prioomd-bench-<pid>`` under the cgroup root
(default: the cgroup2 mount, /sys/fs/cgroup/unified on this project's hybrid
hosts), starts --procs sleeping processes, and for each tree shape (fan-out f,
depth d: f + f^2 + ... + f^d cgroups, every cgroup with a random priority xattr)
spreads the processes over the leaves and times one decision with the private
directory as the OOM domain:

* lazy: ``lazywalk.decide``, what the daemon pays per decision;
* full: ``snapshot.take`` + ``select.select_victims``, what ``prioomd tree`` pays.

Both must name the same victim, checked on every run. Times are the best of
--repeat runs (the full walk: of fewer at the big sizes); on a shared machine
compare the ratios of one run, not absolute numbers across runs. The last row
is a flat tree (20 000 siblings, most of them empty: what a tenant can mkdir in a
second). Then the goal's pair, 756 and 20 439 cgroups of fan-out 27, side by side
with decisions alternating between them (--goal-pairs), so that each ratio
comes from two adjacent measurements. Every cgroup and process created is
removed at the end, also on errors and Ctrl-C; processes are killed by their pid.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prioomd import (  # noqa: E402
    cgroupfs,
    config,
    lazywalk,
    procfs,
    select,
    snapshot,
    table,
)

PRIO = "trusted.prioomd.priority"
# (fan-out, depth): 10; ~750 and ~2x10^4 of one fan-out (the goal's pair); 10^3; 10^4.
SHAPES = [(10, 1), (27, 2), (10, 3), (10, 4), (27, 3)]
FLAT = 20_000


def build(parent: str, fan_out: int, depth: int, rng: random.Random,
          memory: bool) -> list[str]:
    """mkdir a complete fan_out-ary tree of the given depth; returns the leaves.
    With ``memory``, every inner cgroup enables the memory controller for its
    children (else they would be folded into it, spec §1.2)."""
    level = [parent]
    for _ in range(depth):
        nxt = []
        for d in level:
            if memory:
                with open(os.path.join(d, "cgroup.subtree_control"), "w") as f:
                    f.write("+memory")
            for i in range(fan_out):
                child = os.path.join(d, f"g{i}")
                os.mkdir(child)
                os.setxattr(child, PRIO, str(rng.choice((0, 0, 2, 5, 8, 12))).encode())
                nxt.append(child)
        level = nxt
    return level


def remove_tree(top: str) -> None:
    """rmdir bottom-up (cgroupfs directories go with rmdir, never unlink)."""
    for dirpath, dirnames, _files in os.walk(top, topdown=False):
        for d in dirnames:
            os.rmdir(os.path.join(dirpath, d))


def move(pids: list[int], targets: list[str]) -> None:
    """Spread pids round-robin over the target cgroups."""
    for k, pid in enumerate(pids):
        with open(os.path.join(targets[k % len(targets)], "cgroup.procs"), "w") as f:
            f.write(str(pid))


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def measure(domain: str, sources: snapshot.Sources, tbl: table.PriorityTable,
            total_pages: int, repeat: int, full_repeat: int) -> tuple[float, float | None]:
    """Best lazy and full times; full_repeat 0 skips the full walk (None)."""
    def lazy() -> tuple[str, int]:
        d, _, _ = lazywalk.decide(domain, tbl, sources, total_pages, max_candidates=5)
        return d.candidates[0].victim_cgroup, d.candidates[0].pid

    def full() -> tuple[str, int]:
        snap, _ = snapshot.take(domain, tbl, sources, total_pages)
        d = select.select_victims(snap, max_candidates=5)
        return d.candidates[0].victim_cgroup, d.candidates[0].pid

    t_lazy, r_lazy = best_of(repeat, lazy)
    if not full_repeat:
        return t_lazy, None
    t_full, r_full = best_of(full_repeat, full)
    if r_lazy != r_full:
        raise SystemExit(f"MISMATCH in {domain}: lazy {r_lazy} != full {r_full}")
    return t_lazy, t_full


def goal(private: str, pids: list[int], rng: random.Random, sources: snapshot.Sources,
         tbl: table.PriorityTable, total_pages: int, memory: bool, pairs: int
         ) -> dict[str, Any]:
    """The issue's goal, robust to a machine whose load drifts: 756 and 20 439
    cgroups of fan-out 27 side by side, half the processes in each, and lazy
    decisions alternating between them; the median of the per-pair ratios."""
    small, big = os.path.join(private, "small"), os.path.join(private, "big")
    half = len(pids) // 2
    try:
        for top, depth, share in ((small, 2, pids[:half]), (big, 3, pids[half:])):
            os.mkdir(top)
            move(share, build(top, 27, depth, rng, memory))
        domains = [cgroupfs.abs_to_rel(sources.cgroup_root, d) for d in (small, big)]
        ratios, times = [], [[], []]
        for _ in range(pairs):
            pair = []
            for k, domain in enumerate(domains):
                t0 = time.perf_counter()
                lazywalk.decide(domain, tbl, sources, total_pages, max_candidates=5)
                pair.append(time.perf_counter() - t0)
                times[k].append(pair[-1])
            ratios.append(pair[1] / pair[0])
        med = sorted(ratios)[len(ratios) // 2]
        print(f"goal (fan-out 27, {half} processes each, {pairs} alternating pairs): "
              f"756 cgroups {min(times[0]) * 1e3:.1f} ms, 20 439 cgroups "
              f"{min(times[1]) * 1e3:.1f} ms (best); median ratio {med:.2f} (goal <= 3)")
        return {"pairs": pairs, "processes_each": half, "small_cgroups": 756,
                "big_cgroups": 20_439, "small_ms": min(times[0]) * 1e3,
                "big_ms": min(times[1]) * 1e3, "median_ratio": med}
    finally:
        move(pids, [os.path.join(private, "hold")])
        for top in (small, big):
            if os.path.isdir(top):
                remove_tree(top)
                os.rmdir(top)


def run(cgroup_root: str | None, procs: int, repeat: int, seed: int,
        shapes: list[tuple[int, int]], flat: int, goal_pairs: int, full_max: int
        ) -> dict[str, Any]:
    """Every shape's lazy and full times, then the goal's pair; printed as it goes and
    returned as {"cgroup_root", "memory", "processes", "repeat", "rows", "goal"}."""
    shapes = list(shapes) + ([(flat, 1)] if flat else [])
    root = cgroup_root or cgroupfs.default_cgroup_root()
    rng = random.Random(seed)
    tbl = table.PriorityTable(config.Config())
    sources = snapshot.Sources(cgroup_root=root)
    page_size = procfs.page_size()
    total_pages = snapshot.global_total_pages(sources, page_size)
    memory = snapshot.has_memory(sources)

    private = os.path.join(root, f"prioomd-bench-{os.getpid()}")
    hold = os.path.join(private, "hold")
    tree = os.path.join(private, "tree")
    pids: list[int] = []
    out: dict[str, Any] = {"cgroup_root": root, "memory": memory, "processes": procs,
                           "repeat": repeat, "rows": [], "goal": None}
    os.mkdir(private)
    try:
        if memory:
            with open(os.path.join(private, "cgroup.subtree_control"), "w") as f:
                f.write("+memory")
        os.mkdir(hold)
        for _ in range(procs):
            pids.append(os.posix_spawn("/bin/sleep", ["sleep", "3600"], os.environ))
        move(pids, [hold])
        print(f"cgroup root {root} (memory controller: {'yes' if memory else 'no'}), "
              f"{len(pids)} processes, best of {repeat} (full: fewer at 10^4+)")
        print(f"{'fan-out':>7} {'depth':>5} {'cgroups':>8} {'lazy ms':>9} {'full ms':>9} "
              f"{'full/lazy':>9}")
        for fan_out, depth in shapes:
            os.mkdir(tree)
            leaves = build(tree, fan_out, depth, rng, memory)
            n = sum(fan_out ** k for k in range(1, depth + 1))
            # the flat row: the processes in 1 % of the siblings, the rest empty
            move(pids, leaves[:: 100] if fan_out == flat else leaves)
            domain = cgroupfs.abs_to_rel(root, tree)
            full_repeat = repeat if n < 5000 else max(1, repeat // 3)
            t_lazy, t_full = measure(domain, sources, tbl, total_pages, repeat,
                                     full_repeat if n <= full_max else 0)
            full_ms, ratio = ((f"{t_full * 1e3:.1f}", f"{t_full / t_lazy:.0f}x")
                              if t_full is not None else ("-", "-"))
            print(f"{fan_out:>7} {depth:>5} {n:>8} {t_lazy * 1e3:>9.1f} {full_ms:>9} "
                  f"{ratio:>9}", flush=True)
            out["rows"].append({"fan_out": fan_out, "depth": depth, "cgroups": n,
                                "lazy_ms": t_lazy * 1e3,
                                "full_ms": None if t_full is None else t_full * 1e3})
            move(pids, [hold])
            remove_tree(tree)
            os.rmdir(tree)
        if goal_pairs:
            out["goal"] = goal(private, pids, rng, sources, tbl, total_pages, memory,
                               goal_pairs)
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        if os.path.isdir(tree):
            remove_tree(tree)
            os.rmdir(tree)
        if os.path.isdir(hold):
            os.rmdir(hold)
        os.rmdir(private)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cgroup-root", default=None)
    ap.add_argument("--procs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shapes", nargs="+", default=[f"{f}x{d}" for f, d in SHAPES],
                    help="trees as FANOUTxDEPTH (default: %(default)s)")
    ap.add_argument("--flat", type=int, default=FLAT,
                    help="siblings of the flat tree, 0 for none (default: %(default)s)")
    ap.add_argument("--goal-pairs", type=int, default=15,
                    help="alternating decisions for the goal's ratio, 0 for none")
    ap.add_argument("--full-max", type=int, default=10**9,
                    help="time the full walk only up to this many cgroups (slow guests)")
    args = ap.parse_args(argv)
    shapes = [(int(f), int(d)) for f, _, d in (s.partition("x") for s in args.shapes)]
    run(args.cgroup_root, args.procs, args.repeat, args.seed, shapes, args.flat,
        args.goal_pairs, args.full_max)
    return 0


if __name__ == "__main__":
    sys.exit(main())
