"""cgroupfs: parsers table-tested with hostile input, readers on fake trees."""

from __future__ import annotations

import errno
import logging
import os
import shutil

import pytest

from prioomd import cgroupfs
from prioomd.cgparse import PressureLine
from prioomd.errors import Vanished
from tests.fakefs import HYBRID_MOUNTS, UNIFIED_MOUNTS, make_cgroupfs


@pytest.mark.parametrize("mounts, want", [
    (HYBRID_MOUNTS, "/sys/fs/cgroup/unified"),
    (UNIFIED_MOUNTS, "/sys/fs/cgroup"),
    ("none /elsewhere cgroup2 rw 0 0\n" + UNIFIED_MOUNTS, "/sys/fs/cgroup"),
])
def test_default_cgroup_root(tmp_path, mounts, want):
    path = tmp_path / "mounts"
    path.write_text(mounts)
    assert cgroupfs.default_cgroup_root(str(path)) == want


def test_default_cgroup_root_none(tmp_path):
    path = tmp_path / "mounts"
    path.write_text("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n")
    with pytest.raises(cgroupfs.NoCgroup2Mount, match="no cgroup2"):
        cgroupfs.default_cgroup_root(str(path))


@pytest.mark.parametrize("rel, want", [
    ("/", "/cg"), ("/a", "/cg/a"), ("/a/b.scope", "/cg/a/b.scope"), ("/a b/c", "/cg/a b/c"),
])
def test_rel_to_abs(rel, want):
    assert cgroupfs.rel_to_abs("/cg", rel) == want


@pytest.mark.parametrize("rel", ["", "a", "/..", "/a/../..", "/a/./b", "//a", "/a/", "/a//b"])
def test_rel_to_abs_rejects(rel):
    with pytest.raises(ValueError):
        cgroupfs.rel_to_abs("/cg", rel)


@pytest.mark.parametrize("root, path, want", [
    ("/cg", "/cg", "/"), ("/cg/", "/cg", "/"), ("/cg", "/cg/a/b", "/a/b"),
    ("/cg", "/cg/a/b/", "/a/b"), ("/", "/a", "/a"),
])
def test_abs_to_rel(root, path, want):
    assert cgroupfs.abs_to_rel(root, path) == want


@pytest.mark.parametrize("path", ["/cgx/a", "/cg/../etc", "/etc", "/c", "/cg/a/../../x"])
def test_abs_to_rel_rejects(path):
    with pytest.raises(ValueError):
        cgroupfs.abs_to_rel("/cg", path)


# ---------------------------------------------------------------- readers on fake trees

TREE = {
    "procs": [1, 2],
    "children": {
        "system.slice": {
            "memory.current": 300, "memory.max": 1 << 30, "memory.high": 1 << 29,
            "memory.oom.group": 1, "memory.events": {"oom_kill": 4, "max": 9},
            "memory.pressure": (12.5, 3.0, 0.25, 987654),
            "xattrs": {"trusted.prioomd.priority": b"5", "user.prioomd.priority": b"2"},
            "children": {"z.service": {"procs": [30]}, "a.service": {"procs": [20, 21]}},
        },
        "no-mem": {"controllers": [], "procs": [40]},
        "empty": {},
    },
}


@pytest.fixture
def tree(fake_root):
    return make_cgroupfs(fake_root, TREE)


def test_readers_on_a_memory_cgroup(tree):
    cg = os.path.join(tree, "system.slice")
    assert cgroupfs.read_procs(cg) == []
    assert cgroupfs.read_procs(os.path.join(cg, "a.service")) == [20, 21]
    assert cgroupfs.read_threads(os.path.join(cg, "a.service")) == [20, 21]
    assert cgroupfs.read_usage_bytes(cg) == 300
    assert cgroupfs.read_memory_max(cg) == 1 << 30
    assert cgroupfs.read_memory_high(cg) == 1 << 29
    assert cgroupfs.read_oom_group(cg) is True
    assert cgroupfs.read_events(cg)["oom_kill"] == 4
    assert cgroupfs.read_events(cg)["oom_group_kill"] == 0
    assert cgroupfs.read_cgroup_events(cg) == {"populated": 1, "frozen": 0}
    assert cgroupfs.read_populated(cg) is True
    assert cgroupfs.read_populated(os.path.join(tree, "empty")) is False
    assert cgroupfs.read_pressure(os.path.join(cg, "memory.pressure")).some == PressureLine(
        12.5, 3.0, 0.25, 987654)
    assert "memory" in cgroupfs.read_controllers(cg)
    assert "memory" in cgroupfs.read_subtree_control(cg)
    assert cgroupfs.read_subtree_control(os.path.join(cg, "a.service")) == frozenset()
    assert cgroupfs.owner_uid(cg) == os.geteuid()


def test_populated_children_reads_a_level_as_read_populated_reads_each(tree, fake_root):
    """One batched read of a level, child by child the same answers as read_populated;
    None for a child listed but gone by the time it is read."""
    names = [n for n, _ in cgroupfs.list_children(tree)] + ["gone-meanwhile"]
    got = cgroupfs.populated_children(tree, names)
    assert got[:-1] == [cgroupfs.read_populated(os.path.join(tree, n)) for n in names[:-1]]
    assert got[-1] is None
    assert dict(zip(names, got, strict=True))["empty"] is False
    assert True in got and False in got  # the fixture has both kinds
    assert cgroupfs.populated_children(tree, []) == []
    # a directory without cgroup.events reads as populated (as the root does)
    os.unlink(os.path.join(tree, "empty", "cgroup.events"))
    assert cgroupfs.populated_children(tree, ["empty"]) == [True]
    assert cgroupfs.read_populated(os.path.join(tree, "empty")) is True


def test_populated_children_refuses_what_read_populated_refuses(fake_root, monkeypatch):
    root = make_cgroupfs(fake_root, {"children": {"x": {"raw": {"cgroup.events": "frozen 0\n"}},
                                                  "y": {}}})
    with pytest.raises(ValueError, match="no 'populated' key"):
        cgroupfs.populated_children(root, ["y", "x"])
    with pytest.raises(Vanished):
        cgroupfs.populated_children(os.path.join(root, "nope"), ["x"])
    real_open = os.open

    def refuse(path, flags, mode=0o777, *, dir_fd=None):
        if str(path).endswith("cgroup.events"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, mode, dir_fd=dir_fd)
    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(PermissionError):  # not a vanished child: said, not skipped
        cgroupfs.populated_children(root, ["y"])


def test_defaults_without_memory_controller(tree):
    cg = os.path.join(tree, "no-mem")
    assert cgroupfs.read_controllers(cg) == frozenset()
    assert cgroupfs.read_usage_bytes(cg) == 0
    assert cgroupfs.read_memory_max(cg) is None
    assert cgroupfs.read_memory_high(cg) is None
    assert cgroupfs.read_events(cg) == {}
    assert cgroupfs.read_oom_group(cg) is False
    assert cgroupfs.read_procs(cg) == [40]
    assert cgroupfs.read_pressure(os.path.join(cg, "memory.pressure")) is not None


def test_defaults_on_the_root(tree):
    assert cgroupfs.read_usage_bytes(tree) == 0
    assert cgroupfs.read_memory_max(tree) is None
    assert cgroupfs.read_events(tree) == {}
    assert cgroupfs.read_cgroup_events(tree) == {}
    assert cgroupfs.read_populated(tree) is True
    assert cgroupfs.read_oom_group(tree) is False
    assert cgroupfs.read_procs(tree) == [1, 2]


def test_pressure_absent_in_a_live_directory_is_none(tree):
    os.unlink(os.path.join(tree, "empty", "memory.pressure"))
    assert cgroupfs.read_pressure(os.path.join(tree, "empty", "memory.pressure")) is None


def test_pressure_eopnotsupp_is_none(tree, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.EOPNOTSUPP, "psi disabled")
    monkeypatch.setattr("builtins.open", refuse)
    assert cgroupfs.read_pressure(os.path.join(tree, "memory.pressure")) is None


@pytest.mark.parametrize("name, text, reader", [
    ("memory.current", "garbage\n", cgroupfs.read_usage_bytes),
    ("memory.current", "", cgroupfs.read_usage_bytes),
    ("memory.max", "-1\n", cgroupfs.read_memory_max),
    ("memory.oom.group", "2\n", cgroupfs.read_oom_group),
    ("memory.events", "oom_kill\n", cgroupfs.read_events),
    ("cgroup.procs", "1\n\xff\n", cgroupfs.read_procs),
    ("cgroup.threads", "1\n-2\n", cgroupfs.read_threads),
    ("cgroup.controllers", "cpu M\n", cgroupfs.read_controllers),
    ("cgroup.events", "frozen 0\n", cgroupfs.read_populated),
])
def test_hostile_content_is_a_value_error(fake_root, name, text, reader):
    root = make_cgroupfs(fake_root, {"children": {"x": {"raw": {name: text}}}})
    with pytest.raises(ValueError):
        reader(os.path.join(root, "x"))


def test_raw_override_without_newline(fake_root):
    root = make_cgroupfs(fake_root, {"children": {"x": {"raw": {"memory.max": "4096"}}}})
    assert cgroupfs.read_memory_max(os.path.join(root, "x")) == 4096


CGDIR_READERS = [
    cgroupfs.read_procs, cgroupfs.read_usage_bytes, cgroupfs.read_memory_max,
    cgroupfs.read_memory_high, cgroupfs.read_events, cgroupfs.read_cgroup_events,
    cgroupfs.read_populated, cgroupfs.read_oom_group, cgroupfs.read_controllers,
    cgroupfs.read_subtree_control, cgroupfs.list_children, cgroupfs.owner_uid,
    cgroupfs.creation_key, lambda cg: cgroupfs.read_xattrs(cg, ["user.x"]),
    lambda cg: cgroupfs.write_xattr(cg, "user.x", b"1"),
    lambda cg: cgroupfs.remove_xattr(cg, "user.x"),
    lambda cg: cgroupfs.read_pressure(os.path.join(cg, "memory.pressure")),
]


@pytest.mark.parametrize("reader", CGDIR_READERS)
def test_vanished_cgroup(tree, reader):
    cg = os.path.join(tree, "system.slice")
    shutil.rmtree(cg)
    with pytest.raises(Vanished):
        reader(cg)


@pytest.mark.parametrize("reader", CGDIR_READERS[:10])
def test_enodev_from_a_removed_cgroups_file_is_vanished(tree, reader, monkeypatch):
    def enodev(*args, **kwargs):
        raise OSError(errno.ENODEV, "No such device")
    monkeypatch.setattr("builtins.open", enodev)
    with pytest.raises(Vanished):
        reader(os.path.join(tree, "system.slice"))


def test_eacces_propagates(tree, monkeypatch):
    def eacces(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr("builtins.open", eacces)
    with pytest.raises(PermissionError):
        cgroupfs.read_usage_bytes(os.path.join(tree, "system.slice"))


def test_threaded_cgroup_procs_read_is_empty(tree, monkeypatch):
    def eopnotsupp(*args, **kwargs):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")
    monkeypatch.setattr("builtins.open", eopnotsupp)
    assert cgroupfs.read_procs(tree) == []


# ---------------------------------------------------------------- children and walks


def test_list_children_in_creation_order_not_name_order(tree):
    names = [name for name, _ in cgroupfs.list_children(tree)]
    assert names == ["system.slice", "no-mem", "empty"]
    sub = cgroupfs.list_children(os.path.join(tree, "system.slice"))
    assert [name for name, _ in sub] == ["z.service", "a.service"]
    assert sub[0][1] < sub[1][1]
    assert sub[0][1] == cgroupfs.creation_key(os.path.join(tree, "system.slice", "z.service"))


def test_list_children_skips_files_and_vanishing_entries(tree, monkeypatch):
    real_scandir = os.scandir

    class GoneEntry:
        name = "ghost"

        def is_dir(self, follow_symlinks=True):
            raise FileNotFoundError(errno.ENOENT, "gone")

    class Listing:
        def __init__(self, path):
            self.inner = real_scandir(path)

        def __enter__(self):
            return iter([GoneEntry(), *self.inner])

        def __exit__(self, *exc):
            self.inner.close()

    monkeypatch.setattr(os, "scandir", Listing)
    names = [name for name, _ in cgroupfs.list_children(tree)]
    assert names == ["system.slice", "no-mem", "empty"]


def test_walk_tree_pre_order(tree):
    assert list(cgroupfs.walk_tree(tree)) == [
        ("/", 0), ("/system.slice", 1), ("/system.slice/z.service", 2),
        ("/system.slice/a.service", 2), ("/no-mem", 1), ("/empty", 1),
    ]
    assert list(cgroupfs.walk_tree(tree, "/system.slice")) == [
        ("/system.slice", 0), ("/system.slice/z.service", 1), ("/system.slice/a.service", 1),
    ]


def test_walk_tree_survives_a_subtree_vanishing_mid_walk(tree):
    seen = []
    for rel, _depth in cgroupfs.walk_tree(tree):
        seen.append(rel)
        if rel == "/system.slice/z.service":
            shutil.rmtree(os.path.join(tree, "system.slice", "a.service"))
            shutil.rmtree(os.path.join(tree, "no-mem"))
    assert seen == ["/", "/system.slice", "/system.slice/z.service", "/empty"]


def test_walk_tree_of_a_vanished_start_is_empty(tree):
    assert list(cgroupfs.walk_tree(tree, "/nope")) == []


def test_walk_tree_refuses_escapes(tree):
    with pytest.raises(ValueError):
        list(cgroupfs.walk_tree(tree, "/.."))


def test_make_cgroupfs_fails_loudly_when_order_is_lost(fake_root, monkeypatch):
    real = cgroupfs.list_children
    monkeypatch.setattr(cgroupfs, "list_children", lambda cg: list(reversed(real(cg))))
    with pytest.raises(AssertionError, match="tmpfs"):
        make_cgroupfs(fake_root, {"children": {"a": {}, "b": {}}})


def test_make_cgroupfs_rejects_unknown_keys(fake_root):
    with pytest.raises(ValueError, match="unknown keys"):
        make_cgroupfs(fake_root, {"prcs": [1]})


def test_fake_files_can_be_omitted(fake_root):
    root = make_cgroupfs(fake_root, {"children": {"x": {"memory.current": None}}})
    assert not os.path.exists(os.path.join(root, "x", "memory.current"))
    assert cgroupfs.read_usage_bytes(os.path.join(root, "x")) == 0


# ---------------------------------------------------------------- xattrs


def test_read_xattrs_only_present_ones(tree):
    cg = os.path.join(tree, "system.slice")
    got = cgroupfs.read_xattrs(cg, ["trusted.prioomd.priority", "user.prioomd.priority",
                                    "user.oomd_avoid"])
    assert got == {"trusted.prioomd.priority": b"5", "user.prioomd.priority": b"2"}


def test_write_and_remove_xattr(tree):
    cg = os.path.join(tree, "empty")
    cgroupfs.write_xattr(cg, "user.prioomd.priority", b"7")
    assert cgroupfs.read_xattrs(cg, ["user.prioomd.priority"]) == {
        "user.prioomd.priority": b"7"}
    assert cgroupfs.remove_xattr(cg, "user.prioomd.priority") is True
    assert cgroupfs.remove_xattr(cg, "user.prioomd.priority") is False
    assert cgroupfs.read_xattrs(cg, ["user.prioomd.priority"]) == {}


@pytest.mark.parametrize("err", [errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA])
def test_unsupported_xattrs_are_absent(tree, monkeypatch, err):
    def fail(*args, **kwargs):
        raise OSError(err, os.strerror(err))
    monkeypatch.setattr(os, "getxattr", fail)
    assert cgroupfs.read_xattrs(tree, ["user.x"]) == {}


@pytest.mark.parametrize("err", [errno.EPERM, errno.EACCES])
def test_unreadable_xattrs_are_absent_and_logged(tree, monkeypatch, caplog, err):
    def fail(*args, **kwargs):
        raise OSError(err, os.strerror(err))
    monkeypatch.setattr(os, "getxattr", fail)
    with caplog.at_level(logging.DEBUG, logger="prioomd.cgroupfs"):
        assert cgroupfs.read_xattrs(tree, ["trusted.prioomd.priority"]) == {}
    assert "trusted.prioomd.priority" in caplog.text


def test_write_xattr_eperm_propagates(tree, monkeypatch):
    def fail(*args, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(os, "setxattr", fail)
    with pytest.raises(PermissionError):
        cgroupfs.write_xattr(tree, "trusted.prioomd.priority", b"1")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owner_uid_of_a_delegated_cgroup(fake_root):
    root = make_cgroupfs(fake_root, {"children": {"user": {"uid": 1234}}})
    assert cgroupfs.owner_uid(os.path.join(root, "user")) == 1234


def test_default_cgroup_root_path_that_is_not_utf8(tmp_path):
    """A mount point is bytes like any path: decoded as os.listdir would decode it."""
    path = tmp_path / "mounts"
    path.write_bytes(b"none /srv/cg-\xff\\040v2 cgroup2 rw 0 0\n")
    root = cgroupfs.default_cgroup_root(str(path))
    assert root == "/srv/cg-\udcff v2" and os.fsencode(root) == b"/srv/cg-\xff v2"
