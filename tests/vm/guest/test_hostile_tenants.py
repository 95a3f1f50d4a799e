"""Hostile tenants against the live daemon on a real kernel.

In each scenario a high-priority hog holds 45 % of RAM and a tenant in a low-priority
cgroup grows by 3 % of RAM per second until something dies, while it fights back
(tenant.py): it renames itself, lives in an oddly named cgroup, lets its leader thread
exit, forks as fast as it can, moves itself between cgroups it owns, or ranks its own
delegation root with user.prioomd.* xattrs.  Whatever it does, prioomd must kill the
tenant, leave the high-priority hog alone, and act before the kernel's OOM killer
(/proc/vmstat oom_kill stays put).
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
from daemon import GLOBAL, Prioomd
from scenario import TENANT, Report, Scenario

TENANT_UID = 1000  # a delegated user; it needs no passwd entry
LOW_TENANT = {"high": {"priority": 10}, "tenant": {"priority": 1}}


def delegate(path: Path, uid: int) -> None:
    """Hand the cgroup at `path` to `uid` as systemd's Delegate=yes does: the directory
    and its cgroup.procs, cgroup.threads and cgroup.subtree_control, and all below."""
    for dirpath, _, _ in os.walk(path):
        os.chown(dirpath, uid, uid)
        for name in ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control"):
            os.chown(os.path.join(dirpath, name), uid, uid)


def run_tenant(sc: Scenario, d: Prioomd, cg: str, mode: str, *args: str,
               uid: int = -1) -> Report:
    """High holds 45 %, the tenant in `cg` grows from 10 % at 3 %/s doing `mode`;
    returns the report once either of them died."""
    sc.hog("high", "45%")
    sc.hog(cg, "10%", rate="3%", name="tenant", program=TENANT, args=[str(uid), mode, *args])
    sc.wait_first_death(timeout=240)
    return sc.report()


def assert_tenant_died_alone(sc: Scenario, d: Prioomd, rep: Report) -> None:
    if rep.deaths and rep.deaths[0].name == "tenant" and rep.oom_kill_global == 0:
        # prioomd writes its record once the victim's exit is confirmed and its memory
        # released, which can be a moment after the runner saw the death.
        sc.wait(lambda: bool(d.kills()), 30, "prioomd's kill record")
    why = f"{rep}\n{d.describe()}"
    assert sc.workloads["high"].alive, why
    assert not sc.workloads["tenant"].alive, why
    assert rep.deaths[0].name == "tenant" and rep.deaths[0].signal == signal.SIGKILL, why
    assert rep.oom_kill_global == 0 and not rep.kernel_kills, why
    assert d.alive(), why
    kills = d.kills()
    assert kills and kills[0]["outcome"] == "killed", why
    assert d.records("miss") == [], why


def test_h1_tenant_renaming_itself(cg_parent: Path, tmp_path: Path) -> None:
    """A new /proc/PID/comm every turn (one of them the high hog's own name): the
    renaming must not hand its kill to someone else."""
    with Scenario(LOW_TENANT, base=cg_parent) as sc, Prioomd(cg_parent, GLOBAL, tmp_path) as d:
        rep = run_tenant(sc, d, "tenant", "rename")
        assert_tenant_died_alone(sc, d, rep)
    assert d.kills()[0]["victim_cgroup"] == "/tenant", d.describe()


def _refuses_mkdir(parent: Path, name: str) -> bool:
    try:
        (parent / name).mkdir()
    except OSError as e:
        if e.errno == errno.EINVAL:
            return True
        raise
    (parent / name).rmdir()
    return False


@pytest.mark.parametrize("name", [
    pytest.param("tenant (deleted)", id="deleted-suffix"),
    pytest.param("tenant-\udcff\udcfe", id="invalid-utf8"),  # the bytes ff fe
    pytest.param("ten\nant", id="newline"),
])
def test_h2_tenant_in_an_oddly_named_cgroup(cg_parent: Path, tmp_path: Path, name: str) -> None:
    """The kernel writes " (deleted)" after a removed cgroup's path in /proc/PID/cgroup;
    cgroup names are bytes.  6.1 and 6.12 refuse a newline in a cgroup name (EINVAL,
    see test_kernel_facts): there the newline goes into the tenant's process name."""
    args: tuple[str, ...] = ()
    if "\n" in name and _refuses_mkdir(cg_parent, name):
        args = (name,)
        name = "tenant-newline-comm"
    tree = {"high": {"priority": 10}, name: {"priority": 1}}
    with Scenario(tree, base=cg_parent) as sc, Prioomd(cg_parent, GLOBAL, tmp_path) as d:
        rep = run_tenant(sc, d, name, "name" if args else "rename", *args)
        assert_tenant_died_alone(sc, d, rep)


def test_h3_tenant_whose_leader_thread_exited(cg_parent: Path, tmp_path: Path) -> None:
    """The leader thread is a zombie with no mm; the process lives on in another thread
    and holds the memory.  The kernel's OOM killer still counts it (it looks at every
    thread); prioomd must not skip it."""
    with Scenario(LOW_TENANT, base=cg_parent) as sc, Prioomd(cg_parent, GLOBAL, tmp_path) as d:
        sc.hog("high", "45%")
        t = sc.hog("tenant", "10%", rate="3%", name="tenant", program=TENANT,
                   args=["-1", "leader-exit"])
        stat = Path(f"/proc/{t.pid}/stat")
        # The leader's state, not the process's: the process still runs.
        sc.wait(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", 30,
                "the tenant's leader thread to exit")
        sc.wait_first_death(timeout=240)
        assert_tenant_died_alone(sc, d, sc.report())


def test_h4_tenant_forking_while_it_is_killed(cg_parent: Path, tmp_path: Path) -> None:
    """Each turn a fork: a child that shares (copy-on-write) all the tenant's pages,
    which killing frees nothing of, comes and goes as the daemon scans and kills."""
    tree = {"high": {"priority": 10}, "tenant": {"priority": 1, "pids.max": 64}}
    with Scenario(tree, base=cg_parent) as sc, Prioomd(cg_parent, GLOBAL, tmp_path) as d:
        rep = run_tenant(sc, d, "tenant", "fork")
        assert_tenant_died_alone(sc, d, rep)


def test_h5_tenant_moving_within_its_delegation(cg_parent: Path, tmp_path: Path) -> None:
    """A delegated user's process moves itself between two cgroups it owns, as fast as
    it can, while the daemon walks, scans and kills."""
    tree = {**LOW_TENANT, "tenant/a": {}, "tenant/b": {}}
    with Scenario(tree, base=cg_parent) as sc, Prioomd(cg_parent, GLOBAL, tmp_path) as d:
        delegate(sc.path("tenant"), TENANT_UID)
        a, b = (os.fspath(sc.path(f"tenant/{x}")) for x in "ab")
        rep = run_tenant(sc, d, "tenant/a", "move", a, b, uid=TENANT_UID)
        assert_tenant_died_alone(sc, d, rep)


def test_h6_tenant_ranking_its_own_delegation_root(cg_parent: Path, tmp_path: Path) -> None:
    """user.prioomd.priority = 12 (and peers' user.oomd_omit) set by the delegated user
    on its delegation root must not lift it above the root-ranked /high (priority 10)."""
    tree = {"high": {"priority": 10}, "tenant": {}}
    with Scenario(tree, base=cg_parent) as sc, Prioomd(cg_parent, GLOBAL, tmp_path) as d:
        delegate(sc.path("tenant"), TENANT_UID)
        root = sc.path("tenant")
        rep = run_tenant(sc, d, "tenant", "xattr", os.fspath(root), "user.prioomd.priority=12",
                         "user.prioomd.use_priority_oom=1", "user.oomd_omit=1",
                         uid=TENANT_UID)
        assert os.getxattr(root, "user.prioomd.priority") == b"12", "the tenant could not set it"
        assert_tenant_died_alone(sc, d, rep)
