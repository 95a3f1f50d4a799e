#!/bin/bash
# The real-kernel test tier: boots two qemu guests (TCG) on a Debian kernel.
#
#   bash tests/vm/run-suite.sh            (as root, from anywhere in the checkout)
#
# 1. tests/vm/kh/setup.sh: host tools + kernel + base initramfs, cached in
#    $KH_CACHE (/var/tmp/prioomd-kh); fast when cached.
# 2. Plain guest (a busybox shell as PID 1, cgroup2 with every controller), once per
#    kernel in KH_KERNELS:
#    pytest tests/vm/guest                 -> .kh-out/junit-plain[-<suite>].xml
# 3. psi=0 guest (plain, booted with psi=0):
#    pytest tests/vm/guest/test_no_psi.py  -> .kh-out/junit-nopsi.xml
# 4. systemd guest (systemd as PID 1):
#    pytest tests/vm/guest_systemd         -> .kh-out/junit-systemd.xml
# Exit status: 0 when every guest passes, else the first failing guest's status (124
# timeout, 125 guest died).  Needs the project's .venv at the top of the checkout.
#
# Environment: KH_MEM (plain and psi=0 guest RAM, default 512M), KH_SYSTEMD_MEM (1G),
# KH_TIMEOUT (per guest, seconds, default 900), KH_PYTEST_ARGS (extra pytest
# arguments for every guest, e.g. "-k oom -x"), KH_ONLY=plain|nopsi|systemd,
# KH_KERNELS (Debian suites whose kernels boot the plain guest, e.g. "bookworm trixie";
# default: the host's own; the psi=0 and systemd guests boot the first),
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
read -ra kernels <<< "${KH_KERNELS:-}"
bash tests/vm/kh/setup.sh "${kernels[@]}" || exit 2
if [ "${#kernels[@]}" -gt 0 ]; then
    export KH_KVER
    KH_KVER=$(cat "${KH_CACHE:-/var/tmp/prioomd-kh}/suite-${kernels[0]}") || exit 2
fi

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

rc=0 summary=()
# guest NAME KH_ONLY-NAME run.py-args... -- pytest-args...: boot one guest, time it.
guest() {
    local name=$1 only=$2 t r
    shift 2
    if [ -n "${KH_ONLY:-}" ] && [ "$KH_ONLY" != "$only" ]; then
        return
    fi
    echo "== $name guest" >&2
    t=$(date +%s.%N)
    "${run[@]}" "$@"
    r=$?
    summary+=("$(awk -v a="$t" -v b="$(date +%s.%N)" -v n="$name" -v r="$r" \
        'BEGIN { printf "%s guest %.1f s (exit %d)", n, b - a, r }')")
    if [ "$rc" = 0 ]; then rc=$r; fi
}

if [ "${#kernels[@]}" -le 1 ]; then
    guest plain plain -m "${KH_MEM:-512M}" -- \
        "${pytest[@]}" tests/vm/guest --junitxml="$out/junit-plain.xml" "${extra[@]}"
else
    for k in "${kernels[@]}"; do
        kver=$(cat "${KH_CACHE:-/var/tmp/prioomd-kh}/suite-$k")
        KH_KVER=$kver guest "plain $k ($kver)" plain -m "${KH_MEM:-512M}" -- \
            "${pytest[@]}" tests/vm/guest --junitxml="$out/junit-plain-$k.xml" "${extra[@]}"
    done
fi
guest "psi=0" nopsi -m "${KH_MEM:-512M}" --append psi=0 -- \
    "${pytest[@]}" tests/vm/guest/test_no_psi.py --junitxml="$out/junit-nopsi.xml" "${extra[@]}"
guest systemd systemd --systemd -m "${KH_SYSTEMD_MEM:-1G}" -- \
    "${pytest[@]}" tests/vm/guest_systemd --junitxml="$out/junit-systemd.xml" "${extra[@]}"

t2=$(date +%s.%N)
if [ "${#summary[@]}" -gt 0 ]; then printf 'run-suite: %s\n' "${summary[@]}" >&2; fi
awk -v a="$t0" -v b="$t1" -v c="$t2" -v r="$rc" 'BEGIN {
    printf "run-suite: setup %.1f s, total %.1f s, exit %d\n", b - a, c - a, r }' >&2
exit "$rc"
