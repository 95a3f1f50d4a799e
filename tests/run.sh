#!/usr/bin/env bash
# Run every test tier: lint, unit + host (this machine's cgroup v2 tree), then
# the real-kernel tier in a qemu guest. Run tests/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
.venv/bin/ruff check prioomd tests bench
.venv/bin/mypy prioomd
.venv/bin/python -m pytest tests/unit tests/host -q -p no:cacheprovider
echo "fast tiers: $(( $(date +%s) - t0 )) s"
bash tests/vm/run-suite.sh
echo "all tiers: $(( $(date +%s) - t0 )) s"
