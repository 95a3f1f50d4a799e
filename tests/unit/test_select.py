"""select.select_victims: the facade over both walks, on fake trees."""

from __future__ import annotations

import pytest

from prioomd import config, select, snapshot, table
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
