"""prioomd tree / audit --once on a real kernel with the memory controller.

Spec §3.5's tree with real processes holding real memory: the priorities decide,
memory.current breaks ties (the host tier cannot show that: no memory controller
there), and a cgroup with use_priority_oom and a memory.max is a domain of its own.
prioomd runs as an operator runs it, as a command, pointed at the test's cgroup.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scenario import Scenario

# Spec §3.5: A=10 (C=5, D=6), B=8 (E=7, F=8); the walk must end in E.
WORKED_EXAMPLE = {
    "A": {"priority": 10},
    "A/C": {"priority": 5},
    "A/D": {"priority": 6},
    "B": {"priority": 8},
    "B/E": {"priority": 7},
    "B/F": {"priority": 8},
}


def prioomd(root: Path, conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "prioomd", *args, "--cgroup-root", str(root),
                        "--config", str(conf)], capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stderr
    return r


def audit(root: Path, conf: Path) -> dict[str, dict]:
    r = prioomd(root, conf, "audit", "--once", "--json")
    return {rec["domain"]: rec for rec in map(json.loads, r.stdout.splitlines())}


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "prioomd.toml"
    path.write_text("[root]\nuse_priority_oom = true\n")
    return path


@pytest.fixture
def example(cg_parent: Path):
    with Scenario(WORKED_EXAMPLE, base=cg_parent) as sc:
        # F holds the most, E the least: size must not matter across priorities.
        hogs = {leaf: sc.hog(leaf, size) for leaf, size in
                (("A/C", "24M"), ("A/D", "24M"), ("B/E", "8M"), ("B/F", "40M"))}
        yield sc, hogs


def test_worked_example_gives_e_then_f_c_d(example, cg_parent: Path, conf: Path) -> None:
    sc, hogs = example
    recs = audit(cg_parent, conf)
    rec = recs["/"]
    assert rec["victim_cgroup"] == "/B/E", rec
    assert rec["victim_pids"] == [hogs["B/E"].pid], rec
    assert [c["victim_cgroup"] for c in rec["candidates"]] == ["/B/E", "/B/F", "/A/C", "/A/D"]
    assert rec["walk"] == ["/", "/B", "/B/E"]
    # the tree view sees the real memory and marks the victim
    tree = json.loads(prioomd(cg_parent, conf, "tree", "--json").stdout)
    nodes = {n["path"]: n for n in tree["nodes"]}
    assert tree["memory_controller"] is True
    assert nodes["/B/F"]["usage_bytes"] > nodes["/B/E"]["usage_bytes"] > 8 << 20
    assert nodes["/B/E"]["victim_of"] == ["/"]


def test_equal_priority_goes_to_the_larger_memory_current(example, cg_parent: Path,
                                                          conf: Path) -> None:
    sc, hogs = example
    sc.setxattr("B/F", "trusted.prioomd.priority", 7)  # E and F tie at 7; F uses more
    rec = audit(cg_parent, conf)["/"]
    assert rec["victim_cgroup"] == "/B/F" and rec["victim_pids"] == [hogs["B/F"].pid], rec


def test_limit_domain_and_oom_group(example, cg_parent: Path, conf: Path) -> None:
    sc, hogs = example
    sc.write("A", "memory.max", "200M")
    sc.setxattr("A", "trusted.prioomd.use_priority_oom", 1)
    sc.write("B", "memory.oom.group", 1)
    recs = audit(cg_parent, conf)
    assert set(recs) == {"/", "/A"}
    assert recs["/A"]["victim_cgroup"] == "/A/C", recs["/A"]  # C=5 < D=6 inside A
    # globally E is still chosen, but memory.oom.group on B takes F along
    assert recs["/"]["victim_cgroup"] == "/B/E"
    assert recs["/"]["kill_cgroup"] == "/B"
    assert sorted(recs["/"]["victim_pids"]) == sorted([hogs["B/E"].pid, hogs["B/F"].pid])
