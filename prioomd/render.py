"""Pure rendering of snapshots and decisions for the CLI: text and JSON values.

Text is for terminals: every line goes through ``textsafe.show``, so a cgroup or
process name cannot drive the terminal or add a line. JSON values keep the raw
names (``json.dumps`` escapes them; a byte that is not UTF-8 is the lone surrogate
``\\udcNN`` of Python's surrogateescape, NN being the byte).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prioomd import detect
from prioomd.model import Decision, Snapshot, TaskState
from prioomd.textsafe import show


def fmt_bytes(n: int | None) -> str:
    """detect.fmt_bytes, with None (no limit) shown as "max"."""
    return "max" if n is None else detect.fmt_bytes(n)


def counts(snapshot: Snapshot) -> tuple[list[int], list[int]]:
    """Processes and killable processes per node, own processes only."""
    procs = [0] * len(snapshot.nodes)
    killable = [0] * len(snapshot.nodes)
    for t in snapshot.tasks:
        procs[t.node] += 1
        if t.state == TaskState.KILLABLE:
            killable[t.node] += 1
    return procs, killable


def decision_record(decision: Decision, *, dry_run: bool = True) -> dict[str, Any]:
    """The JSON object of `prioomd audit --once --json` for one domain."""
    first = decision.candidates[0] if decision.candidates else None
    return {
        "domain": decision.domain,
        "victim_cgroup": first.victim_cgroup if first else None,
        "victim_pids": list(first.pids) if first else [],
        "kill_cgroup": first.kill_cgroup if first else None,
        "reason": decision.reason,
        "dry_run": dry_run,
        "outcome": decision.outcome,
        "walk": list(decision.walk),
        "candidates": [
            {"victim_cgroup": c.victim_cgroup, "pid": c.pid, "comm": c.comm,
             "badness": c.badness, "rss_bytes": c.rss_bytes, "kill_cgroup": c.kill_cgroup}
            for c in decision.candidates
        ],
        "backend": decision.backend,
    }


def tree_json(snapshot: Snapshot, decisions: Sequence[Decision], header: Mapping[str, Any]
              ) -> dict[str, Any]:
    procs, killable = counts(snapshot)
    victims: dict[str, list[str]] = {}
    for d in decisions:
        if d.candidates:
            victims.setdefault(d.candidates[0].victim_cgroup, []).append(d.domain)
    nodes = []
    for i, n in enumerate(snapshot.nodes):
        nodes.append({
            "path": n.path,
            "priority": n.priority.value if n.path != snapshot.domain else None,
            "priority_source": n.priority.source,
            "use_priority_oom": bool(n.use_priority_oom.value),
            "use_priority_oom_source": n.use_priority_oom.source,
            "usage_bytes": n.usage_bytes,
            "memory_max_bytes": n.memory_max_bytes,
            "oom_group": n.oom_group,
            "kill": n.kill.value,
            "kill_source": n.kill.source,
            "procs": procs[i],
            "killable": killable[i],
            "victim_of": victims.get(n.path, []),
        })
    return {**header, "nodes": nodes,
            "domains": [decision_record(d) for d in decisions]}


def tree_text(snapshot: Snapshot, decisions: Sequence[Decision], header_lines: Sequence[str]
              ) -> str:
    procs, killable = counts(snapshot)
    depth = [0] * len(snapshot.nodes)
    for i, n in enumerate(snapshot.nodes):
        if n.parent >= 0:
            depth[i] = depth[n.parent] + 1
    marks: dict[str, list[str]] = {}
    for d in decisions:
        if d.candidates:
            c = d.candidates[0]
            what = f"kill cgroup {c.kill_cgroup}" if c.kill_cgroup else f"pid {c.pid}"
            marks.setdefault(c.victim_cgroup, []).append(f"<- victim of {d.domain}: {what}")
    names = [("  " * depth[i]) + show(n.path if i == 0 else n.path.rsplit("/", 1)[-1])
             for i, n in enumerate(snapshot.nodes)]
    width = max([len(x) for x in names] + [6])
    lines = list(header_lines)
    lines.append(f"{'CGROUP':<{width}}  PRIO  UPO  {'MEMORY':>10}  {'MAX':>10}  PROCS  KILL  "
                 "PRIORITY FROM")
    for i, n in enumerate(snapshot.nodes):
        prio = "-" if i == 0 else str(n.priority.value)
        upo = "on" if n.use_priority_oom.value else "-"
        line = (f"{names[i]:<{width}}  {prio:>4}  {upo:>3}  {fmt_bytes(n.usage_bytes):>10}  "
                f"{fmt_bytes(n.memory_max_bytes):>10}  {procs[i]:>5}  {killable[i]:>4}  "
                f"{n.priority.source if i else n.use_priority_oom.source}")
        for m in marks.get(n.path, []):
            line += f"  {m}"
        lines.append(line)
    for d in decisions:
        lines.append(f"domain {d.domain}: {d.outcome}: {d.reason}")
    if not decisions:
        lines.append("no OOM domain has use_priority_oom on: nothing would be chosen by "
                     "priority (enable [root] use_priority_oom in the config)")
    return "\n".join(show(line) for line in lines)
