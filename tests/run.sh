#!/usr/bin/env bash
# Run every test tier: lint and types, unit + host (this machine's cgroup v2 tree),
# then the real-kernel tier in qemu guests, then the container image (tests/image).
# Run tests/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
.venv/bin/ruff check prioomd tests bench deploy man
.venv/bin/mypy prioomd
.venv/bin/python -m pytest tests/unit tests/host -q -p no:cacheprovider
t1=$(date +%s)
echo "fast tiers: $((t1 - t0)) s"
rm -rf .kh-out && mkdir -p .kh-out
# The daemon scenarios are sized for a 1 GiB guest; their audit records land in
# .kh-out for the kill-latency summary below.
export KH_MEM=${KH_MEM:-1G} PRIOOMD_VM_RESULTS=$PWD/.kh-out
rc=0
bash tests/vm/run-suite.sh || rc=$?
python3 tests/vm/summarize.py .kh-out/audit.jsonl || true
t2=$(date +%s)
echo "real-kernel tier: $((t2 - t1)) s"
# The container image: hadolint, build (unit tests inside), run, run in the guest.
irc=0
bash tests/image/check.sh || irc=$?
echo "image tier: $(( $(date +%s) - t2 )) s"
t2=$(date +%s)
# prioomd beside the kernel and the peers, one fresh guest per case (bench/compare.py;
# the full run regenerates bench/RESULTS.md).  Fails only when a case could not run.
brc=0
bash bench/setup-peers.sh   # earlyoom, nohang, oomd, systemd-oomd from Debian (not started here)
.venv/bin/python bench/compare.py --quick || brc=$?
echo "benchmarks (--quick): $(( $(date +%s) - t2 )) s, in .kh-out/bench/RESULTS.md"
echo "all tiers: $(( $(date +%s) - t0 )) s"
[ "$rc" = 0 ] || exit "$rc"
[ "$irc" = 0 ] || exit "$irc"
exit "$brc"
