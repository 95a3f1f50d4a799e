"""kill on this machine's real cgroup v2 tree: pidfd kills, the SIGTERM grace,
cgroup.kill, dry-run, the pid-reuse guard and self-protection.

Every process signalled here is a child (or grandchild) this test started in its
own private cgroup; teardown empties that cgroup with its cgroup.kill.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from prioomd import config, select, snapshot, table
from prioomd.kill import Killer, KillPolicy
from prioomd.model import Candidate, Decision
from prioomd.syscalls import LinuxSyscalls

Spawn = Callable[..., subprocess.Popen[bytes]]

TRAP_TERM = ("import signal, sys, time\n"
             "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
             "print('ready', flush=True)\ntime.sleep(100)\n")
IGNORE_TERM = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
               "print('ready', flush=True)\ntime.sleep(100)\n")


def _rel(root: str, cgdir: str) -> str:
    return "/" + os.path.relpath(cgdir, root)


def _comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def _procs(cgdir: str) -> list[int]:
    out = []
    for dirpath, _dirs, _files in os.walk(cgdir):
        with open(os.path.join(dirpath, "cgroup.procs")) as f:
            out += [int(p) for p in f.read().split()]
    return out


def _populated(cgdir: str) -> bool:
    with open(os.path.join(cgdir, "cgroup.events")) as f:
        return "populated 1" in f.read()


def _until(pred: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def spawn(host_cgroup: str) -> Iterator[Spawn]:
    """``spawn(argv, cgdir=host_cgroup, ready=None)``: a child that joins ``cgdir``
    before it execs ``argv``; with ``ready`` it waits for that line on stdout,
    else for the exec (comm). Teardown writes our private cgroup's cgroup.kill
    (it holds only our descendants) and reaps our children."""
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], cgdir: str = host_cgroup, ready: bytes | None = None
              ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["sh", "-c", 'echo 0 > "$0/cgroup.procs" && exec "$@"', cgdir, *argv],
            stdout=subprocess.PIPE if ready else subprocess.DEVNULL)
        started.append(proc)
        if ready is not None:
            assert proc.stdout is not None and proc.stdout.readline().strip() == ready
        else:
            name = os.path.basename(argv[0])[:15]
            _until(lambda: _comm(proc.pid) == name, f"{argv[0]} to start")
        return proc

    try:
        yield start
    finally:
        with open(os.path.join(host_cgroup, "cgroup.kill"), "w") as f:
            f.write("1")
        for proc in started:
            if proc.poll() is None:  # cgroup.kill misses a process whose main thread exited
                proc.kill()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
        _until(lambda: not _populated(host_cgroup), "the test cgroup to empty")


def _start(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def task(proc: subprocess.Popen[bytes], root: str, cgdir: str,
         comm: str | None = None) -> Candidate:
    return Candidate(victim_cgroup=_rel(root, cgdir), pid=proc.pid,
                     comm=comm if comm is not None else _comm(proc.pid), badness=1,
                     rss_bytes=0, kill_cgroup=None, pids=(proc.pid,), reason="host test",
                     start_ticks=_start(proc.pid))


def decide(*cands: Candidate) -> Decision:
    return Decision(domain="/", candidates=cands, outcome="kill", reason="host test",
                    backend="python")


def test_pidfd_sigkill_one_task(host_cgroup_root, host_cgroup, spawn):
    victim, bystander = spawn(["sleep", "100"]), spawn(["sleep", "100"])
    result = Killer(host_cgroup_root).execute(
        decide(task(victim, host_cgroup_root, host_cgroup)))
    assert result.outcome == "killed" and result.method == "pidfd", result.detail
    assert victim.wait(timeout=5) == -signal.SIGKILL
    assert bystander.poll() is None
    assert result.signal_sent_at is not None and result.exited_at is not None
    assert result.exited_at - result.signal_sent_at < 1.0


def test_sigterm_grace_trapped(host_cgroup_root, host_cgroup, spawn):
    proc = spawn([sys.executable, "-c", TRAP_TERM], ready=b"ready")
    policy = KillPolicy(sigterm_grace_s=5.0)
    t0 = time.monotonic()
    result = Killer(host_cgroup_root, policy=policy).execute(
        decide(task(proc, host_cgroup_root, host_cgroup)))
    assert result.outcome == "killed" and "SIGTERM" in result.detail
    assert proc.wait(timeout=5) == 42  # its own handler, not our SIGKILL
    assert time.monotonic() - t0 < 4.0


def test_sigterm_ignored_gets_sigkill_after_the_grace(host_cgroup_root, host_cgroup, spawn):
    proc = spawn([sys.executable, "-c", IGNORE_TERM], ready=b"ready")
    t0 = time.monotonic()
    result = Killer(host_cgroup_root, policy=KillPolicy(sigterm_grace_s=0.3)).execute(
        decide(task(proc, host_cgroup_root, host_cgroup)))
    assert result.outcome == "killed"
    assert proc.wait(timeout=5) == -signal.SIGKILL
    assert time.monotonic() - t0 >= 0.3


def test_cgroup_kill_empties_the_subtree(host_cgroup_root, host_cgroup, spawn):
    group = os.path.join(host_cgroup, "group")
    os.mkdir(os.path.join(group))
    os.mkdir(os.path.join(group, "sub"))
    shell = spawn(["sh", "-c", "sleep 100 & sleep 100 & wait"], cgdir=group)
    spawn(["sleep", "100"], cgdir=os.path.join(group, "sub"))
    outside = spawn(["sleep", "100"])
    _until(lambda: len(_procs(group)) == 4, "4 processes in the group")
    rel = _rel(host_cgroup_root, group)
    cand = Candidate(victim_cgroup=rel, pid=shell.pid, comm="sh", badness=1, rss_bytes=0,
                     kill_cgroup=rel, pids=tuple(_procs(group)), reason="host test")
    result = Killer(host_cgroup_root).execute(decide(cand))
    assert result.outcome == "killed" and result.method == "cgroup.kill", result.detail
    assert not _populated(group) and _procs(group) == []
    assert shell.wait(timeout=5) == -signal.SIGKILL
    assert outside.poll() is None


def test_cgroup_with_a_protected_member_goes_task_by_task(host_cgroup_root, host_cgroup,
                                                          spawn):
    group = os.path.join(host_cgroup, "group")
    os.mkdir(group)
    a, b = spawn(["sleep", "100"], cgdir=group), spawn(["sleep", "100"], cgdir=group)
    rel = _rel(host_cgroup_root, group)
    cand = Candidate(victim_cgroup=rel, pid=a.pid, comm="sleep", badness=1, rss_bytes=0,
                     kill_cgroup=rel, pids=(a.pid, b.pid), reason="host test")
    result = Killer(host_cgroup_root, protected_pids={b.pid}).execute(decide(cand))
    assert result.outcome == "killed" and result.method == "cgroup.procs", result.detail
    assert a.wait(timeout=5) == -signal.SIGKILL and b.poll() is None


def test_dry_run_kills_nothing(host_cgroup_root, host_cgroup, spawn):
    proc = spawn(["sleep", "100"])
    rel = _rel(host_cgroup_root, host_cgroup)
    group = Candidate(victim_cgroup=rel, pid=proc.pid, comm="sleep", badness=1, rss_bytes=0,
                      kill_cgroup=rel, pids=(proc.pid,), reason="host test")
    killer = Killer(host_cgroup_root, dry_run=True)
    for cand in (task(proc, host_cgroup_root, host_cgroup), group):
        result = killer.execute(decide(cand))
        assert result.outcome == "dry-run" and result.signal_sent_at is None, result.detail
    time.sleep(0.1)
    assert proc.poll() is None and _populated(host_cgroup)


def test_pid_reuse_guard(host_cgroup_root, host_cgroup, spawn):
    proc = spawn(["sleep", "100"])
    reused = replace(task(proc, host_cgroup_root, host_cgroup), start_ticks=_start(proc.pid) - 1)
    result = Killer(host_cgroup_root).execute(decide(reused))
    assert [a.outcome for a in result.attempts] == ["vanished"]
    assert "reused" in result.attempts[0].detail and proc.poll() is None


def test_not_under_the_victim_cgroup_is_moved_not_killed(host_cgroup_root, host_cgroup, spawn):
    proc, bystander = spawn(["sleep", "100"]), spawn(["sleep", "100"])
    other = os.path.join(host_cgroup, "other")
    os.mkdir(other)
    result = Killer(host_cgroup_root).execute(decide(
        task(proc, host_cgroup_root, other), task(bystander, host_cgroup_root, host_cgroup)))
    assert [a.outcome for a in result.attempts] == ["moved"]
    assert proc.poll() is None and bystander.poll() is None


def test_without_pidfd_kill_and_starttime_guard(host_cgroup_root, host_cgroup, spawn):
    syscalls = LinuxSyscalls()
    syscalls.has_pidfd = False
    proc = spawn(["sleep", "100"])
    result = Killer(host_cgroup_root, syscalls=syscalls).execute(
        decide(task(proc, host_cgroup_root, host_cgroup)))
    assert result.outcome == "killed" and result.method == "kill", result.detail
    assert proc.wait(timeout=5) == -signal.SIGKILL


def test_vanished_then_next(host_cgroup_root, host_cgroup, spawn):
    gone, victim = spawn(["sleep", "100"]), spawn(["sleep", "100"])
    first = task(gone, host_cgroup_root, host_cgroup)
    os.kill(gone.pid, signal.SIGKILL)  # our own child
    gone.wait(timeout=5)
    result = Killer(host_cgroup_root).execute(
        decide(first, task(victim, host_cgroup_root, host_cgroup)))
    assert [a.outcome for a in result.attempts] == ["vanished", "killed"]
    assert victim.wait(timeout=5) == -signal.SIGKILL


def test_process_mrelease_wiring(spawn):
    proc = spawn(["sleep", "100"])
    syscalls = LinuxSyscalls()
    fd = syscalls.pidfd_open(proc.pid)
    try:
        with pytest.raises(OSError) as exc:
            syscalls.process_mrelease(fd)  # alive, not dying: the kernel says EINVAL
        assert exc.value.errno in (errno.EINVAL, errno.ENOSYS)
        assert not syscalls.pidfd_exited(fd)
    finally:
        syscalls.close(fd)


def test_protect_self_warns_but_carries_on():
    code = ("from prioomd.selfprotect import protect_self\n"
            "warnings = protect_self()\n"
            "print(open('/proc/self/oom_score_adj').read().strip())\n"
            "print(*warnings, sep='\\n')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True).stdout.splitlines()
    adj, warnings = out[0], out[1:]
    if adj == "-1000":  # CAP_SYS_RESOURCE here: nothing to warn about
        assert not any("oom_score_adj" in w for w in warnings)
    else:
        assert any("oom_score_adj" in w and "CAP_SYS_RESOURCE" in w for w in warnings), out


# -------------------------------------------------------------------- hostile tenants
# Each case: a tenant in <test>/low (priority 0) and a bystander in <test>/high
# (priority 10); the real snapshot and walk choose, the real kill path acts.

PRIO = "trusted.prioomd.priority"
PR_SET_NAME = 15  # include/uapi/linux/prctl.h
RENAMER = ("import ctypes, itertools\nlibc = ctypes.CDLL(None)\n"
           "print('ready', flush=True)\n"
           "for i in itertools.count():\n"
           f"    libc.prctl({PR_SET_NAME}, b'hog-%d' % (i % 997), 0, 0, 0)\n")
EXECER = ("import os, sys, time\nprint('ready', flush=True)\n"
          "while not os.path.exists(sys.argv[1]):\n    time.sleep(0.01)\n"
          "os.execvp('sleep', ['sleep', '100'])\n")
# main() calls pthread_exit() while another thread holds the memory (spec §6.2).
LEADER_EXITS = ("import ctypes, threading, time\n"
                "def hold():\n"
                "    global buf\n"
                "    buf = b'x' * (32 << 20)\n"
                "    print('ready', flush=True)\n"
                "    time.sleep(100)\n"
                "threading.Thread(target=hold).start()\n"
                "time.sleep(0.2)\n"
                "ctypes.CDLL(None).pthread_exit(None)\n")


def _leader_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _low_high(host_cgroup: str, low_name: bytes = b"low") -> tuple[str, str]:
    low = os.fsdecode(os.path.join(os.fsencode(host_cgroup), low_name))
    high = os.path.join(host_cgroup, "high")
    for path, prio in ((low, b"0"), (high, b"10")):
        os.makedirs(path)
        os.setxattr(path, PRIO, prio)
    return low, high


def _walk(root: str, domain_dir: str) -> Decision:
    snap, _ = snapshot.take(_rel(root, domain_dir), table.PriorityTable(config.Config()),
                            snapshot.Sources(cgroup_root=root))
    return select.select_victims(snap, max_candidates=5)


def test_a_process_renaming_itself_keeps_its_kill(host_cgroup_root, host_cgroup, spawn):
    """prctl(PR_SET_NAME) in a loop: the old name check handed the kill to /high."""
    low, high = _low_high(host_cgroup)
    hog = spawn([sys.executable, "-c", RENAMER], cgdir=low, ready=b"ready")
    db = spawn(["sleep", "100"], cgdir=high)
    killer = Killer(host_cgroup_root, dry_run=True)
    for _ in range(30):  # each round: a fresh walk, then the kill path's check
        decision = _walk(host_cgroup_root, host_cgroup)
        assert [c.pid for c in decision.candidates] == [hog.pid, db.pid]
        result = killer.execute(decision)
        assert result.outcome == "dry-run" and result.candidate is not None, result.detail
        assert result.candidate.pid == hog.pid, result.detail
    result = Killer(host_cgroup_root).execute(_walk(host_cgroup_root, host_cgroup))
    assert result.outcome == "killed" and hog.wait(timeout=5) == -signal.SIGKILL
    assert db.poll() is None


def test_a_process_that_execs_after_the_walk_keeps_its_kill(host_cgroup_root, host_cgroup,
                                                           spawn, tmp_path):
    """exec() changes comm and everything in /proc but the pid and start time."""
    low, high = _low_high(host_cgroup)
    go = tmp_path / "go"
    hog = spawn([sys.executable, "-c", EXECER, str(go)], cgdir=low, ready=b"ready")
    db = spawn(["sleep", "100"], cgdir=high)
    decision = _walk(host_cgroup_root, host_cgroup)
    assert [c.pid for c in decision.candidates] == [hog.pid, db.pid]
    go.touch()
    _until(lambda: _comm(hog.pid) == "sleep", "the exec")
    result = Killer(host_cgroup_root).execute(decision)
    assert [a.outcome for a in result.attempts] == ["killed"], result.detail
    assert hog.wait(timeout=5) == -signal.SIGKILL and db.poll() is None


@pytest.mark.parametrize("name", [b"x (deleted)", b"\xff\xfe"])
def test_hostile_cgroup_names_keep_the_kill(host_cgroup_root, host_cgroup, spawn, name):
    """A live cgroup named "... (deleted)", one not valid UTF-8 (the kernel refuses
    only "/" and newlines in names): /proc/PID/cgroup and the directory listing
    must name the same cgroup."""
    low, high = _low_high(host_cgroup, b"low/" + name)
    hog = spawn(["sleep", "100"], cgdir=low)
    db = spawn(["sleep", "100"], cgdir=high)
    decision = _walk(host_cgroup_root, host_cgroup)
    assert [c.pid for c in decision.candidates] == [hog.pid, db.pid]
    assert decision.candidates[0].victim_cgroup == _rel(host_cgroup_root, low)
    result = Killer(host_cgroup_root).execute(decision)
    assert [a.outcome for a in result.attempts] == ["killed"], result.detail
    assert hog.wait(timeout=5) == -signal.SIGKILL and db.poll() is None


def test_a_victim_moving_to_a_sibling_it_owns_is_a_new_decision(host_cgroup_root,
                                                                host_cgroup, spawn):
    low, high = _low_high(host_cgroup)
    for name, prio in (("a", b"0"), ("b", b"5")):
        os.mkdir(os.path.join(low, name))
        os.setxattr(os.path.join(low, name), PRIO, prio)
    hog = spawn(["sleep", "100"], cgdir=os.path.join(low, "a"))
    db = spawn(["sleep", "100"], cgdir=high)
    decision = _walk(host_cgroup_root, host_cgroup)
    assert [c.pid for c in decision.candidates] == [hog.pid, db.pid]
    with open(os.path.join(low, "b", "cgroup.procs"), "w") as f:  # as the tenant would
        f.write(str(hog.pid))
    result = Killer(host_cgroup_root).execute(decision)
    assert result.outcome == "moved" and len(result.attempts) == 1, result.detail
    assert hog.poll() is None and db.poll() is None  # nothing killed on a stale ranking
    again = _walk(host_cgroup_root, host_cgroup)  # the new decision finds it in /low/b
    assert again.candidates[0].pid == hog.pid
    assert again.candidates[0].victim_cgroup == _rel(host_cgroup_root, os.path.join(low, "b"))


def test_a_process_whose_main_thread_exited_is_killed(host_cgroup_root, host_cgroup, spawn):
    """pthread_exit() in main: the leader is a zombie, a thread holds 32 MB."""
    low, high = _low_high(host_cgroup)
    hog = spawn([sys.executable, "-c", LEADER_EXITS], cgdir=low, ready=b"ready")
    db = spawn(["sleep", "100"], cgdir=high)

    _until(lambda: _leader_state(hog.pid) == "Z", "the main thread to exit")
    decision = _walk(host_cgroup_root, host_cgroup)
    assert [c.pid for c in decision.candidates] == [hog.pid, db.pid], decision.reason
    assert decision.candidates[0].rss_bytes >= 32 << 20
    result = Killer(host_cgroup_root).execute(decision)
    assert result.outcome == "killed", result.detail
    assert hog.wait(timeout=5) == -signal.SIGKILL and db.poll() is None


def test_cgroup_kill_of_a_group_with_an_exited_main_thread(host_cgroup_root, host_cgroup,
                                                           spawn):
    """The kernel's cgroup.kill signals the leader thread only; a process whose
    main thread exited survives it, so the kill path follows up with kill(2)."""
    group = os.path.join(host_cgroup, "group")
    os.mkdir(group)
    hog = spawn([sys.executable, "-c", LEADER_EXITS], cgdir=group, ready=b"ready")
    _until(lambda: _leader_state(hog.pid) == "Z", "the main thread to exit")
    rel = _rel(host_cgroup_root, group)
    cand = Candidate(victim_cgroup=rel, pid=hog.pid, comm="python", badness=1, rss_bytes=0,
                     kill_cgroup=rel, pids=(hog.pid,), reason="host test")
    result = Killer(host_cgroup_root, policy=KillPolicy(confirm_timeout_s=3.0)).execute(
        decide(cand))
    assert result.outcome == "killed" and result.method == "cgroup.kill", result.detail
    assert hog.wait(timeout=5) == -signal.SIGKILL and not _populated(group)


def test_a_victim_whose_leader_sits_in_a_threaded_cgroup(host_cgroup_root, host_cgroup, spawn):
    """A threaded child has no readable cgroup.procs: the kill path's check that the
    process is still where the walk saw it reads cgroup.threads."""
    low, high = _low_high(host_cgroup)
    dom, threaded = os.path.join(low, "dom"), os.path.join(low, "dom", "t")
    os.makedirs(threaded)
    with open(os.path.join(threaded, "cgroup.type"), "w") as f:
        f.write("threaded")
    hog = spawn(["sleep", "100"], cgdir=dom)
    db = spawn(["sleep", "100"], cgdir=high)
    with open(os.path.join(threaded, "cgroup.threads"), "w") as f:
        f.write(str(hog.pid))  # the leader thread moves into the threaded child
    decision = _walk(host_cgroup_root, host_cgroup)
    assert [c.pid for c in decision.candidates] == [hog.pid, db.pid]
    result = Killer(host_cgroup_root).execute(decision)
    assert [a.outcome for a in result.attempts] == ["killed"], result.detail
    assert hog.wait(timeout=5) == -signal.SIGKILL and db.poll() is None


def test_kill_cgroup_xattr_kills_the_whole_cgroup_where_the_walk_stops(
        host_cgroup_root, host_cgroup, spawn):
    """trusted.prioomd.kill = cgroup on the cgroup the walk stops at: it goes whole;
    the sibling with the default granularity then loses one process at a time."""
    low, high = _low_high(host_cgroup)
    os.setxattr(low, "trusted.prioomd.kill", b"cgroup")
    shell = spawn(["sh", "-c", "sleep 100 & sleep 100 & wait"], cgdir=low)
    db1, db2 = spawn(["sleep", "100"], cgdir=high), spawn(["sleep", "100"], cgdir=high)
    _until(lambda: len(_procs(low)) == 3, "3 processes in low")
    decision = _walk(host_cgroup_root, host_cgroup)
    first = decision.candidates[0]
    assert first.kill_cgroup == _rel(host_cgroup_root, low), first.reason
    assert sorted(first.pids) == sorted(_procs(low))
    assert "kill = cgroup from xattr trusted.prioomd.kill" in first.reason
    result = Killer(host_cgroup_root).execute(decision)
    assert result.outcome == "killed" and result.method == "cgroup.kill", result.detail
    assert shell.wait(timeout=5) == -signal.SIGKILL
    assert not _populated(low)
    assert db1.poll() is None and db2.poll() is None
    second = _walk(host_cgroup_root, host_cgroup).candidates[0]
    assert second.kill_cgroup is None and second.pid in (db1.pid, db2.pid)
