#!/usr/bin/env bash
# The peer OOM killers that bench/compare.py measures, from Debian's packages:
# earlyoom, nohang, oomd and systemd-oomd.  They are installed with their services
# kept from starting on this host: a policy-rc.d that refuses every start is in place
# for the install only (one that was already there is left as it was).  Idempotent.
set -euo pipefail
pkgs=(earlyoom nohang oomd systemd-oomd)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
((${#missing[@]})) || exit 0
policy=/usr/sbin/policy-rc.d
ours=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# bench/setup-peers.sh: no service starts during this install\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    ours=1
fi
trap '[ "$ours" = 1 ] && rm -f "$policy"' EXIT
echo "setup-peers: apt-get install ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
