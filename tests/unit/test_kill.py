"""kill: the fall-through walk, dry-run, re-check, protection and the cgroup kill,
on fake /proc and cgroup trees with a fake clock, waiter and syscall layer."""

from __future__ import annotations

import errno
import logging
import os
import select
import shutil
import signal
import threading

import pytest

from prioomd import kill
from prioomd.kill import Killer, KillPolicy
from prioomd.model import Candidate, Decision
from tests import fakefs

# -------------------------------------------------------------------- the fake world


class World:
    """Processes that live in a fake /proc and a fake cgroup tree. A signalled
    process exits at the next wait (so every confirm loop really waits)."""

    def __init__(self, base: str, procs: dict[int, dict], cgroups: dict) -> None:
        self.proc = fakefs.make_procfs(base, procs)
        self.cg = fakefs.make_cgroupfs(base, cgroups)
        self.alive = set(procs)
        self.doomed: set[int] = set()
        self.stubborn: set[int] = set()  # never exit (stuck in D state)
        self.term_exits: set[int] = set()  # exit on SIGTERM
        self.eperm: set[int] = set()
        self.leader_exited: set[int] = set()  # cgroup.kill misses them, as the kernel does
        self.hooks: list = []  # run at each wait, with the world

    def exit(self, pid: int) -> None:
        self.alive.discard(pid)
        shutil.rmtree(os.path.join(self.proc, str(pid)), ignore_errors=True)
        for dirpath, _dirs, files in os.walk(self.cg):
            if "cgroup.procs" in files:
                path = os.path.join(dirpath, "cgroup.procs")
                with open(path) as f:
                    pids = [p for p in f.read().split() if int(p) != pid]
                with open(path, "w") as f:
                    f.write("".join(f"{p}\n" for p in pids))
        self._update_populated()

    def _update_populated(self) -> None:
        populated: dict[str, bool] = {}
        for dirpath, dirs, _files in os.walk(self.cg, topdown=False):
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                here = bool(f.read().split())
            populated[dirpath] = here or any(populated[os.path.join(dirpath, d)] for d in dirs)
            events = os.path.join(dirpath, "cgroup.events")
            if os.path.exists(events):
                with open(events, "w") as f:
                    f.write(f"populated {int(populated[dirpath])}\nfrozen 0\n")

    def members(self, cgdir: str) -> list[int]:
        out = []
        for dirpath, _dirs, _files in os.walk(cgdir):
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                out += [int(p) for p in f.read().split()]
        return out

    def tick(self) -> None:
        for hook in list(self.hooks):
            hook(self)
        for dirpath, _dirs, files in os.walk(self.cg):
            if "cgroup.kill" in files:
                path = os.path.join(dirpath, "cgroup.kill")
                with open(path) as f:
                    if f.read().strip() == "1":
                        self.doomed.update(set(self.members(dirpath)) - self.leader_exited)
                        open(path, "w").close()
        for pid in sorted(self.doomed - self.stubborn):
            self.exit(pid)
        self.doomed &= self.stubborn


class FakeSys:
    """The Syscalls protocol over a World; records every signal as (via, pid, sig)."""

    def __init__(self, world: World, has_pidfd: bool = True) -> None:
        self.world = world
        self.has_pidfd = has_pidfd
        self.sent: list[tuple[str, int, int]] = []
        self.mreleased: list[int] = []
        self.mrelease_errno: int | None = None
        self.fds: dict[int, int] = {}
        self.closed: list[int] = []
        self._next_fd = 1000

    def pidfd_open(self, pid: int) -> int:
        if pid not in self.world.alive:
            raise OSError(errno.ESRCH, "No such process")
        self._next_fd += 1
        self.fds[self._next_fd] = pid
        return self._next_fd

    def _signal(self, via: str, pid: int, sig: int) -> None:
        if pid not in self.world.alive:
            raise OSError(errno.ESRCH, "No such process")
        if pid in self.world.eperm:
            raise OSError(errno.EPERM, "Operation not permitted")
        self.sent.append((via, pid, sig))
        if sig == signal.SIGKILL or (sig == signal.SIGTERM and pid in self.world.term_exits):
            self.world.doomed.add(pid)

    def pidfd_send_signal(self, pidfd: int, sig: int) -> None:
        self._signal("pidfd", self.fds[pidfd], sig)

    def process_mrelease(self, pidfd: int) -> None:
        if self.mrelease_errno is not None:
            raise OSError(self.mrelease_errno, os.strerror(self.mrelease_errno))
        self.mreleased.append(self.fds[pidfd])

    def pidfd_exited(self, pidfd: int) -> bool:
        return self.fds[pidfd] not in self.world.alive

    def close(self, fd: int) -> None:
        self.closed.append(fd)

    def kill(self, pid: int, sig: int) -> None:
        self._signal("kill", pid, sig)

    def signals(self) -> list[tuple[int, int]]:
        return [(pid, sig) for _via, pid, sig in self.sent if sig != 0]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[tuple[int | None, int, float]] = []

    def __call__(self) -> float:
        return self.now


STEP_S = 0.01  # how far one fake wait moves the clock


def make_killer(world: World, clock: Clock, sys: FakeSys, **kw) -> Killer:
    def wait(fd: int | None, events: int, timeout_s: float) -> None:
        clock.waits.append((fd, events, timeout_s))
        clock.now += min(timeout_s, STEP_S)
        world.tick()

    return Killer(world.cg, proc_root=world.proc, clock=clock, wait=wait, syscalls=sys, **kw)


def cand(pid: int, cgroup: str = "/a", comm: str = "worker", *, kill_cgroup: str | None = None,
         pids: tuple[int, ...] | None = None, rss: int = 1 << 20,
         start_ticks: int = 0) -> Candidate:
    return Candidate(victim_cgroup=cgroup, pid=pid, comm=comm, badness=100, rss_bytes=rss,
                     kill_cgroup=kill_cgroup, pids=pids or (pid,), reason="test",
                     start_ticks=start_ticks)


def decision(*cands: Candidate) -> Decision:
    return Decision(domain="/", candidates=cands, outcome="kill", reason="test walk",
                    backend="python")


PROCS = {pid: {"comm": "worker", "cgroup": "/a", "rss_kb": 1024, "starttime": 1000 + pid}
         for pid in (100, 101, 102)}
CGROUPS = {"children": {"a": {"procs": [100, 101, 102]}}}


@pytest.fixture
def world(fake_root) -> World:
    return World(fake_root, PROCS, CGROUPS)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sys(world) -> FakeSys:
    return FakeSys(world)


# -------------------------------------------------------------------- one process


def test_kill_one_task_by_pidfd(world, clock, sys):
    result = make_killer(world, clock, sys).execute(decision(cand(100), cand(101)))
    assert result.outcome == "killed" and result.candidate == cand(100)
    assert sys.sent == [("pidfd", 100, signal.SIGKILL)]
    assert sys.mreleased == [100]
    assert sorted(sys.closed) == sorted(sys.fds)  # every pidfd closed
    assert result.signal_sent_at == 100.0 and result.exited_at == pytest.approx(100.01)
    assert result.freed_bytes == 1 << 20 and result.method == "pidfd"
    assert [a.outcome for a in result.attempts] == ["killed"]
    assert clock.waits[0][1] == select.POLLIN  # waited on the pidfd
    assert world.alive == {101, 102}  # at most one kill


@pytest.mark.parametrize("make_gone", ["dead", "reused", "zombie"])
def test_vanished_falls_through(world, clock, sys, make_gone):
    if make_gone == "dead":
        world.exit(100)
    elif make_gone == "reused":  # pid 100 exited and a newer process took the number
        _reuse_pid(world, 100)
    else:
        world.exit(100)
        fakefs.make_procfs(os.path.join(world.proc, "z"), {100: {"state": "Z", "comm": "worker"}})
        os.rename(os.path.join(world.proc, "z", "proc", "100"), os.path.join(world.proc, "100"))
        world.alive.add(100)
    first = cand(100, start_ticks=1100)
    result = make_killer(world, clock, sys).execute(decision(first, cand(101)))
    assert [a.outcome for a in result.attempts] == ["vanished", "killed"]
    assert result.candidate == cand(101) and sys.signals() == [(101, signal.SIGKILL)]


def test_a_renamed_process_is_still_the_victim(world, clock, sys):
    """prctl(PR_SET_NAME) or exec between the walk and the kill: same pidfd, same
    start time, same process. It used to count as vanished, handing the kill on."""
    result = make_killer(world, clock, sys).execute(
        decision(cand(100, comm="old-name", start_ticks=1100), cand(101)))
    assert [a.outcome for a in result.attempts] == ["killed"]
    assert sys.signals() == [(100, signal.SIGKILL)]


# Cgroup names are tenant bytes: " (deleted)" (the kernel's mark of a removed cgroup,
# here part of a live name), not UTF-8 (surrogateescape, as os.listdir gives it), a
# colon. (cgroup_mkdir() refuses "/" and newlines.)
HOSTILE_NAMES = ["x (deleted)", "\udcff\udcfe", "0::x"]


def _low_high(fake_root: str, name: str) -> World:
    procs = {100: {"comm": "hog", "cgroup": os.fsencode(f"/low/{name}"), "starttime": 1100},
             101: {"comm": "db", "cgroup": "/high", "starttime": 1101}}
    return World(fake_root, procs, {"children": {
        "low": {"children": {name: {"procs": [100]}}}, "high": {"procs": [101]}}})


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_cgroup_names_do_not_hand_the_kill_on(fake_root, clock, name):
    w = _low_high(fake_root, name)
    s = FakeSys(w)
    result = make_killer(w, clock, s).execute(decision(
        cand(100, f"/low/{name}", "hog", start_ticks=1100),
        cand(101, "/high", "db", start_ticks=1101)))
    assert [a.outcome for a in result.attempts] == ["killed"], result.detail
    assert s.signals() == [(100, signal.SIGKILL)]


def _move(world: World, pid: int, src: str, dst: str, printed: str | None = None) -> None:
    """pid leaves cgroup ``src`` for ``dst`` (its /proc entry says ``printed``)."""
    for rel, add in ((src, False), (dst, True)):
        for name in ("cgroup.procs", "cgroup.threads"):
            path = os.path.join(world.cg, rel.lstrip("/"), name)
            with open(path) as f:
                pids = [int(p) for p in f.read().split() if int(p) != pid]
            with open(path, "w") as f:
                f.write("".join(f"{p}\n" for p in pids + ([pid] if add else [])))
    with open(os.path.join(world.proc, str(pid), "cgroup"), "w") as f:
        f.write(f"0::{printed or dst}\n")


@pytest.mark.parametrize("dst, printed", [
    ("/b", None),  # into a sibling it owns
    ("/b", "/a"),  # /proc still claims the old place: the tree has the last word
    ("/b", "/a/x (deleted)"),
])
def test_a_victim_that_left_its_cgroup_is_a_new_decision(fake_root, clock, dst, printed):
    procs = {pid: {"comm": "worker", "cgroup": "/a", "starttime": 1000 + pid}
             for pid in (100, 101)}
    w = World(fake_root, procs, {"children": {"a": {"procs": [100, 101]}, "b": {}}})
    _move(w, 100, "/a", dst, printed)
    s = FakeSys(w)
    result = make_killer(w, clock, s).execute(decision(cand(100), cand(101)))
    assert result.outcome == "moved" and len(result.attempts) == 1, result.detail
    assert s.signals() == []  # not the next candidate either: the ranking is stale


def test_a_victim_that_moved_deeper_inside_the_victim_is_killed(fake_root, clock):
    procs = {100: {"comm": "worker", "cgroup": "/a", "starttime": 1100}}
    w = World(fake_root, procs, {"children": {"a": {"procs": [100], "children": {"in": {}}}}})
    _move(w, 100, "/a", "/a/in")
    s = FakeSys(w)
    result = make_killer(w, clock, s).execute(decision(cand(100)))
    assert result.outcome == "killed" and s.signals() == [(100, signal.SIGKILL)]


def test_a_process_whose_leader_exited_is_killed(fake_root, clock):
    """pthread_exit() in main: the leader is "Z" without an mm, a thread holds the
    memory (spec §6.2). Its location is read through that thread."""
    procs = {100: {"comm": "tenant", "state": "Z", "cgroup": "/a (deleted)",
                   "starttime": 1100, "threads": {105: {"cgroup": "/a", "rss_kb": 1024}}},
             101: {"comm": "worker", "cgroup": "/a", "starttime": 1101}}
    w = World(fake_root, procs, {"children": {"a": {
        "procs": [100, 101], "raw": {"cgroup.threads": "105\n101\n"}}}})
    s = FakeSys(w)
    result = make_killer(w, clock, s).execute(decision(cand(100), cand(101)))
    assert [a.outcome for a in result.attempts] == ["killed"], result.detail
    assert s.signals() == [(100, signal.SIGKILL)]


def test_eperm_is_refused_with_a_warning_then_next(world, clock, sys, caplog):
    world.eperm.add(100)
    with caplog.at_level(logging.WARNING, logger="prioomd.kill"):
        result = make_killer(world, clock, sys).execute(decision(cand(100), cand(101)))
    assert [(a.target, a.outcome) for a in result.attempts] == [(100, "refused"), (101, "killed")]
    assert "Operation not permitted" in caplog.text
    assert sys.signals() == [(101, signal.SIGKILL)]


@pytest.mark.parametrize("pid, protected", [(1, ()), (0, ()), (-5, ()), (100, (100,)),
                                            (os.getpid(), ())])
def test_protected_pids_are_never_signalled(world, clock, sys, pid, protected):
    result = make_killer(world, clock, sys, protected_pids=protected).execute(
        decision(cand(pid), cand(101)))
    assert result.attempts[0].outcome == "refused"
    assert all(p != pid for p, _sig in sys.signals())
    assert sys.signals() == [(101, signal.SIGKILL)]


@pytest.mark.parametrize("spec, outcome", [
    ({"kthread": True}, "refused"),
    ({"oom_score_adj": -1000}, "refused"),
])
def test_unkillable_now_is_refused(fake_root, clock, spec, outcome):
    procs = {100: {"comm": "worker", "cgroup": "/a", **spec},
             101: {"comm": "worker", "cgroup": "/a"}}
    w = World(fake_root, procs, CGROUPS)
    s = FakeSys(w)
    result = make_killer(w, clock, s).execute(decision(cand(100), cand(101)))
    assert [a.outcome for a in result.attempts] == [outcome, "killed"]
    assert s.signals() == [(101, signal.SIGKILL)]


def test_an_already_dying_victim_stops_the_walk(fake_root, clock):
    procs = {100: {"comm": "worker", "cgroup": "/a", "sigkill_pending": True},
             101: {"comm": "worker", "cgroup": "/a"}}
    w = World(fake_root, procs, CGROUPS)
    s = FakeSys(w)
    result = make_killer(w, clock, s).execute(decision(cand(100), cand(101)))
    assert result.outcome == "vanished" and len(result.attempts) == 1
    assert s.signals() == []


def test_dry_run_stops_at_the_final_syscall(world, clock, sys):
    world.eperm.add(100)
    result = make_killer(world, clock, sys, dry_run=True).execute(
        decision(cand(100), cand(101), cand(102)))
    assert [a.outcome for a in result.attempts] == ["refused", "dry-run"]
    assert result.outcome == "dry-run" and result.candidate == cand(101) and result.dry_run
    assert sys.signals() == [] and sys.mreleased == []
    assert [(pid, sig) for _v, pid, sig in sys.sent] == [(101, 0)]  # the permission probe
    assert result.signal_sent_at is None and result.freed_bytes == 1 << 20
    assert world.alive == {100, 101, 102}


def test_recheck_false_aborts_before_the_signal(world, clock, sys):
    calls = []

    def recheck() -> bool:
        calls.append(1)
        return False

    result = make_killer(world, clock, sys).execute(decision(cand(100), cand(101)), recheck)
    assert result.outcome == "pressure-gone" and result.candidate == cand(100)
    assert calls == [1] and sys.signals() == []


def test_recheck_true_kills(world, clock, sys):
    result = make_killer(world, clock, sys).execute(decision(cand(100)), lambda: True)
    assert result.outcome == "killed"


def test_sigterm_grace_exits_on_term(world, clock, sys):
    world.term_exits.add(100)
    policy = KillPolicy(sigterm_grace_s=2.0)
    result = make_killer(world, clock, sys, policy=policy).execute(decision(cand(100)))
    assert result.outcome == "killed" and "SIGTERM" in result.detail
    assert sys.signals() == [(100, signal.SIGTERM)]
    assert sys.mreleased == []  # nothing to reap: it left by itself


def test_sigterm_ignored_gets_sigkill_after_the_grace(world, clock, sys):
    policy = KillPolicy(sigterm_grace_s=2.0)
    result = make_killer(world, clock, sys, policy=policy).execute(decision(cand(100)))
    assert sys.signals() == [(100, signal.SIGTERM), (100, signal.SIGKILL)]
    assert result.outcome == "killed"
    assert result.signal_sent_at == pytest.approx(102.0)  # the SIGKILL, after the grace


def test_grace_only_if_false_skips_sigterm(world, clock, sys):
    policy = KillPolicy(sigterm_grace_s=2.0, grace_only_if=lambda: False)
    make_killer(world, clock, sys, policy=policy).execute(decision(cand(100)))
    assert sys.signals() == [(100, signal.SIGKILL)]


def test_unconfirmed_exit_is_failed_and_final(world, clock, sys, caplog):
    world.stubborn.add(100)
    policy = KillPolicy(confirm_timeout_s=1.0)
    result = make_killer(world, clock, sys, policy=policy).execute(
        decision(cand(100), cand(101)))
    assert result.outcome == "failed" and result.candidate == cand(100)
    assert result.signal_sent_at is not None and result.exited_at is None
    assert sys.signals() == [(100, signal.SIGKILL)]  # no second kill in the same call
    assert clock.now >= 101.0 and "still there" in caplog.text


@pytest.mark.parametrize("err, warned", [(errno.EINVAL, False), (errno.ESRCH, False),
                                         (errno.ENOSYS, False), (errno.EIO, True)])
def test_mrelease_errors(world, clock, sys, caplog, err, warned):
    sys.mrelease_errno = err
    with caplog.at_level(logging.DEBUG, logger="prioomd.kill"):
        result = make_killer(world, clock, sys).execute(decision(cand(100)))
    assert result.outcome == "killed"
    assert any(r.levelno == logging.WARNING for r in caplog.records) == warned
    assert "process_mrelease" in caplog.text


def test_mrelease_off(world, clock, sys):
    make_killer(world, clock, sys, policy=KillPolicy(mrelease=False)).execute(
        decision(cand(100)))
    assert sys.mreleased == []


def test_no_candidates(world, clock, sys):
    result = make_killer(world, clock, sys).execute(decision())
    assert (result.outcome, result.candidate, result.attempts) == ("no-candidate", None, ())


def test_all_vanished_or_refused(world, clock, sys):
    world.exit(100)
    world.eperm.add(101)
    result = make_killer(world, clock, sys).execute(decision(cand(100), cand(101)))
    assert result.outcome == "refused" and result.candidate is None
    world.exit(101)
    result = make_killer(world, clock, sys).execute(decision(cand(100), cand(101)))
    assert result.outcome == "vanished"


# -------------------------------------------------------------------- without pidfds


def test_without_pidfd_kill_is_used(world, clock):
    s = FakeSys(world, has_pidfd=False)
    result = make_killer(world, clock, s).execute(decision(cand(100)))
    assert result.outcome == "killed" and result.method == "kill"
    assert s.sent == [("kill", 100, signal.SIGKILL)]
    assert clock.waits[0][0] is None  # polled /proc, no fd to wait on


def _reuse_pid(world: World, pid: int) -> None:
    """pid exits and a new process (same comm, later start) takes its number."""
    path = os.path.join(world.proc, str(pid), "stat")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace(f" {1000 + pid} ", " 999999 "))


def test_without_pidfd_a_reused_pid_is_not_signalled(world, clock):
    s = FakeSys(world, has_pidfd=False)

    def recheck() -> bool:  # runs between the identity check and the signal
        _reuse_pid(world, 100)
        return True

    result = make_killer(world, clock, s).execute(decision(cand(100), cand(101)), recheck)
    assert result.attempts[0].outcome == "vanished" and "reused" in result.attempts[0].detail
    assert s.signals() == [(101, signal.SIGKILL)]


def test_without_pidfd_reuse_during_the_grace_gets_no_sigkill(world, clock):
    s = FakeSys(world, has_pidfd=False)
    world.hooks.append(lambda w: _reuse_pid(w, 100))
    result = make_killer(world, clock, s, policy=KillPolicy(sigterm_grace_s=1.0)).execute(
        decision(cand(100)))
    assert s.signals() == [(100, signal.SIGTERM)]  # the newcomer is left alone
    assert result.outcome == "killed"


# -------------------------------------------------------------------- whole cgroups

GROUP_PROCS = {pid: {"comm": "job", "cgroup": cg, "rss_kb": 512}
               for pid, cg in ((200, "/g"), (201, "/g/sub"), (202, "/g/sub"), (300, "/h"))}
GROUP_CGROUPS = {"children": {
    "g": {"procs": [200], "memory.current": 7 << 20, "children": {"sub": {"procs": [201, 202]}}},
    "h": {"procs": [300]}}}


@pytest.fixture
def gworld(fake_root) -> World:
    return World(fake_root, GROUP_PROCS, GROUP_CGROUPS)


def gcand(path: str = "/g", pids: tuple[int, ...] = (200, 201, 202)) -> Candidate:
    return cand(pids[0], path, "job", kill_cgroup=path, pids=pids)


def test_cgroup_kill(gworld, clock):
    s = FakeSys(gworld)
    result = make_killer(gworld, clock, s).execute(decision(gcand(), cand(300, "/h", "job")))
    assert result.outcome == "killed" and result.method == "cgroup.kill"
    assert s.signals() == []  # one write to cgroup.kill, no per-process signals
    assert gworld.alive == {300}
    assert result.freed_bytes == 7 << 20  # memory.current before the kill
    assert sorted(s.mreleased) == [200, 201, 202]
    assert clock.waits[0][1] == select.POLLPRI  # woken by cgroup.events
    with open(os.path.join(gworld.cg, "g", "cgroup.events")) as f:
        assert f.read().startswith("populated 0")


def test_cgroup_kill_then_kill_what_it_missed(gworld, clock):
    """cgroup.kill signals each leader thread alone: a process whose main thread
    exited (pthread_exit) keeps running. What is left gets kill(2)."""
    gworld.leader_exited.add(201)
    s = FakeSys(gworld)
    result = make_killer(gworld, clock, s).execute(decision(gcand()))
    assert result.outcome == "killed" and result.method == "cgroup.kill", result.detail
    assert s.signals() == [(201, signal.SIGKILL)]
    assert gworld.alive == {300}


def test_cgroup_without_cgroup_kill_falls_back_to_procs(gworld, clock):
    os.unlink(os.path.join(gworld.cg, "g", "cgroup.kill"))
    os.unlink(os.path.join(gworld.cg, "g", "sub", "cgroup.kill"))
    s = FakeSys(gworld)
    forked = []

    def fork_once(w: World) -> None:  # a child forked between two rounds
        if not forked:
            forked.append(203)
            fakefs.make_procfs(os.path.join(w.proc, "f"), {203: {"comm": "job", "cgroup": "/g"}})
            os.rename(os.path.join(w.proc, "f", "proc", "203"), os.path.join(w.proc, "203"))
            w.alive.add(203)
            with open(os.path.join(w.cg, "g", "cgroup.procs"), "a") as f:
                f.write("203\n")

    gworld.hooks.append(fork_once)
    result = make_killer(gworld, clock, s).execute(decision(gcand()))
    assert result.outcome == "killed" and result.method == "cgroup.procs"
    assert sorted(pid for pid, sig in s.signals() if sig == signal.SIGKILL) == [200, 201, 202, 203]
    assert gworld.alive == {300}


def test_cgroup_kill_enoent_at_write_time_falls_back(gworld, clock, monkeypatch):
    def no_file(path: str) -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file", path)

    monkeypatch.setattr(kill, "_write_one", no_file)
    s = FakeSys(gworld)
    result = make_killer(gworld, clock, s).execute(decision(gcand()))
    assert result.outcome == "killed" and result.method == "cgroup.procs"
    assert gworld.alive == {300}


def test_cgroup_with_a_protected_member_is_killed_task_by_task(gworld, clock):
    s = FakeSys(gworld)
    result = make_killer(gworld, clock, s, protected_pids=[201]).execute(decision(gcand()))
    assert result.outcome == "killed" and result.method == "cgroup.procs"
    assert sorted(pid for pid, _sig in s.signals()) == [200, 202]
    assert gworld.alive == {201, 300}


def test_cgroup_spares_unvetted_minus_1000(fake_root, clock):
    procs = {**GROUP_PROCS, 204: {"comm": "sshd", "cgroup": "/g", "oom_score_adj": -1000}}
    spec = {"children": {"g": {"procs": [200, 204], "children": {"sub": {"procs": [201, 202]}}},
                         "h": {"procs": [300]}}}
    w = World(fake_root, procs, spec)
    s = FakeSys(w)
    result = make_killer(w, clock, s).execute(decision(gcand()))
    assert result.outcome == "killed" and result.method == "cgroup.procs"
    assert 204 in w.alive and 204 not in [pid for pid, _sig in s.signals()]


def test_cgroup_dry_run_writes_nothing(gworld, clock):
    s = FakeSys(gworld)
    result = make_killer(gworld, clock, s, dry_run=True).execute(decision(gcand()))
    assert result.outcome == "dry-run" and result.method == "cgroup.kill"
    with open(os.path.join(gworld.cg, "g", "cgroup.kill")) as f:
        assert f.read() == ""
    assert s.sent == [] and gworld.alive == {200, 201, 202, 300}


def test_cgroup_recheck_false(gworld, clock):
    s = FakeSys(gworld)
    result = make_killer(gworld, clock, s).execute(decision(gcand()), lambda: False)
    assert result.outcome == "pressure-gone" and gworld.alive == {200, 201, 202, 300}


def test_cgroup_gone_falls_through(gworld, clock):
    s = FakeSys(gworld)
    result = make_killer(gworld, clock, s).execute(
        decision(gcand("/gone"), cand(300, "/h", "job")))
    assert [a.outcome for a in result.attempts] == ["vanished", "killed"]


@pytest.mark.parametrize("err", [errno.EROFS, errno.EPERM, errno.EACCES])
def test_cgroup_kill_refused(gworld, clock, monkeypatch, err):
    def refuse(path: str) -> None:
        raise OSError(err, os.strerror(err), path)

    monkeypatch.setattr(kill, "_write_one", refuse)
    s = FakeSys(gworld)
    result = make_killer(gworld, clock, s).execute(decision(gcand(), cand(300, "/h", "job")))
    assert [a.outcome for a in result.attempts] == ["refused", "killed"]
    assert result.candidate == cand(300, "/h", "job")


def test_root_cgroup_is_never_killed(gworld, clock):
    s = FakeSys(gworld)
    result = make_killer(gworld, clock, s).execute(decision(gcand("/")))
    assert result.outcome == "refused" and s.sent == []


def test_cgroup_kill_not_confirmed(gworld, clock):
    gworld.stubborn.add(201)
    s = FakeSys(gworld)
    result = make_killer(gworld, clock, s, policy=KillPolicy(confirm_timeout_s=0.5)).execute(
        decision(gcand(), cand(300, "/h", "job")))
    assert result.outcome == "failed" and result.exited_at is None
    assert 300 in gworld.alive  # the walk stops: a signal already went out


def test_bad_kill_cgroup_path_is_a_bug(gworld, clock):
    with pytest.raises(ValueError):
        make_killer(gworld, clock, FakeSys(gworld)).execute(decision(gcand("/g/../h")))


# -------------------------------------------------------------------- keepalive

def _pinged_killer(world: World, clock: Clock, sys: FakeSys, policy: KillPolicy,
                   pings: list[float]) -> Killer:
    def wait(fd: int | None, events: int, timeout_s: float) -> None:
        clock.now += timeout_s  # nothing wakes us: every wait lasts its whole timeout
        world.tick()
    return Killer(world.cg, proc_root=world.proc, clock=clock, wait=wait, syscalls=sys,
                  policy=policy, keepalive=lambda: pings.append(clock.now))


def _longest_gap(start: float, pings: list[float], end: float) -> float:
    times = [start, *pings, end]
    return max(b - a for a, b in zip(times, times[1:], strict=False))


def test_keepalive_during_an_hour_of_grace_and_an_hour_of_confirmation(world, clock, sys):
    """No upper bound holds the kill path under WatchdogSec=10s: grace and
    confirmation can each be long (here an hour). The watchdog is fed throughout."""
    world.stubborn.add(100)  # ignores SIGTERM, and SIGKILL is never confirmed (D state)
    pings: list[float] = []
    policy = KillPolicy(sigterm_grace_s=3600.0, confirm_timeout_s=3600.0)
    start = clock.now
    result = _pinged_killer(world, clock, sys, policy, pings).execute(decision(cand(100)))
    assert result.outcome == "failed"
    assert sys.signals() == [(100, signal.SIGTERM), (100, signal.SIGKILL)]
    assert clock.now - start >= 7200.0
    assert _longest_gap(start, pings, clock.now) <= kill.KEEPALIVE_TICK_S


def test_keepalive_while_a_cgroup_kill_is_confirmed(fake_root, clock):
    w = World(fake_root, PROCS, CGROUPS)
    w.stubborn.add(101)
    pings: list[float] = []
    start = clock.now
    result = _pinged_killer(w, clock, FakeSys(w), KillPolicy(confirm_timeout_s=30.0),
                            pings).execute(decision(cand(100, kill_cgroup="/a",
                                                         pids=(100, 101, 102))))
    assert result.outcome == "failed" and clock.now - start >= 30.0
    assert _longest_gap(start, pings, clock.now) <= kill.KEEPALIVE_TICK_S

# -------------------------------------------------------------------- reaping a stuck victim


def _join_reapers() -> None:
    for t in threading.enumerate():
        if t.name.startswith("prioomd-reap-"):
            t.join(timeout=5)


def test_reap_mreleases_in_a_thread_and_closes_the_pidfd(world, clock, sys):
    detail = make_killer(world, clock, sys).reap(100, 1100)
    _join_reapers()
    assert "process_mrelease" in detail and sys.mreleased == [100]
    assert sorted(sys.closed) == sorted(sys.fds) and sys.signals() == []


@pytest.mark.parametrize("start, kw, why", [
    (999, {}, "gone before the reap"),  # the pid names another process now
    (1100, {"dry_run": True}, "dry-run"),
    (1100, {"policy": KillPolicy(mrelease=False)}, "no mrelease"),
])
def test_reap_only_the_same_process_and_only_for_real(world, clock, sys, start, kw, why):
    detail = make_killer(world, clock, sys, **kw).reap(100, start)
    _join_reapers()
    assert why in detail and sys.mreleased == []
    assert sorted(sys.closed) == sorted(sys.fds)


def test_private_cgroup_namespace_paths_are_mapped_back_to_the_tree(fake_root, clock):
    """In a pod's private cgroup namespace /proc/PID/cgroup reads "/../../a": with the
    namespace's root known, that is /a, the victim's cgroup, not a moved process."""
    procs = {pid: {**spec, "cgroup": "/../../a"} for pid, spec in PROCS.items()}
    w = World(fake_root, procs, CGROUPS)
    killer = make_killer(w, clock, FakeSys(w), cgroupns_root="/kubepods.slice/kubepods-podx.slice")
    result = killer.execute(decision(cand(100), cand(101)))
    assert [a.outcome for a in result.attempts] == ["killed"]
    assert result.candidate == cand(100)
