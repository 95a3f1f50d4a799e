"""Declarative trees shared by the snapshot, select and CLI tests."""

from __future__ import annotations

from typing import Any

PRIO = "trusted.prioomd.priority"
UPO = "trusted.prioomd.use_priority_oom"


def prio(n: int) -> dict[str, bytes]:
    return {PRIO: str(n).encode()}


def worked_example() -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Spec §3.5: A=10 (C=5, D=6), B=8 (E=7, F=8); one process per leaf and one in
    the root. The walk must end in E."""
    cg = {
        "procs": [100],
        "xattrs": {UPO: b"1"},
        "children": {
            "A": {"xattrs": prio(10), "children": {
                "C": {"xattrs": prio(5), "procs": [201], "memory.current": 300 << 20},
                "D": {"xattrs": prio(6), "procs": [202], "memory.current": 300 << 20},
            }},
            "B": {"xattrs": prio(8), "children": {
                "E": {"xattrs": prio(7), "procs": [301], "memory.current": 10 << 20},
                "F": {"xattrs": prio(8), "procs": [302], "memory.current": 900 << 20},
            }},
        },
    }
    procs = {
        100: {"comm": "rootd", "rss_kb": 4000, "cgroup": "/", "starttime": 10},
        201: {"comm": "c", "rss_kb": 300_000, "cgroup": "/A/C", "starttime": 20},
        202: {"comm": "d", "rss_kb": 300_000, "cgroup": "/A/D", "starttime": 21},
        301: {"comm": "e", "rss_kb": 10_000, "cgroup": "/B/E", "starttime": 30},
        302: {"comm": "f", "rss_kb": 900_000, "cgroup": "/B/F", "starttime": 31},
    }
    return cg, procs
