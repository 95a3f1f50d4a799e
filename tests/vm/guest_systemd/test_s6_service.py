"""S6: prioomd as the systemd service it ships as (systemd/prioomd.service, hardening
included), with systemd as PID 1: it reaches active (running) through sd_notify, a
config change reloads it and changes the next victim, a hung daemon is caught by the
watchdog and restarted, and "priority beats size" still holds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "guest"))
from daemon import export_records  # noqa: E402
from scenario import PRIORITY_BEATS_SIZE, Scenario, rmdir_cgroup  # noqa: E402

TOP = Path(__file__).resolve().parents[3]
UNIT = "prioomd.service"
CGROOT = Path("/sys/fs/cgroup/kh-s6")
CONFIG = Path("/etc/prioomd/prioomd.toml")
AUDIT = Path("/var/log/prioomd/audit.jsonl")


def config_text(low_priority: int) -> str:
    return (f'[daemon]\ncgroup_root = "{CGROOT}"\n[root]\nuse_priority_oom = true\n'
            f'[[cgroup]]\npath = "/low"\npriority = {low_priority}\n')


def sh(*argv: str, check: bool = True) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"{argv}: {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def show(*props: str) -> dict[str, str]:
    out = sh("systemctl", "show", UNIT, *(f"--property={p}" for p in props))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal() -> str:
    return sh("journalctl", "-b", "-u", UNIT, "-o", "cat", "--no-pager", check=False)


def wait_for(pred, timeout: float, what: str, describe=None) -> None:
    """Poll pred() every 0.5 s; past timeout fail with describe() (the unit's state
    and journal by default)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s\n"
                                 f"{(describe or show_all)()}")
        time.sleep(0.5)


def show_all() -> str:
    return f"{show('ActiveState', 'SubState', 'Result', 'NRestarts', 'MainPID')}\n{journal()}"


def _quote(path: Path) -> str:
    """A path as one word of a unit setting: quoted, with specifiers (%) escaped."""
    text = str(path).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{text}"'


@pytest.fixture
def service() -> Iterator[None]:
    """The shipped unit, pointed at the venv and a private cgroup root, with a short
    watchdog (a drop-in) so the hang test takes seconds."""
    rmdir_cgroup(CGROOT)
    CGROOT.mkdir()
    (CGROOT / "cgroup.subtree_control").write_text("+memory +pids")
    CONFIG.parent.mkdir(parents=True, exist_ok=True)
    CONFIG.write_text(config_text(2))
    prioomd = Path(sys.executable).with_name("prioomd")
    unit = (TOP / "systemd" / UNIT).read_text().replace("/usr/local/bin/prioomd", str(prioomd))
    Path(f"/run/systemd/system/{UNIT}").write_text(unit)
    dropin = Path(f"/run/systemd/system/{UNIT}.d")
    dropin.mkdir(exist_ok=True)
    # The unit's sandbox (PrivateTmp=, ProtectHome=, ...) may hide the checkout and its
    # venv wherever they were cloned (/tmp, /var/tmp, ...): bind them into it read-only,
    # as an operator would for a prioomd installed outside /usr.
    venv = Path(sys.prefix)
    binds = " ".join(_quote(p) for p in (TOP, venv) if p == TOP or not venv.is_relative_to(TOP))
    (dropin / "test.conf").write_text("[Service]\nWatchdogSec=6s\nTimeoutAbortSec=2s\n"
                                      f"RestartSec=0.5s\nBindReadOnlyPaths={binds}\n")
    sh("systemctl", "daemon-reload")
    try:
        yield
    finally:
        sh("systemctl", "stop", UNIT, check=False)
        try:
            export_records("s6", [__import__("json").loads(x)
                                  for x in AUDIT.read_text().splitlines() if x.strip()])
        except FileNotFoundError:
            pass
        rmdir_cgroup(CGROOT)


def test_s6_service_lifecycle_reload_watchdog_and_priority(service: None) -> None:
    with Scenario(PRIORITY_BEATS_SIZE, base=CGROOT) as sc:
        sc.hog("high", "45%")
        sc.hog("low", "10%")
        # /low's priority comes from the config from now on (an xattr would win).
        os.removexattr(CGROOT / "low", "trusted.prioomd.priority")
        # 1. Type=notify: `systemctl start` returns after READY=1.
        sh("systemctl", "start", UNIT)
        props = show("ActiveState", "SubState", "StatusText", "Type")
        assert props["ActiveState"] == "active" and props["SubState"] == "running", show_all()
        assert "domain(s)" in props["StatusText"], props
        assert "would be /low" in journal(), show_all()
        # the unit's sandbox leaves it /dev/kmsg, read only: it tells limit kills apart
        assert "every kernel OOM kill counts as a miss" not in journal(), show_all()

        # 2. A config change reloads it and changes the next victim: /low outranks /high.
        CONFIG.write_text(config_text(11))
        wait_for(lambda: "would be /high" in journal(), 120, "reload to a new victim")
        CONFIG.write_text(config_text(2))
        wait_for(lambda: journal().count("would be /low") >= 2, 120, "reload back")

        # 3. A hung daemon is caught by the watchdog and restarted.
        pid = int(show("MainPID")["MainPID"])
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: show("NRestarts")["NRestarts"] != "0"
                 and show("ActiveState")["ActiveState"] == "active"
                 and show("MainPID")["MainPID"] not in ("0", str(pid)), 180, "watchdog restart")
        assert "Watchdog timeout" in sh("journalctl", "-b", "--no-pager", "-o", "cat",
                                        check=False), show_all()
        wait_for(lambda: show("SubState")["SubState"] == "running", 120, "running again")

        # 4. S1 with the service systemd started: /low, then /mid; /high survives.
        sc.hog("mid", rate="3%", ready=False)
        sc.wait_death("low", "mid", timeout=240)
        rep = sc.report()
        high_alive = sc.workloads["high"].alive
    assert high_alive, f"{rep}\n{show_all()}"
    assert [d.name for d in rep.deaths][:2] == ["low", "mid"], f"{rep}\n{show_all()}"
    assert rep.oom_kill_global == 0 and not rep.kernel_kills, f"{rep}\n{show_all()}"
    assert show("ActiveState")["ActiveState"] == "active", show_all()
