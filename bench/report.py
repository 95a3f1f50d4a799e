"""Tables of bench/compare.py's results: RESULTS.md, regenerated from results.json.

    python3 bench/report.py bench/results.json > bench/RESULTS.md
"""

from __future__ import annotations

import collections
import json
import statistics
import sys
from collections.abc import Iterable
from typing import Any

SCENARIO_TEXT = {
    "priority": "global, no swap: /high (priority 10) holds 45 % of RAM, /low (2) 10 %, "
                "/mid (6) leaks 30 MiB/s; the right order is low, mid; high survives",
    "limit": "a limit domain (memory.max 300M, use_priority_oom): dom/hi (9) grows "
             "10 MiB/s from 60M, dom/lo (3) holds 40M; lo must die, hi survive. The host "
             "has memory to spare here: its MemAvailable says nothing of the domain's "
             "headroom, and a first death later than the kernel's is prioomd's guard "
             "(memory.high) holding the domain back while it chooses",
    "zram": "priority, with zram swap of half the RAM and incompressible data",
    "forkstorm": "priority, and /low also forks as fast as it can",
}


def right_victim(r: dict[str, Any]) -> bool:
    """The first victim is the one priority OOM must choose."""
    victims = r.get("victims") or []
    if not victims:
        return False
    if r["scenario"] == "limit":
        return victims[0] == "lo"
    if r["scenario"] == "forkstorm":
        return victims[0].startswith("low")
    return victims[:2] == ["low", "mid"] or victims == ["low"]


def signal_to_death(r: dict[str, Any]) -> float | None:
    """From the killer's first signal to its victim's death, in seconds: timed from the
    line the killer logged (earlyoom, nohang), or prioomd's own audit record (SIGKILL
    sent to exit seen); None for killers that leave no such trace (the kernel, oomd,
    systemd-oomd)."""
    if r.get("t_signal_to_death_s") is not None:
        return float(r["t_signal_to_death_s"])
    ms = r.get("prioomd_t_signal_to_exit_ms")
    return None if ms is None else ms / 1000


def one_line(r: dict[str, Any]) -> str:
    if "error" in r:
        return "ERROR " + r["error"].splitlines()[0][:120]
    if r.get("idle") is not None:
        i = r["idle"]
        return f"idle cpu {i['cpu_s']} s, {i['wakeups']} wake-ups, rss {i['rss_mib']} MiB"
    if "idle" in r:
        return "idle: no process to measure"
    t = r.get("t_leak_to_first_death_s")
    return (f"victims {' > '.join(r.get('victims') or ['none'])}, high "
            f"{'survived' if r.get('high_survived') else 'died'}, kernel oom_kill "
            f"{r.get('kernel_oom_kill')}, first death {_s(t)}")


def _s(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:.{digits}f} s"


def _span(values: Iterable[float | None], unit: str = "s", digits: int = 1) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    med = statistics.median(vals)
    if len(vals) == 1:
        return f"{med:.{digits}f} {unit}"
    return f"{med:.{digits}f} {unit} ({min(vals):.{digits}f}–{max(vals):.{digits}f})"


def _orders(runs: list[dict[str, Any]]) -> str:
    counts = collections.Counter(" → ".join(r.get("victims") or ["none"]) for r in runs)
    return "; ".join(f"{o} ×{n}" if n > 1 else o for o, n in counts.most_common())


def _by(cases: list[dict[str, Any]], *keys: str) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    out: dict[tuple[str, ...], list[dict[str, Any]]] = collections.defaultdict(list)
    for c in cases:
        out[tuple(c[k] for k in keys)].append(c)
    return out


def outcome_table(scenario: str, runs_by_killer: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = [f"### {scenario}", "", SCENARIO_TEXT.get(scenario, scenario), "",
             "| killer | runs | victims in order | right first victim | high survived | "
             "kernel oom_kill | leak start → first death | killer's signal → death | "
             "lowest MemAvailable before it | prioomd detect → SIGKILL |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for killer, runs in runs_by_killer.items():
        ok = [r for r in runs if "error" not in r]
        errs = len(runs) - len(ok)
        lines.append(
            f"| {killer} | {len(runs)}{f' ({errs} failed)' if errs else ''} | "
            f"{_orders(ok) or '–'} | {sum(map(right_victim, ok))}/{len(ok)} | "
            f"{sum(bool(r.get('high_survived')) for r in ok)}/{len(ok)} | "
            f"{', '.join(str(r.get('kernel_oom_kill')) for r in ok) or '–'} | "
            f"{_span(r.get('t_leak_to_first_death_s') for r in ok)} | "
            f"{_span((signal_to_death(r) for r in ok), 's', 2)} | "
            f"{_span((r.get('mem_available_min_mib') for r in ok), 'MiB', 0)} | "
            f"{_span((r.get('prioomd_t_detect_to_signal_ms') for r in ok), 'ms', 0)} |")
    return lines + [""]


def sweep_table(cases: list[dict[str, Any]]) -> list[str]:
    sweep = [c for c in cases if c["scenario"].startswith("leak-")]
    if not sweep:
        return []
    rates = sorted({c["scenario"] for c in sweep},
                   key=lambda s: float("inf") if s.endswith("max") else float(s[5:]))
    lines = ["### leak-rate sweep", "",
             "The priority scenario with /mid leaking at each rate. Each cell: runs where the "
             "kernel's OOM killer never fired / runs with the right first victim / the "
             "median lowest MemAvailable before the first death.", "",
             "| killer | " + " | ".join(r.removeprefix("leak-") + " MiB/s" for r in rates) + " |",
             "|---|" + "---|" * len(rates)]
    for (killer,), runs in _by(sweep, "killer").items():
        cells = []
        for rate in rates:
            ok = [r for r in runs if r["scenario"] == rate and "error" not in r]
            if not ok:
                cells.append("–")
                continue
            beat = sum(r.get("kernel_oom_kill") == 0 for r in ok)
            cells.append(f"{beat}/{len(ok)} · {sum(map(right_victim, ok))}/{len(ok)} · "
                         f"{_span((r.get('mem_available_min_mib') for r in ok), 'MiB', 0)}")
        lines.append(f"| {killer} | " + " | ".join(cells) + " |")
    return lines + [""]


def _median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summary_table(cases: list[dict[str, Any]]) -> list[str]:
    """Every scenario but idle, per killer: the verdicts summed, and how soon the first
    death came against the kernel's own first kill in the same scenario (the median of
    the per-scenario ratios: a ratio within one scenario, never across)."""
    runs = [c for c in cases if c["scenario"] != "idle" and "error" not in c]
    if not runs:
        return []
    kernel = {s: _median(r.get("t_leak_to_first_death_s") for r in rs)
              for (s, k), rs in _by(runs, "scenario", "killer").items() if k == "kernel"}
    lines = ["### summary: every scenario", "",
             "All runs of every scenario above and of the leak-rate sweep. \"First death "
             "× kernel's\": the killer's median time from leak start to the first death "
             "divided by the kernel-alone median of the same scenario, then the median "
             "over scenarios (below 1: it acted before the kernel would have).", "",
             "| killer | runs | right first victim | high survived | kernel oom_kill 0 | "
             "first death × kernel's |", "|---|---|---|---|---|---|"]
    for (killer,), rs in _by(runs, "killer").items():
        ratios = []
        for (scenario,), srs in _by(rs, "scenario").items():
            mine, ref = _median(r.get("t_leak_to_first_death_s") for r in srs), \
                kernel.get(scenario)
            if mine is not None and ref:
                ratios.append(mine / ref)
        ratio = _median(ratios)
        lines.append(
            f"| {killer} | {len(rs)} | {sum(map(right_victim, rs))}/{len(rs)} | "
            f"{sum(bool(r.get('high_survived')) for r in rs)}/{len(rs)} | "
            f"{sum(r.get('kernel_oom_kill') == 0 for r in rs)}/{len(rs)} | "
            f"{'–' if ratio is None else f'{ratio:.2f}×'} |")
    return lines + [""]


def idle_table(cases: list[dict[str, Any]]) -> list[str]:
    idle = [c for c in cases if c["scenario"] == "idle" and c.get("idle")]
    if not idle:
        return []
    ref = _median(c["idle"]["cpu_s"] for c in idle if c["killer"] == "earlyoom")
    ref_rss = _median(c["idle"]["rss_mib"] for c in idle if c["killer"] == "earlyoom")
    lines = ["### idle cost", "",
             f"Each killer alone in the guest with 450 MB and 100 MB resident and no "
             f"pressure, over {idle[0]['idle']['window_s']:.0f} s.", "",
             "| killer | runs | CPU | × earlyoom's CPU | wake-ups (voluntary switches) | "
             "RSS | × earlyoom's RSS | PSS |",
             "|---|---|---|---|---|---|---|---|"]
    for (killer,), runs in _by(idle, "killer").items():
        cpu = statistics.median(r["idle"]["cpu_s"] for r in runs)
        rss = statistics.median(r["idle"]["rss_mib"] for r in runs)
        lines.append(
            f"| {killer} | {len(runs)} | {_span((r['idle']['cpu_s'] for r in runs), 's', 2)} | "
            f"{f'{cpu / ref:.1f}×' if ref else '–'} | "
            f"{statistics.median(r['idle']['wakeups'] for r in runs):.0f} | "
            f"{rss:.1f} MiB | {f'{rss / ref_rss:.0f}×' if ref_rss else '–'} | "
            f"{statistics.median(r['idle']['pss_mib'] for r in runs):.1f} MiB |")
    return lines + [""]


def walk_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["### walk core: C against Python (this host, best of runs)", "",
             "| cgroups | processes | C | Python | Python / C | same result |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['cgroups']:,} | {r['tasks']:,} | {r['c_ms']:.2f} ms | "
                     f"{r['python_ms']:.1f} ms | {r['python_ms'] / r['c_ms']:.0f}× | "
                     f"{'yes' if r['same_result'] else 'NO'} |")
    return lines + [""]


def decision_table(d: dict[str, Any] | None) -> list[str]:
    if not d:
        return []
    if "error" in d:
        return ["### one decision by tree size", "", f"Not measured: {d['error']}", ""]
    lines = ["### one decision by tree size (this host's cgroup v2 tree, best of runs)", "",
             f"bench/scale.py: {d['processes']:,} processes spread over the leaves (the "
             f"flat row: over 1 % of the siblings), random priority xattrs, cgroup root "
             f"{d['cgroup_root']}; the lazy walk (what the daemon pays per decision) "
             f"against the full snapshot (what `prioomd tree` pays), same victim checked.",
             "", "| tree | cgroups | lazy walk | full snapshot | full / lazy |",
             "|---|---|---|---|---|"]
    for r in d["rows"]:
        shape = (f"flat, {r['fan_out']:,} siblings" if r["depth"] == 1 and r["fan_out"] > 100
                 else f"fan-out {r['fan_out']}, depth {r['depth']}")
        full, lazy = r["full_ms"], r["lazy_ms"]
        lines.append(f"| {shape} | {r['cgroups']:,} | {lazy:.1f} ms | "
                     f"{'–' if full is None else f'{full:.1f} ms'} | "
                     f"{'–' if full is None else f'{full / lazy:.0f}×'} |")
    g = d.get("goal")
    if g:
        lines += ["", f"Same fan-out (27), {g['small_cgroups']:,} against {g['big_cgroups']:,} "
                  f"cgroups, {g['processes_each']:,} processes each, {g['pairs']} decisions "
                  f"alternating between them: best {g['small_ms']:.1f} ms against "
                  f"{g['big_ms']:.1f} ms; median ratio of the pairs **{g['median_ratio']:.2f}×**."]
    return lines + [""]


def runs_table(cases: list[dict[str, Any]]) -> list[str]:
    """Every run, one row: the raw numbers behind the tables above."""
    rows = [c for c in cases if c["scenario"] != "idle"]
    if not rows:
        return []
    lines = ["## Every run", "",
             "| scenario | killer | run | victims (signal) | kernel's victims | high survived | "
             "leak start → first death | killer's signal → death | lowest MemAvailable | "
             "prioomd detect → SIGKILL | guest wall |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in rows:
        if "error" in c:
            lines.append(f"| {c['scenario']} | {c['killer']} | {c['run']} | failed: "
                         f"{_cell(c['error'].splitlines()[0][:120])} |||||||")
            continue
        signals = c.get("signals") or []
        victims = ", ".join(f"{v} ({signals[i] if i < len(signals) else '–'})"
                            for i, v in enumerate(c.get("victims") or []))
        det = c.get("prioomd_t_detect_to_signal_ms")
        lines.append(
            f"| {c['scenario']} | {c['killer']} | {c['run']} | {_cell(victims) or 'none'} | "
            f"{_cell(', '.join(c.get('kernel_victims') or [])) or 'none'} | "
            f"{'yes' if c.get('high_survived') else 'no'} | "
            f"{_s(c.get('t_leak_to_first_death_s'))} | {_s(signal_to_death(c), 2)} | "
            f"{c.get('mem_available_min_mib', '–')} MiB | "
            f"{'–' if det is None else f'{det:.0f} ms'} | {c.get('guest_wall_s', '–')} s |")
    return lines + [""]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(data: dict[str, Any]) -> str:
    env, cases = data["environment"], data["cases"]
    lines = ["# prioomd against the kernel and its peers", "",
             "Generated by `bench/compare.py`; do not edit by hand. Every number below comes "
             "from one run of the command shown; compare within it, not across runs.", "",
             f"* date: {env['date']}; wall time {env.get('wall_s', '?')} s",
             f"* command: `{env['command']}`",
             f"* host: {env['host']}",
             f"* guest: {env['guest']}, kernel {env['guest_kernel']}",
             f"* prioomd: {env['prioomd']}, commit {env.get('commit', '?')}",
             "* packages: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
             "", "## Outcomes", "",
             "Columns: *victims in order*, the workloads' deaths as the runner saw them "
             "(the kernel's OOM kills included); *right first victim*, the one priority OOM "
             "must choose first; *kernel oom_kill*, from /proc/vmstat, per run; *leak start "
             "→ first death*; *killer's signal → death*, from the line earlyoom or nohang "
             "logs when it signals, or prioomd's audit record (– where a killer leaves no "
             "such trace: the kernel, oomd, systemd-oomd); *lowest MemAvailable before "
             "it*, the headroom left when the first victim died; *prioomd detect → "
             "SIGKILL*, from its audit record. Times are medians, with the range over "
             "the runs in brackets.", ""]
    outcome = [c for c in cases
               if c["scenario"] != "idle" and not c["scenario"].startswith("leak-")]
    for (scenario,), runs in _by(outcome, "scenario").items():
        lines += outcome_table(scenario, {k: v for (k,), v in _by(runs, "killer").items()})
    lines += sweep_table(cases)
    lines += summary_table(cases)
    lines += idle_table(cases)
    lines += walk_table(data.get("walk_core", []))
    lines += decision_table(data.get("decision"))
    errors = [c for c in cases if "error" in c]
    if errors:
        lines += ["## Failed cases", ""]
        lines += [f"* {c['scenario']} / {c['killer']} run {c['run']}: "
                  f"{c['error'].splitlines()[0][:300]}" for c in errors]
        lines.append("")
    lines += runs_table(cases)
    lines += ["## Raw data", "", "`results.json` beside this file: every run's victims, "
              "signals, timings, MemAvailable and the killer's last log lines.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        sys.stdout.write(render(json.load(f)))
