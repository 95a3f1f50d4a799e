"""cgroupfs and procfs against this machine's real cgroup v2 tree (DESIGN §5, tier 3).

On the development hosts the v2 tree is /sys/fs/cgroup/unified, without the
memory controller: usage reads as 0, limits as None, and the walk still works.
"""

from __future__ import annotations

import errno
import os
import signal
import time

import pytest

from prioomd import cgparse, cgroupfs, procfs
from prioomd.errors import Vanished, is_gone
from prioomd.model import TaskState


def _wait_for(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_default_root_is_a_cgroup2_mount(host_cgroup_root):
    with open("/proc/self/mounts", encoding="utf-8") as f:
        assert cgroupfs.default_cgroup_root() in cgparse.cgroup2_mounts(f.read())
    assert cgroupfs.read_controllers(host_cgroup_root) >= cgroupfs.read_subtree_control(
        host_cgroup_root)


def test_a_moved_process_is_seen(host_cgroup_root, host_cgroup, spawn):
    assert cgroupfs.read_procs(host_cgroup) == []
    assert cgroupfs.read_populated(host_cgroup) is False
    sleeper = spawn(host_cgroup)
    assert cgroupfs.read_procs(host_cgroup) == [sleeper.pid]
    assert cgroupfs.read_populated(host_cgroup) is True
    assert cgroupfs.read_cgroup_events(host_cgroup)["frozen"] == 0
    rel = cgroupfs.abs_to_rel(host_cgroup_root, host_cgroup)
    assert procfs.read_pid_cgroup(sleeper.pid) == rel
    assert [r for r, _ in cgroupfs.walk_tree(host_cgroup_root, rel)] == [rel]

    facts = procfs.read_task(sleeper.pid)
    assert facts is not None
    assert facts.comm == "sleep" and facts.has_mm and not facts.is_kthread
    assert facts.rss_bytes > 0
    assert procfs.killability(facts, self_pid=os.getpid()) == (TaskState.KILLABLE, "")

    os.kill(sleeper.pid, signal.SIGKILL)
    sleeper.wait(timeout=10)
    assert procfs.read_task(sleeper.pid) is None
    assert _wait_for(lambda: not cgroupfs.read_populated(host_cgroup))
    assert cgroupfs.read_procs(host_cgroup) == []


def test_populated_propagates_to_the_parent(host_cgroup, spawn):
    child = os.path.join(host_cgroup, "leaf")
    os.mkdir(child)
    spawn(child)
    assert cgroupfs.read_procs(host_cgroup) == []
    assert cgroupfs.read_populated(host_cgroup) is True


def test_populated_children_on_the_real_tree(host_cgroup, spawn):
    for name in ("a", "b", "c"):
        os.mkdir(os.path.join(host_cgroup, name))
    os.mkdir(os.path.join(host_cgroup, "c", "deep"))
    spawn(os.path.join(host_cgroup, "a"))
    spawn(os.path.join(host_cgroup, "c", "deep"))
    names = [n for n, _ in cgroupfs.list_children(host_cgroup)]
    assert names == ["a", "b", "c"]
    got = cgroupfs.populated_children(host_cgroup, [*names, "never-made"])
    assert got == [True, False, True, None]
    assert got[:3] == [cgroupfs.read_populated(os.path.join(host_cgroup, n)) for n in names]


def test_no_memory_controller_reads_as_zero(host_cgroup):
    if "memory" in cgroupfs.read_controllers(host_cgroup):
        pytest.skip("this host's cgroup2 tree has the memory controller")
    assert cgroupfs.read_usage_bytes(host_cgroup) == 0
    assert cgroupfs.read_memory_max(host_cgroup) is None
    assert cgroupfs.read_memory_high(host_cgroup) is None
    assert cgroupfs.read_events(host_cgroup) == {}
    assert cgroupfs.read_oom_group(host_cgroup) is False


def test_pressure_files(host_cgroup, host_cgroup_root):
    for path in (os.path.join(host_cgroup, "memory.pressure"),
                 os.path.join(host_cgroup_root, "memory.pressure"), "/proc/pressure/memory"):
        if not os.path.exists(path):
            continue
        pressure = cgroupfs.read_pressure(path)
        assert pressure is None or pressure.some.total_us >= 0


def test_children_in_creation_order(host_cgroup_root, host_cgroup):
    names = ["c", "a", "b", "0", "zz"]
    for name in names:
        os.mkdir(os.path.join(host_cgroup, name))
    os.mkdir(os.path.join(host_cgroup, "a", "inner"))
    children = cgroupfs.list_children(host_cgroup)
    assert [name for name, _ in children] == names
    keys = [key for _, key in children]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert keys[0] == cgroupfs.creation_key(os.path.join(host_cgroup, "c"))
    rel = cgroupfs.abs_to_rel(host_cgroup_root, host_cgroup)
    assert [(r[len(rel):], d) for r, d in cgroupfs.walk_tree(host_cgroup_root, rel)] == [
        ("", 0), ("/c", 1), ("/a", 1), ("/a/inner", 2), ("/b", 1), ("/0", 1), ("/zz", 1)]


def test_xattrs_trusted_and_user(host_cgroup):
    names = ["trusted.prioomd.priority", "user.prioomd.priority", "user.oomd_avoid"]
    assert cgroupfs.read_xattrs(host_cgroup, names) == {}
    try:
        cgroupfs.write_xattr(host_cgroup, "user.prioomd.priority", b"3")
    except OSError as exc:
        pytest.skip(f"user.* xattrs on cgroupfs: {exc.strerror}")
    if os.geteuid() == 0:
        cgroupfs.write_xattr(host_cgroup, "trusted.prioomd.priority", b"11")
    got = cgroupfs.read_xattrs(host_cgroup, names)
    assert got["user.prioomd.priority"] == b"3"
    if os.geteuid() == 0:
        assert got["trusted.prioomd.priority"] == b"11"
    assert cgroupfs.remove_xattr(host_cgroup, "user.prioomd.priority") is True
    assert cgroupfs.remove_xattr(host_cgroup, "user.prioomd.priority") is False
    assert "user.prioomd.priority" not in cgroupfs.read_xattrs(host_cgroup, names)


def test_owner_uid(host_cgroup):
    assert cgroupfs.owner_uid(host_cgroup) == os.geteuid()


def test_removed_cgroup_is_vanished(host_cgroup):
    child = os.path.join(host_cgroup, "short-lived")
    os.mkdir(child)
    with open(os.path.join(child, "cgroup.procs"), "rb") as held:
        os.rmdir(child)
        # a file of a removed cgroup that is still open fails with ENODEV
        with pytest.raises(OSError) as info:
            held.read()
        assert info.value.errno == errno.ENODEV and is_gone(info.value)
    for reader in (cgroupfs.read_procs, cgroupfs.read_usage_bytes, cgroupfs.read_populated,
                   cgroupfs.list_children, cgroupfs.owner_uid):
        with pytest.raises(Vanished):
            reader(child)
    assert list(cgroupfs.walk_tree(host_cgroup, "/short-lived")) == []
