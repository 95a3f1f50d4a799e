"""Fixtures of the in-guest tests (tests/vm/guest): they need a real kernel to abuse.

Everything here is skipped unless it runs inside a guest booted by tests/vm/kh/run.py
with the cgroup2 memory controller: these tests fill memory and call the OOM killer,
which must never happen on a developer's or CI host by accident.  Run them with
`bash tests/vm/run-suite.sh` (or tests/vm/kh/run.py, see tests/vm/README.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from scenario import CGROUP_ROOT, has_memory_controller, in_guest, rmdir_cgroup, skip_all_in

HERE = Path(__file__).resolve().parent


def _skip_reason() -> str | None:
    if not in_guest():
        return "needs the test guest (tests/vm/kh/run.py): these tests provoke real OOM kills"
    if not has_memory_controller():
        return f"no memory controller in {CGROUP_ROOT}/cgroup.controllers"
    return None


SKIP_REASON = _skip_reason()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_all_in(HERE, items, SKIP_REASON)


@pytest.fixture(scope="session", autouse=True)
def _runner_unkillable() -> None:
    """Keep the test runner out of the kernel OOM killer's reach (children reset it)."""
    if SKIP_REASON is None:
        Path("/proc/self/oom_score_adj").write_text("-1000")


@pytest.fixture
def cg_parent(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh cgroup for this test, memory and pids enabled for its children.

    Removed afterwards with everything in it (cgroup.kill, then rmdir leaves first).
    """
    name = "kh-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:60]
    path = CGROUP_ROOT / name
    rmdir_cgroup(path)  # a leftover of an aborted run
    path.mkdir()
    try:
        have = (path / "cgroup.controllers").read_text().split()
        for c in ("memory", "pids"):
            if c in have:
                (path / "cgroup.subtree_control").write_text(f"+{c}")
        yield path
    finally:
        rmdir_cgroup(path)
