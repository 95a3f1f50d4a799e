"""Baseline: what the kernel's own OOM killer does when no prioomd runs.

Global OOM, no swap: the kernel kills the biggest task (by badness, i.e. RSS) whatever
the cgroup priorities say.  This is the behaviour prioomd exists to change, and the
proof that the scenario framework sees a real OOM kill for what it is.
"""

from __future__ import annotations

import signal
from pathlib import Path

from scenario import PRIORITY_BEATS_SIZE, Scenario


def test_kernel_kills_the_biggest_not_the_lowest_priority(cg_parent: Path) -> None:
    with Scenario(PRIORITY_BEATS_SIZE, base=cg_parent) as sc:
        sc.hog("high", "45%")  # priority 10, the biggest
        sc.hog("low", "10%")  # priority 2: what priority OOM would kill
        sc.hog("mid", leak=True, ready=False)  # priority 6, leaks until someone dies
        victim = sc.wait_first_death(timeout=180)
        rep = sc.report()
    assert victim.name == "high" and victim.signal == signal.SIGKILL, rep
    assert "low" not in rep.victims, rep
    assert rep.oom_kill_global >= 1, rep
    first = rep.kernel_kills[0]
    assert first.workload == "high" and first.why == "Out of memory", rep
    # A global OOM is no memcg limit OOM: the victim's cgroup counts the kill, not "oom".
    assert rep.events["high"]["oom_kill"] >= 1 and "oom" not in rep.events["high"], rep
