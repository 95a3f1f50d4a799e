"""Run `prioomd run` for real inside the guest and read what it did.

    with Prioomd(cgroup_root, config_text, tmp_path) as d:   # waits until it is ready
        ... provoke pressure ...
    d.records()      # the audit JSON lines, decisions and misses
    d.log()          # its stderr

The daemon is started like an operator starts it, as a command; its oom_score_adj
is inherited from the test runner (-1000, see conftest), as systemd's
OOMScoreAdjust=-1000 would set it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

READY_LINE = "prioomd running"
# Priority OOM for the whole machine, audit records to the file only.
GLOBAL = "[root]\nuse_priority_oom = true\n[audit]\njournal = false\n"


class Prioomd:
    def __init__(self, cgroup_root: Path, config_text: str, workdir: Path, *,
                 dry_run: bool = False, extra: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.config = workdir / "prioomd.toml"
        self.audit_file = workdir / "audit.jsonl"
        self.stderr_file = workdir / "prioomd.log"
        self.config.write_text(config_text)
        self.argv = [sys.executable, "-m", "prioomd", "-v", "run", "--config", str(self.config),
                     "--cgroup-root", str(cgroup_root), "--audit-file", str(self.audit_file),
                     *(["--dry-run"] if dry_run else []), *extra]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prioomd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        export_records(self.workdir.name, self.records())

    def start(self, timeout: float = 180.0) -> None:
        err = open(self.stderr_file, "ab")  # noqa: SIM115 (kept for the child)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=err)
        err.close()
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.log():
            if self.proc.poll() is not None:
                raise AssertionError(f"prioomd exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"prioomd not ready in {timeout} s:\n{self.log()}")
            time.sleep(0.2)

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.stderr_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        try:
            lines = self.audit_file.read_text().splitlines()
        except FileNotFoundError:
            return []
        recs = [json.loads(x) for x in lines if x.strip()]
        return [r for r in recs if kind is None or r.get("kind") == kind]

    def kills(self) -> list[dict[str, Any]]:
        return [r for r in self.records("decision") if r["outcome"] in ("killed", "dry-run")]

    def describe(self) -> str:
        recs = "\n".join(json.dumps(r) for r in self.records())
        return f"--- prioomd log ---\n{self.log()[-6000:]}\n--- audit ---\n{recs}"


def memtotal_pct(pct: float) -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(int(line.split()[1]) * 1024 * pct / 100)
    raise RuntimeError("no MemTotal")


def os_pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def export_records(name: str, records: list[dict[str, Any]]) -> None:
    """Keep the audit records for the measurements (kill latencies): appended to
    $PRIOOMD_VM_RESULTS/audit.jsonl, a directory shared with the host."""
    out = os.environ.get("PRIOOMD_VM_RESULTS")
    if not out:
        return
    with open(os.path.join(out, "audit.jsonl"), "a") as f:
        for rec in records:
            f.write(json.dumps({"test": name, **rec}) + "\n")
