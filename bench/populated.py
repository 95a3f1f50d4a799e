"""One wide level, side by side: the walk's read of its children's ``populated``.

    sudo .venv/bin/python bench/populated.py [--siblings 20000] [--pairs 7]

A lazy decision reads every child's ``cgroup.events`` at each level it walks; over a
level of 2x10^4 siblings (what a tenant can mkdir in a second) that read is the whole
cost. This makes such a level under a private cgroup of the cgroup v2 mount (1 % of the
siblings holding a sleeping process), then alternates, pair by pair:

* each: ``read_populated`` per child, a path lookup from the root each time (how the
  walk read a level before 2026-11-29);
* batched: ``populated_children``, every child opened relative to one descriptor of
  the level (what it reads now);
* the whole decision (``lazywalk.decide``) with each of the two.

Prints the best times and the median of the per-pair ratios; both must give the same
answers (checked each pair). Everything made is removed, processes by their pid.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prioomd import cgroupfs, config, lazywalk, procfs, snapshot, table  # noqa: E402
from prioomd.errors import Vanished  # noqa: E402


def each(cgdir: str, names: list[str]) -> list[bool | None]:
    """The per-child reads the batched one replaced (a gone child: None)."""
    out: list[bool | None] = []
    for name in names:
        try:
            out.append(cgroupfs.read_populated(os.path.join(cgdir, name)))
        except (OSError, Vanished):
            out.append(None)
    return out


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cgroup-root", default=None)
    ap.add_argument("--siblings", type=int, default=20_000)
    ap.add_argument("--pairs", type=int, default=7)
    args = ap.parse_args(argv)
    root = args.cgroup_root or cgroupfs.default_cgroup_root()
    level = os.path.join(root, f"prioomd-bench-populated-{os.getpid()}")
    sources = snapshot.Sources(cgroup_root=root)
    tbl = table.PriorityTable(config.Config())
    total_pages = snapshot.global_total_pages(sources, procfs.page_size())
    domain = cgroupfs.abs_to_rel(root, level)
    pids: list[int] = []
    os.mkdir(level)
    try:
        for i in range(args.siblings):
            os.mkdir(os.path.join(level, f"c{i}"))
        for i in range(0, args.siblings, 100):
            pid = os.posix_spawn("/bin/sleep", ["sleep", "3600"], os.environ)
            pids.append(pid)
            with open(os.path.join(level, f"c{i}", "cgroup.procs"), "w") as f:
                f.write(str(pid))
        names = [n for n, _ in cgroupfs.list_children(level)]
        batched = cgroupfs.populated_children

        def decide() -> tuple[str, int]:
            d, _, _ = lazywalk.decide(domain, tbl, sources, total_pages, max_candidates=5)
            return d.candidates[0].victim_cgroup, d.candidates[0].pid

        times: dict[str, list[float]] = {k: [] for k in ("each", "batched", "decide each",
                                                         "decide batched")}
        ratios: dict[str, list[float]] = {"read": [], "decision": []}
        for _ in range(args.pairs):
            t_each, r_each = timed(lambda: each(level, names))
            t_batch, r_batch = timed(lambda: batched(level, names))
            if r_each != r_batch:
                raise SystemExit("MISMATCH: the two reads disagree")
            cgroupfs.populated_children = each  # type: ignore[assignment]
            try:
                t_de, v_each = timed(decide)
            finally:
                cgroupfs.populated_children = batched  # type: ignore[assignment]
            t_db, v_batch = timed(decide)
            if v_each != v_batch:
                raise SystemExit(f"MISMATCH: victims {v_each} != {v_batch}")
            for key, t in zip(times, (t_each, t_batch, t_de, t_db), strict=True):
                times[key].append(t)
            ratios["read"].append(t_each / t_batch)
            ratios["decision"].append(t_de / t_db)
        print(f"{args.siblings} siblings under {level}, {len(pids)} of them populated, "
              f"{args.pairs} alternating pairs (best times; median ratio of the pairs)")
        print(f"  read of the level: each {min(times['each']) * 1e3:.1f} ms, batched "
              f"{min(times['batched']) * 1e3:.1f} ms: {statistics.median(ratios['read']):.2f}x")
        print(f"  whole decision:    each {min(times['decide each']) * 1e3:.1f} ms, batched "
              f"{min(times['decide batched']) * 1e3:.1f} ms: "
              f"{statistics.median(ratios['decision']):.2f}x")
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        for name in os.listdir(level):
            if os.path.isdir(os.path.join(level, name)):
                os.rmdir(os.path.join(level, name))
        os.rmdir(level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
