"""bench/report.py: the verdicts and tables of bench/compare.py's RESULTS.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import report  # noqa: E402


def case(scenario: str, killer: str, victims: list[str], **kw: object) -> dict[str, object]:
    return {"scenario": scenario, "killer": killer, "run": "1", "victims": victims,
            "high_survived": "high" not in victims and "hi" not in victims,
            "kernel_oom_kill": 0, "t_leak_to_first_death_s": 5.0, **kw}


@pytest.mark.parametrize(("scenario", "victims", "right"), [
    ("priority", ["low", "mid"], True),
    ("priority", ["low"], True),
    ("priority", ["high", "mid"], False),
    ("priority", ["mid", "low"], False),
    ("priority", [], False),
    ("leak-200", ["low", "mid"], True),
    ("limit", ["lo"], True),
    ("limit", ["hi", "lo"], False),
    ("forkstorm", ["low-forker", "low"], True),
    ("forkstorm", ["mid"], False),
])
def test_right_victim(scenario: str, victims: list[str], right: bool) -> None:
    assert report.right_victim(case(scenario, "x", victims)) is right


def test_render_tables() -> None:
    data = {
        "environment": {"date": "d", "command": "c", "host": "h", "guest": "g",
                        "guest_kernel": "k", "prioomd": "p", "packages": {"earlyoom": "1.7"}},
        "cases": [
            case("priority", "prioomd", ["low", "mid"], prioomd_t_detect_to_signal_ms=120.0),
            case("priority", "earlyoom", ["high", "mid"], kernel_oom_kill=0),
            case("leak-max", "kernel", ["high"], kernel_oom_kill=1),
            {"scenario": "idle", "killer": "earlyoom", "run": "1",
             "idle": {"window_s": 20, "cpu_s": 0.2, "wakeups": 200, "rss_mib": 1.0,
                      "pss_mib": 0.5}},
            {"scenario": "idle", "killer": "prioomd", "run": "1",
             "idle": {"window_s": 20, "cpu_s": 0.4, "wakeups": 20, "rss_mib": 14.0,
                      "pss_mib": 12.0}},
            {"scenario": "zram", "killer": "nohang", "run": "1", "error": "guest exit 125"},
        ],
        "walk_core": [{"cgroups": 1000, "tasks": 2000, "c_ms": 0.1, "python_ms": 5.0,
                       "same_result": True}],
        "decision": {"cgroup_root": "/cg", "memory": False, "processes": 500, "repeat": 2,
                     "rows": [{"fan_out": 27, "depth": 2, "cgroups": 756, "lazy_ms": 5.0,
                               "full_ms": 150.0},
                              {"fan_out": 2000, "depth": 1, "cgroups": 2000,
                               "lazy_ms": 40.0, "full_ms": None}],
                     "goal": {"pairs": 3, "processes_each": 250, "small_cgroups": 756,
                              "big_cgroups": 20439, "small_ms": 4.0, "big_ms": 5.0,
                              "median_ratio": 1.25}},
    }
    text = report.render(data)
    assert "| prioomd | 1 | low → mid | 1/1 | 1/1 | 0 |" in text
    assert "| earlyoom | 1 | high → mid | 0/1 | 0/1 |" in text
    assert "| kernel | 0/1 · 0/1 ·" in text  # the sweep: the kernel fired, wrong victim
    assert "| prioomd | 1 | 0.40 s | 2.0× | 20 | 14.0 MiB | 14× |" in text  # idle
    # the summary: the kernel's first death in the same scenario is the reference
    assert "| prioomd | 1 | 1/1 | 1/1 | 1/1 | – |" in text  # no kernel run of priority
    assert "| kernel | 1 | 0/1 | 0/1 | 0/1 | 1.00× |" in text
    assert "| fan-out 27, depth 2 | 756 | 5.0 ms | 150.0 ms | 30× |" in text
    assert "| flat, 2,000 siblings | 2,000 | 40.0 ms | – | – |" in text
    assert "median ratio of the pairs **1.25×**" in text
    # every run has its own row, in the order run
    assert "| priority | prioomd | 1 | low (–), mid (–) | none | yes | 5.0 s |" in text
    assert "| 1,000 | 2,000 | 0.10 ms | 5.0 ms | 50× | yes |" in text
    assert "zram / nohang run 1: guest exit 125" in text


def test_summary_is_a_ratio_within_each_scenario() -> None:
    cases = [case("priority", "kernel", ["high"], t_leak_to_first_death_s=10.0),
             case("leak-max", "kernel", ["high"], t_leak_to_first_death_s=2.0),
             case("priority", "prioomd", ["low"], t_leak_to_first_death_s=5.0),
             case("leak-max", "prioomd", ["low"], t_leak_to_first_death_s=2.0)]
    text = "\n".join(report.summary_table(cases))
    # 0.5 in one scenario and 1.0 in the other: the median of the two, 0.75
    assert "| prioomd | 2 | 2/2 | 2/2 | 2/2 | 0.75× |" in text


def test_runs_table_escapes_cells() -> None:
    text = "\n".join(report.runs_table([
        case("priority", "nohang", ["a|b"], signals=["SIGTERM"]),
        {"scenario": "zram", "killer": "oomd", "run": "2", "error": "x|y\nz"}]))
    assert "| a\\|b (SIGTERM) |" in text
    assert "| zram | oomd | 2 | failed: x\\|y |" in text


def test_signal_to_death_from_the_log_or_the_audit() -> None:
    assert report.signal_to_death(case("priority", "earlyoom", ["high"],
                                       t_signal_to_death_s=0.25)) == 0.25
    assert report.signal_to_death(case("priority", "prioomd", ["low"], t_signal_to_death_s=None,
                                       prioomd_t_signal_to_exit_ms=61.0)) == 0.061
    assert report.signal_to_death(case("priority", "oomd", ["high"])) is None
