"""The daemon's loop on fake trees, in dry-run: detect → select → audit.

The fake /proc names real processes this test started (sleep), so the kill
path's permission probe (signal 0) and pidfds work; dry-run sends nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from prioomd import config, daemon, snapshot
from prioomd.events import EventLoop
from tests import fakefs, trees

GiB_KB = 1 << 20


@pytest.fixture
def sleepers():
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(5)]
    yield [p.pid for p in procs]
    for p in procs:
        p.kill()
        p.wait()


def _tree(fake_root, pids, *, mem_available_kb, oom_kill=0):
    cg, procs = trees.worked_example()
    mapping = dict(zip([100, 201, 202, 301, 302], pids, strict=True))

    def remap(node):
        if "procs" in node:
            node["procs"] = [mapping[p] for p in node["procs"]]
        for child in node.get("children", {}).values():
            remap(child)

    remap(cg)
    procs = {mapping[p]: {**spec, "comm": "sleep"} for p, spec in procs.items()}
    root = fakefs.make_cgroupfs(fake_root, cg)
    proc = fakefs.make_procfs(fake_root, procs, meminfo_kb={
        "MemTotal": 4 * GiB_KB, "MemAvailable": mem_available_kb}, vmstat={"oom_kill": oom_kill})
    return root, proc, mapping


def _run(root, proc, tmp_path, text="[root]\nuse_priority_oom = true\n", seconds=0.6):
    conf = tmp_path / "prioomd.toml"
    conf.write_text(text + f'[audit]\nfile = "{tmp_path / "audit.jsonl"}"\njournal = false\n')
    cfg = config.load_config(str(conf))
    src = snapshot.Sources(cgroup_root=root, proc_root=proc)
    d = daemon.Daemon(cfg, str(conf), src, dry_run=True, exit_after_s=seconds,
                      loop_factory=lambda: EventLoop(signals=False), protect=lambda: [])
    assert d.run() == 0
    path = tmp_path / "audit.jsonl"
    records = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return d, records


def test_shortage_gives_one_dry_run_record_naming_the_victim(fake_root, tmp_path, sleepers):
    root, proc, pids = _tree(fake_root, sleepers, mem_available_kb=100_000)  # 2.4 %
    d, records = _run(root, proc, tmp_path)
    assert len(records) == 1  # the dry-run cooldown holds back repeats
    rec = records[0]
    assert rec["kind"] == "decision" and rec["dry_run"] is True
    assert rec["outcome"] == "dry-run"
    assert rec["domain"] == "/" and rec["victim_cgroup"] == "/B/E"
    assert rec["victim_pids"] == [pids[301]]
    assert rec["trigger"].startswith("floor")
    assert all(p in sleepers for p in sleepers)  # nothing was killed
    assert all(os.path.exists(f"/proc/{p}") for p in sleepers)
    assert d.kills == 0


def test_plenty_of_memory_decides_nothing(fake_root, tmp_path, sleepers):
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=3 * GiB_KB)
    _, records = _run(root, proc, tmp_path)
    assert records == []


def test_root_use_priority_oom_off_watches_nothing(fake_root, tmp_path, sleepers):
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=100_000)
    os.removexattr(root, trees.UPO)
    d, records = _run(root, proc, tmp_path, text="")
    assert records == [] and d.states == {}


def test_cgroup_domain_needs_its_own_memory_max(fake_root, tmp_path, sleepers):
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=3 * GiB_KB)
    os.setxattr(os.path.join(root, "A"), trees.UPO, b"1")
    os.setxattr(os.path.join(root, "B"), trees.UPO, b"1")
    with open(os.path.join(root, "B", "memory.max"), "w") as f:
        f.write(str(1 << 30))
    d, _ = _run(root, proc, tmp_path)
    assert set(d.states) == {"/", "/B"}
    # guard mode set memory.high below memory.max, and restored it on exit
    with open(os.path.join(root, "B", "memory.high")) as f:
        assert f.read().strip() == "max"


def test_kernel_kill_is_audited_as_a_miss(fake_root, tmp_path, sleepers, monkeypatch):
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=3 * GiB_KB)
    real = daemon.domains.root_oom_kills
    calls = iter(range(100))
    monkeypatch.setattr(daemon.domains, "root_oom_kills",
                        lambda proc_root: real(proc_root) + (1 if next(calls) >= 1 else 0))
    _, records = _run(root, proc, tmp_path)
    misses = [r for r in records if r["kind"] == "miss"]
    assert len(misses) == 1 and misses[0]["kernel_oom_kills"] == 1
    assert misses[0]["domain"] == "/"


def test_bad_config_on_reload_keeps_the_old_one(fake_root, tmp_path, sleepers):
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=3 * GiB_KB)
    d, _ = _run(root, proc, tmp_path, seconds=0.1)
    old = d.cfg
    (tmp_path / "prioomd.toml").write_text("[root]\nuse_priority_oom = 7\n")
    with EventLoop(signals=False) as loop:
        d.reload(loop)
    assert d.cfg is old


class _SignalledButNotGone:
    """A killer whose SIGKILL went out but whose victim never confirmed its exit."""

    def __init__(self):
        self.calls = 0

    def execute(self, decision, recheck=None):
        from prioomd.model import KillResult
        self.calls += 1
        cand = decision.candidates[0]
        return KillResult(cand, "failed", (), 1.0, None, 0, "no exit within 5 s", False)


class _Loop:
    def __init__(self):
        self.watched = []

    def watch_pid(self, key, pid):
        self.watched.append(pid)


def test_a_signalled_victim_that_did_not_exit_closes_the_gate(fake_root, tmp_path, sleepers):
    root, proc, pids = _tree(fake_root, sleepers, mem_available_kb=100_000)
    d, _ = _run(root, proc, tmp_path, seconds=0.1)  # discovers the domains, then stops
    d.dry_run = False
    d.killer = killer = _SignalledButNotGone()
    d.loop = loop = _Loop()
    state = d.states["/"]
    state.cooldown_until = 0.0
    for _ in range(3):  # three more wake-ups under the same shortage
        d._check(state, "poll")
    assert killer.calls == 1  # the gate waits for the first victim instead
    assert loop.watched == [pids[301]] and d.gate.waiting("/")
    assert d.kills == 0


def test_a_decision_reads_only_the_walked_path(fake_root, tmp_path, sleepers, monkeypatch):
    """The daemon decides with the lazy walk: /proc is read for the processes of
    the cgroup where the walk stops, not for the whole domain (issue 8)."""
    root, proc, pids = _tree(fake_root, sleepers, mem_available_kb=3 * GiB_KB)
    d, _ = _run(root, proc, tmp_path, seconds=0.1,
                text="[root]\nuse_priority_oom = true\n[daemon]\nmax_candidates = 1\n")
    read: list[int] = []
    real = daemon.procfs.read_task
    monkeypatch.setattr(daemon.procfs, "read_task",
                        lambda pid, proc_root="/proc": read.append(pid) or real(pid, proc_root))
    decision = d._decide(d.states["/"].domain)
    assert [c.pid for c in decision.candidates] == [pids[301]]
    assert read == [pids[301]]
