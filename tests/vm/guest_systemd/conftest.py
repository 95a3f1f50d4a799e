"""Tests that need systemd as PID 1 in the test guest (run.py --systemd).

Skipped anywhere else: they start and stop transient units, which a developer's host
must not get by accident.  `bash tests/vm/run-suite.sh` runs them in their own guest.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "guest"))  # the scenario framework
from scenario import skip_all_in  # noqa: E402


def _skip_reason() -> str | None:
    try:
        guest = "khjob=" in Path("/proc/cmdline").read_text()
    except OSError:
        guest = False
    if not guest:
        return "needs the systemd test guest (tests/vm/kh/run.py --systemd)"
    if not Path("/run/systemd/system").is_dir():
        return "systemd is not PID 1 here (boot the guest with --systemd)"
    return None


SKIP_REASON = _skip_reason()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_all_in(HERE, items, SKIP_REASON)
