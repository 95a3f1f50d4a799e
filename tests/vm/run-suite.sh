#!/bin/bash
# The real-kernel test tier: boots two qemu guests (TCG) on a Debian kernel.
#
#   bash tests/vm/run-suite.sh            (as root, from anywhere in the checkout)
#
# 1. tests/vm/kh/setup.sh: host tools + kernel + base initramfs, cached in
#    $KH_CACHE (/var/tmp/prioomd-kh); fast when cached.
# 2. Plain guest (bash as PID 1, cgroup2 with every controller at /sys/fs/cgroup):
#    pytest tests/vm/guest                 -> .kh-out/junit-plain.xml
# 3. systemd guest (systemd as PID 1):
#    pytest tests/vm/guest_systemd         -> .kh-out/junit-systemd.xml
# Exit status: 0 when both pass, else the first failing guest's status (124 timeout,
# 125 guest died).  Needs the project's .venv at the top of the checkout.
#
# Environment: KH_MEM (plain guest RAM, default 512M), KH_SYSTEMD_MEM (1G),
# KH_TIMEOUT (per guest, seconds, default 900), KH_PYTEST_ARGS (extra pytest
# arguments for both guests, e.g. "-k oom -x"), KH_ONLY=plain|systemd,
# KH_CONSOLE=1 / KH_VERBOSE=1 (see tests/vm/kh/run.py).
set -uo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top" || exit 2
py=.venv/bin/python
if [ ! -x "$py" ]; then
    echo "run-suite: $top/$py is missing; create the project's venv first" >&2
    exit 2
fi

t0=$(date +%s.%N)
bash tests/vm/kh/setup.sh || exit 2

# Compile on the host what the guests will import (the package, the tests with pytest's
# assertion rewriting): natively ~1 s, under TCG every guest would pay ~10x that again.
# The pyc files land in the checkout's __pycache__ dirs (git-ignored).
env -u PYTHONDONTWRITEBYTECODE "$py" -m compileall -q prioomd tests/vm > /dev/null
env -u PYTHONDONTWRITEBYTECODE PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 \
    "$py" -m pytest -p no:cacheprovider -q --collect-only tests/vm/guest tests/vm/guest_systemd \
    > /dev/null
t1=$(date +%s.%N)

out=.kh-out
mkdir -p "$out"
# Split KH_PYTEST_ARGS like a shell would (quotes allowed), without eval.
mapfile -t extra < <(python3 -c 'import os, shlex
for a in shlex.split(os.environ.get("KH_PYTEST_ARGS", "")): print(a)')
# No entry-point plugins in the guest: loading hypothesis' alone costs ~20 s under TCG.
run=(python3 tests/vm/kh/run.py -t "${KH_TIMEOUT:-900}" --rw "$out"
     --env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1)
pytest=("$py" -m pytest -p no:cacheprovider -q --durations=5)

rc_plain=0 rc_systemd=0
if [ "${KH_ONLY:-}" != systemd ]; then
    echo "== plain guest: tests/vm/guest" >&2
    "${run[@]}" -m "${KH_MEM:-512M}" -- \
        "${pytest[@]}" tests/vm/guest --junitxml="$out/junit-plain.xml" "${extra[@]}"
    rc_plain=$?
fi
t2=$(date +%s.%N)
if [ "${KH_ONLY:-}" != plain ]; then
    echo "== systemd guest: tests/vm/guest_systemd" >&2
    "${run[@]}" --systemd -m "${KH_SYSTEMD_MEM:-1G}" -- \
        "${pytest[@]}" tests/vm/guest_systemd --junitxml="$out/junit-systemd.xml" "${extra[@]}"
    rc_systemd=$?
fi
t3=$(date +%s.%N)

awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v p="$rc_plain" -v s="$rc_systemd" 'BEGIN {
    printf "run-suite: setup %.1f s, plain guest %.1f s (exit %d), systemd guest %.1f s (exit %d), total %.1f s\n",
        b - a, c - b, p, d - c, s, d - a }' >&2
if [ "$rc_plain" != 0 ]; then exit "$rc_plain"; fi
exit "$rc_systemd"
