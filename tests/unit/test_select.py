"""select.select_victims: the facade over both walks, on fake trees."""

from __future__ import annotations

import pytest

from prioomd import config, model, select, snapshot, table
from tests import fakefs, trees

TABLE = table.PriorityTable(config.Config())


@pytest.fixture
def backend(walk) -> str:
    return "c" if walk.__name__ == "prioomd._select" else "python"


def _decide(fake_root, cg, procs, backend, domain="/", **kw):
    root = fakefs.make_cgroupfs(fake_root, cg)
    proc = fakefs.make_procfs(fake_root, procs)
    src = snapshot.Sources(cgroup_root=root, proc_root=proc, self_pid=999_999)
    snap, _ = snapshot.take(domain, TABLE, src)
    return select.select_victims(snap, backend=backend, **kw)


def test_worked_example_ranks_e_f_c_d_root(fake_root, backend):
    cg, procs = trees.worked_example()
    d = _decide(fake_root, cg, procs, backend)
    assert d.outcome == "kill" and d.backend == backend
    assert [c.victim_cgroup for c in d.candidates] == ["/B/E", "/B/F", "/A/C", "/A/D", "/"]
    assert [c.pid for c in d.candidates] == [301, 302, 201, 202, 100]
    assert d.walk == ("/", "/B", "/B/E")
    assert "/B (priority 8 over /A 10)" in d.reason
    assert "/B/E (priority 7 over /B/F 8)" in d.reason
    assert d.candidates[0].kill_cgroup is None and d.candidates[0].pids == (301,)


def test_max_candidates_limits_the_ranking(fake_root, backend):
    cg, procs = trees.worked_example()
    d = _decide(fake_root, cg, procs, backend, max_candidates=2)
    assert [c.pid for c in d.candidates] == [301, 302]


def test_oom_group_on_parent_kills_the_group_beyond_the_victim(fake_root, backend):
    cg, procs = trees.worked_example()
    cg["children"]["B"]["memory.oom.group"] = 1
    d = _decide(fake_root, cg, procs, backend)
    first = d.candidates[0]
    assert first.victim_cgroup == "/B/E"
    assert first.kill_cgroup == "/B"
    assert sorted(first.pids) == [301, 302]
    # F's process is covered by the group kill: the next candidate is in A.
    assert d.candidates[1].victim_cgroup == "/A/C"


def test_oom_group_with_unkillable_member_spares_it(fake_root, backend):
    cg, procs = trees.worked_example()
    cg["children"]["B"]["memory.oom.group"] = 1
    cg["children"]["B"]["children"]["F"]["procs"] = [302, 303]
    procs[303] = {"comm": "guard", "cgroup": "/B/F", "oom_score_adj": -1000}
    d = _decide(fake_root, cg, procs, backend)
    first = d.candidates[0]
    assert first.kill_cgroup == "/B"  # the kill path spares 303 (task by task)
    assert sorted(first.pids) == [301, 302]
    assert "sparing 1 unkillable" in first.reason


def test_kill_cgroup_xattr_kills_the_whole_cgroup_where_the_walk_stops(fake_root, backend):
    cg, procs = trees.worked_example()
    e = cg["children"]["B"]["children"]["E"]
    e["procs"] = [301, 304]
    e["xattrs"] = {**e["xattrs"], "trusted.prioomd.kill": b"cgroup"}
    procs[304] = {"comm": "helper", "cgroup": "/B/E", "rss_kb": 100, "starttime": 32}
    d = _decide(fake_root, cg, procs, backend)
    first = d.candidates[0]
    assert first.victim_cgroup == "/B/E" and first.kill_cgroup == "/B/E"
    assert sorted(first.pids) == [301, 304]
    assert "kill = cgroup from xattr trusted.prioomd.kill" in first.reason
    # F is not covered: its default granularity is the worst process.
    assert d.candidates[1].victim_cgroup == "/B/F" and d.candidates[1].kill_cgroup is None


def test_kill_process_is_the_default(fake_root, backend):
    cg, procs = trees.worked_example()
    cg["children"]["B"]["children"]["E"]["procs"] = [301, 304]
    procs[304] = {"comm": "helper", "cgroup": "/B/E", "rss_kb": 100, "starttime": 32}
    first = _decide(fake_root, cg, procs, backend).candidates[0]
    assert first.kill_cgroup is None and first.pids == (301,)


def test_oom_group_above_still_wins_over_kill_process(fake_root, backend):
    cg, procs = trees.worked_example()
    cg["children"]["B"]["memory.oom.group"] = 1
    e = cg["children"]["B"]["children"]["E"]
    e["xattrs"] = {**e["xattrs"], "trusted.prioomd.kill": b"process"}
    first = _decide(fake_root, cg, procs, backend).candidates[0]
    assert first.kill_cgroup == "/B" and "memory.oom.group=1" in first.reason


def _node(path, parent, kill="process", oom_group=False):
    return model.CgroupNode(path, parent, model.Setting(0, "default"),
                            model.Setting(False, "default"), 0, None, oom_group, (0, 0),
                            model.Setting(kill, "test"))


def test_kill_cgroup_is_wider_than_an_oom_group_below_it():
    nodes = (_node("/", -1), _node("/B", 0, "cgroup"), _node("/B/G", 1, oom_group=True))
    snap = model.Snapshot("/", nodes, (), 1, 0.0)
    children = [[1], [2], []]
    assert select.kill_target(snap, children, 1, 2) == (1, "kill = cgroup from test")
    assert select.kill_target(snap, children, 2, 2) == (2, "memory.oom.group=1")


def test_oom_group_above_a_kill_cgroup_victim_is_wider():
    nodes = (_node("/", -1), _node("/B", 0, oom_group=True), _node("/B/G", 1, "cgroup"))
    snap = model.Snapshot("/", nodes, (), 1, 0.0)
    assert select.kill_target(snap, [[1], [2], []], 2, 1) == (1, "memory.oom.group=1")


def test_root_is_never_killed_whole_by_kill_cgroup(fake_root, backend):
    cg = {"procs": [100], "xattrs": {"trusted.prioomd.use_priority_oom": b"1",
                                     "trusted.prioomd.kill": b"cgroup"}}
    procs = {100: {"comm": "sh", "cgroup": "/"}}
    first = _decide(fake_root, cg, procs, backend).candidates[0]
    assert first.victim_cgroup == "/" and first.kill_cgroup is None


def test_dying_victim_means_wait(fake_root, backend):
    cg, procs = trees.worked_example()
    procs[301]["sigkill_pending"] = True
    d = _decide(fake_root, cg, procs, backend)
    assert d.outcome == "wait" and d.candidates == ()
    assert "pid 301" in d.reason


def test_nothing_killable(fake_root, backend):
    cg = {"procs": [1, 2]}
    procs = {1: {"comm": "init"}, 2: {"kthread": True, "comm": "kworker"}}
    d = _decide(fake_root, cg, procs, backend)
    assert d.outcome == "none" and "2 processes, 2 unkillable" in d.reason


def test_unknown_backend_is_a_clear_error(fake_root):
    cg, procs = trees.worked_example()
    with pytest.raises(ValueError, match="not available"):
        _decide(fake_root, cg, procs, "fortran")


def test_backend_description_names_the_backend():
    assert select.DEFAULT_BACKEND in ("c", "python")
    assert ("C core" in select.backend_description()) == (select.DEFAULT_BACKEND == "c")
