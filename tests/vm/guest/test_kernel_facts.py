"""Kernel facts prioomd relies on, asserted on a real kernel (cgroup v2, memory, PSI).

Each test is one fact; sizes are small because every page touched under TCG is slow.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import time
from pathlib import Path

import pytest
from scenario import (
    CGROUP_ROOT,
    PRIORITY_XATTR,
    USE_PRIORITY_OOM_XATTR,
    Scenario,
    parse_keyed,
)

NO_SWAP_LIMIT = {"memory.swap.max": 0, "memory.max": "32M"}


def test_limit_oom_raises_oom_and_oom_kill(cg_parent: Path) -> None:
    with Scenario({"lim": NO_SWAP_LIMIT}, base=cg_parent) as sc:
        hog = sc.hog("lim", "64M", ready=False)
        sc.wait_death(hog.name, timeout=60)
        rep = sc.report()
    assert hog.death is not None and hog.death.signal == signal.SIGKILL, rep
    ev = rep.events["lim"]
    assert ev["oom"] >= 1 and ev["oom_kill"] >= 1 and ev["max"] >= 1, rep
    # memory.events is hierarchical: the parent counts its child's kill too.
    assert rep.events[""]["oom_kill"] >= 1, rep
    assert rep.oom_kill_global >= 1, rep
    [kill] = [k for k in rep.kernel_kills if k.workload == hog.name]
    assert kill.why == "Memory cgroup out of memory", rep


def test_psi_trigger_fires_under_memory_high_throttling(cg_parent: Path) -> None:
    tree = {"thr": {"memory.swap.max": 0, "memory.high": "16M"}}
    with Scenario(tree, base=cg_parent) as sc:
        fd = os.open(sc.path("thr") / "memory.pressure", os.O_RDWR | os.O_NONBLOCK)
        try:
            # 150 ms of stall in a 2 s window: a window that unprivileged users may use too.
            os.write(fd, b"some 150000 2000000\0")
            poller = select.poll()
            poller.register(fd, select.POLLPRI)
            t0 = time.monotonic()
            sc.hog("thr", "64M", ready=False)
            fired = poller.poll(30_000)
            waited = time.monotonic() - t0
        finally:
            os.close(fd)
        pressure = sc.read("thr", "memory.pressure")
        rep = sc.report()
    assert fired and fired[0][1] & select.POLLPRI, f"no POLLPRI in {waited:.1f} s\n{rep}"
    some_total = int(pressure.split("total=")[1].split()[0])
    assert some_total > 0, pressure


def test_memory_high_throttles_without_killing(cg_parent: Path) -> None:
    tree = {"thr": {"memory.swap.max": 0, "memory.high": "16M"}}
    with Scenario(tree, base=cg_parent) as sc:
        hog = sc.hog("thr", "64M", ready=False)
        sc.wait_event("thr", "high", timeout=30)
        time.sleep(1.0)  # throttled, not killed: give the kernel time to do otherwise
        rep = sc.report()
        alive = hog.alive
    assert alive and not rep.deaths, rep
    ev = rep.events["thr"]
    assert ev["high"] >= 1 and "oom" not in ev and "oom_kill" not in ev, rep


def test_cgroup_kill_empties_the_cgroup(cg_parent: Path) -> None:
    with Scenario({"k": {}}, base=cg_parent) as sc:
        ws = [sc.spawn("k", ["sleep", "1000"]) for _ in range(2)]
        ws.append(sc.spawn("k", ["sh", "-c", "sleep 1000 & sleep 1000 & wait"]))
        sc.wait(lambda: len(sc.read("k", "cgroup.procs").split()) == 5, 10, "5 tasks in k")
        sc.write("k", "cgroup.kill", 1)
        sc.wait_empty("k", timeout=10)
        procs = sc.read("k", "cgroup.procs")
        sc.wait_death(*(w.name for w in ws), timeout=10)
    assert procs == ""
    assert [w.death.how for w in ws if w.death] == ["SIGKILL"] * 3


def test_oom_group_kills_the_whole_group(cg_parent: Path) -> None:
    tree = {"grp": {**NO_SWAP_LIMIT, "memory.oom.group": 1}}
    with Scenario(tree, base=cg_parent) as sc:
        sleeper = sc.spawn("grp", ["sleep", "1000"], name="sleeper")
        hog = sc.hog("grp", "64M", ready=False, name="hog")
        sc.wait_death("sleeper", "hog", timeout=60)
        rep = sc.report()
    assert sleeper.death and sleeper.death.how == "SIGKILL", rep
    assert hog.death and hog.death.how == "SIGKILL", rep
    ev = rep.events["grp"]
    assert ev["oom_group_kill"] >= 1 and ev["oom_kill"] >= 2, rep


def test_trusted_and_user_xattrs_on_cgroup_dirs(cg_parent: Path) -> None:
    tree = {
        "x": {
            "priority": 7,
            "use_priority_oom": True,
            "xattrs": {"user.prioomd.priority": "3"},
        },
        "y": {},
    }
    with Scenario(tree, base=cg_parent) as sc:
        x, y = sc.path("x"), sc.path("y")
        assert os.getxattr(x, PRIORITY_XATTR) == b"7"
        assert os.getxattr(x, USE_PRIORITY_OOM_XATTR) == b"1"
        assert os.getxattr(x, "user.prioomd.priority") == b"3"
        assert {PRIORITY_XATTR, USE_PRIORITY_OOM_XATTR, "user.prioomd.priority"} <= set(
            os.listxattr(x)
        )
        # Unset means ENODATA (the daemon's "default priority 0").
        with pytest.raises(OSError) as e:
            os.getxattr(y, PRIORITY_XATTR)
        assert e.value.errno == errno.ENODATA
        os.removexattr(x, PRIORITY_XATTR)
        assert PRIORITY_XATTR not in os.listxattr(x)
    # The root cgroup takes them too (use_priority_oom for global OOM lives there).
    name = "trusted.prioomd.kh_test"
    os.setxattr(CGROUP_ROOT, name, b"1")
    try:
        assert os.getxattr(CGROUP_ROOT, name) == b"1"
    finally:
        os.removexattr(CGROUP_ROOT, name)


def test_memory_events_local_is_not_hierarchical(cg_parent: Path) -> None:
    """Parent counts child OOM kills in memory.events but not in memory.events.local."""
    with Scenario({"a/b": NO_SWAP_LIMIT}, base=cg_parent) as sc:
        hog = sc.hog("a/b", "64M", ready=False)
        sc.wait_death(hog.name, timeout=60)
        assert sc.event_delta("a", "oom_kill") >= 1
        assert sc.events("a", local=True).get("oom_kill", 0) == 0
        assert sc.events("a/b", local=True)["oom_kill"] >= 1
        assert parse_keyed(sc.read("a", "cgroup.events"))["populated"] == 0


@pytest.mark.parametrize("name", ["x (deleted)", "x-\udcff\udcfe"], ids=["deleted", "not-utf8"])
def test_proc_pid_cgroup_shows_a_cgroup_name_verbatim(cg_parent: Path, name: str) -> None:
    """A live cgroup may end in " (deleted)" (the kernel's mark of a removed one) or be
    no UTF-8 at all: /proc/PID/cgroup shows its bytes as they are."""
    with Scenario({name: {}}, base=cg_parent) as sc:
        w = sc.spawn(name, ["sleep", "60"])
        shown = Path(f"/proc/{w.pid}/cgroup").read_bytes()
        assert shown == b"0::/" + os.fsencode(sc.path(name).relative_to(CGROUP_ROOT)) + b"\n"


def test_a_newline_in_a_cgroup_name_is_refused(cg_parent: Path) -> None:
    with pytest.raises(OSError) as e:
        (cg_parent / "a\nb").mkdir()
    assert e.value.errno == errno.EINVAL
