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
    }
    text = report.render(data)
    assert "| prioomd | 1 | low → mid | 1/1 | 1/1 | 0 |" in text
    assert "| earlyoom | 1 | high → mid | 0/1 | 0/1 |" in text
    assert "| kernel | 0/1 · 0/1 ·" in text  # the sweep: the kernel fired, wrong victim
    assert "| prioomd | 0.40 s | 2.0× | 20 |" in text  # idle, against earlyoom's CPU
    assert "| 1,000 | 2,000 | 0.10 ms | 5.0 ms | 50× | yes |" in text
    assert "zram / nohang run 1: guest exit 125" in text
