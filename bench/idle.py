"""What prioomd costs while there is nothing to do, next to earlyoom, in one run.

    .venv/bin/python bench/idle.py vm [--window 30]        # boots the qemu guest (VM lock)
    .venv/bin/python bench/idle.py guest [--window 30]     # what `vm` runs in the guest
    .venv/bin/python bench/idle.py connector [--procs 10000]   # on the host
    .venv/bin/python bench/idle.py discovery [--cgroups 20000]  # on the host's cgroup2

``vm``/``guest``: the real-kernel tier's guest (1 GiB, TCG), a 450 MB and a
100 MB hog resident, no pressure. Side by side, started together and measured
over the same window: this checkout's prioomd (C idle sampler), the same with
the Python twin (``prioomd._idle`` hidden), a baseline prioomd (``--baseline DIR``:
another checkout with its own tests/setup.sh venv, e.g. a git worktree of an older
commit) and Debian's earlyoom (its binary comes from the host's root,
which the guest sees read-only). For each: CPU seconds (utime + stime),
wake-ups (voluntary context switches), and, at the end of the window, RSS and
PSS (smaps_rollup); then where prioomd's resident memory is (smaps, by mapping).

``connector``: on the host, this checkout's prioomd (and the baseline's), in dry-run
on the root domain, while ``--procs`` short unrelated processes run (/bin/true,
from 4 shells); CPU of each daemon over that time. Before 2026-11-28 prioomd
subscribed to the process-events connector, which woke it on every exit on the host.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOG = REPO / "tests" / "vm" / "guest" / "hog.py"
TICK = os.sysconf("SC_CLK_TCK")
READY_LINE = b"prioomd running"
CONFIG = "[root]\nuse_priority_oom = true\n[audit]\njournal = false\nfile = \"{audit}\"\n"
HIDE_C_IDLE = ("import sys; sys.modules['prioomd._idle'] = None; "
               "from prioomd.cli import main; sys.exit(main())")


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


def measure(pid: int) -> dict[str, float]:
    """CPU s, voluntary switches, RSS and PSS (MiB) of ``pid`` now."""
    stat = _read(f"/proc/{pid}/stat")
    fields = stat[stat.rindex(")") + 2:].split()
    out = {"cpu_s": (int(fields[11]) + int(fields[12])) / TICK, "wakeups": 0}
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            out["rss_mib"] = int(line.split()[1]) / 1024
    for task in os.listdir(f"/proc/{pid}/task"):  # every thread's (a daemon may have several)
        try:
            status = _read(f"/proc/{pid}/task/{task}/status")
        except OSError:  # the thread ended meanwhile
            continue
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                out["wakeups"] += int(line.split()[1])
    for line in _read(f"/proc/{pid}/smaps_rollup").splitlines():
        if line.startswith("Pss:"):
            out["pss_mib"] = int(line.split()[1]) / 1024
    return out


def breakdown(pid: int, top: int = 8) -> list[tuple[str, float]]:
    """Resident MiB of ``pid`` by mapping name (anonymous, heap, each library)."""
    by: dict[str, int] = {}
    name = ""
    for line in _read(f"/proc/{pid}/smaps").splitlines():
        head = line.split()
        if not head:
            continue
        if not head[0].endswith(":") or "-" in head[0]:
            name = os.path.basename(head[5]) if len(head) > 5 else "[anon]"
        elif head[0] == "Rss:":
            by[name] = by.get(name, 0) + int(head[1])
    rows = sorted(by.items(), key=lambda kv: -kv[1])
    return [(k, v / 1024) for k, v in rows[:top]]


def start_prioomd(label: str, argv: list[str], cwd: Path, work: Path, extra: list[str]
                  ) -> tuple[str, subprocess.Popen[bytes], Path]:
    d = work / label.replace(" ", "-")
    d.mkdir()
    conf = d / "prioomd.toml"
    conf.write_text(CONFIG.format(audit=d / "audit.jsonl"))
    log = d / "stderr"
    proc = subprocess.Popen([*argv, "run", "--config", str(conf), *extra],
                            cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(log, "wb"))  # noqa: SIM115 (the child keeps it)
    return label, proc, log


def wait_ready(log: Path, proc: subprocess.Popen[bytes], timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while READY_LINE not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > end:
            sys.exit(f"prioomd did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.5)


def daemons(work: Path, extra: list[str], *, python_twin: bool, baseline: Path | None
            ) -> list[tuple]:
    py = [sys.executable]
    runs = [start_prioomd("prioomd", [*py, "-m", "prioomd"], REPO, work, extra)]
    if python_twin:
        runs.append(start_prioomd("prioomd (Python twin)", [*py, "-c", HIDE_C_IDLE], REPO,
                                  work, extra))
    if baseline is not None:
        runs.append(start_prioomd("prioomd baseline",
                                  [str(baseline / ".venv" / "bin" / "python"), "-m", "prioomd"],
                                  baseline, work, extra))
    for _label, proc, log in runs:
        wait_ready(log, proc)
    return runs


def report(rows: list[tuple[str, dict[str, float], dict[str, float]]], window: float,
           ref: str | None) -> None:
    print(f"{'daemon':<24}{'CPU s':>8}{'wake-ups/s':>12}{'RSS MiB':>9}{'PSS MiB':>9}"
          + (f"  CPU / {ref}" if ref else ""))
    base = next((b["cpu_s"] - a["cpu_s"] for n, a, b in rows if n == ref), None)
    for name, a, b in rows:
        cpu = b["cpu_s"] - a["cpu_s"]
        ratio = f"{cpu / base:>9.2f}" if base else ""
        print(f"{name:<24}{cpu:>8.2f}{(b['wakeups'] - a['wakeups']) / window:>12.1f}"
              f"{b['rss_mib']:>9.1f}{b['pss_mib']:>9.1f}{ratio}")


def guest(window: float, baseline: Path | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="idle-", dir="/tmp"))
    hogs = []
    for size in (450 << 20, 100 << 20):
        r, w = os.pipe()
        hogs.append(subprocess.Popen([sys.executable, "-I", "-S", str(HOG), str(size), "0", "0",
                                      str(w), "zero"], pass_fds=(w,)))
        os.close(w)
        os.read(r, 64)
        os.close(r)
    try:
        runs = daemons(work, ["--cgroup-root", "/sys/fs/cgroup"], python_twin=True,
                       baseline=baseline)
        early = subprocess.Popen(["/usr/bin/earlyoom"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        procs = [(label, proc) for label, proc, _log in runs] + [("earlyoom", early)]
        time.sleep(5)  # past start-up and self-tests
        before = {label: measure(p.pid) for label, p in procs}
        time.sleep(window)
        rows = [(label, before[label], measure(p.pid)) for label, p in procs]
        print(f"\nidle, {window:g} s window, MemAvailable "
              f"{[x for x in _read('/proc/meminfo').splitlines() if 'MemAvail' in x][0]}")
        report(rows, window, "earlyoom")
        print("\nprioomd resident memory by mapping (MiB):")
        for name, mib in breakdown(runs[0][1].pid):
            print(f"  {mib:6.1f}  {name}")
        for _label, p in procs:
            p.terminate()
            p.wait()
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def connector(nprocs: int, baseline: Path | None) -> None:
    sys.path.insert(0, str(REPO))
    from prioomd.cgroupfs import default_cgroup_root
    work = Path(tempfile.mkdtemp(prefix="idle-conn-"))
    runs = daemons(work, ["--dry-run", "--cgroup-root", default_cgroup_root()],
                   python_twin=False, baseline=baseline)
    try:
        time.sleep(3)
        before = {label: measure(p.pid) for label, p, _log in runs}
        t0 = time.monotonic()
        shells = [subprocess.Popen(["bash", "-c", f"for ((i=0; i<{nprocs // 4}; i++)); do "
                                    "/bin/true; done"]) for _ in range(4)]
        for s in shells:
            s.wait()
        took = time.monotonic() - t0
        rows = [(label, before[label], measure(p.pid)) for label, p, _log in runs]
        print(f"\n{nprocs} short processes in {took:.1f} s")
        report(rows, took, "prioomd baseline" if len(rows) > 1 else None)
    finally:
        for _label, p, _log in runs:
            p.terminate()
            p.wait()


MKDIR_STORM = """
import os, sys, time
base, n = sys.argv[1], int(sys.argv[2])
t0 = time.monotonic()
for i in range(n):
    os.mkdir(f"{base}/c{i}")
late = f"{base}/late"
os.mkdir(late)
os.setxattr(late, "trusted.prioomd.use_priority_oom", b"1")
print(t0, time.monotonic(), flush=True)
"""


def discovery(n: int) -> None:
    """``n`` empty cgroups made as fast as one process can, then one with
    use_priority_oom; the loop of the daemon meanwhile (read_events + step per
    wake-up): its longest step, and how long after its mkdir the last cgroup
    was found enabled. Then the start-up walk over the grown tree."""
    import select

    sys.path.insert(0, str(REPO))
    from prioomd import config, table
    from prioomd import discovery as disc
    from prioomd.cgroupfs import default_cgroup_root
    root = default_cgroup_root()
    base = f"{root}/prioomd-bench-{os.getpid()}"
    rel = base[len(root):]
    os.mkdir(base)
    tbl = table.PriorityTable(config.parse_config("", "bench"))
    try:
        d = disc.Discovery(tbl, root, clock=time.monotonic)
        d.run_all()
        poller = select.poll()
        poller.register(d.fileno(), select.POLLIN)
        storm = subprocess.Popen([sys.executable, "-c", MKDIR_STORM, base, str(n)],
                                 stdout=subprocess.PIPE, text=True)
        steps: list[float] = []  # wall time of each wake-up's work
        cpu: list[float] = []  # and its CPU time (the machine may be busy)
        found_at = None
        while found_at is None:
            poller.poll(0 if d.busy else 100)
            t0, c0 = time.monotonic(), time.thread_time()
            d.read_events()
            d.step()
            steps.append(time.monotonic() - t0)
            cpu.append(time.thread_time() - c0)
            if f"{rel}/late" in d._enabled:
                found_at = time.monotonic()
        start, made = (float(x) for x in storm.communicate()[0].split())
        print(f"\n{n} cgroups made in {made - start:.2f} s (mkdir from one process)")
        steps.sort()
        print(f"loop: {len(steps)} wake-ups; work per wake-up: longest {steps[-1] * 1000:.1f} ms "
              f"(CPU {max(cpu) * 1000:.1f} ms), median {steps[len(steps) // 2] * 1000:.1f} ms; "
              f"{sum(cpu):.2f} s of CPU in all")
        print(f"the use_priority_oom cgroup made last was found {found_at - made:.2f} s "
              f"after its xattr was set")
        d.close()
        t0 = time.monotonic()
        d2 = disc.Discovery(tbl, root, clock=time.monotonic)
        d2.run_all()
        print(f"start-up walk over the grown tree: {time.monotonic() - t0:.2f} s, "
              f"{d2.watched} directories watched")
        d2.close()
    finally:
        for name in os.listdir(base):
            if os.path.isdir(f"{base}/{name}"):
                os.rmdir(f"{base}/{name}")
        os.rmdir(base)


def vm(window: float, baseline: Path | None) -> int:
    cmd = ["flock", "/var/tmp/prioomd-vm.lock", "python3", str(REPO / "tests/vm/kh/run.py"),
           "-m", "1G", "-t", "900", "--", sys.executable, str(Path(__file__).resolve()),
           "guest", "--window", str(window)]
    if baseline is not None:  # the guest sees the host's root read-only: the same path
        cmd += ["--baseline", str(baseline)]
    return subprocess.call(cmd, cwd=REPO)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("where", choices=["vm", "guest", "connector", "discovery"])
    ap.add_argument("--window", type=float, default=30.0)
    ap.add_argument("--procs", type=int, default=10_000)
    ap.add_argument("--cgroups", type=int, default=20_000)
    ap.add_argument("--baseline", type=Path,
                    help="another checkout (with its .venv) to measure side by side")
    args = ap.parse_args()
    baseline = args.baseline.resolve() if args.baseline else None
    if baseline is not None and not (baseline / ".venv" / "bin" / "python").exists():
        ap.error(f"--baseline {baseline}: no .venv there (run its tests/setup.sh)")
    if args.where == "vm":
        return vm(args.window, baseline)
    if args.where == "guest":
        guest(args.window, baseline)
    elif args.where == "discovery":
        discovery(args.cgroups)
    else:
        connector(args.procs, baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
