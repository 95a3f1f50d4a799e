"""victim: the identity and location rule the kill path applies before a signal."""

from __future__ import annotations

from dataclasses import replace

import pytest

from prioomd import victim
from prioomd.model import Candidate
from prioomd.procfs import TaskFacts

FACTS = TaskFacts(pid=100, comm="hog", state="S", flags=0, start_ticks=1100,
                  rss_bytes=1 << 20, swap_bytes=0, pte_bytes=0, oom_score_adj=0,
                  sigkill_pending=False, is_kthread=False, has_mm=True)
CAND = Candidate(victim_cgroup="/low", pid=100, comm="hog", badness=1, rss_bytes=1 << 20,
                 kill_cgroup=None, pids=(100,), reason="test", start_ticks=1100)


@pytest.mark.parametrize("changes, where, want", [
    ({}, "/low", None),
    ({"comm": "renamed"}, "/low", None),  # prctl / exec: the same process
    ({}, "/low/deeper", None),
    ({"start_ticks": 1200}, "/low", ("vanished", False)),  # the pid was reused
    ({"state": "Z", "has_mm": False}, "/low", ("vanished", False)),
    ({"sigkill_pending": True}, "/low", ("vanished", True)),
    ({"oom_score_adj": -1000}, "/low", ("refused", False)),
    ({"is_kthread": True}, "/low", ("refused", False)),
    ({}, "/high", ("moved", True)),  # left the victim: a new decision, not the next one
    ({}, "/lower", ("moved", True)),  # a sibling whose name starts alike
    ({}, None, ("moved", True)),  # nowhere confirmed
])
def test_check(changes, where, want):
    got = victim.check(CAND, replace(FACTS, **changes), lambda: where)
    assert (got if got is None else (got.outcome, got.final)) == want


@pytest.mark.parametrize("prefix, path, want", [
    ("/", "/a/b", "/a/b"),
    ("/sub", "/sub", "/"),
    ("/sub", "/sub/a", "/a"),
    ("/sub", "/subway/a", None),
    ("/sub", "/other", None),
])
def test_strip_prefix(prefix, path, want):
    assert victim.strip_prefix(prefix, path) == want


def test_locate_reads_again_a_claim_the_tree_denied(tmp_path, monkeypatch):
    """A process hopping between two cgroups it owns can leave the one /proc named
    before its cgroup.threads is read: the pair is read again (h5's mover)."""
    for name, threads in (("a", ""), ("b", "100\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "cgroup.threads").write_text(threads)
    claims = iter(["/a", "/a", "/b"])  # seen in a, gone from a, then seen in b
    monkeypatch.setattr(victim.procfs, "read_pid_cgroup", lambda *a: next(claims))
    assert victim.Locator(str(tmp_path)).locate(100) == "/b"


def test_locate_gives_up_on_a_claim_the_tree_keeps_denying(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "cgroup.threads").write_text("")
    reads = []
    monkeypatch.setattr(victim.procfs, "read_pid_cgroup",
                        lambda *a: reads.append(1) or "/a")
    assert victim.Locator(str(tmp_path)).locate(100) is None
    assert len(reads) == victim.LOCATE_TRIES
