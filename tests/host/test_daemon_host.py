"""`prioomd run` as a process, killed with SIGKILL in the middle of a kill.

A fake cgroup tree (tmpfs) holds one cgroup domain /t with guard mode on and two
real processes: the victim traps SIGTERM, so with a 60 s grace the daemon is
caught mid-kill. After ``kill -9`` and a restart, nobody else is killed for
the same event, the victim (and only it) dies at the next one, and a clean stop
leaves memory.high as the administrator set it. Generous bounds; nothing is timed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import fakefs, trees

PATIENCE_S = 30.0
GiB = 1 << 30
ADMIN_HIGH = str(GiB - (4 << 20))  # the administrator's memory.high, above the guard


def wait_until(pred: Callable[[], bool], what: str, log: Callable[[], str],
               nudge: Callable[[], None] | None = None) -> None:
    """Poll ``pred``; ``nudge()`` every 2 s meanwhile (a loaded machine may not have
    taken the daemon's first sample, the baseline, before the first nudge)."""
    deadline = time.monotonic() + PATIENCE_S
    next_nudge = time.monotonic()
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; daemon log:\n{log()}")
        if nudge is not None and time.monotonic() >= next_nudge:
            nudge()
            next_nudge = time.monotonic() + 2.0
        time.sleep(0.05)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    trap = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: open(sys.argv[1], 'w').close())\n"
            "time.sleep(600)\n")
    started = {"victim": subprocess.Popen([sys.executable, "-c", trap,
                                           str(tmp_path / "got-sigterm")]),
               "keeper": subprocess.Popen(["sleep", "600"])}
    yield started
    for p in started.values():
        p.kill()
        p.wait()


class World:
    def __init__(self, fake_root: str, tmp_path: Path, procs) -> None:
        victim, keeper = procs["victim"].pid, procs["keeper"].pid
        self.root = fakefs.make_cgroupfs(fake_root, {"children": {"t": {
            "xattrs": {trees.UPO: b"1"}, "memory.max": GiB, "memory.high": ADMIN_HIGH,
            "children": {"a": {"xattrs": trees.prio(1), "procs": [victim]},
                         "b": {"xattrs": trees.prio(9), "procs": [keeper]}}}}})
        self.proc = fakefs.make_procfs(fake_root, {
            victim: {"comm": "victim", "cgroup": "/t/a", "rss_kb": 500_000},
            keeper: {"comm": "keeper", "cgroup": "/t/b", "rss_kb": 900_000}})
        self.tmp = tmp_path
        self.run_dir = tmp_path / "run"
        self.audit = tmp_path / "audit.jsonl"
        self.oom = 0

    def start(self, grace_s: float, kill_extra: str = "") -> subprocess.Popen[bytes]:
        conf = self.tmp / "prioomd.toml"
        conf.write_text(f"[kill]\nsigterm_grace_s = {grace_s}\n{kill_extra}"
                        "[detect]\npoll_max_s = 0.2\n"
                        f"[audit]\nfile = \"{self.audit}\"\njournal = false\n")
        with open(self.tmp / "daemon.log", "ab") as log:  # the child keeps its own copy
            return subprocess.Popen(
                [sys.executable, "-m", "prioomd", "run", "--config", str(conf),
                 "--cgroup-root", self.root, "--proc-root", self.proc,
                 "--runtime-dir", str(self.run_dir)], stdout=log, stderr=log)

    def high(self) -> str:
        return (Path(self.root) / "t" / "memory.high").read_text().strip()

    def bump_oom(self) -> None:
        """The kernel hit OOM at /t's limit and killed nobody: an "oom" threat."""
        self.oom += 1
        events = {k: 0 for k in fakefs.MEMORY_EVENTS_KEYS} | {"oom": self.oom}
        (Path(self.root) / "t" / "memory.events.local").write_text(
            "".join(f"{k} {v}\n" for k, v in events.items()))

    def records(self) -> list[dict]:
        if not self.audit.exists():
            return []
        return [json.loads(line) for line in self.audit.read_text().splitlines()]

    def log(self) -> str:
        return (self.tmp / "daemon.log").read_text(errors="replace")


def test_sigkill_mid_kill_then_restart_and_stop(fake_root, tmp_path, procs):
    w = World(fake_root, tmp_path, procs)
    daemon = w.start(grace_s=60)
    try:
        wait_until(lambda: w.high() != ADMIN_HIGH, "the guard", w.log)
        guard = w.high()
        wait_until((tmp_path / "got-sigterm").exists, "the SIGTERM", w.log, w.bump_oom)
    finally:
        daemon.send_signal(signal.SIGKILL)  # mid-kill: waiting out the grace
        daemon.wait()
    assert w.high() == guard  # a crash leaves the guard behind ...
    assert (w.run_dir / "guard.json").exists()  # ... and what it replaced

    daemon = w.start(grace_s=0)
    try:
        wait_until(lambda: "prioomd running" in w.log(), "the restart", w.log)
        time.sleep(1.0)  # the same event, seen again by a fresh daemon: no kill
        assert procs["victim"].poll() is None and procs["keeper"].poll() is None
        assert w.high() == guard
        # the next event: the same victim, at once (SIGKILL); until it is gone,
        # nothing else can be chosen, so nudging again is safe
        wait_until(lambda: procs["victim"].poll() is not None, "the kill", w.log, w.bump_oom)
        assert procs["keeper"].poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=PATIENCE_S) == 0, w.log()
    assert w.high() == ADMIN_HIGH, w.log()  # the administrator's, not the guard's
    assert not (w.run_dir / "guard.json").exists()
    killed = [r for r in w.records() if r["outcome"] == "killed"]
    assert [r["victim_pid"] for r in killed] == [procs["victim"].pid]


def _hook(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_a_hanging_prekill_hook_does_not_hold_the_kill_back(fake_root, tmp_path, procs):
    """A cgroup domain under guard leaves time for the pre-kill hook; this one hangs
    (600 s) and is killed at its 1 s timeout; the victim dies all the same, and the
    post-kill hook records the outcome. Generous bounds, as above."""
    w = World(fake_root, tmp_path, procs)
    pre = _hook(tmp_path / "pre", f'echo $$ > "{tmp_path}/pre.pid"\nexec sleep 600\n')
    post = _hook(tmp_path / "post", f'env > "{tmp_path}/post.tmp"\n'
                 f'mv "{tmp_path}/post.tmp" "{tmp_path}/post.env"\n')
    daemon = w.start(grace_s=0, kill_extra=f'prekill_hook = "{pre}"\n'
                     f'postkill_hook = "{post}"\nhook_timeout_s = 1.0\n')
    try:
        wait_until(lambda: w.high() != ADMIN_HIGH, "the guard", w.log)
        wait_until(lambda: procs["victim"].poll() is not None, "the kill", w.log, w.bump_oom)
        wait_until((tmp_path / "post.env").exists, "the post-kill hook", w.log)
        assert procs["keeper"].poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=PATIENCE_S) == 0, w.log()
    assert "prekill hook" in w.log() and ": timeout after" in w.log(), w.log()
    hook_pid = int((tmp_path / "pre.pid").read_text())
    assert not Path(f"/proc/{hook_pid}/cmdline").exists() or \
        Path(f"/proc/{hook_pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    killed = [r for r in w.records() if r["outcome"] == "killed"]
    assert [r["victim_pid"] for r in killed] == [procs["victim"].pid]
    # detection to SIGKILL: the hook's 1 s timeout, not its 600 s
    assert 900 <= killed[0]["t_detect_to_signal_ms"] < 20_000
    env = (tmp_path / "post.env").read_bytes()
    assert b"PRIOOMD_OUTCOME=killed\n" in env
    assert f"PRIOOMD_VICTIM_PID={procs['victim'].pid}\n".encode() in env
