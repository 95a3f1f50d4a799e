"""discovery.py: enabled domains followed from inotify events, bounded per step."""

from __future__ import annotations

import errno
import os
import shutil

import pytest

from prioomd import config, discovery, table
from tests import fakefs, trees

LIMIT = str(1 << 30)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _table(text: str = "[root]\nuse_priority_oom = true\n") -> table.PriorityTable:
    return table.PriorityTable(config.parse_config(text, "test.toml"))


@pytest.fixture
def tree(fake_root):
    root = fakefs.make_cgroupfs(fake_root, {"children": {
        "a": {"children": {"x": {}}},
        "b": {"xattrs": {trees.UPO: b"1"}, "memory.max": LIMIT},
        "c": {"xattrs": {trees.UPO: b"1"}},  # on, but no memory.max: not a domain yet
    }})
    return root


@pytest.fixture
def disc(tree):
    clock = Clock()
    d = discovery.Discovery(_table(), tree, clock=clock, budget=16)
    d.clock_ = clock  # type: ignore[attr-defined]
    d.run_all()
    yield d
    d.close()


def _settle(d: discovery.Discovery) -> bool:
    """Read what inotify queued and work the queue off, one bounded step at a time."""
    d.read_events()
    changed = d.step()  # the daemon steps on every wake-up
    while d.busy:
        changed |= d.step()
    return changed


def _mkcg(parent: str, name: str, **files: str) -> str:
    path = os.path.join(parent, name)
    os.mkdir(path)
    for fname, text in files.items():
        with open(os.path.join(path, fname.replace("_", ".")), "w") as f:
            f.write(text + "\n")
    return path


def test_first_walk_finds_root_and_limited_domains(disc, tree):
    assert set(disc.domains) == {"/", "/b"}
    assert disc.domains["/b"].memory_max_bytes == 1 << 30
    assert disc.watched == 5  # every cgroup directory: /, /a, /a/x, /b, /c


def test_a_new_cgroup_with_the_xattr_is_found_from_its_event(disc, tree):
    cg = _mkcg(os.path.join(tree, "a", "x"), "new", memory_max=LIMIT)
    os.setxattr(cg, trees.UPO, b"1")
    assert _settle(disc)
    assert "/a/x/new" in disc.domains


def test_an_xattr_set_on_an_existing_cgroup_is_found(disc, tree):
    with open(os.path.join(tree, "a", "memory.max"), "w") as f:
        f.write(LIMIT + "\n")
    assert not _settle(disc)  # a file write notifies nothing we need
    os.setxattr(os.path.join(tree, "a"), trees.UPO, b"1")
    assert _settle(disc) and "/a" in disc.domains
    os.setxattr(os.path.join(tree, "a"), trees.UPO, b"0")
    assert _settle(disc) and "/a" not in disc.domains


def test_the_roots_own_xattr_is_followed(tree):
    d = discovery.Discovery(_table(""), tree, clock=Clock())
    d.run_all()
    assert "/" not in d.domains
    os.setxattr(tree, trees.UPO, b"1")
    assert _settle(d) and "/" in d.domains
    d.close()


def test_a_removed_domain_is_dropped(disc, tree):
    shutil.rmtree(os.path.join(tree, "b"))
    assert _settle(disc)
    assert set(disc.domains) == {"/"}


def test_a_renamed_subtree_is_found_under_its_new_name(disc, tree):
    os.rename(os.path.join(tree, "b"), os.path.join(tree, "renamed"))
    assert _settle(disc)
    assert set(disc.domains) == {"/", "/renamed"}


def test_a_limit_written_after_the_xattr_is_found_on_the_recheck(disc, tree):
    with open(os.path.join(tree, "c", "memory.max"), "w") as f:
        f.write(LIMIT + "\n")
    disc.clock_.now += discovery.RECHECK_S
    assert disc.step()
    assert "/c" in disc.domains


def test_a_storm_of_new_cgroups_is_worked_off_in_bounded_steps(disc, tree):
    parent = os.path.join(tree, "a")
    for i in range(200):
        _mkcg(parent, f"t{i}")
    last = _mkcg(parent, "zz", memory_max=LIMIT)
    os.setxattr(last, trees.UPO, b"1")
    disc.read_events()
    steps = 0
    while disc.busy:
        before = len(disc._todo)
        disc.step()
        assert before - len(disc._todo) <= disc.budget  # no step does more than its share
        steps += 1
    assert steps >= 200 // disc.budget
    assert "/a/zz" in disc.domains


def test_without_upo_rules_a_cgroup_without_the_xattr_costs_no_resolve(disc, tree, monkeypatch):
    calls = []
    monkeypatch.setattr(discovery.domains, "_resolve_upo",
                        lambda *a: calls.append(a[1]) or (False, []))
    _mkcg(tree, "plain")
    _settle(disc)
    assert calls == []


def test_a_rule_enables_a_new_cgroup_without_xattrs(tree):
    d = discovery.Discovery(_table('[root]\nuse_priority_oom = true\n'
                                   '[[cgroup]]\npath = "/jobs/*"\nuse_priority_oom = true\n'),
                            tree, clock=Clock())
    d.run_all()
    jobs = _mkcg(tree, "jobs")
    _mkcg(jobs, "j1", memory_max=LIMIT)
    assert _settle(d) and "/jobs/j1" in d.domains
    d.close()


def test_beyond_the_watch_limit_cgroups_are_rescanned_round_robin(tree, monkeypatch):
    clock = Clock()
    d = discovery.Discovery(_table(), tree, clock=clock, budget=16)
    real = d._ino.add_watch

    def limited(path, mask):
        if path.endswith("/a"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, mask)

    monkeypatch.setattr(d._ino, "add_watch", limited)
    d.run_all()
    cg = _mkcg(os.path.join(tree, "a"), "late", memory_max=LIMIT)
    os.setxattr(cg, trees.UPO, b"1")
    assert not _settle(d)  # /a has no watch: no event
    clock.now += discovery.RECHECK_S
    assert _settle(d) or d.step()
    while d.busy:
        d.step()
    assert "/a/late" in d.domains
    d.close()


def test_hostile_names_and_vanishing_cgroups_are_skipped(disc, tree):
    _mkcg(tree, "sp ace\nnl")
    gone = _mkcg(tree, "gone")
    disc.read_events()
    os.rmdir(gone)  # vanishes between its event and its examination
    while disc.busy:
        disc.step()
    _settle(disc)
    assert set(disc.domains) == {"/", "/b"}


def test_an_unreadable_cgroup_is_skipped_with_a_warning(disc, tree, monkeypatch, caplog):
    _mkcg(tree, "odd")

    def refuse(tbl, root, path, **kw):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(discovery.domains, "resolve_domain", refuse)
    _settle(disc)
    assert set(disc.domains) == {"/", "/b"}
    assert "/odd: not examined" in caplog.text


def test_past_its_cap_on_watches_cgroups_are_rescanned_and_said_once(tree, caplog):
    """The cap keeps prioomd from taking the inotify watches every program of root
    shares: past it, cgroups are still found, by the round-robin rescan."""
    clock = Clock()
    d = discovery.Discovery(_table(), tree, clock=clock, budget=16, max_watches=3)
    d.run_all()
    assert d.watched == 3  # root, then the first two cgroups listed; the rest rescanned
    unwatched = {"/a", "/b", "/c", "/a/x"} - {p for p in d._path_wd}
    assert len(unwatched) == 2
    assert {"/", "/b"} <= d.domains.keys()  # found all the same
    # a domain made under an unwatched cgroup is found by the rescan, not an event
    parent = sorted(unwatched)[0]
    cg = _mkcg(os.path.join(tree, parent.lstrip("/")), "late", memory_max=LIMIT)
    os.setxattr(cg, trees.UPO, b"1")
    for _ in range(3):
        clock.now += discovery.RECHECK_S
        _settle(d)
    assert parent + "/late" in d.domains
    assert d.watched == 3
    said = [r for r in caplog.records if "max_watches" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]  # not once per rescan


def test_a_freed_watch_goes_to_a_rescanned_cgroup(tree):
    clock = Clock()
    d = discovery.Discovery(_table(), tree, clock=clock, budget=16, max_watches=4)
    d.run_all()
    assert d.watched == 4
    gone = next(p for p in d._path_wd if p != "/" and not p.startswith("/a"))
    shutil.rmtree(os.path.join(tree, gone.lstrip("/")))  # (a fake cgroupfs: files too)
    for _ in range(3):
        clock.now += discovery.RECHECK_S
        _settle(d)
    assert gone not in d._path_wd and d.watched == 4


def test_the_default_cap_is_a_quarter_of_the_users_watches(tmp_path):
    limits = tmp_path / "sys" / "fs" / "inotify"
    limits.mkdir(parents=True)
    (limits / "max_user_watches").write_text("192536\n")
    assert discovery.default_max_watches(str(tmp_path)) == 48134
    (limits / "max_user_watches").write_text("garbage\n")
    assert discovery.default_max_watches(str(tmp_path)) == discovery.WATCHES_FALLBACK
    assert discovery.default_max_watches(str(tmp_path / "nope")) == discovery.WATCHES_FALLBACK
