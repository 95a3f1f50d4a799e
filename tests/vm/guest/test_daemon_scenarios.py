"""The live daemon on a real kernel: who dies, in what order, and the kernel's count.

Each scenario starts `prioomd run` for real (tests/vm/guest/daemon.py), builds a cgroup
tree with real memory hogs (scenario.py) and asserts the outcome prioomd exists for:
the lowest priority dies first, and the kernel's own OOM killer never has to fire.
"""

from __future__ import annotations

import signal
from pathlib import Path

from daemon import GLOBAL, Prioomd
from scenario import PRIORITY_BEATS_SIZE, Scenario


def test_s1_priority_beats_size(cg_parent: Path, tmp_path: Path) -> None:
    """Global pressure, no swap: /low dies first, then /mid, /high survives."""
    with Scenario(PRIORITY_BEATS_SIZE, base=cg_parent) as sc, \
            Prioomd(cg_parent, GLOBAL, tmp_path) as d:
        sc.hog("high", "45%")
        sc.hog("low", "10%")
        sc.hog("mid", rate="3%", ready=False)  # leaks ~30 MiB/s until something dies
        sc.wait_death("low", "mid", timeout=240)
        rep = sc.report()
        assert sc.workloads["high"].alive, f"{rep}\n{d.describe()}"
        assert d.alive(), d.describe()
    assert [x.name for x in rep.deaths][:2] == ["low", "mid"], f"{rep}\n{d.describe()}"
    assert all(x.signal == signal.SIGKILL for x in rep.deaths), rep
    assert rep.oom_kill_global == 0 and not rep.kernel_kills, f"{rep}\n{d.describe()}"
    kills = d.kills()
    assert [k["victim_cgroup"] for k in kills[:2]] == ["/low", "/mid"], d.describe()
    assert all(k["outcome"] == "killed" and k["domain"] == "/" for k in kills[:2])
    assert d.records("miss") == [], d.describe()


def test_s2_limit_domain_kills_the_lower_priority_child(cg_parent: Path,
                                                       tmp_path: Path) -> None:
    """A parent with memory.max and use_priority_oom: its higher-priority child leaks,
    the lower-priority child dies first although it is smaller; the kernel never
    has to kill in that domain."""
    tree = {
        "dom": {"memory.max": "300M", "memory.swap.max": 0, "use_priority_oom": True},
        "dom/hi": {"priority": 9},
        "dom/lo": {"priority": 3},
    }
    conf = "[audit]\njournal = false\n"
    with Scenario(tree, base=cg_parent) as sc, Prioomd(cg_parent, conf, tmp_path) as d:
        sc.hog("dom/lo", "40M")
        sc.hog("dom/hi", "60M", rate="10M", ready=True)
        sc.wait_death("dom/lo", timeout=240)
        rep = sc.report()
        hi_alive = sc.workloads["dom/hi"].alive
        dom_oom_kills = sc.event_delta("dom", "oom_kill")
    assert hi_alive, f"{rep}\n{d.describe()}"
    assert rep.deaths[0].name == "dom/lo" and rep.deaths[0].signal == signal.SIGKILL, rep
    assert dom_oom_kills == 0 and not rep.kernel_kills, f"{rep}\n{d.describe()}"
    kill = d.kills()[0]
    assert kill["domain"] == "/dom" and kill["victim_cgroup"] == "/dom/lo", d.describe()
    assert kill["outcome"] == "killed", d.describe()
    # guard mode was on while prioomd ran, and memory.high is restored after it
    assert "guard memory.high=" in d.log(), d.describe()


def test_s3_unkillable_lowest_priority_passes_to_its_sibling(cg_parent: Path,
                                                             tmp_path: Path) -> None:
    """The lowest-priority cgroup holds only a -1000 task: its sibling is chosen next."""
    tree = {"guarded": {"priority": 1}, "mid": {"priority": 5}, "high": {"priority": 10}}
    with Scenario(tree, base=cg_parent) as sc, Prioomd(cg_parent, GLOBAL, tmp_path) as d:
        sc.hog("guarded", "10%", oom_score_adj=-1000)
        sc.hog("mid", "10%")
        sc.hog("high", "40%", rate="3%", ready=True)
        first = sc.wait_first_death(timeout=240)
        rep = sc.report()
        guarded_alive = sc.workloads["guarded"].alive
    assert first.name == "mid" and first.signal == signal.SIGKILL, f"{rep}\n{d.describe()}"
    assert guarded_alive, f"{rep}\n{d.describe()}"
    assert rep.oom_kill_global == 0, f"{rep}\n{d.describe()}"
    kill = d.kills()[0]
    assert kill["victim_cgroup"] == "/mid", d.describe()


def test_s4_oom_group_on_the_victims_parent_kills_the_group_only(cg_parent: Path,
                                                                 tmp_path: Path) -> None:
    """memory.oom.group on the chosen cgroup's parent: the whole group dies, and
    nothing else."""
    tree = {
        "grp": {"priority": 2, "memory.oom.group": 1},
        "grp/a": {"priority": 1},
        "grp/b": {"priority": 8},
        "other": {"priority": 5},
        "high": {"priority": 10},
    }
    with Scenario(tree, base=cg_parent) as sc, Prioomd(cg_parent, GLOBAL, tmp_path) as d:
        sc.hog("grp/a", "5%")
        sc.hog("grp/b", "5%")
        sc.hog("other", "5%")
        sc.hog("high", "45%", rate="3%", ready=True)
        sc.wait_death("grp/a", "grp/b", timeout=240)
        rep = sc.report()
        survivors = {n: sc.workloads[n].alive for n in ("other", "high")}
    assert survivors == {"other": True, "high": True}, f"{rep}\n{d.describe()}"
    assert {x.name for x in rep.deaths} == {"grp/a", "grp/b"}, rep
    assert all(x.signal == signal.SIGKILL for x in rep.deaths), rep
    assert rep.oom_kill_global == 0, f"{rep}\n{d.describe()}"
    kill = d.kills()[0]
    assert kill["kill_cgroup"] == "/grp" and kill["victim_cgroup"] == "/grp/a", d.describe()


def test_s5_dry_run_kills_nothing_and_records_the_kernels_kill(cg_parent: Path,
                                                              tmp_path: Path) -> None:
    """--dry-run: prioomd kills nothing; its records name the victim it would have
    chosen (/low); the kernel's own kill is recorded as a miss."""
    with Scenario(PRIORITY_BEATS_SIZE, base=cg_parent) as sc, \
            Prioomd(cg_parent, GLOBAL, tmp_path, dry_run=True) as d:
        sc.hog("high", "45%")
        sc.hog("low", "10%")
        sc.hog("mid", rate="3%", ready=False)
        sc.wait_first_death(timeout=240)
        sc.wait(lambda: bool(d.records("miss")), 60, "prioomd's miss record")
        rep = sc.report()
    would = [k for k in d.kills() if k["outcome"] == "dry-run"]
    assert would and would[0]["victim_cgroup"] == "/low", d.describe()
    assert all(k["dry_run"] for k in d.records()), d.describe()
    # every death is the kernel's own
    assert rep.kernel_kills and {k.workload for k in rep.kernel_kills} >= {
        x.name for x in rep.deaths}, f"{rep}\n{d.describe()}"
    miss = d.records("miss")[0]
    assert miss["domain"] == "/" and miss["kernel_oom_kills"] >= 1, d.describe()


def test_a_kill_at_a_cgroups_own_limit_is_not_a_miss_of_the_root(cg_parent: Path,
                                                                 tmp_path: Path) -> None:
    """A cgroup that is no domain (memory.max, no use_priority_oom) outgrows its limit:
    the kernel kills there, which prioomd never claims to prevent. /proc/vmstat counts
    that kill like a global one; the kernel's own log tells them apart, and the root
    domain records no miss (before 2026-11-29 it recorded one)."""
    tree = {"box": {"memory.max": "64M", "memory.swap.max": 0}}
    with Scenario(tree, base=cg_parent) as sc, Prioomd(cg_parent, GLOBAL, tmp_path) as d:
        sc.hog("box", leak=True, ready=False, name="box")
        sc.wait_first_death(timeout=120)
        # the root's misses are looked at when its sample runs in Python: every 30 s
        # at the latest while memory is plentiful
        sc.wait(lambda: "at a cgroup's own memory.max" in d.log(), 90,
                "prioomd's note of the kill at the limit")
        rep = sc.report()
    assert [x.name for x in rep.deaths] == ["box"], rep
    assert rep.oom_kill_global >= 1 and rep.kernel_kills, rep  # the kernel did kill
    assert d.records("miss") == [], d.describe()
    assert d.kills() == [], d.describe()
