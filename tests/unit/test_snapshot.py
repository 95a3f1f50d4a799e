"""snapshot.take / restrict on fake trees."""

from __future__ import annotations

import os

import pytest

from prioomd import config, snapshot, table
from prioomd.errors import Vanished
from prioomd.model import TaskState
from tests import fakefs, trees

TABLE = table.PriorityTable(config.Config())


def _take(root: str, proc: str, domain: str = "/"):
    src = snapshot.Sources(cgroup_root=root, proc_root=proc, self_pid=999_999)
    return snapshot.take(domain, TABLE, src)


def test_preorder_creation_order_and_settings(fake_root):
    cg, procs = trees.worked_example()
    root = fakefs.make_cgroupfs(fake_root, cg)
    proc = fakefs.make_procfs(fake_root, procs)
    snap, warnings = _take(root, proc)
    assert warnings == []
    assert [n.path for n in snap.nodes] == ["/", "/A", "/A/C", "/A/D", "/B", "/B/E", "/B/F"]
    assert [n.parent for n in snap.nodes] == [-1, 0, 1, 1, 0, 4, 4]
    assert [n.priority.value for n in snap.nodes[1:]] == [10, 5, 6, 8, 7, 8]
    assert snap.nodes[2].priority.source == "xattr trusted.prioomd.priority"
    assert snap.nodes[0].use_priority_oom.value is True
    assert snap.nodes[6].usage_bytes == 900 << 20
    by_pid = {t.pid: t for t in snap.tasks}
    assert by_pid[301].node == 5 and by_pid[301].rss_bytes == 10_000 * 1024
    assert by_pid[100].node == 0


def test_cgroup_without_memory_folds_into_ancestor(fake_root):
    cg = {"children": {"svc": {"procs": [10], "subtree_control": [], "children": {
        "inner": {"controllers": [], "procs": [11]}}}}}
    root = fakefs.make_cgroupfs(fake_root, cg)
    proc = fakefs.make_procfs(fake_root, {10: {"cgroup": "/svc"}, 11: {"cgroup": "/svc/inner"}})
    snap, _ = _take(root, proc)
    assert [n.path for n in snap.nodes] == ["/", "/svc"]
    assert {t.pid: t.node for t in snap.tasks} == {10: 1, 11: 1}


def test_no_memory_controller_anywhere_keeps_every_cgroup(fake_root):
    cg = {"controllers": [], "children": {"a": {"procs": [10], "children": {
        "b": {"procs": [11]}}}}}
    root = fakefs.make_cgroupfs(fake_root, cg)
    proc = fakefs.make_procfs(fake_root, {10: {}, 11: {}})
    snap, _ = _take(root, proc)
    assert [n.path for n in snap.nodes] == ["/", "/a", "/a/b"]
    assert all(n.usage_bytes == 0 for n in snap.nodes)


def test_vanished_pids_are_left_out_and_states_are_read(fake_root):
    cg = {"procs": [10, 11, 12, 13, 14]}
    root = fakefs.make_cgroupfs(fake_root, cg)
    proc = fakefs.make_procfs(fake_root, {
        10: {"oom_score_adj": -1000}, 11: {"state": "Z"}, 12: {"sigkill_pending": True},
        13: {"kthread": True}})  # 14 has no /proc entry: it exited
    snap, _ = _take(root, proc)
    states = {t.pid: t.state for t in snap.tasks}
    assert states == {10: TaskState.UNKILLABLE, 11: TaskState.UNKILLABLE,
                      12: TaskState.DYING, 13: TaskState.UNKILLABLE}


def test_bad_xattr_is_a_warning_not_an_error(fake_root):
    cg = {"children": {"a": {"xattrs": {trees.PRIO: b"13"}}}}
    root = fakefs.make_cgroupfs(fake_root, cg)
    proc = fakefs.make_procfs(fake_root, {})
    snap, warnings = _take(root, proc)
    assert snap.nodes[1].priority.value == 0
    assert any("13" in w and "/a" in w for w in warnings)


def test_missing_domain_is_vanished(fake_root):
    root = fakefs.make_cgroupfs(fake_root, {})
    proc = fakefs.make_procfs(fake_root, {})
    with pytest.raises(Vanished):
        _take(root, proc, "/nope")


def test_subtree_removed_mid_walk_is_skipped(fake_root, monkeypatch):
    cg = {"children": {"a": {"procs": [10]}, "b": {"procs": [11]}}}
    root = fakefs.make_cgroupfs(fake_root, cg)
    proc = fakefs.make_procfs(fake_root, {10: {}, 11: {}})
    real = snapshot.cgroupfs.read_procs

    def vanish_b(cgdir):
        if cgdir.endswith("/b"):
            os.rename(cgdir, cgdir + ".gone")
        return real(cgdir)

    monkeypatch.setattr(snapshot.cgroupfs, "read_procs", vanish_b)
    snap, _ = _take(root, proc)
    assert [n.path for n in snap.nodes] == ["/", "/a"]
    assert [t.pid for t in snap.tasks] == [10]


def test_restrict_rebases_indices_and_badness(fake_root):
    cg, procs = trees.worked_example()
    procs[301]["oom_score_adj"] = 500
    root = fakefs.make_cgroupfs(fake_root, cg)
    proc = fakefs.make_procfs(fake_root, procs)
    whole, _ = _take(root, proc)
    sub = snapshot.restrict(whole, 4, total_pages=100_000, page_size=4096)
    assert sub.domain == "/B"
    assert [n.path for n in sub.nodes] == ["/B", "/B/E", "/B/F"]
    assert [n.parent for n in sub.nodes] == [-1, 0, 0]
    e = next(t for t in sub.tasks if t.pid == 301)
    assert e.node == 1
    assert e.badness == 10_000 * 1024 // 4096 + 500 * (100_000 // 1000)


def test_domain_total_pages_uses_the_limit(fake_root):
    cg, procs = trees.worked_example()
    cg["children"]["B"]["memory.max"] = 1 << 30
    root = fakefs.make_cgroupfs(fake_root, cg)
    proc = fakefs.make_procfs(fake_root, procs)
    whole, _ = _take(root, proc)
    b = whole.nodes[4]
    assert snapshot.domain_total_pages(b, 0, 999, 1 << 30, 4096) == (1 << 30) // 4096
    limit_and_swap = (1 << 30) + (1 << 20)
    assert snapshot.domain_total_pages(b, None, 999, 1 << 20, 4096) == limit_and_swap // 4096
    assert snapshot.domain_total_pages(whole.nodes[1], None, 999, 0, 4096) == 999
