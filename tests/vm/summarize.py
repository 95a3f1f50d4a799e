"""Summarize the daemon's kills in the VM scenarios (the audit records they kept).

    python3 tests/vm/summarize.py .kh-out/audit.jsonl

One line per scenario and kill: victim, outcome, detection → SIGKILL sent, and
SIGKILL → exit confirmed (the memory freed: process_mrelease runs in between).
"""

from __future__ import annotations

import json
import statistics
import sys


def main(path: str) -> int:
    try:
        with open(path) as f:
            recs = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        print(f"summarize: no {path}")
        return 0
    kills = [r for r in recs if r.get("kind") == "decision" and r.get("outcome") == "killed"]
    for r in kills:
        print(f"{r['test']:<40} {r['domain']:<6} {r['victim_cgroup'] or '-':<10} "
              f"{r['trigger']:<22} detect->signal {r['t_detect_to_signal_ms']} ms, "
              f"signal->exit {r['t_signal_to_exit_ms']} ms, freed {r['freed_bytes']} B")
    for key in ("t_detect_to_signal_ms", "t_signal_to_exit_ms"):
        vals = [r[key] for r in kills if r.get(key) is not None]
        if vals:
            print(f"{key}: n={len(vals)} median {statistics.median(vals):.1f} "
                  f"max {max(vals):.1f}")
    misses = [r for r in recs if r.get("kind") == "miss"]
    print(f"kills {len(kills)}, misses {len(misses)} "
          f"({', '.join(sorted({r['test'] for r in misses})) or 'none'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else ".kh-out/audit.jsonl"))
