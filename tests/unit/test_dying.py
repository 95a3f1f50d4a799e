"""dying: the bounded wait for a process with SIGKILL pending, on fake trees
with both walks (the relabelled snapshot is what the C and Python walks see)."""

from __future__ import annotations

import tempfile

import pytest

from prioomd import config, dying, select, snapshot, table
from prioomd.model import TaskState
from tests import fakefs, trees

TABLE = table.PriorityTable(config.Config())
T = dying.DEFAULT_TIMEOUT_S


@pytest.fixture
def backend(walk) -> str:
    return "c" if walk.__name__ == "prioomd._select" else "python"


def _low_high(fake_root: str, stuck: dict | None = None, domain: str = "/"
              ) -> snapshot.Snapshot:
    """/low (priority 0): a 4 GB hog next to pid 11, stuck in D with SIGKILL
    pending; /high (priority 10): a database. Each call builds its own trees."""
    base = tempfile.mkdtemp(dir=fake_root)
    cg = {"xattrs": {trees.UPO: b"1"}, "children": {
        "low": {"xattrs": trees.prio(0), "procs": [10, 11]},
        "high": {"xattrs": trees.prio(10), "procs": [20]}}}
    procs = {10: {"comm": "hog", "cgroup": "/low", "rss_kb": 4 << 20, "starttime": 100},
             11: {"comm": "stuck", "cgroup": "/low", "rss_kb": 1024, "state": "D",
                  "sigkill_pending": True, "starttime": 101, **(stuck or {})},
             20: {"comm": "db", "cgroup": "/high", "rss_kb": 8 << 20, "starttime": 102}}
    root = fakefs.make_cgroupfs(base, cg)
    proc = fakefs.make_procfs(base, procs)
    snap, _ = snapshot.take(domain, TABLE, snapshot.Sources(cgroup_root=root, proc_root=proc,
                                                         self_pid=999_999))
    return snap


def _state(snap: snapshot.Snapshot, pid: int) -> TaskState:
    return next(t.state for t in snap.tasks if t.pid == pid)


def test_a_stuck_dying_task_blocks_only_until_the_bound(fake_root, backend):
    """Before the fix the walk said "wait" for as long as the task stayed stuck."""
    snap = _low_high(fake_root)
    watch = dying.DyingWatch()
    first, crossed = watch.settle(snap, now=1000.0)
    assert first is snap and crossed == ()
    assert select.select_victims(first, backend=backend).outcome == "wait"
    early, crossed = watch.settle(snap, now=1000.0 + T - 0.1)
    assert select.select_victims(early, backend=backend).outcome == "wait" and crossed == ()
    late, crossed = watch.settle(snap, now=1000.0 + T)
    assert [t.pid for t in crossed] == [11]  # handed out once, to be reaped
    assert _state(late, 11) == TaskState.UNKILLABLE
    decision = select.select_victims(late, backend=backend)
    assert decision.outcome == "kill" and decision.candidates[0].pid == 10  # the hog
    again, crossed = watch.settle(snap, now=1000.0 + 2 * T)
    assert crossed == () and _state(again, 11) == TaskState.UNKILLABLE


def test_our_own_kill_starts_the_clock(fake_root):
    snap = _low_high(fake_root)
    watch = dying.DyingWatch()
    watch.note_kill(11, at=500.0)
    late, crossed = watch.settle(snap, now=500.0 + T)  # first seen now, killed T ago
    assert [t.pid for t in crossed] == [11] and _state(late, 11) == TaskState.UNKILLABLE


def test_a_reused_pid_starts_afresh(fake_root):
    watch = dying.DyingWatch()
    watch.settle(_low_high(fake_root), now=0.0)
    # pid 11 is another process now, met first in the snapshot of another domain
    other = _low_high(fake_root, {"starttime": 999}, domain="/low")
    late, crossed = watch.settle(other, now=T)
    assert crossed == () and _state(late, 11) == TaskState.DYING


def test_a_task_no_longer_dying_starts_afresh_when_it_dies_again(fake_root):
    watch = dying.DyingWatch()
    watch.settle(_low_high(fake_root), now=0.0)
    watch.settle(_low_high(fake_root, {"sigkill_pending": False, "state": "S"}), now=1.0)
    late, crossed = watch.settle(_low_high(fake_root), now=T)
    assert crossed == () and _state(late, 11) == TaskState.DYING


def test_a_chain_of_fresh_stuck_tasks_holds_a_domain_up_only_once(fake_root, backend):
    """A tenant SIGKILLs one stuck task after another, each younger than the bound:
    the domain is held up for dying_timeout_s in a row, then none of them counts."""
    watch = dying.DyingWatch()
    watch.settle(_low_high(fake_root), now=0.0)  # pid 11 stuck, SIGKILL pending
    gone = {"sigkill_pending": False, "state": "S", "starttime": 101}
    for k, now in enumerate((0.6 * T, 0.9 * T)):  # pid 11 replaced by a fresh one each time
        snap = _low_high(fake_root, {"starttime": 200 + k})
        snap, _ = watch.settle(snap, now=now)
        assert select.select_victims(snap, backend=backend).outcome == "wait"
    late, crossed = watch.settle(_low_high(fake_root, {"starttime": 300}), now=T)
    assert [t.pid for t in crossed] == [11] and _state(late, 11) == TaskState.UNKILLABLE
    assert "held up /" in next(t.why_unkillable for t in late.tasks if t.pid == 11)
    assert select.select_victims(late, backend=backend).candidates[0].pid == 10
    relief, _ = watch.settle(_low_high(fake_root, gone), now=1.1 * T)  # nothing dying
    again, crossed = watch.settle(_low_high(fake_root, {"starttime": 400}), now=1.2 * T)
    assert relief is not None and crossed == () and _state(again, 11) == TaskState.DYING


def test_timeout_must_be_positive():
    with pytest.raises(ValueError):
        dying.DyingWatch(0.0)
