"""prioomd on a kernel booted with psi=0: no /proc/pressure, no memory.pressure files.

Only the MemAvailable floor sees the shortage there, and it must still kill the right
victim (the lowest priority) before the kernel's OOM killer does.  run-suite.sh boots a
plain guest with psi=0 for this file alone; in a guest with PSI it is skipped.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from daemon import GLOBAL, Prioomd
from scenario import PRIORITY_BEATS_SIZE, Scenario

PSI_ON = Path("/proc/pressure/memory").exists()
pytestmark = pytest.mark.skipif(PSI_ON, reason="PSI is on here; run-suite.sh runs this "
                                "file in a guest booted with psi=0 (KH_ONLY=nopsi)")


def test_n1_floor_kills_the_lowest_priority_without_psi(cg_parent: Path,
                                                       tmp_path: Path) -> None:
    """S1 without PSI: /low dies first, /high survives, the kernel kills nobody."""
    with Scenario(PRIORITY_BEATS_SIZE, base=cg_parent) as sc, \
            Prioomd(cg_parent, GLOBAL, tmp_path) as d:
        sc.hog("high", "45%")
        sc.hog("low", "10%")
        sc.hog("mid", rate="3%", ready=False)
        first = sc.wait_first_death(timeout=240)
        rep = sc.report()
        assert sc.workloads["high"].alive, f"{rep}\n{d.describe()}"
        assert d.alive(), d.describe()
    assert first.name == "low" and first.signal == signal.SIGKILL, f"{rep}\n{d.describe()}"
    assert rep.oom_kill_global == 0 and not rep.kernel_kills, f"{rep}\n{d.describe()}"
    kill = d.kills()[0]
    assert kill["victim_cgroup"] == "/low" and kill["outcome"] == "killed", d.describe()
