"""psi_trigger.py: the kernel's rules for a trigger request, and the fallbacks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prioomd.errors import Vanished
from prioomd.psi_trigger import arm, rounded_window_us, trigger_spec, validate


@pytest.mark.parametrize(
    ("window", "want"),
    [(500_000, 2_000_000), (1_000_000, 2_000_000), (2_000_000, 2_000_000),
     (2_000_001, 4_000_000), (3_000_000, 4_000_000), (9_000_000, 10_000_000),
     (10_000_000, 10_000_000)],
)
def test_rounded_window(window: int, want: int) -> None:
    assert rounded_window_us(window) == want


def test_trigger_spec() -> None:
    assert trigger_spec("some", 150_000, 2_000_000) == b"some 150000 2000000\0"


@pytest.mark.parametrize(
    ("kind", "stall", "window"),
    [("avg", 1, 2_000_000), ("some", 0, 2_000_000), ("some", 3_000_000, 2_000_000),
     ("some", 1000, 400_000), ("full", 1000, 12_000_000)],
)
def test_validate(kind: str, stall: int, window: int) -> None:
    with pytest.raises(ValueError):
        validate(kind, stall, window)


def test_missing_proc_pressure_polls(tmp_path: Path) -> None:
    fd, info = arm(str(tmp_path / "pressure" / "memory"), "full", 150_000, 2_000_000)
    assert fd is None
    assert (info.mode, info.kind, info.stall_us, info.window_us) == (
        "polling", "full", 150_000, 2_000_000)
    assert "cannot open" in info.warning


def test_missing_cgroup_is_vanished(tmp_path: Path) -> None:
    with pytest.raises(Vanished):
        arm(str(tmp_path / "gone" / "memory.pressure"), "some", 150_000, 2_000_000)


def test_cgroup_without_psi_file_polls(tmp_path: Path) -> None:
    """The cgroup exists but has no memory.pressure (cgroup PSI disabled)."""
    fd, info = arm(str(tmp_path / "memory.pressure"), "some", 150_000, 2_000_000)
    assert fd is None and info.mode == "polling"


def test_write_error_polls() -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    fd, info = arm("/dev/full", "some", 150_000, 2_000_000)
    assert fd is None and "No space" in info.warning
