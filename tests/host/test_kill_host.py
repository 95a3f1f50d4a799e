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

import pytest

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
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
        _until(lambda: not _populated(host_cgroup), "the test cgroup to empty")


def task(proc: subprocess.Popen[bytes], root: str, cgdir: str,
         comm: str | None = None) -> Candidate:
    return Candidate(victim_cgroup=_rel(root, cgdir), pid=proc.pid,
                     comm=comm if comm is not None else _comm(proc.pid), badness=1,
                     rss_bytes=0, kill_cgroup=None, pids=(proc.pid,), reason="host test")


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
    other = os.path.join(host_cgroup, "other")
    os.mkdir(other)
    wrong_comm = task(proc, host_cgroup_root, host_cgroup, comm="postgres")
    wrong_cgroup = task(proc, host_cgroup_root, other)
    result = Killer(host_cgroup_root).execute(decide(wrong_comm, wrong_cgroup))
    assert [a.outcome for a in result.attempts] == ["vanished", "vanished"]
    assert proc.poll() is None


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
