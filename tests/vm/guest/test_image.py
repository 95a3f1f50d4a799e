"""The container image's root filesystem, run on a real kernel against a real cgroup
tree: tests/image/check.sh builds the image, mounts it and boots this guest with
PRIOOMD_IMAGE_ROOTFS set. The image's own prioomd, Python and C walk then run in a
chroot (as a runtime's chroot isolation would run them), with the guest's /proc and
cgroup2 tree bound in, and must pick the victims the shipped Kubernetes preset says.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from scenario import Scenario

ROOTFS = os.environ.get("PRIOOMD_IMAGE_ROOTFS", "")
pytestmark = pytest.mark.skipif(not ROOTFS, reason="needs PRIOOMD_IMAGE_ROOTFS: run by "
                                "tests/image/check.sh, which builds the image first")

PRESET = "/etc/prioomd/presets/kubernetes-node.toml"  # inside the image


def in_image(*argv: str) -> subprocess.CompletedProcess[str]:
    script = ('set -e; r="$1"; shift; mount --rbind /proc "$r/proc"; '
              'mount --rbind /sys "$r/sys"; mount --rbind /dev "$r/dev"; '
              'exec chroot "$r" env PATH=/opt/prioomd/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"')
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                           "sh", ROOTFS, *argv], capture_output=True, text=True, timeout=300,
                          check=False)


def test_image_runs_the_c_walk_here():
    r = in_image("prioomd", "--version")
    assert r.returncode == 0, r.stderr
    assert "C core" in r.stdout
    print("image in guest:", r.stdout.strip(), "on", os.uname().release)


def test_image_audit_on_a_kubelet_tree(cg_parent: Path):
    uid = "0f1e2d3c_aaaa_4bbb_8ccc_00000000000"
    leaves = {
        "g": f"kubepods.slice/kubepods-pod{uid}1.slice/cri-containerd-a.scope",
        "bu": f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}2.slice/"
              "cri-containerd-b.scope",
        "be": f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}3.slice/"
              "cri-containerd-c.scope",
        "kubelet": "system.slice/kubelet.service",
    }
    sizes = {"g": "32M", "bu": "16M", "be": "4M", "kubelet": "8M"}
    with Scenario({p: {} for p in leaves.values()}, base=cg_parent) as sc:
        for name, path in leaves.items():
            sc.hog(path, sizes[name], name=name)
        # the tree as the image sees it: the guest's cgroup2 mount, bound into the chroot
        r = in_image("prioomd", "audit", "--once", "--json", "--config", PRESET,
                     "--cgroup-root", str(cg_parent))
        assert r.returncode == 0, r.stderr
        recs = {rec["domain"]: rec for rec in map(json.loads, r.stdout.splitlines())}
        rec = recs["/"]
        names = {"/" + p: n for n, p in leaves.items()}
        got = [names[c["victim_cgroup"]] for c in rec["candidates"]]
        print("image in guest, kubernetes-node preset, root:", got, "walk", rec["backend"])
        assert got == ["be", "bu", "g", "kubelet"]
        assert rec["backend"] == "c"
