"""lazywalk.decide: the same decision as the full snapshot's walk, reading only the path.

The differential test builds random fake trees (ties in priority, usage, badness
and start time; -1000, dying, zombie and kernel-thread processes; processes in
inner cgroups; cgroups without the memory controller; memory.oom.group; cgroups
populated by threads alone) and compares lazywalk.decide with
select.select_victims(snapshot.take(...)) in both rule modes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prioomd import config, dying, lazywalk, procfs, select, snapshot, table
from prioomd.errors import Vanished
from prioomd.model import Decision
from tests import fakefs, trees

TABLE = table.PriorityTable(config.Config())


@pytest.fixture
def backend(walk) -> str:
    return "c" if walk.__name__ == "prioomd._select" else "python"


def _sources(root: str, proc: str) -> snapshot.Sources:
    return snapshot.Sources(cgroup_root=root, proc_root=proc, self_pid=999_999)


def _both(root: str, proc: str, backend: str, domain: str = "/", **kw: Any
          ) -> tuple[Decision, Decision]:
    src = _sources(root, proc)
    snap, _ = snapshot.take(domain, TABLE, src)
    full = select.select_victims(snap, backend=backend, **kw)
    lazy, _, _ = lazywalk.decide(domain, TABLE, src, backend=backend, **kw)
    return full, lazy


def _comparable(d: Decision) -> Decision:
    """The decision without its wording (the lazy walk names, at each level, the
    siblings that still qualified; the full one those holding a killable process)
    and with a group kill's pids as a set (the full walk lists them in directory
    order, the lazy one in scan order)."""
    cands = tuple(replace(c, reason=c.reason.partition("; worst task in ")[2],
                          pids=tuple(sorted(c.pids)))
                  for c in d.candidates)
    return replace(d, candidates=cands, reason="")


def _build(base: str, cg: dict[str, Any], procs: dict[int, dict[str, Any]]
           ) -> tuple[str, str]:
    return fakefs.make_cgroupfs(base, cg), fakefs.make_procfs(base, procs)


# ---------------------------------------------------------------- fixed cases


def test_worked_example_same_ranking_and_reason(fake_root, backend):
    root, proc = _build(fake_root, *trees.worked_example())
    full, lazy = _both(root, proc, backend)
    assert _comparable(lazy) == _comparable(full)
    assert [c.pid for c in lazy.candidates] == [301, 302, 201, 202, 100]
    assert lazy.walk == ("/", "/B", "/B/E") and lazy.backend == backend
    assert lazy.reason == full.reason  # every sibling on this walk holds a killable task
    assert "/B (priority 8 over /A 10) > /B/E (priority 7 over /B/F 8)" in lazy.reason


def test_reads_tasks_only_where_the_walk_stops(fake_root, backend, monkeypatch):
    """One decision (max_candidates=1) reads /proc only for the victim cgroup's
    processes, and cgroup.procs nowhere else."""
    root, proc = _build(fake_root, *trees.worked_example())
    read_pids: list[int] = []
    real = procfs.read_task
    monkeypatch.setattr(procfs, "read_task", lambda pid, proc_root="/proc": (
        read_pids.append(pid) or real(pid, proc_root)))
    procs_read: list[str] = []
    real_procs = lazywalk.cgroupfs.read_procs
    monkeypatch.setattr(lazywalk.cgroupfs, "read_procs",
                        lambda d: procs_read.append(os.path.relpath(d, root)) or real_procs(d))
    d, _, _ = lazywalk.decide("/", TABLE, _sources(root, proc), backend=backend,
                           max_candidates=1)
    assert [c.pid for c in d.candidates] == [301]
    assert read_pids == [301]
    assert procs_read == ["B/E"]


def test_exhausted_leaf_moves_to_its_sibling(fake_root, backend):
    cg, procs = trees.worked_example()
    procs[301]["oom_score_adj"] = -1000
    root, proc = _build(fake_root, cg, procs)
    full, lazy = _both(root, proc, backend)
    assert _comparable(lazy) == _comparable(full)
    assert lazy.candidates[0].pid == 302


@pytest.mark.parametrize("kernel_compat", [False, True])
def test_over_count_of_spec_6_1(fake_root, backend, kernel_compat):
    """X holds A (one -1000 process, priority 0) and B (one killable, priority 5);
    Y (priority 3) a killable one. The kernel's over-count exhausts X after A."""
    cg = {"xattrs": {trees.UPO: b"1"}, "children": {
        "X": {"xattrs": trees.prio(1), "children": {
            "A": {"xattrs": trees.prio(0), "procs": [10]},
            "B": {"xattrs": trees.prio(5), "procs": [11]}}},
        "Y": {"xattrs": trees.prio(3), "procs": [12]}}}
    procs = {10: {"oom_score_adj": -1000, "cgroup": "/X/A"}, 11: {"cgroup": "/X/B"},
             12: {"cgroup": "/Y"}}
    root, proc = _build(fake_root, cg, procs)
    full, lazy = _both(root, proc, backend, kernel_compat=kernel_compat)
    assert _comparable(lazy) == _comparable(full)
    assert lazy.candidates[0].pid == (12 if kernel_compat else 11)


def test_threads_alone_keep_a_cgroup_populated(fake_root, backend):
    """A cgroup populated with no process of its own (threads of a process listed
    above, in a threaded domain) is never the victim: the walk moves on."""
    cg = {"children": {"t": {"raw": {"cgroup.events": "populated 1\nfrozen 0\n"}},
                       "b": {"xattrs": trees.prio(4), "procs": [11]}}}
    root, proc = _build(fake_root, cg, {11: {"cgroup": "/b"}})
    for compat in (False, True):
        full, lazy = _both(root, proc, backend, kernel_compat=compat)
        assert _comparable(lazy) == _comparable(full)
        assert lazy.candidates[0].victim_cgroup == "/b"


def test_cgroup_without_memory_is_folded(fake_root, backend):
    cg = {"children": {"svc": {"procs": [10], "subtree_control": [], "children": {
        "inner": {"controllers": [], "procs": [11]}}}}}
    procs = {10: {"rss_kb": 10}, 11: {"rss_kb": 99}}
    root, proc = _build(fake_root, cg, procs)
    full, lazy = _both(root, proc, backend)
    assert _comparable(lazy) == _comparable(full)
    assert lazy.candidates[0].victim_cgroup == "/svc" and lazy.candidates[0].pid == 11


def test_oom_group_reads_up_and_covers_the_group(fake_root, backend):
    cg, procs = trees.worked_example()
    cg["children"]["B"]["memory.oom.group"] = 1
    root, proc = _build(fake_root, cg, procs)
    full, lazy = _both(root, proc, backend)
    assert _comparable(lazy) == _comparable(full)
    assert lazy.candidates[0].kill_cgroup == "/B"
    assert sorted(lazy.candidates[0].pids) == [301, 302]


def test_dying_victim_means_wait_and_nothing_killable_means_none(fake_root, backend):
    cg, procs = trees.worked_example()
    procs[301]["sigkill_pending"] = True
    root, proc = _build(fake_root, cg, procs)
    full, lazy = _both(root, proc, backend)
    assert lazy.outcome == full.outcome == "wait" and "pid 301" in lazy.reason
    shutil.rmtree(fake_root + "/cgroup")
    shutil.rmtree(fake_root + "/proc")
    root, proc = _build(fake_root, {"procs": [1, 2]},
                        {1: {"comm": "init"}, 2: {"kthread": True}})
    full, lazy = _both(root, proc, backend)
    assert lazy.outcome == full.outcome == "none"
    assert "2 processes, 2 unkillable" in lazy.reason


def test_settle_stops_the_wait_for_an_overdue_victim(fake_root, backend):
    """dying.DyingWatch composes with the lazy walk as with the full one: a victim
    with SIGKILL pending is waited for, then past the bound walked past."""
    cg, procs = trees.worked_example()
    procs[301]["sigkill_pending"] = True
    root, proc = _build(fake_root, cg, procs)
    src = _sources(root, proc)
    watch, full_watch = dying.DyingWatch(5.0), dying.DyingWatch(5.0)
    snap, _ = snapshot.take("/", TABLE, src)
    for now, outcome in ((0.0, "wait"), (10.0, "kill")):
        lazy, _, overdue = lazywalk.decide("/", TABLE, src, backend=backend,
                                           settle=lambda s, t=now: watch.settle(s, t))
        settled, full_overdue = full_watch.settle(snap, now)
        full = select.select_victims(settled, backend=backend)
        assert lazy.outcome == full.outcome == outcome
        assert [t.pid for t in overdue] == [t.pid for t in full_overdue]
    assert [t.pid for t in overdue] == [301]
    assert _comparable(lazy) == _comparable(full)
    assert lazy.candidates[0].pid == 302  # E holds nothing killable now: F


def test_cgroup_domain_and_vanished_domain(fake_root, backend):
    root, proc = _build(fake_root, *trees.worked_example())
    full, lazy = _both(root, proc, backend, domain="/A")
    assert _comparable(lazy) == _comparable(full)
    assert lazy.walk == ("/A", "/A/C")
    with pytest.raises(Vanished):
        lazywalk.decide("/nope", TABLE, _sources(root, proc), backend=backend)


def test_cgroup_vanishing_mid_walk_counts_as_empty(fake_root, backend, monkeypatch):
    cg, procs = trees.worked_example()
    root, proc = _build(fake_root, cg, procs)
    real = lazywalk.cgroupfs.read_procs

    def vanish_e(cgdir: str) -> list[int]:
        if cgdir.endswith("/B/E"):
            os.rename(cgdir, cgdir + ".gone")
        return real(cgdir)

    monkeypatch.setattr(lazywalk.cgroupfs, "read_procs", vanish_e)
    d, _, _ = lazywalk.decide("/", TABLE, _sources(root, proc), backend=backend)
    assert [c.pid for c in d.candidates][:1] == [302]


def test_unknown_backend_is_a_clear_error(fake_root):
    root, proc = _build(fake_root, *trees.worked_example())
    with pytest.raises(ValueError, match="not available"):
        lazywalk.decide("/", TABLE, _sources(root, proc), backend="fortran")


# ---------------------------------------------------------------- random trees

STATES: dict[str, dict[str, Any]] = {
    "k": {}, "adj": {"oom_score_adj": -1000}, "dying": {"sigkill_pending": True},
    "zombie": {"state": "Z"}, "kthread": {"kthread": True}, "bias": {"oom_score_adj": 300},
}


@st.composite
def random_trees(draw: st.DrawFn) -> tuple[dict[str, Any], dict[int, dict[str, Any]],
                                           dict[str, Any]]:
    n = draw(st.integers(1, 14))
    parent = [-1] + [draw(st.integers(0, i - 1)) for i in range(1, n)]
    memory_mode = draw(st.booleans())
    prio_pool = draw(st.lists(st.integers(0, 12), min_size=1, max_size=3))
    usage_pool = draw(st.lists(st.sampled_from([0, 4096, 1 << 20]), min_size=1, max_size=2))
    state_pool = draw(st.lists(st.sampled_from(sorted(STATES)), min_size=1, max_size=3))
    rss_pool = draw(st.lists(st.sampled_from([0, 4, 400, 4000]), min_size=1, max_size=3))
    specs: list[dict[str, Any]] = [{} for _ in range(n)]
    paths = ["/"] + [""] * (n - 1)
    no_memory = [not memory_mode] + [False] * (n - 1)
    for i in range(1, n):
        p = parent[i]
        name = f"c{i}"
        paths[i] = f"/{name}" if p == 0 else f"{paths[p]}/{name}"
        specs[p].setdefault("children", {})[name] = specs[i]
        no_memory[i] = no_memory[p] or (memory_mode and draw(st.integers(0, 7)) == 0)
        if no_memory[i] and not no_memory[p]:
            specs[i]["controllers"] = []
        if not no_memory[i]:
            specs[i]["memory.current"] = draw(st.sampled_from(usage_pool))
            if draw(st.integers(0, 9)) == 0:
                specs[i]["memory.oom.group"] = 1
        specs[i]["xattrs"] = trees.prio(draw(st.sampled_from(prio_pool)))
    if not memory_mode:
        specs[0]["controllers"] = []
    procs: dict[int, dict[str, Any]] = {}
    for i in range(n):
        for _ in range(draw(st.integers(0, 2))):
            pid = 100 + len(procs)
            procs[pid] = {**STATES[draw(st.sampled_from(state_pool))], "cgroup": paths[i],
                          "rss_kb": draw(st.sampled_from(rss_pool)),
                          "starttime": draw(st.integers(1, 2))}
            specs[i].setdefault("procs", []).append(pid)
        if i and "procs" not in specs[i] and draw(st.integers(0, 5)) == 0:
            specs[i]["raw"] = {"cgroup.events": "populated 1\nfrozen 0\n"}  # threads only
    kw = {"kernel_compat": draw(st.booleans()), "max_candidates": draw(st.integers(1, 6))}
    return specs[0], procs, kw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=random_trees(), backend=st.sampled_from(sorted(select.BACKENDS)))
def test_lazy_equals_full_on_random_trees(case, backend):
    cg, procs, kw = case
    base = tempfile.mkdtemp(prefix="prioomd-test-", dir=fakefs._tmpfs_dir())
    try:
        root, proc = _build(base, cg, procs)
        full, lazy = _both(root, proc, backend, **kw)
        assert _comparable(lazy) == _comparable(full)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_process_hopping_between_its_cgroups_cannot_hide_its_subtree(fake_root, backend):
    """h5's delegated-move tenant on a real kernel: /tenant/a and /tenant/b each
    listed nobody when read (the process moved between the two reads), yet
    /tenant reads populated. The walk must not pass to /high: the subtree's
    process is found through /proc (where the kernel's atomic nr_procs sees it)."""
    gone = {"cgroup.procs": "", "cgroup.events": "populated 0\nfrozen 0\n"}
    cg = {"xattrs": {trees.UPO: b"1"}, "children": {
        "high": {"xattrs": trees.prio(10), "procs": [10]},
        "tenant": {"xattrs": trees.prio(1), "raw": {"cgroup.events": "populated 1\nfrozen 0\n"},
                   "children": {"a": {"raw": {**gone, "cgroup.threads": "500\n"}},
                                "b": {"raw": gone}}}}}
    procs = {10: {"cgroup": "/high", "rss_kb": 400_000},
             500: {"cgroup": "/tenant/a", "rss_kb": 50_000}}
    root, proc = _build(fake_root, cg, procs)
    lazy, warnings, _ = lazywalk.decide("/", TABLE, _sources(root, proc), backend=backend)
    first = lazy.candidates[0]
    assert (first.pid, first.victim_cgroup) == (500, "/tenant")
    assert [c.pid for c in lazy.candidates] == [500, 10]
    # only the subtree that listed nobody is looked up through /proc; the ranking
    # emptying /high (its pid ranked already) is not a hiding place
    assert [w.split(":")[0] for w in warnings if "through /proc" in w] == ["/tenant"]


@pytest.mark.parametrize("group_on", [None, "B", "B/E"])
def test_kill_cgroup_granularity_as_the_full_walk(fake_root, backend, group_on):
    """kill = cgroup on the cgroup where the walk stops (issue 10 item 7) takes the
    whole cgroup on the lazy path too; memory.oom.group still counts, the wider
    of the two winning."""
    cg, procs = trees.worked_example()
    e = cg["children"]["B"]["children"]["E"]
    e["xattrs"] = {**e["xattrs"], "trusted.prioomd.kill": b"cgroup"}
    e["procs"] = [301, 303]
    procs[303] = {"comm": "e2", "rss_kb": 1_000, "cgroup": "/B/E", "starttime": 32}
    if group_on == "B":
        cg["children"]["B"]["memory.oom.group"] = 1
    elif group_on == "B/E":
        e["memory.oom.group"] = 1
    root, proc = _build(fake_root, cg, procs)
    full, lazy = _both(root, proc, backend)
    assert _comparable(lazy) == _comparable(full)
    first = lazy.candidates[0]
    if group_on == "B":
        assert first.kill_cgroup == "/B" and set(first.pids) == {301, 302, 303}
        assert "memory.oom.group=1" in first.reason
    else:
        assert first.kill_cgroup == "/B/E" and set(first.pids) == {301, 303}
        assert ("memory.oom.group=1" if group_on else "kill = cgroup") in first.reason
