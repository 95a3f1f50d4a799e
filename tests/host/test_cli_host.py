"""End to end on this machine's real cgroup v2 tree: `prioomd set`, `tree` and
`audit --once --json` as an operator runs them, on spec §3.5's worked example.

The tree is a private subtree used as the cgroup root, so only processes this
test started are ever looked at. There is no memory controller here: usage
counts as 0 and the priorities (then the creation order) decide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

LAYOUT = {"A": 10, "A/C": 5, "A/D": 6, "B": 8, "B/E": 7, "B/F": 8}


def prioomd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prioomd", *args], capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.fixture
def example(host_cgroup, spawn, tmp_path):
    conf = tmp_path / "prioomd.toml"
    conf.write_text("[root]\nuse_priority_oom = true\n")
    common = ["--cgroup-root", host_cgroup, "--config", str(conf)]
    pids = {}
    for rel, prio in LAYOUT.items():
        os.mkdir(os.path.join(host_cgroup, rel))
        r = prioomd("set", "/" + rel, "--priority", str(prio), *common)
        assert r.returncode == 0, r.stderr
    for leaf in ("A/C", "A/D", "B/E", "B/F"):
        pids[leaf] = spawn(os.path.join(host_cgroup, leaf)).pid
    return common, pids


def audit(common):
    r = prioomd("audit", "--once", "--json", *common)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_worked_example_victim_is_e(example):
    common, pids = example
    (rec,) = audit(common)
    assert rec["domain"] == "/"
    assert rec["victim_cgroup"] == "/B/E"
    assert rec["victim_pids"] == [pids["B/E"]]
    assert rec["kill_cgroup"] is None and rec["dry_run"] is True
    assert [c["victim_cgroup"] for c in rec["candidates"]] == ["/B/E", "/B/F", "/A/C", "/A/D"]


def test_equal_priority_goes_to_the_older_sibling(example, host_cgroup):
    common, pids = example
    r = prioomd("set", "/B/F", "--priority", "7", *common)
    assert r.returncode == 0, r.stderr
    (rec,) = audit(common)
    assert rec["victim_cgroup"] == "/B/E"  # E was created before F


def test_priority_change_moves_the_victim(example):
    common, pids = example
    assert prioomd("set", "/A", "--priority", "1", *common).returncode == 0
    (rec,) = audit(common)
    assert rec["victim_cgroup"] == "/A/C" and rec["victim_pids"] == [pids["A/C"]]


def test_tree_json_marks_victim_and_sources(example):
    common, _ = example
    # No memory controller here, so no memory.oom.group: that is for the
    # real-kernel tier.
    r = prioomd("tree", "--json", *common)
    assert r.returncode == 0, r.stderr
    nodes = {n["path"]: n for n in json.loads(r.stdout)["nodes"]}
    assert nodes["/B/E"]["victim_of"] == ["/"]
    assert nodes["/B/E"]["priority_source"] == "xattr trusted.prioomd.priority"
    assert all(not n["oom_group"] for n in nodes.values())


def test_tree_text_says_which_root_and_controllers(example, host_cgroup):
    common, _ = example
    r = prioomd("tree", *common)
    assert r.returncode == 0, r.stderr
    assert host_cgroup in r.stdout.splitlines()[0]
    assert "no memory controller" in r.stdout.splitlines()[0]
