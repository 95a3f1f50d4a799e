#!/usr/bin/env bash
# Build the prioomd container image (Dockerfile at the top of the repo) as root.
#
#   bash deploy/image/build.sh [TAG]          # default tag localhost/prioomd:latest
#
# With buildah (vfs storage, chroot isolation: no daemon, no overlayfs, no user
# namespaces needed), else with podman. The base image
# (docker.io/library/debian:bookworm-slim) is used when present; otherwise, since a
# registry of images may be out of reach, it is made here from Debian's package
# mirror with mmdebstrap and stored under that name. pip inside the build uses this
# host's index and CA bundle (a TLS-intercepting proxy needs its CA).
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-localhost/prioomd:latest}
base=docker.io/library/debian:bookworm-slim
mirror=${PRIOOMD_DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' \
    /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
mirror=${mirror:-http://deb.debian.org/debian}
bah=(buildah --storage-driver vfs)

if ! command -v buildah >/dev/null; then
    # podman builds as buildah does; `docker build` cannot give RUN the CAP_SYS_ADMIN
    # that the unit tests' trusted.* xattrs need.
    command -v podman >/dev/null && exec podman build --cap-add CAP_SYS_ADMIN -t "$tag" .
    echo "build: needs buildah (apt-get install buildah) or podman" >&2
    exit 2
fi

if ! "${bah[@]}" inspect --type image "$base" >/dev/null 2>&1; then
    echo "build: making $base from $mirror with mmdebstrap"
    tmp=$(mktemp -d /var/tmp/prioomd-base.XXXXXX)
    trap 'rm -rf "$tmp"' EXIT
    # minbase, without docs, man pages, locales and apt lists, as Debian's slim images.
    mmdebstrap --quiet --variant=minbase --mode=root \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb' \
        bookworm "$tmp/rootfs.tar" "$mirror"
    c=$("${bah[@]}" from scratch)
    "${bah[@]}" add "$c" "$tmp/rootfs.tar" / >/dev/null
    "${bah[@]}" config --cmd /bin/bash "$c"
    "${bah[@]}" commit --quiet --rm "$c" "$base" >/dev/null
fi

args=()
index=$(python3 -m pip config get global.index-url 2>/dev/null || true)
index=${PIP_INDEX_URL:-$index}
[ -n "$index" ] && case $index in http*) args+=(--build-arg "PIP_INDEX_URL=$index") ;; esac
cert=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
cert=${cert:-/etc/ssl/certs/ca-certificates.crt}
if [ -n "$cert" ] && [ -r "$cert" ]; then
    args+=(-v "$cert:/run/prioomd-build-ca.crt:ro" --build-arg PIP_CERT=/run/prioomd-build-ca.crt)
fi
# CAP_SYS_ADMIN for the build's RUN steps: the unit tests write trusted.* xattrs on
# their fake cgroup trees (tmpfs), as prioomd reads them.
"${bah[@]}" bud --isolation chroot --pull-never --layers=false --cap-add CAP_SYS_ADMIN \
    "${args[@]}" -t "$tag" .
