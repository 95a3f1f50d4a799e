"""The scenario framework itself: trees, hogs, waits and reports do what they say."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from scenario import Scenario, ScenarioError, ScenarioTimeout, parse_size

MiB = 1 << 20


def test_parse_size() -> None:
    assert parse_size(4096) == 4096
    assert parse_size("64M") == 64 * MiB
    assert parse_size("1G") == 1 << 30
    assert parse_size("512k") == 512 << 10
    assert parse_size("max") == "max"
    assert parse_size("50%", total=10 * MiB) == 5 * MiB
    with pytest.raises(ValueError):
        parse_size("lots")


def test_tree_settings_and_growing_hog(cg_parent: Path) -> None:
    tree = {"a/b": {"memory.max": "64M", "memory.oom.group": True}, "a": {"priority": 3}}
    with Scenario(tree, base=cg_parent) as sc:
        assert sc.created == ["a", "a/b"]
        assert "memory" in sc.read("a", "cgroup.subtree_control").split()
        assert sc.read("a/b", "memory.max").strip() == str(64 * MiB)
        assert sc.read("a/b", "memory.oom.group").strip() == "1"
        hog = sc.hog("a/b", "8M", rate="8M", cap="24M")
        t_ready, at_ready = time.monotonic(), sc.current("a/b")
        assert hog.ready_bytes == 8 * MiB <= at_ready  # plus the interpreter's own pages
        sc.wait(lambda: sc.current("a/b") >= at_ready + 15 * MiB, 30, "a/b grows by 16M")
        # 16 MiB at 8 MiB/s takes 2 s: the hog paces itself.
        assert time.monotonic() - t_ready >= 1.5
        with pytest.raises(ScenarioTimeout):
            sc.wait_death(hog.name, timeout=0.5)
        sc.kill("a")
        rep = sc.report()
    assert [d.how for d in rep.deaths] == ["SIGKILL"], rep
    assert not (cg_parent / "a").exists()


def test_unknown_setting_is_an_error_and_cleans_up(cg_parent: Path) -> None:
    with pytest.raises(ScenarioError, match="unknown setting"):
        with Scenario({"x": {"prio": 3}}, base=cg_parent):
            pass
    assert not (cg_parent / "x").exists()
