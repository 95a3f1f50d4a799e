"""One benchmark case inside the test guest: one OOM killer, one scenario, the numbers.

    python3 bench/guest_case.py --killer earlyoom --scenario priority --out CASE.json

Runs only inside a guest booted by tests/vm/kh/run.py (it fills memory on purpose).
bench/compare.py boots a fresh guest for every case and collects the JSON it writes.

Killers, each configured as its package ships it (Debian 12):
    kernel            no daemon: the kernel's OOM killer alone
    earlyoom          earlyoom -r 3600 (/etc/default/earlyoom)
    nohang            nohang --monitor --config /etc/nohang/nohang.conf
    oomd              oomd --interval 1 --config /etc/oomd/oomd.json (its shipped rules
                      watch system.slice and user.slice, where the workloads live)
    prioomd           prioomd run, use_priority_oom on the root, the scenario's priorities
                      as trusted.prioomd.priority xattrs
    systemd-oomd      (systemd guest) ManagedOOMMemoryPressure=kill on the workloads'
                      slice, every other setting at its default
    systemd-oomd-high (systemd guest) the same plus MemoryHigh=85% on that slice
None but prioomd can express the priorities: the others act on their own heuristics,
which is what their users get.

Scenarios (workloads in <slice>/{high,mid,low}, priorities 10, 6, 2; the right order
is low, then mid; high must survive):
    priority      high holds 45 % of RAM, low 10 %, mid leaks at --rate MiB/s
    limit         <slice>/dom has memory.max 300M and use_priority_oom; dom/hi (9) grows
                  10 MiB/s from 60M, dom/lo (3) holds 40M: lo must die, hi survive
    zram          priority, with a zram swap device of half the RAM, incompressible data
    forkstorm     priority, and /low also runs a process that forks as fast as it can
    idle          high and low resident, no leak: the killer's own cost over --window s
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP / "tests" / "vm" / "guest"))
from daemon import Prioomd  # noqa: E402
from idle import measure  # noqa: E402  (bench/idle.py: CPU, wake-ups, RSS, PSS)
from scenario import CGROUP_ROOT, Scenario, in_guest, meminfo  # noqa: E402

MIB = 1 << 20
MCL_CURRENT, MCL_FUTURE = 1, 2  # <sys/mman.h>
PRIORITIES = {"high": 10, "mid": 6, "low": 2}
PLAIN_SLICE, SYSTEMD_SLICE = "system.slice", "bench.slice"
PRIOOMD_CONF = "[root]\nuse_priority_oom = true\n[audit]\njournal = false\n"
# A line a killer logs when it signals a victim (its own words; the time we read it is
# the best estimate of when it acted that can be had from outside it).
# earlyoom's start-up banner also says "sending SIGTERM when mem <= ...": only a
# line naming a process counts.  oomd logs its kills to /dev/kmsg (--kmsg-override),
# not to its output: no time is claimed for it.
KILL_LINE = {
    "earlyoom": re.compile(r"sending SIG(TERM|KILL) to process"),
    "nohang": re.compile(r"Implementing a corrective action"),
}
FORKER = ("import os, time\n"
          "while True:\n"
          "    try:\n"
          "        pid = os.fork()\n"
          "    except OSError:\n"
          "        time.sleep(0.01); continue\n"
          "    if pid == 0:\n"
          "        os._exit(0)\n"
          "    os.waitpid(pid, 0)\n")


class Killer:
    """A peer OOM killer started as its package starts it; its log lines timestamped."""

    def __init__(self, name: str, workdir: Path, slice_: str) -> None:
        self.name, self.workdir, self.slice = name, workdir, slice_
        self.proc: subprocess.Popen[bytes] | None = None
        self.prioomd: Prioomd | None = None
        self.lines: list[tuple[float, str]] = []
        self.pid: int | None = None

    def start(self) -> None:
        argv = {
            "earlyoom": ["earlyoom", "-r", "3600"],
            "nohang": ["nohang", "--monitor", "--config", "/etc/nohang/nohang.conf"],
            "oomd": ["oomd", "--interval", "1", "--config", "/etc/oomd/oomd.json",
                     "--cgroup-fs", str(CGROUP_ROOT)],
        }.get(self.name)
        if self.name == "prioomd":
            self.prioomd = Prioomd(CGROUP_ROOT, PRIOOMD_CONF, self.workdir)
            self.prioomd.start()
            self.pid = self.prioomd.pid
        elif self.name.startswith("systemd-oomd"):
            _systemctl("start", "systemd-oomd.service")
            out = _systemctl("show", "-P", "MainPID", "systemd-oomd.service")
            self.pid = int(out.strip() or 0) or None
        elif argv is not None:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         preexec_fn=_unkillable)
            self.pid = self.proc.pid
            threading.Thread(target=self._pump, daemon=True).start()
        self._settle()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip()))

    def _settle(self) -> None:
        """Give the killer time to read its config and take its first samples (under TCG
        a Python daemon needs seconds to start)."""
        ready = {"nohang": "Monitoring has started", "oomd": "Running oomd"}.get(self.name)
        deadline = time.monotonic() + (90 if ready else 3)
        while time.monotonic() < deadline:
            if ready and any(ready in line for _, line in self.lines):
                break
            time.sleep(0.2)
        time.sleep(1.0)

    def first_signal_at(self) -> float | None:
        """Monotonic time of the first kill the killer logged, if it logs one (prioomd's
        own timings come from its audit record instead)."""
        pat = KILL_LINE.get(self.name)
        if pat is None:
            return None
        return next((t for t, line in self.lines if pat.search(line)), None)

    def stop(self) -> None:
        if self.prioomd is not None:
            self.prioomd.stop()
        elif self.name.startswith("systemd-oomd"):
            _systemctl("stop", "systemd-oomd.service")
        elif self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def log_tail(self, n: int = 30) -> list[str]:
        if self.prioomd is not None:
            return self.prioomd.log().splitlines()[-n:]
        return [line for _, line in self.lines[-n:]]


def _unkillable() -> None:
    """A killer runs as its unit would: the kernel's OOM killer spares it (-1000 is what
    systemd's OOMScoreAdjust would give a protected daemon; the runner has it too)."""
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("-1000")


def _lock_runner() -> None:
    """mlockall the runner: under pressure its pages would be reclaimed and re-read over
    9p, and it would see deaths seconds late (its timestamps are the measurements)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
        print(f"guest_case: mlockall: {os.strerror(ctypes.get_errno())}", file=sys.stderr)


def _systemctl(*args: str) -> str:
    return subprocess.run(["systemctl", *args], check=True, capture_output=True,
                          text=True, timeout=60).stdout


def _systemd_slice(high: bool) -> None:
    """bench.slice with ManagedOOMMemoryPressure=kill (and MemoryHigh=85% for the
    -high variant), as systemd-oomd's documentation configures a monitored slice."""
    total = meminfo("MemTotal")
    unit = "[Slice]\nManagedOOMMemoryPressure=kill\n"
    if high:
        unit += f"MemoryHigh={int(total * 0.85)}\n"
    Path("/run/systemd/system").mkdir(parents=True, exist_ok=True)
    Path(f"/run/systemd/system/{SYSTEMD_SLICE}").write_text(unit)
    _systemctl("daemon-reload")
    _systemctl("start", SYSTEMD_SLICE)


def _zram_swap(size: int) -> None:
    subprocess.run(["modprobe", "zram", "num_devices=1"], check=True, timeout=60)
    Path("/sys/block/zram0/disksize").write_text(str(size))
    subprocess.run(["mkswap", "/dev/zram0"], check=True, capture_output=True, timeout=60)
    subprocess.run(["swapon", "/dev/zram0"], check=True, timeout=60)


def run_case(killer_name: str, scenario: str, rate_mib: str, window_s: float,
             workdir: Path) -> dict[str, Any]:
    systemd = killer_name.startswith("systemd-oomd")
    slice_ = SYSTEMD_SLICE if systemd else PLAIN_SLICE
    if systemd:
        _systemd_slice(high=killer_name == "systemd-oomd-high")
    if scenario == "zram":
        _zram_swap(meminfo("MemTotal") // 2)
    if scenario == "limit":
        tree: dict[str, dict[str, Any]] = {
            f"{slice_}/dom": {"memory.max": "300M", "memory.swap.max": 0,
                              "use_priority_oom": True},
            f"{slice_}/dom/hi": {"priority": 9}, f"{slice_}/dom/lo": {"priority": 3}}
        names = {"hi": f"{slice_}/dom/hi", "lo": f"{slice_}/dom/lo"}
    else:
        tree = {f"{slice_}/{n}": {"priority": p} for n, p in PRIORITIES.items()}
        names = {n: f"{slice_}/{n}" for n in PRIORITIES}
    fill = "random" if scenario == "zram" else "zero"
    killer = Killer(killer_name, workdir, slice_)
    result: dict[str, Any] = {"killer": killer_name, "scenario": scenario,
                              "rate_mib_s": rate_mib, "mem_total_mib": meminfo() // MIB}
    with Scenario(tree, base=CGROUP_ROOT) as sc:
        if scenario == "limit":
            sc.hog(names["lo"], "40M", name="lo", fill=fill)
            killer.start()
            t_leak = time.monotonic()
            sc.hog(names["hi"], "60M", rate="10M", name="hi", ready=True)
        else:
            sc.hog(names["high"], "45%", name="high", fill=fill)
            sc.hog(names["low"], "10%", name="low", fill=fill)
            if scenario == "forkstorm":
                sc.spawn(names["low"], [sys.executable, "-I", "-S", "-c", FORKER],
                         name="low-forker")
            killer.start()
            if scenario == "idle":
                return _idle(result, killer, window_s)
            t_leak = time.monotonic()
            leak = rate_mib == "max"
            sc.hog(names["mid"], name="mid", leak=leak, fill=fill, ready=False,
                   rate=0 if leak else int(float(rate_mib) * MIB))
        stop_on = {"lo", "hi"} if scenario == "limit" else {"mid", "high"}
        avail_min = _watch(sc, t_leak, stop_on, timeout=240)
        signal_at = killer.first_signal_at()
        killer.stop()
        rep = sc.report()
    deaths = list(rep.deaths)
    first = deaths[0] if deaths else None
    result.update({
        "victims": [d.name for d in deaths],
        "signals": [d.how for d in deaths],
        "high_survived": not any(d.name in ("high", "hi") for d in deaths),
        "kernel_oom_kill": rep.oom_kill_global,  # /proc/vmstat: global and memcg kills
        "kernel_victims": [k.workload or k.comm for k in rep.kernel_kills],
        "t_leak_to_first_death_s": None if first is None else first.at_s - (t_leak - sc.t0),
        "t_signal_to_death_s": (None if first is None or signal_at is None
                                else first.at_s - (signal_at - sc.t0)),
        "mem_available_min_mib": avail_min,
        "log_tail": killer.log_tail(),
    })
    if killer.prioomd is not None:
        kills = killer.prioomd.kills()
        if kills:
            result["prioomd_t_detect_to_signal_ms"] = kills[0].get("t_detect_to_signal_ms")
            result["prioomd_t_signal_to_exit_ms"] = kills[0].get("t_signal_to_exit_ms")
    return result


def _watch(sc: Scenario, t_leak: float, stop_on: set[str], timeout: float) -> float:
    """Wait until one of `stop_on` died (the leaker, or what must survive) or timeout;
    return the lowest MemAvailable (MiB) seen before the first death: the headroom the
    killer left when it acted."""
    avail_min = float("inf")
    deadline = t_leak + timeout
    while time.monotonic() < deadline:
        sc._reap()
        if not sc.deaths:
            avail_min = min(avail_min, meminfo("MemAvailable") / MIB)
        if any(d.name in stop_on for d in sc.deaths):
            break
        sc._sleep(0.1)
    return round(avail_min, 1)


def _idle(result: dict[str, Any], killer: Killer, window_s: float) -> dict[str, Any]:
    if killer.pid is None:
        result["idle"] = None
        return result
    a = measure(killer.pid)
    time.sleep(window_s)
    b = measure(killer.pid)
    killer.stop()
    result["idle"] = {"window_s": window_s, "cpu_s": round(b["cpu_s"] - a["cpu_s"], 3),
                      "wakeups": b["wakeups"] - a["wakeups"],
                      "rss_mib": round(b["rss_mib"], 1), "pss_mib": round(b["pss_mib"], 1)}
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--killer", required=True)
    ap.add_argument("--scenario", required=True,
                    choices=("priority", "limit", "zram", "forkstorm", "idle"))
    ap.add_argument("--rate", default="30", help="mid's leak in MiB/s, or 'max'")
    ap.add_argument("--window", type=float, default=60.0, help="idle window, seconds")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    if not in_guest():
        print("guest_case: runs only in the test guest (it fills memory)", file=sys.stderr)
        return 2
    _unkillable()
    _lock_runner()
    workdir = args.out.parent / (args.out.stem + ".d")
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        result = run_case(args.killer, args.scenario, args.rate, args.window, workdir)
    except Exception as exc:  # the host records the failure of this case, and goes on
        result = {"killer": args.killer, "scenario": args.scenario, "rate_mib_s": args.rate,
                  "error": f"{type(exc).__name__}: {exc}"[:4000]}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
