#!/bin/bash
# Set up the real-kernel test tier (tests/vm) on a Debian 12 host, as root.
#
#   bash tests/vm/kh/setup.sh [SUITE...]      e.g. setup.sh bookworm trixie
#
# Idempotent.  It installs the host tools (qemu, busybox-static, kmod, cpio, xz, zstd)
# if any is missing, then, for each Debian SUITE (default: the host's own), fetches the
# kernel named by that suite's `linux-image-amd64` meta package with `apt-get download`,
# unpacks it with `dpkg -x` into
#   $KH_CACHE/<kver>/root/            (KH_CACHE defaults to /var/tmp/prioomd-kh)
# runs `depmod -b`, and builds the base initramfs
#   $KH_CACHE/<kver>/initramfs-base.cpio.gz   (busybox + virtio/9p/overlay modules)
# /boot and the host's module tree are never touched.  A cached kernel is not downloaded
# again.  A suite other than the host's is read through a private apt list in
# $KH_CACHE/apt-<suite> (the host's mirror, the host's apt configuration untouched).
# $KH_CACHE/suite-<suite> names each suite's kernel; $KH_CACHE/current names the host
# suite's, which run.py boots by default (KH_KVER picks another).
#
# Environment:
#   KH_CACHE   cache directory (default /var/tmp/prioomd-kh)
#   KH_KPKG    kernel package to use instead of resolving linux-image-amd64 for the
#              host's suite (a numbered linux-image-<abi>-amd64); only if you must pin.
#
# The initramfs scripts (init, stage2, job) are *not* baked in here: run.py appends them
# to the base image on every boot, so editing them needs no new setup.
set -euo pipefail

KH_CACHE=${KH_CACHE:-/var/tmp/prioomd-kh}
PKGS=(qemu-system-x86 busybox-static kmod cpio xz-utils zstd)
# Modules the guest needs before it can reach its root filesystem, in any order:
# modprobe --show-depends gives each one's dependencies in load order.
INITRD_MODULES=(virtio_pci 9pnet_virtio 9p overlay)

t_start=$(date +%s.%N)
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
log() { echo "kh-setup: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "must run as root (apt-get, dpkg -x of a kernel image)"
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# The apt options of the suite being set up: none for the host's own, a private list
# for another (see apt_suite).
apt_opts=()
apt_updated=" "
apt_update() {
    local key="${apt_opts[*]:-host}"
    if [[ "$apt_updated" != *" $key "* ]]; then
        local t; t=$(now)
        apt-get "${apt_opts[@]}" update -qq
        apt_updated+="$key "
        log "apt-get update${apt_opts[*]:+ ($suite)}: $(since "$t")"
    fi
}

# --- 1. host packages -------------------------------------------------------------
t=$(now)
missing=()
for p in "${PKGS[@]}"; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$st" = "install ok installed" ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    apt_update
    apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
    log "packages installed: $(since "$t")"
else
    log "packages present: $(since "$t")"
fi

host_suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
suites=("$@")
[ "${#suites[@]}" -gt 0 ] || suites=("$host_suite")

# Point apt_opts at SUITE: nothing for the host's suite; otherwise a private source
# list, package lists and cache under $KH_CACHE/apt-SUITE, on the host's own mirror.
apt_suite() {
    suite=$1
    apt_opts=()
    [ "$suite" = "$host_suite" ] && return 0
    local a=$KH_CACHE/apt-$suite uri
    mkdir -p "$a/lists/partial" "$a/cache/archives/partial"
    uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    uri=${uri:-http://deb.debian.org/debian}
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" \
        > "$a/sources.list"
    apt_opts=(-o "Dir::Etc::sourcelist=$a/sources.list" -o "Dir::Etc::sourceparts=-"
              -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache")
    if [ -z "$(ls "$a/lists" 2>/dev/null | grep -v partial)" ]; then
        apt_update
    fi
}

# Fetch, unpack and prepare SUITE's kernel; sets kver and kdir.
setup_kernel() {
    # --- 2. which kernel ----------------------------------------------------------------
    resolve_kpkg() {
        # The numbered ABI name changes with every Debian security update, and old .debs
        # leave the mirror: always go through the meta package.
        apt-cache "${apt_opts[@]}" depends linux-image-amd64 2>/dev/null |
            awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
    }
    apt_suite "$1"
    kpkg=
    [ "$suite" = "$host_suite" ] && kpkg=${KH_KPKG:-}
    if [ -z "$kpkg" ]; then
        kpkg=$(resolve_kpkg || true)
        if [ -z "$kpkg" ]; then
            apt_update
            kpkg=$(resolve_kpkg || true)
        fi
    fi
    if [ -z "$kpkg" ]; then
        log "cannot resolve $suite's linux-image-amd64 to a kernel package"
        exit 1
    fi
    kver=${kpkg#linux-image-}
    kdir=$KH_CACHE/$kver
    mkdir -p "$KH_CACHE"

    # --- 3. fetch and unpack ---------------------------------------------------------------
    if [ -f "$kdir/root/lib/modules/$kver/modules.dep" ]; then
        log "kernel $kver cached in $kdir"
    else
        t=$(now)
        tmp=$KH_CACHE/.tmp-$kver
        rm -rf "$tmp" "$kdir"
        mkdir -p "$tmp/deb"
        # apt-get download as root drops to _apt, which must be able to write the dir.
        chown _apt "$tmp/deb" 2>/dev/null || true
        if ! (cd "$tmp/deb" && apt-get "${apt_opts[@]}" download -qq "$kpkg"); then
            log "download failed; refreshing the package lists and retrying"
            apt_update
            # The meta package may point to a newer ABI after the update.
            if [ -z "${KH_KPKG:-}" ] || [ "$suite" != "$host_suite" ]; then
                kpkg=$(resolve_kpkg)
                kver=${kpkg#linux-image-}
                kdir=$KH_CACHE/$kver
                rm -rf "$kdir"
            fi
            (cd "$tmp/deb" && apt-get "${apt_opts[@]}" download -qq "$kpkg")
        fi
        log "downloaded $kpkg: $(since "$t")"
        t=$(now)
        dpkg -x "$tmp"/deb/*.deb "$tmp/root"
        # Newer (trixie) kernel debs ship modules only under usr/lib/modules.
        if [ ! -e "$tmp/root/lib" ] && [ -d "$tmp/root/usr/lib/modules" ]; then
            ln -s usr/lib "$tmp/root/lib"
        fi
        depmod -b "$tmp/root" "$kver"
        rm -rf "$tmp/deb"
        mv "$tmp" "$kdir"
        log "unpacked + depmod: $(since "$t")"
    fi

    # --- 4. an uncompressed kernel for qemu's PVH entry ---------------------------------------
    # qemu loads an ELF vmlinux with a PVH entry note directly; a bzImage first decompresses
    # itself (xz) under TCG, which costs 5-6 s of every boot.  Falls back to the bzImage.
    vmlinux=$kdir/vmlinux
    if [ ! -f "$vmlinux" ] && [ ! -f "$kdir/.no-pvh" ]; then
        t=$(now)
        if python3 - "$kdir/root/boot/vmlinuz-$kver" "$vmlinux.tmp" <<'PY'
import struct
import subprocess
import sys

src, dst = sys.argv[1:]
data = open(src, "rb").read()


def has_pvh_note(elf: bytes) -> bool:
    """An ELF64 PT_NOTE with the Xen note XEN_ELFNOTE_PHYS32_ENTRY (18)."""
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != 4:
            continue
        off, end = p_offset, p_offset + p_filesz
        while off + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, off)
            name = elf[off + 12 : off + 12 + namesz]
            if name == b"Xen\0" and ntype == 18:
                return True
            off += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


for magic, cmd in (
    (b"\xfd7zXZ\x00", ["xz", "-dc", "--single-stream"]),
    (b"\x28\xb5\x2f\xfd", ["zstd", "-dcq"]),
    (b"\x1f\x8b\x08", ["gzip", "-dc"]),
):
    off = data.find(magic)
    while off >= 0:
        out = subprocess.run(cmd, input=data[off:], capture_output=True).stdout
        if out[:4] == b"\x7fELF" and has_pvh_note(out):
            open(dst, "wb").write(out)
            sys.exit(0)
        off = data.find(magic, off + 1)
sys.exit(1)
PY
        then
            mv "$vmlinux.tmp" "$vmlinux"
            log "vmlinux with PVH entry extracted: $(since "$t")"
        else
            rm -f "$vmlinux.tmp"
            touch "$kdir/.no-pvh"
            log "no PVH-capable vmlinux in the image; booting the bzImage"
        fi
    fi

    # --- 5. base initramfs ------------------------------------------------------------------
    base=$kdir/initramfs-base.cpio.gz
    stamp="busybox=$(dpkg-query -W -f='${Version}' busybox-static) modules=${INITRD_MODULES[*]}"
    if [ -f "$base" ] && [ "$(cat "$kdir/.initramfs-stamp" 2>/dev/null)" = "$stamp" ]; then
        log "base initramfs cached"
    else
        t=$(now)
        stage=$(mktemp -d "$KH_CACHE/.initramfs.XXXXXX")
        mkdir -p "$stage"/{bin,dev,proc,sys,newroot,lower,upper,kh/modules}
        cp /bin/busybox "$stage/bin/busybox"
        : > "$stage/kh/modules.order"
        for m in "${INITRD_MODULES[@]}"; do
            # Lines look like "insmod /path/x.ko[.xz|.zst] [params]"; "builtin x" needs nothing.
            modprobe -d "$kdir/root" -S "$kver" --show-depends "$m" |
                awk '$1 == "insmod" { print $2 }'
        done | while read -r ko; do
            name=$(basename "$ko")
            name=${name%.xz}
            name=${name%.zst}
            if grep -qxF "$name" "$stage/kh/modules.order"; then
                continue
            fi
            # busybox insmod wants plain .ko files.
            case "$ko" in
                *.xz) xz -dc "$ko" > "$stage/kh/modules/$name" ;;
                *.zst) zstd -qdc "$ko" > "$stage/kh/modules/$name" ;;
                *) cp "$ko" "$stage/kh/modules/$name" ;;
            esac
            echo "$name" >> "$stage/kh/modules.order"
        done
        (cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -1) > "$base.tmp"
        mv "$base.tmp" "$base"
        echo "$stamp" > "$kdir/.initramfs-stamp"
        log "base initramfs ($(tr '\n' ' ' < "$stage/kh/modules.order")): $(since "$t")"
        rm -rf "$stage"
    fi
    touch "$kdir/.complete"
    echo "$kver" > "$KH_CACHE/suite-$suite.tmp"
    mv "$KH_CACHE/suite-$suite.tmp" "$KH_CACHE/suite-$suite"
    if [ "$suite" = "$host_suite" ]; then
        echo "$kver" > "$KH_CACHE/current.tmp"
        mv "$KH_CACHE/current.tmp" "$KH_CACHE/current"
    fi
    log "kernel $kver ($suite) ready in $kdir"
}

keep=" jobs "
for s in "${suites[@]}"; do
    setup_kernel "$s"
    keep+="$kver "
done
# Kernels left by an earlier ABI (about 450 MB each): all but those some suite or
# `current` names now.
for f in "$KH_CACHE"/current "$KH_CACHE"/suite-*; do
    if [ -f "$f" ]; then keep+="$(cat "$f") "; fi
done
for d in "$KH_CACHE"/*/; do
    d=${d%/}
    case "$keep" in
        *" $(basename "$d") "*) ;;
        *) if [ -f "$d/.complete" ]; then log "removing old kernel $d"; rm -rf "$d"; fi ;;
    esac
done

log "kernels ready (${suites[*]}); setup took $(since "$t_start")"
