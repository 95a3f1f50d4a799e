"""systemd in the test guest works for what the daemon's unit needs: Type=notify."""

from __future__ import annotations

import subprocess
import sys
import uuid

# What prioomd will do at start: tell systemd it is ready, then serve.
NOTIFY_READY = (
    "import time\n"
    "from systemd import daemon\n"
    "daemon.notify('READY=1\\nSTATUS=serving')\n"
    "time.sleep(600)\n"
)


def systemctl_show(unit: str, *props: str) -> dict[str, str]:
    out = subprocess.run(
        ["systemctl", "show", unit, *(f"--property={p}" for p in props)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_type_notify_unit_reaches_active_running() -> None:
    unit = f"kh-notify-{uuid.uuid4().hex[:8]}.service"
    started = subprocess.run(
        [
            "systemd-run",
            f"--unit={unit}",
            "--property=Type=notify",
            "--property=NotifyAccess=main",
            "--property=TimeoutStartSec=120",
            sys.executable,
            "-c",
            NOTIFY_READY,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    try:
        # systemd-run returns once a Type=notify unit has sent READY=1.
        assert started.returncode == 0, started.stderr
        props = systemctl_show(unit, "ActiveState", "SubState", "StatusText", "Type")
        assert props == {
            "ActiveState": "active",
            "SubState": "running",
            "StatusText": "serving",
            "Type": "notify",
        }, props
    finally:
        subprocess.run(["systemctl", "stop", unit], capture_output=True, check=False)
    assert systemctl_show(unit, "ActiveState")["ActiveState"] in {"inactive", "failed"}
