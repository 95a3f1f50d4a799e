"""The daemon's loop on fake trees, in dry-run: detect → select → audit.

The fake /proc names real processes this test started (sleep), so the kill
path's permission probe (signal 0) and pidfds work; dry-run sends nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from prioomd import config, daemon, snapshot
from prioomd.events import Event, EventLoop
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


def _run(root, proc, tmp_path, text="[root]\nuse_priority_oom = true\n", seconds=0.6,
         kmsg_path=None):
    conf = tmp_path / "prioomd.toml"
    conf.write_text(text + f'[audit]\nfile = "{tmp_path / "audit.jsonl"}"\njournal = false\n')
    cfg = config.load_config(str(conf))
    # the host's /dev/kmsg would bring its own OOM kills into the test: none by default
    src = snapshot.Sources(cgroup_root=root, proc_root=proc,
                           kmsg_path=kmsg_path or str(tmp_path / "no-kmsg"))
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


@pytest.mark.parametrize(("kills", "memcg_lines", "missed"), [
    (1, 1, None),  # a container at its own memory.max: not the root domain's miss
    (2, 1, 1),     # one of each
    (1, 0, 1),     # no line (lost, or not yet read): still a miss, never hidden
    (1, 3, None),  # more lines than kills: the count never goes below zero
])
def test_a_kill_at_a_cgroups_own_limit_is_not_a_miss_of_the_root(fake_root, tmp_path, sleepers,
                                                                 monkeypatch, kills,
                                                                 memcg_lines, missed):
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=3 * GiB_KB)
    log = tmp_path / "kmsg"
    log.write_bytes(b"")
    real = daemon.domains.root_oom_kills
    calls = iter(range(100))

    def vmstat(proc_root):
        n = next(calls)
        if n == 1:  # the kernel kills, and logs it, between two reads
            with open(log, "ab") as f:
                f.write(b"6,1,2,-;oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/A\n"
                        * memcg_lines)
        return real(proc_root) + (kills if n >= 1 else 0)

    monkeypatch.setattr(daemon.domains, "root_oom_kills", vmstat)
    _, records = _run(root, proc, tmp_path, kmsg_path=str(log))
    assert next(calls) >= 2  # vmstat was read again after the kill
    misses = [r["kernel_oom_kills"] for r in records if r["kind"] == "miss"]
    assert misses == ([] if missed is None else [missed])


@pytest.mark.parametrize("bad", [
    "[root]\nuse_priority_oom = 7\n",
    # accepted by check-config once, then fatal in the reload or in the loop after it
    "[detect]\nheadroom_min_mib = 2000\n",
    "[detect]\npoll_min_s = 5.0\n",
    "[detect]\npoll_max_s = inf\n",
    "[detect]\nmem_available_floor_pct = 20.0\n",
    "[detect]\ntrigger_stall_ms = 3000\n",
])
def test_bad_config_on_reload_keeps_the_old_one(fake_root, tmp_path, sleepers, bad):
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=3 * GiB_KB)
    d, _ = _run(root, proc, tmp_path, seconds=0.1)
    old = d.cfg
    (tmp_path / "prioomd.toml").write_text(bad)
    with EventLoop(signals=False) as loop:
        d.reload(loop)
        d._handle(loop, [])  # the loop goes on: one more wake-up, its next timeout
        assert 0 < d._timeout() <= old.detect.poll_max_s
    assert d.cfg is old and set(d.states) == {"/"}


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


def test_a_symlinked_config_is_reloaded_when_its_link_is_swapped(fake_root, tmp_path, sleepers):
    """Kubernetes ConfigMap layout: prioomd.toml -> ..data/prioomd.toml, ..data -> ..vN.
    Each swap of ..data is a reload, the second one too, and so is an edit of the file
    the links now lead to (the watch follows the links after each change)."""
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=3 * GiB_KB)
    vol = tmp_path / "cfg"
    for n in (1, 2, 3):
        (vol / f"..v{n}").mkdir(parents=True)
        (vol / f"..v{n}" / "prioomd.toml").write_text(
            f"[root]\nuse_priority_oom = true\n[daemon]\nmax_candidates = {n}\n"
            "[audit]\nfile = \"\"\njournal = false\n")
    (vol / "..data").symlink_to("..v1")
    (vol / "prioomd.toml").symlink_to("..data/prioomd.toml")
    path = str(vol / "prioomd.toml")
    d = daemon.Daemon(config.load_config(path), path,
                      snapshot.Sources(cgroup_root=root, proc_root=proc), dry_run=True,
                      protect=lambda: [])
    with EventLoop(signals=False) as loop:
        d.loop = loop
        assert d._watch_config(loop)
        d._arm(loop)
        for n in (2, 3):
            tmp = vol / "..data_tmp"
            tmp.symlink_to(f"..v{n}")
            os.rename(tmp, vol / "..data")
            d._handle(loop, loop.wait(5.0))
            assert d.cfg.daemon.max_candidates == n
            # the new target, edited in place: seen only if the watch followed the swap
            text = (vol / f"..v{n}" / "prioomd.toml").read_text()
            (vol / f"..v{n}" / "prioomd.toml").write_text(text.replace(f"= {n}\n", "= 9\n"))
            d._handle(loop, loop.wait(5.0))
            assert d.cfg.daemon.max_candidates == 9
    d.guard.restore_all()


def test_a_reload_that_turns_the_guard_off_or_moves_it_acts_at_once(fake_root, tmp_path,
                                                                   sleepers):
    """[guard] enabled = false in a reload restores memory.high then, not at exit; on
    again, or new thresholds, sets the new guard on the domains already armed."""
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=3 * GiB_KB)
    os.setxattr(os.path.join(root, "B"), trees.UPO, b"1")
    high = os.path.join(root, "B", "memory.high")
    with open(os.path.join(root, "B", "memory.max"), "w") as f:
        f.write(str(1 << 30))
    conf = tmp_path / "prioomd.toml"
    base = "[root]\nuse_priority_oom = true\n[audit]\nfile = \"\"\njournal = false\n"
    conf.write_text(base)
    d = daemon.Daemon(config.load_config(str(conf)), str(conf),
                      snapshot.Sources(cgroup_root=root, proc_root=proc), dry_run=True,
                      runtime_dir=str(tmp_path / "run"), protect=lambda: [])

    def memory_high() -> str:
        with open(high) as f:
            return f.read().strip()

    try:
        with EventLoop(signals=False) as loop:
            d._arm(loop)
            guarded = memory_high()
            assert guarded != "max" and int(guarded) < 1 << 30
            conf.write_text(base + "[guard]\nenabled = false\n")
            d.reload(loop)
            assert memory_high() == "max" and not d.guard.guarded
            conf.write_text(base)
            d.reload(loop)
            assert memory_high() == guarded and d.guard.guarded == {"/B"}
            conf.write_text(base + "[detect]\nheadroom_min_mib = 256\n")
            d.reload(loop)
            assert int(memory_high()) == (1 << 30) - (256 << 20)
            d.reload(loop)  # nothing of the guard changed: memory.high is left alone
            assert int(memory_high()) == (1 << 30) - (256 << 20)
    finally:
        d.guard.restore_all()
    assert memory_high() == "max"


def _without_psi(proc):
    """A kernel booted with psi=0 or built without PSI: no /proc/pressure at all."""
    shutil.rmtree(os.path.join(proc, "pressure"))


def test_a_kill_leaves_counters_on_the_victim_cgroup(fake_root, tmp_path, sleepers):
    root, proc, pids = _tree(fake_root, sleepers, mem_available_kb=100_000)
    d, _ = _run(root, proc, tmp_path, seconds=0.1)
    d.dry_run = False
    d.killer = _SignalledButNotGone()
    d.loop = _Loop()
    d.states["/"].cooldown_until = 0.0
    d._check(d.states["/"], "poll")
    victim = os.path.join(root, "B", "E")
    assert os.getxattr(victim, "trusted.prioomd.ooms") == b"1"
    assert os.getxattr(victim, "trusted.prioomd.killed") == b"1"
    with pytest.raises(OSError):
        os.getxattr(os.path.join(root, "B", "F"), "trusted.prioomd.ooms")


def _hook(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_hooks_get_the_decision_before_and_the_outcome_after(fake_root, tmp_path, sleepers,
                                                             monkeypatch):
    root, proc, pids = _tree(fake_root, sleepers, mem_available_kb=100_000)
    # The floor kill of this tree, as if the threat left time (PSI above, MemAvailable
    # above the floor): the pre-kill hook's gate.
    monkeypatch.setattr(daemon.Daemon, "_above_floor", lambda self, what="": True)
    pre = _hook(tmp_path, "pre", f'env > "{tmp_path}/pre.env"\n')
    post = _hook(tmp_path, "post", f'env > "{tmp_path}/post.tmp"; '
                 f'mv "{tmp_path}/post.tmp" "{tmp_path}/post.env"\n')
    text = (f'[root]\nuse_priority_oom = true\n[kill]\nprekill_hook = "{pre}"\n'
            f'postkill_hook = "{post}"\n')
    _, records = _run(root, proc, tmp_path, text=text)
    assert records and records[0]["outcome"] == "dry-run"
    got = (tmp_path / "pre.env").read_bytes()
    assert f"PRIOOMD_VICTIM_PID={pids[301]}\n".encode() in got
    assert b"PRIOOMD_VICTIM_CGROUP=/B/E\n" in got and b"PRIOOMD_DRY_RUN=1\n" in got
    deadline = time.monotonic() + 10  # the post-kill hook runs in its own thread
    while not (tmp_path / "post.env").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert b"PRIOOMD_OUTCOME=dry-run\n" in (tmp_path / "post.env").read_bytes()


def test_no_prekill_hook_below_the_floor(fake_root, tmp_path, sleepers):
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=100_000)  # 2.4 % < 5 %
    pre = _hook(tmp_path, "pre", f'touch "{tmp_path}/ran"\n')
    text = f'[root]\nuse_priority_oom = true\n[kill]\nprekill_hook = "{pre}"\n'
    _, records = _run(root, proc, tmp_path, text=text)
    assert records and records[0]["outcome"] == "dry-run"  # the kill went on
    assert not (tmp_path / "ran").exists()


def test_no_psi_kernel_still_kills_at_the_floor(fake_root, tmp_path, sleepers):
    root, proc, pids = _tree(fake_root, sleepers, mem_available_kb=100_000)  # 2.4 %
    _without_psi(proc)
    d, records = _run(root, proc, tmp_path)
    assert "/" in d.states
    assert [(r["outcome"], r["victim_pids"]) for r in records] == [("dry-run", [pids[301]])]
    assert records[0]["trigger"].startswith("floor")


def test_no_psi_kernel_grace_check_answers(fake_root, tmp_path, sleepers):
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=3 * GiB_KB)
    _without_psi(proc)
    d, _ = _run(root, proc, tmp_path, text="[root]\nuse_priority_oom = true\n"
                "[kill]\nsigterm_grace_s = 2\n", seconds=0.1)
    grace_allowed = d.killer.policy.grace_only_if
    assert grace_allowed is not None and grace_allowed() is True  # plenty above the floor
    os.remove(os.path.join(proc, "meminfo"))  # unreadable: no grace, SIGKILL at once
    assert grace_allowed() is False


class _Broken:
    """A killer with a bug: every kill path raises."""

    def __init__(self):
        self.calls = 0

    def execute(self, decision, recheck=None):
        self.calls += 1
        raise KeyError("victim:42")


def _raise(*args):
    raise RuntimeError("a bug")


def test_a_bug_in_one_event_is_contained_logged_once_and_counted(
        fake_root, tmp_path, sleepers, caplog):
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=100_000)
    d, _ = _run(root, proc, tmp_path, seconds=0.1)
    d.dry_run, d.exit_after_s, d._stopping = False, None, False
    d.killer = killer = _Broken()
    with EventLoop(signals=False) as loop, caplog.at_level("ERROR", "prioomd.daemon"):
        for _ in range(3):  # three wake-ups under the shortage, each meets the bug
            d.states["/"].cooldown_until = 0.0
            d._handle(loop, [Event("timeout")])
        d.reload = _raise  # a failing event does not keep the next one from its turn
        d._handle(loop, [Event("signal-reload"), Event("signal-stop")])
    assert killer.calls == 3 and d.errors == 4
    assert d._stopping
    assert "4 internal error(s)" in d._status()
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 2  # once per kind of failure, not once per occurrence
    assert "KeyError" in caplog.text and "RuntimeError" in caplog.text


class _FailingOnce(EventLoop):
    def __init__(self):
        super().__init__(signals=False)
        self.waits = 0

    def wait(self, timeout_s=None):
        self.waits += 1
        if self.waits == 1:
            raise KeyError("victim:7")  # the bookkeeping bug of issue 7 item 8
        return [Event("signal-stop")]


def test_a_failing_wait_does_not_end_the_loop(fake_root, tmp_path, sleepers):
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=3 * GiB_KB)
    conf = tmp_path / "prioomd.toml"
    conf.write_text("[root]\nuse_priority_oom = true\n[audit]\nfile = ''\njournal = false\n")
    d = daemon.Daemon(config.load_config(str(conf)), str(conf),
                      snapshot.Sources(cgroup_root=root, proc_root=proc), dry_run=True,
                      loop_factory=_FailingOnce, protect=lambda: [])
    assert d.run() == 0
    assert d.errors == 1


class _Notes:
    watchdog_interval_s = None

    def __init__(self):
        self.sent = []

    def __getattr__(self, name):
        return lambda *args: self.sent.append(name)


def test_domain_vanishing_before_the_reload_self_test_is_a_logged_skip(
        fake_root, tmp_path, sleepers, monkeypatch, caplog):
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=3 * GiB_KB)
    os.setxattr(os.path.join(root, "B"), trees.UPO, b"1")
    with open(os.path.join(root, "B", "memory.max"), "w") as f:
        f.write(str(1 << 30))
    d, _ = _run(root, proc, tmp_path, seconds=0.1)
    d.notifier = notes = _Notes()
    arm = d._arm

    def arm_then_vanish(loop):  # /B goes away right after discovery and arming
        arm(loop)
        shutil.rmtree(os.path.join(root, "B"))

    monkeypatch.setattr(d, "_arm", arm_then_vanish)
    (tmp_path / "prioomd.toml").write_text(
        "[root]\nuse_priority_oom = true\n[audit]\nfile = ''\njournal = false\n"
        "[detect]\npost_action_delay_s = 7\n")
    d.states.clear()  # rediscover /B, as a reload that newly enables it would
    with EventLoop(signals=False) as loop, caplog.at_level("INFO", "prioomd.daemon"):
        d.reload(loop)
    assert d.cfg.detect.post_action_delay_s == 7  # the new config is in force
    assert notes.sent[-1] == "ready"
    assert "self-test /B skipped" in caplog.text


def test_the_kill_path_feeds_the_watchdog_while_it_waits(fake_root, tmp_path, sleepers):
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=3 * GiB_KB)
    d, _ = _run(root, proc, tmp_path, seconds=0.1)
    d.notifier = notes = _Notes()
    d.killer._wait(None, 0, 0.001)  # one slice of a grace or confirmation wait
    assert notes.sent == ["watchdog"]


def test_config_directory_removed_and_recreated(fake_root, tmp_path, sleepers, caplog):
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=3 * GiB_KB)
    etc = tmp_path / "etc"
    etc.mkdir()
    conf = etc / "prioomd.toml"
    base = "[root]\nuse_priority_oom = true\n[audit]\nfile = ''\njournal = false\n"
    conf.write_text(base)
    d = daemon.Daemon(config.load_config(str(conf)), str(conf),
                      snapshot.Sources(cgroup_root=root, proc_root=proc), dry_run=True,
                      protect=lambda: [])
    with EventLoop(signals=False) as loop, caplog.at_level("INFO", "prioomd.daemon"):
        assert d._watch_config(loop)
        shutil.rmtree(etc)
        d._handle(loop, loop.wait(5.0))
        assert "went away" in caplog.text and d.cfg.detect.post_action_delay_s != 9
        d._handle(loop, [Event("timeout")])  # still gone: nothing to do, nothing breaks
        etc.mkdir()
        conf.write_text(base + "[detect]\npost_action_delay_s = 9\n")
        d._handle(loop, [Event("timeout")])  # back: watched again, and read
        assert d.cfg.detect.post_action_delay_s == 9
        conf.write_text(base + "[detect]\npost_action_delay_s = 11\n")
        d._handle(loop, loop.wait(5.0))  # and its changes are seen again
        assert d.cfg.detect.post_action_delay_s == 11
    assert d.errors == 0

class _MovedKiller:
    """A killer whose first ``moved`` answers say the victim left its cgroup."""

    def __init__(self, moved: int):
        self.moved = moved
        self.calls = 0

    def execute(self, decision, recheck=None):
        from prioomd.model import KillResult
        self.calls += 1
        cand = decision.candidates[0]
        if self.calls <= self.moved:
            return KillResult(cand, "moved", (), None, None, 0, "left /B/E", False)
        return KillResult(cand, "killed", (), 1.0, 1.1, 0, "SIGKILL", False)


@pytest.mark.parametrize("moved, killed", [
    (1, True),  # the victim left its cgroup: decide again, kill what the new walk says
    (99, False),  # a hopper: bounded, the next event retries
])
def test_a_victim_that_moved_means_a_new_decision(fake_root, tmp_path, sleepers, moved,
                                                  killed):
    calls = 2 if killed else 1 + daemon.MOVED_REDECISIONS
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=100_000)
    d, _ = _run(root, proc, tmp_path, seconds=0.1)
    d.dry_run = False
    d.killer = killer = _MovedKiller(moved)
    d.loop = _Loop()
    decided = []
    real_decide = d._decide
    d._decide = lambda dom: decided.append(dom.path) or real_decide(dom)
    state = d.states["/"]
    state.cooldown_until = 0.0
    d._check(state, "poll")
    assert killer.calls == calls and len(decided) == calls
    assert d.gate.waiting("/") is killed


def test_a_stuck_dying_task_blocks_its_domain_only_for_dying_timeout_s(fake_root, tmp_path,
                                                                      sleepers):
    """Issue 7 A.3: a task stuck in D with SIGKILL pending kept the walk on "wait"
    forever. Past [kill] dying_timeout_s it is reaped and skipped."""
    root, proc, pids = _tree(fake_root, sleepers, mem_available_kb=100_000)
    with open(os.path.join(proc, str(pids[301]), "status")) as f:
        status = f.read()
    with open(os.path.join(proc, str(pids[301]), "status"), "w") as f:  # SIGKILL pending
        f.write(status.replace("SigPnd:\t0000000000000000", "SigPnd:\t0000000000000100"))
    now = [1000.0]
    cfg = config.parse_config("[root]\nuse_priority_oom = true\n[audit]\nfile = ''\n"
                              "journal = false\n", "test")
    src = snapshot.Sources(cgroup_root=root, proc_root=proc, clock=lambda: now[0])
    d = daemon.Daemon(cfg, None, src, dry_run=False, loop_factory=lambda: EventLoop(
        signals=False), protect=lambda: [])
    with EventLoop(signals=False) as loop:
        d._arm(loop)  # discovers the root domain; decides nothing
    reaped = []
    d.killer.reap = lambda pid, start: reaped.append(pid) or "reaped"
    dom = d.states["/"].domain
    timeout_s = getattr(cfg.kill, "dying_timeout_s", 5.0)  # (the option is new)
    assert d._decide(dom).outcome == "wait"
    now[0] += timeout_s - 0.5
    assert d._decide(dom).outcome == "wait" and reaped == []
    now[0] += 0.5
    decision = d._decide(dom)
    assert decision.outcome == "kill" and reaped == [pids[301]]
    assert decision.candidates[0].pid == pids[302]  # /B/F: /B/E holds only the stuck one


def test_metrics_count_the_decisions_misses_and_reloads_of_a_run(fake_root, tmp_path, sleepers,
                                                                 monkeypatch):
    pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families
    root, proc, _ = _tree(fake_root, sleepers, mem_available_kb=100_000)
    real = daemon.domains.root_oom_kills
    calls = iter(range(100))
    monkeypatch.setattr(daemon.domains, "root_oom_kills",
                        lambda proc_root: real(proc_root) + (2 if next(calls) >= 1 else 0))
    prom = tmp_path / "prioomd.prom"
    d, records = _run(root, proc, tmp_path, text="[root]\nuse_priority_oom = true\n"
                      f'[metrics]\nenabled = true\ntextfile = "{prom}"\n')
    (tmp_path / "prioomd.toml").write_text("[root]\nuse_priority_oom = 7\n")
    with EventLoop(signals=False) as loop:
        d.reload(loop)  # rejected: counted
    d.metrics.close()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(prom.read_text()) for s in fam.samples}
    assert [r["outcome"] for r in records if r["kind"] == "decision"] == ["dry-run"]
    assert samples[("prioomd_decisions_total", (("domain", "/"), ("outcome", "dry-run"),
                                                ("trigger", "floor")))] == 1
    assert samples[("prioomd_misses_total", (("domain", "/"),))] == 2
    assert samples[("prioomd_config_reloads_total", (("result", "rejected"),))] == 1
    assert samples[("prioomd_dry_run", ())] == 1
