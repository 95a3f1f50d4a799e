#!/usr/bin/env bash
# Set up a fresh Debian 12 machine (root) for prioomd development, tests and CI:
# the apt packages, a venv at .venv with prioomd installed (C core required),
# (the kernel + initramfs of the real-kernel tier only with PRIOOMD_VM_SETUP=1). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
t0=$(date +%s)

apt_pkgs=(libsystemd-dev pkg-config gcc)   # systemd-python builds against libsystemd
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
PRIOOMD_REQUIRE_C=1 .venv/bin/pip install -q --disable-pip-version-check -e ".[daemon,metrics,test,dev]"
.venv/bin/python -c 'import prioomd._select' \
    || { echo "setup: the C core did not build" >&2; exit 1; }

# The test kernel is not part of running prioomd: tests/vm/run-suite.sh (called by
# tests/run.sh) fetches it on first use. PRIOOMD_VM_SETUP=1 fetches it here already.
if [ "${PRIOOMD_VM_SETUP:-0}" = 1 ] && [ "${PRIOOMD_SKIP_VM_SETUP:-0}" != 1 ]; then
    bash tests/vm/kh/setup.sh
fi
echo "setup: done in $(( $(date +%s) - t0 )) s ($top)"
