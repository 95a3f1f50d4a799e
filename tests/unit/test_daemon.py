"""The daemon's loop on fake trees, in dry-run: detect → select → audit.

The fake /proc names real processes this test started (sleep), so the kill
path's permission probe (signal 0) and pidfds work; dry-run sends nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading

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


class _MakesADomainLater(EventLoop):
    """A loop that, on its first wait, makes a cgroup with use_priority_oom and a
    limit under the running daemon, and records connector subscriptions."""

    def __init__(self, root):
        super().__init__(signals=False)
        self.root, self.waits, self.subscribed = root, 0, 0

    def wait(self, timeout_s=None, **kw):
        self.waits += 1
        if self.waits == 1:
            cg = os.path.join(self.root, "B", "late")
            os.mkdir(cg)
            for name in ("memory.max", "memory.pressure", "memory.events", "memory.high"):
                with open(os.path.join(self.root, "B", name)) as src, \
                        open(os.path.join(cg, name), "w") as dst:
                    dst.write(src.read() if name != "memory.max" else f"{1 << 30}\n")
            os.setxattr(cg, trees.UPO, b"1")
        return super().wait(timeout_s, **kw)

    def enable_proc_events(self, *, forks=False):
        self.subscribed += 1
        return super().enable_proc_events(forks=forks)


def test_a_domain_made_while_running_is_armed_from_events(fake_root, tmp_path, sleepers):
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=3 * GiB_KB)
    conf = tmp_path / "prioomd.toml"
    conf.write_text("[root]\nuse_priority_oom = true\n[audit]\njournal = false\n")
    loops = []

    def factory():
        loops.append(_MakesADomainLater(root))
        return loops[0]

    d = daemon.Daemon(config.load_config(str(conf)), str(conf),
                      snapshot.Sources(cgroup_root=root, proc_root=proc), dry_run=True,
                      exit_after_s=1.5, loop_factory=factory, protect=lambda: [])
    d.run()
    assert "/B/late" in d.states  # not after a 30 s rescan: from its inotify events
    # nobody awaited a victim's exit: the connector (every exit on the host) stayed off
    assert loops[0].subscribed == 0


class _CountingLoop(EventLoop):
    """Counts the waits handed to a poll hook; during the first such wait,
    ``during_hook`` runs from another thread."""

    def __init__(self, during_hook):
        super().__init__(signals=False)
        self.hooked, self.during_hook = 0, during_hook

    def wait(self, timeout_s=None, *, poll=None):
        self.hooked += poll is not None
        if self.hooked == 1 and poll is not None:
            threading.Timer(0.3, self.during_hook).start()
        return super().wait(timeout_s, poll=poll)


def test_plentiful_memory_is_watched_by_the_idle_sampler(fake_root, tmp_path, sleepers):
    root, proc, pids = _tree(fake_root, sleepers, mem_available_kb=3 * GiB_KB)
    meminfo = os.path.join(proc, "meminfo")
    with open(meminfo) as f:
        text = f.read()
    short = text.replace(f"MemAvailable:   {3 * GiB_KB:>8} kB", f"MemAvailable:   {100_000:>8} kB")
    assert short != text and len(short) == len(text)

    def shortage():  # in place, as the kernel's file changes under the sampler's fd
        fd = os.open(meminfo, os.O_WRONLY)
        os.pwrite(fd, short.encode(), 0)
        os.close(fd)

    loops = []

    def factory():
        loops.append(_CountingLoop(shortage))
        return loops[0]

    conf = tmp_path / "prioomd.toml"
    conf.write_text(f'[root]\nuse_priority_oom = true\n[audit]\nfile = "{tmp_path / "a.jsonl"}"'
                    '\njournal = false\n')
    d = daemon.Daemon(config.load_config(str(conf)), str(conf),
                      snapshot.Sources(cgroup_root=root, proc_root=proc), dry_run=True,
                      exit_after_s=3.0, loop_factory=factory, protect=lambda: [])
    d.run()
    loop = loops[0]
    assert loop.hooked >= 1  # the quiet second went to the sampler, not to Python ticks
    # ... which handed back when MemAvailable fell: the floor decision was made
    records = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["victim_pids"] for r in records if r["kind"] == "decision"] == [[pids[301]]]
