"""events.py against this machine's kernel: PSI triggers, kernfs inotify, signals,
the process events connector and pidfds. Skips with the reason where a facility
is absent. Timeouts are generous; nothing asserts on latency."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from prioomd.events import PROC_KEY, Event, EventLoop

PROC_PSI = "/proc/pressure/memory"
PATIENCE_S = 10.0


def wait_for(loop: EventLoop, pred: Callable[[Event], bool]) -> Event:
    deadline = time.monotonic() + PATIENCE_S
    seen: list[Event] = []
    while (left := deadline - time.monotonic()) > 0:
        for ev in loop.wait(min(left, 1.0)):
            if pred(ev):
                return ev
            seen.append(ev)
    raise AssertionError(f"no matching event within {PATIENCE_S} s; saw {seen[-10:]}")


def can_write_psi(path: str, spec: bytes) -> int:
    """0 if the kernel accepts ``spec`` on ``path``, else the errno."""
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        os.write(fd, spec)
        return 0
    except OSError as exc:
        return exc.errno or -1
    finally:
        os.close(fd)


@pytest.fixture
def proc_psi() -> str:
    if not os.path.exists(PROC_PSI):
        pytest.skip(f"{PROC_PSI} absent: kernel without PSI or booted with psi=0")
    return PROC_PSI


@pytest.fixture
def child_cgroup(host_cgroup: str) -> str:
    """An empty cgroup inside the private test cgroup that a test may remove."""
    path = os.path.join(host_cgroup, "child")
    os.mkdir(path)
    if not os.path.exists(os.path.join(path, "memory.pressure")):
        pytest.skip("no memory.pressure in cgroups: PSI for cgroups is disabled")
    return path


def test_kernel_window_rule(proc_psi: str) -> None:
    """What this kernel accepts: every multiple of 2 s up to 10 s; other windows
    only with CAP_SYS_RESOURCE; more than 10 s never."""
    for window in range(2_000_000, 10_000_001, 2_000_000):
        assert can_write_psi(proc_psi, f"some 150000 {window}\0".encode()) == 0
    assert can_write_psi(proc_psi, b"some 150000 12000000\0") == errno.EINVAL
    odd = can_write_psi(proc_psi, b"some 50000 1000000\0")
    assert odd in (0, errno.EINVAL)  # 0 only with CAP_SYS_RESOURCE


def test_root_trigger_registers_with_rounding(proc_psi: str) -> None:
    privileged = can_write_psi(proc_psi, b"some 50000 1000000\0") == 0
    with EventLoop(signals=False) as loop:
        info = loop.add_psi_trigger("root", proc_psi, "some", 50_000, 1_000_000)
        assert info.mode == "trigger"
        if privileged:
            assert (info.stall_us, info.window_us, info.warning) == (50_000, 1_000_000, "")
        else:
            assert (info.stall_us, info.window_us) == (100_000, 2_000_000)
            assert "multiples of 2 s" in info.warning
        exact = loop.add_psi_trigger("root-full", proc_psi, "full", 150_000, 2_000_000)
        assert (exact.mode, exact.window_us, exact.warning) == ("trigger", 2_000_000, "")
        odd = loop.add_psi_trigger("root-3s", proc_psi, "some", 300_000, 3_000_000)
        assert odd.mode == "trigger" and odd.window_us in (3_000_000, 4_000_000)
        assert loop.polling_keys() == set()


def test_refused_trigger_falls_back_to_polling() -> None:
    """A file that answers EINVAL to any trigger (oom_score_adj rejects the text
    and stays unchanged) exercises retry-then-fallback."""
    path = "/proc/self/oom_score_adj"
    with open(path) as f:
        before = f.read()
    with EventLoop(signals=False) as loop:
        info = loop.add_psi_trigger("k", path, "some", 50_000, 1_000_000)
        assert info.mode == "polling" and "falling back to polling" in info.warning
        assert loop.polling_keys() == {"k"}
    with open(path) as f:
        assert f.read() == before


def test_cgroup_trigger_registers_and_reports_gone(child_cgroup: str) -> None:
    with EventLoop(signals=False) as loop:
        info = loop.add_psi_trigger("cg", os.path.join(child_cgroup, "memory.pressure"),
                                    "some", 150_000, 2_000_000)
        assert (info.mode, info.window_us) == ("trigger", 2_000_000)
        assert loop.wait(0.05) == [Event("timeout")]  # no pressure: the trigger stays quiet
        os.rmdir(child_cgroup)
        ev = wait_for(loop, lambda e: e.kind != "timeout")
        assert (ev.kind, ev.key, ev.detail["source"]) == ("gone", "cg", "psi")
        assert loop.wait(0.05) == [Event("timeout")]  # the fd was dropped with the key


def test_kernfs_file_watch_and_gone(child_cgroup: str,
                                    spawn: Callable[[str], subprocess.Popen[bytes]]) -> None:
    with EventLoop(signals=False) as loop:
        loop.watch_file("cg", os.path.join(child_cgroup, "cgroup.events"))
        proc = spawn(child_cgroup)  # populated 0 -> 1
        ev = wait_for(loop, lambda e: e.kind == "file-changed")
        assert ev.key == "cg" and ev.detail["path"].endswith("cgroup.events")
        proc.kill()
        proc.wait(timeout=PATIENCE_S)
        wait_for(loop, lambda e: e.kind == "file-changed")  # populated 1 -> 0
        deadline = time.monotonic() + PATIENCE_S
        while True:
            try:
                os.rmdir(child_cgroup)
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        ev = wait_for(loop, lambda e: e.kind == "gone")
        assert (ev.key, ev.detail["source"]) == ("cg", "inotify")


def test_sighup_and_sigterm_to_self() -> None:
    with EventLoop() as loop:
        os.kill(os.getpid(), signal.SIGHUP)
        assert wait_for(loop, lambda e: e.kind != "timeout").kind == "signal-reload"
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        events = loop.wait(PATIENCE_S)
        assert [e.kind for e in events] == ["signal-stop"]  # coalesced


def test_pidfd_reports_exit_of_a_child() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    with EventLoop(signals=False) as loop:
        loop.watch_pid("victim", proc.pid)
        ev = wait_for(loop, lambda e: e.kind == "proc-exit")
        assert (ev.key, ev.detail["pid"], ev.detail["source"]) == ("victim", proc.pid, "pidfd")
        proc.wait(timeout=PATIENCE_S)
        loop.watch_pid("reaped", proc.pid)  # already gone: reported at once
        assert ("proc-exit", "reaped") in [(e.kind, e.key) for e in loop.wait(0)]


def test_connector_reports_exit_of_a_child() -> None:
    with EventLoop(signals=False) as loop:
        info = loop.enable_proc_events()
        if not info.available:
            pytest.skip(info.reason)
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait(timeout=PATIENCE_S)
        ev = wait_for(loop, lambda e: e.kind == "proc-exit" and e.detail["pid"] == proc.pid)
        assert ev.key == PROC_KEY and ev.detail["source"] == "connector"
        assert ev.detail["wait_status"] == 0


def test_connector_forks_on_request() -> None:
    with EventLoop(signals=False) as loop:
        info = loop.enable_proc_events(forks=True)
        if not info.available:
            pytest.skip(info.reason)
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait(timeout=PATIENCE_S)
        ev = wait_for(loop, lambda e: e.kind == "proc-fork" and e.detail["pid"] == proc.pid)
        assert ev.detail["ppid"] == os.getpid()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_watching_a_pid_twice_keeps_one_pidfd_and_reports_one_exit() -> None:
    """A victim of an earlier kill still exiting is among the pids of the next
    (memory.oom.group) kill: the second watch must not leak the first pidfd,
    nor end the loop with a KeyError when both become readable."""
    proc = subprocess.Popen(["sleep", "60"])
    with EventLoop(signals=False) as loop:
        before = _open_fds()
        loop.watch_pid("victim", proc.pid)
        loop.watch_pid("victim", proc.pid)
        assert _open_fds() == before + 1
        proc.kill()
        proc.wait(timeout=PATIENCE_S)
        ev = wait_for(loop, lambda e: e.kind == "proc-exit")
        assert ev.key == "victim"
        assert _open_fds() == before
        assert [e.kind for e in loop.wait(0.05)] == ["timeout"]  # nothing stray is left
