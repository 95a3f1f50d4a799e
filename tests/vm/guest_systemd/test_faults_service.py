"""Faults under systemd (issue 7 C): the service hung past its watchdog (SIGSTOP) and
killed outright (SIGKILL) is restarted, the restarted daemon takes over the guard
it finds in its runtime directory, and a stop leaves memory.high as the
administrator set it.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "guest"))
from scenario import rmdir_cgroup  # noqa: E402
from test_s6_service import TOP, UNIT, journal, sh, show  # noqa: E402  (S6's unit helpers)
from test_s6_service import wait_for as s6_wait_for  # noqa: E402

CGROOT = Path("/sys/fs/cgroup/kh-faults")
DOMAIN = CGROOT / "dom"
CONFIG = Path("/etc/prioomd/prioomd.toml")
STATE = Path("/run/prioomd/guard.json")
MiB = 1 << 20
ADMIN_HIGH = str(250 * MiB)  # the administrator's; the guard sets 240 MiB (16 MiB headroom)


def state() -> str:
    props = show("ActiveState", "SubState", "Result", "NRestarts", "MainPID")
    return f"{props}\nmemory.high={high()}\n{journal()}"


def high() -> str:
    return (DOMAIN / "memory.high").read_text().strip()


def wait_for(pred, timeout: float, what: str) -> None:
    s6_wait_for(pred, timeout, what, describe=state)


def restarted_from(pid: int) -> bool:
    props = show("ActiveState", "SubState", "MainPID")
    return props["SubState"] == "running" and props["MainPID"] not in ("0", str(pid))


@pytest.fixture
def service() -> Iterator[None]:
    rmdir_cgroup(CGROOT)
    CGROOT.mkdir()
    (CGROOT / "cgroup.subtree_control").write_text("+memory")
    DOMAIN.mkdir()
    (DOMAIN / "memory.max").write_text(str(256 * MiB))
    (DOMAIN / "memory.high").write_text(ADMIN_HIGH)
    os.setxattr(DOMAIN, "trusted.prioomd.use_priority_oom", b"1")
    CONFIG.parent.mkdir(parents=True, exist_ok=True)
    CONFIG.write_text(f'[daemon]\ncgroup_root = "{CGROOT}"\n[root]\nuse_priority_oom = false\n')
    prioomd = Path(sys.executable).with_name("prioomd")
    unit = (TOP / "systemd" / UNIT).read_text().replace("/usr/local/bin/prioomd", str(prioomd))
    Path(f"/run/systemd/system/{UNIT}").write_text(unit)
    dropin = Path(f"/run/systemd/system/{UNIT}.d")
    dropin.mkdir(exist_ok=True)
    private_tmp = "PrivateTmp=no\n" if TOP.is_relative_to("/tmp") else ""
    (dropin / "test.conf").write_text("[Service]\nWatchdogSec=6s\nTimeoutAbortSec=2s\n"
                                      f"RestartSec=0.5s\n{private_tmp}")
    sh("systemctl", "daemon-reload")
    try:
        yield
    finally:
        sh("systemctl", "stop", UNIT, check=False)
        rmdir_cgroup(CGROOT)


def test_guard_survives_watchdog_restart_and_sigkill(service: None) -> None:
    sh("systemctl", "start", UNIT)
    wait_for(lambda: high() != ADMIN_HIGH, 60, "the guard")
    guard = high()
    assert int(guard) < int(ADMIN_HIGH) and STATE.exists(), state()

    # 1. Hung past its watchdog: systemd aborts it (SIGABRT, then SIGKILL) and restarts it.
    pid = int(show("MainPID")["MainPID"])
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: restarted_from(pid), 180, "the watchdog restart")
    assert high() == guard, state()  # taken over, not mistaken for the administrator's
    assert "a previous run's guard" in journal(), state()

    # 2. Killed outright in the middle of its work: restarted, the guard taken over again.
    pid = int(show("MainPID")["MainPID"])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: restarted_from(pid), 120, "the restart after SIGKILL")
    assert high() == guard, state()

    # 3. A clean stop: the administrator's value, and no state left behind.
    sh("systemctl", "stop", UNIT)
    assert high() == ADMIN_HIGH, state()
    assert not STATE.exists(), state()
