"""systemd/prioomd.service: systemd-analyze verify clean, and the promises it keeps."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "prioomd.service"


def _service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser["Service"]


def test_unit_verifies_clean(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    prioomd = Path(sys.executable).with_name("prioomd")
    if not prioomd.exists():
        pytest.skip(f"{prioomd} is not installed (pip install -e .)")
    unit = tmp_path / "prioomd.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/prioomd", str(prioomd)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr


def test_unit_keeps_the_daemon_alive_and_notified():
    svc = _service()
    assert svc["Type"] == "notify"
    assert svc["Restart"] == "always"
    assert svc["OOMScoreAdjust"] == "-1000"
    assert svc.get("WatchdogSec") and svc.get("MemoryMin")
    assert svc["ProtectSystem"] == "strict"
    assert "/sys/fs/cgroup" in svc["ReadWritePaths"]
    assert svc.get("ProtectControlGroups", "no") == "no"  # it writes cgroup.kill
    assert "CAP_KILL" in svc["CapabilityBoundingSet"]


def test_unit_keeps_the_guard_state_across_a_crash_and_a_stop():
    svc = _service()
    assert svc["RuntimeDirectory"] == "prioomd"  # $RUNTIME_DIRECTORY: guard.json
    assert svc["RuntimeDirectoryPreserve"] == "yes"  # kept after a crash and a stop
