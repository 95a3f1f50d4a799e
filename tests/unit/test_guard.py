"""guard: memory.high set, remembered in the runtime directory, and restored after
a clean stop, a crash and a restart, on a fake cgroup tree."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest

from prioomd import detect, guard
from prioomd.domains import Domain
from tests import fakefs

GiB = 1 << 30
T = detect.CgroupThresholds()  # headroom 5 % of 1 GiB = 51.2 MiB
GUARD = detect.guard_high_bytes(GiB, detect.headroom_bytes(GiB, T))


@pytest.fixture
def tenant(fake_root):
    root = fakefs.make_cgroupfs(fake_root, {"children": {"t": {"memory.max": GiB}}})
    return Domain("/t", os.path.join(root, "t"), GiB)


@pytest.fixture
def run_dir(tmp_path):
    return str(tmp_path / "run")


def high(dom: Domain) -> str:
    with open(os.path.join(dom.cgdir, "memory.high")) as f:
        return f.read().strip()


def set_high(dom: Domain, value: str) -> None:
    with open(os.path.join(dom.cgdir, "memory.high"), "w") as f:
        f.write(value)


def state(run_dir: str) -> dict:
    with open(os.path.join(run_dir, guard.STATE_FILE)) as f:
        return json.load(f)


def test_clean_run_sets_remembers_and_restores(tenant, run_dir):
    g = guard.Guard(T, run_dir)
    assert "guard memory.high=" in g.apply(tenant)
    assert high(tenant) == str(GUARD)
    entry = state(run_dir)["guards"]["/t"]
    assert (entry["original"], entry["set"]) == (None, GUARD)
    g.restore_all()
    assert high(tenant) == "max"
    assert not os.path.exists(os.path.join(run_dir, guard.STATE_FILE))


@pytest.mark.parametrize("admin", ["max", str(GiB - (4 << 20))])
def test_crash_then_restart_keeps_the_administrators_value(tenant, run_dir, admin):
    set_high(tenant, admin)
    guard.Guard(T, run_dir).apply(tenant)  # ... and the daemon dies: no restore
    assert high(tenant) == str(GUARD)
    g = guard.Guard(T, run_dir)  # the restarted daemon
    assert "a previous run's guard" in g.apply(tenant)
    assert high(tenant) == str(GUARD)
    g.restore_all()
    assert high(tenant) == admin


def test_leftover_not_taken_over_is_restored_by_settle(tenant, run_dir):
    guard.Guard(T, run_dir).apply(tenant)  # crash
    g = guard.Guard(T, run_dir)  # restarted with guard mode off, or /t no longer a domain
    g.settle()
    assert high(tenant) == "max"
    assert not os.path.exists(os.path.join(run_dir, guard.STATE_FILE))


def test_value_changed_since_the_crash_is_the_administrators(tenant, run_dir):
    guard.Guard(T, run_dir).apply(tenant)  # crash
    set_high(tenant, str(GiB - (8 << 20)))  # the administrator meanwhile
    g = guard.Guard(T, run_dir)
    g.settle()
    assert high(tenant) == str(GiB - (8 << 20))
    g.apply(tenant)
    g.restore_all()
    assert high(tenant) == str(GiB - (8 << 20))


def test_cgroup_recreated_under_the_same_name_is_not_ours(tenant, run_dir):
    guard.Guard(T, run_dir).apply(tenant)  # crash
    saved = tenant.cgdir + ".saved"
    shutil.copytree(tenant.cgdir, saved)  # a new directory: another inode
    shutil.rmtree(tenant.cgdir)
    os.rename(saved, tenant.cgdir)
    assert high(tenant) == str(GUARD)  # by coincidence, the same value
    g = guard.Guard(T, run_dir)
    g.settle()
    assert high(tenant) == str(GUARD)  # not touched: not our guard


def test_value_changed_while_running_is_left_on_stop(tenant, run_dir):
    g = guard.Guard(T, run_dir)
    g.apply(tenant)
    set_high(tenant, str(GiB // 2))
    g.restore_all()
    assert high(tenant) == str(GiB // 2)


def test_no_guard_where_its_state_cannot_be_kept(tenant, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = guard.Guard(T, str(blocker / "run")).apply(tenant)
    assert "guard not set" in line and high(tenant) == "max"


@pytest.mark.parametrize("text", [
    "not json", "[]", '{"version": 2}',
    '{"version": 1, "guards": {"/t": {"cgdir": "/x", "ino": -1, "original": null, "set": 1}}}',
    '{"version": 1, "guards": {"/t": {"cgdir": "/x", "ino": true, "original": 1, "set": 1}}}',
    '{"version": 1, "guards": {"/t": []}}',
])
def test_a_bad_state_file_is_ignored_with_a_warning(tenant, run_dir, text, caplog):
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, guard.STATE_FILE), "w") as f:
        f.write(text)
    with caplog.at_level(logging.WARNING, "prioomd.guard"):
        g = guard.Guard(T, run_dir)
    assert "unreadable" in caplog.text
    g.apply(tenant)
    g.restore_all()
    assert high(tenant) == "max"


def test_no_runtime_dir_keeps_no_state(tenant, run_dir):
    g = guard.Guard(T, None)
    g.apply(tenant)
    g.restore_all()
    assert high(tenant) == "max" and not os.path.exists(run_dir)


def test_default_runtime_dir():
    assert guard.default_runtime_dir({}) == "/run/prioomd"
    assert guard.default_runtime_dir({"RUNTIME_DIRECTORY": "/run/x:/run/y"}) == "/run/x"
