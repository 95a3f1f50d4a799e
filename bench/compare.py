"""prioomd against the kernel and the peer OOM killers, side by side, on a real kernel.

    python3 bench/compare.py --quick          # a few minutes: CI runs this
    python3 bench/compare.py                  # the full matrix, 3 runs a case (hours)
    python3 bench/compare.py --killers prioomd earlyoom --scenarios priority leak-max

Every case (killer x scenario x run) boots a fresh qemu guest of the real-kernel test
tier (tests/vm/kh/run.py: TCG, 1 GiB, no swap unless the scenario adds zram) and runs
bench/guest_case.py there.  The walk core (C against Python) and the cost of one
decision by tree size (bench/scale.py, on the cgroup v2 mount) are timed on this host.
Results: OUT/results.json (every number of every run) and OUT/RESULTS.md (regenerated,
never edited by hand).  OUT is bench/ for the full run, .kh-out/bench for --quick.

Needs root, the project's .venv (tests/setup.sh) and the peers from Debian's packages
(tests/setup.sh installs them with their services kept from starting).  Absolute times
drift on a shared machine and under TCG; compare within one run.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
TOP = BENCH.parent
sys.path.insert(0, str(TOP / "tests" / "vm" / "kh"))
sys.path.insert(0, str(BENCH))
import report  # noqa: E402
import run as kh  # noqa: E402

PLAIN_KILLERS = ("kernel", "earlyoom", "nohang", "oomd", "prioomd")
SYSTEMD_KILLERS = ("systemd-oomd", "systemd-oomd-high")
KILLERS = PLAIN_KILLERS + SYSTEMD_KILLERS
LEAK_RATES = ("50", "200", "1000", "max")
SCENARIOS = ("priority", "limit", "zram", "forkstorm", *(f"leak-{r}" for r in LEAK_RATES),
             "idle")
DEFAULT_RATE = "30"  # MiB/s: "priority" and its variants leak at this rate
PEER_PACKAGES = ("earlyoom", "nohang", "oomd", "systemd-oomd", "qemu-system-x86")


def cases(killers: list[str], scenarios: list[str], runs: int) -> list[dict[str, str]]:
    out = []
    for scenario in scenarios:
        for killer in killers:
            if scenario == "idle" and killer == "kernel":
                continue  # nothing runs, nothing to measure
            for n in range(runs):
                out.append({"killer": killer, "scenario": scenario, "run": str(n + 1)})
    return out


def run_case(case: dict[str, str], out_dir: Path, window_s: float, timeout_s: float
             ) -> dict[str, Any]:
    scenario, rate = case["scenario"], DEFAULT_RATE
    if scenario.startswith("leak-"):
        scenario, rate = "priority", scenario.removeprefix("leak-")
    name = f"{case['scenario']}-{case['killer']}-{case['run']}"
    dest = out_dir / "cases" / f"{name}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    cmd = [str(TOP / ".venv" / "bin" / "python"), str(BENCH / "guest_case.py"),
           "--killer", case["killer"], "--scenario", scenario, "--rate", rate,
           "--window", str(window_s), "--out", str(dest)]
    buf = io.BytesIO()
    res = kh.run_vm(cmd, mem="1G", timeout=timeout_s, rw=[dest.parent],
                    systemd=case["killer"] in SYSTEMD_KILLERS, cwd=TOP, stdout=buf,
                    stderr=buf, show_console=False, env={"PYTHONDONTWRITEBYTECODE": "1"})
    try:
        result = json.loads(dest.read_text())
    except (OSError, ValueError):
        tail = buf.getvalue().decode(errors="replace")[-2000:]
        result = {"killer": case["killer"], "scenario": scenario, "rate_mib_s": rate,
                  "error": f"guest exit {res.returncode}, no result: {tail}"}
    result.update(case)
    result["guest_wall_s"] = round(res.wall_s, 1)
    return result


def walk_core(sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    """C against Python on bench/walk_core.py's random trees (one walk, no ranking)."""
    import walk_core as mod
    if mod._select_c is None:
        return []
    rng = random.Random(1)
    rows = []
    for n in sizes:
        tree = mod.make_tree(n, rng)
        tc, rc = mod.best_of(repeat, mod._select_c.select, *tree)
        tp, rp = mod.best_of(max(1, repeat // 2), mod._select_py.select, *tree)
        rows.append({"cgroups": n, "tasks": len(tree[3]), "c_ms": tc * 1e3,
                     "python_ms": tp * 1e3, "same_result": rc == rp})
    return rows


def decision_cost(quick: bool) -> dict[str, Any]:
    """bench/scale.py on this host's cgroup v2 tree: one decision of the lazy walk
    against the full snapshot, by tree size (a small form with --quick)."""
    import scale
    kw: dict[str, Any] = (
        {"procs": 500, "shapes": [(10, 1), (27, 2)], "flat": 2000, "goal_pairs": 3,
         "repeat": 2, "full_max": 1000} if quick else
        {"procs": 10_000, "shapes": list(scale.SHAPES), "flat": scale.FLAT,
         "goal_pairs": 15, "repeat": 5, "full_max": 12_000})
    try:
        return scale.run(None, seed=1, **kw)
    except (OSError, SystemExit) as exc:  # no writable cgroup2 here: say so, go on
        print(f"compare: decision cost not measured: {exc}", file=sys.stderr)
        return {"error": str(exc)}


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) \
        else "unknown"


def environment(argv: list[str]) -> dict[str, Any]:
    pkgs = {}
    for p in PEER_PACKAGES:
        pkgs[p] = _version(["dpkg-query", "-W", "-f=${Version}", p])
    model = next((ln.split(":", 1)[1].strip() for ln in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.machine())
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python3", "bench/compare.py", *argv]),
        "host": f"{os.cpu_count()} cores, {model}, Linux {platform.release()}",
        "guest_kernel": kh.find_kernel().kver,
        "guest": "qemu TCG, 2 vCPUs, 1 GiB, no swap (zram scenario: half the RAM as zram)",
        "prioomd": _version([str(TOP / ".venv" / "bin" / "prioomd"), "--version"]),
        "commit": _version(["git", "-C", str(TOP), "describe", "--always", "--dirty"]),
        "packages": pkgs,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="priority scenario once per killer, a 20 s idle window for "
                         "earlyoom and prioomd, a small walk-core table")
    ap.add_argument("--killers", nargs="+", choices=KILLERS)
    ap.add_argument("--scenarios", nargs="+", choices=SCENARIOS)
    ap.add_argument("--runs", type=int, help="runs per case (default 3, --quick 1)")
    ap.add_argument("--window", type=float, help="idle window s (default 60, --quick 20)")
    ap.add_argument("--timeout", type=float, default=600, help="per guest, seconds")
    ap.add_argument("--out", type=Path, help="default bench/ (.kh-out/bench with --quick)")
    args = ap.parse_args(argv)

    if os.geteuid() != 0:
        print("compare: needs root (qemu, cgroups in the guest)", file=sys.stderr)
        return 2
    if not (TOP / ".venv" / "bin" / "python").exists():
        print("compare: run tests/setup.sh first (no .venv)", file=sys.stderr)
        return 2
    quick = args.quick
    killers = args.killers or list(KILLERS)
    scenarios = args.scenarios or (["priority"] if quick else list(SCENARIOS))
    runs = args.runs or (1 if quick else 3)
    window = args.window or (20.0 if quick else 60.0)
    out = args.out or (TOP / ".kh-out" / "bench" if quick else BENCH)
    out.mkdir(parents=True, exist_ok=True)

    todo = cases(killers, scenarios, runs)
    if quick and not args.scenarios:
        todo += cases([k for k in ("earlyoom", "prioomd") if k in killers], ["idle"], 1)
    env = environment(argv)
    results = []
    t0 = time.monotonic()
    for i, case in enumerate(todo, 1):
        r = run_case(case, out, window, args.timeout)
        results.append(r)
        print(f"[{i}/{len(todo)}] {case['scenario']:<10} {case['killer']:<18} run "
              f"{case['run']}: {report.one_line(r)} ({r['guest_wall_s']} s)", flush=True)
    walk = walk_core([1000, 10_000] if quick else [1000, 10_000, 100_000], 3 if quick else 5)
    decision = decision_cost(quick)
    env["wall_s"] = round(time.monotonic() - t0, 1)
    data = {"environment": env, "cases": results, "walk_core": walk, "decision": decision}
    (out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "RESULTS.md").write_text(report.render(data))
    print(f"compare: {len(results)} cases in {env['wall_s']} s; wrote {out}/RESULTS.md")
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"compare: {r['scenario']} {r['killer']} run {r['run']}: {r['error'][:300]}",
              file=sys.stderr)
    return 1 if failed or "error" in decision else 0


if __name__ == "__main__":
    sys.exit(main())
