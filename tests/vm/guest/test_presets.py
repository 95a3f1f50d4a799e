"""The shipped presets (etc/presets/) on a real kernel: a kubelet-shaped cgroup tree for
each cgroup driver, real memory in every leaf, and `prioomd audit --once --json`'s
ranked victims, which are the order successive OOMs would kill in.

The tree is built under the test's own cgroup and prioomd is pointed at it
(--cgroup-root), so the presets' paths (/kubepods.slice/..., /system.slice/...) match
as they would on a node. Sizes are chosen so that size alone would give another order:
priority must decide across classes and memory.current only within one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scenario import Scenario

PRESETS = Path(__file__).resolve().parents[3] / "etc" / "presets"
G1, G2 = "0f1e2d3c_aaaa_4bbb_8ccc_000000000001", "0f1e2d3c_aaaa_4bbb_8ccc_000000000002"
BU1, BU2 = "0f1e2d3c_aaaa_4bbb_8ccc_000000000003", "0f1e2d3c_aaaa_4bbb_8ccc_000000000004"
BE = "0f1e2d3c_aaaa_4bbb_8ccc_000000000005"
CID = "4f3c2b1a" * 8  # a container id: 64 hex digits

# The node's own cgroups, the same under both drivers: (leaf, MiB).
NODE = {
    "init": ("init.scope", 1),
    "kubelet": ("system.slice/kubelet.service", 10),
    "containerd": ("system.slice/containerd.service", 7),
    "sshd": ("system.slice/sshd.service", 2),
    "cron": ("system.slice/cron.service", 3),
    "session": ("user.slice/user-1000.slice/session-1.scope", 6),
}


def systemd_driver() -> tuple[str, dict[str, tuple[str, int]]]:
    k = "kubepods.slice"
    pods = {
        "g1": (f"{k}/kubepods-pod{G1}.slice/cri-containerd-{CID[:60]}01.scope", 40),
        "g2": (f"{k}/kubepods-pod{G2}.slice/cri-containerd-{CID[:60]}02.scope", 8),
        "bu1": (f"{k}/kubepods-burstable.slice/kubepods-burstable-pod{BU1}.slice/"
                f"cri-containerd-{CID[:60]}03.scope", 12),
        "bu2": (f"{k}/kubepods-burstable.slice/kubepods-burstable-pod{BU2}.slice/"
                f"cri-containerd-{CID[:60]}04.scope", 20),
        "be": (f"{k}/kubepods-besteffort.slice/kubepods-besteffort-pod{BE}.slice/"
               f"cri-containerd-{CID[:60]}05.scope", 4),
    }
    return k, {**NODE, **pods}


def cgroupfs_driver() -> tuple[str, dict[str, tuple[str, int]]]:
    def uid(u: str) -> str:
        return u.replace("_", "-")  # the cgroupfs driver keeps the uid's dashes

    pods = {
        "g1": (f"kubepods/pod{uid(G1)}/{CID[:62]}01", 40),
        "g2": (f"kubepods/pod{uid(G2)}/{CID[:62]}02", 8),
        "bu1": (f"kubepods/burstable/pod{uid(BU1)}/{CID[:62]}03", 12),
        # CRI-O: the container beside its conmon, which is larger but must go after it
        "bu2": (f"kubepods/burstable/pod{uid(BU2)}/crio-{CID[:62]}04", 20),
        "conmon": (f"kubepods/burstable/pod{uid(BU2)}/crio-conmon-{CID[:62]}04", 24),
        "be": (f"kubepods/besteffort/pod{uid(BE)}/{CID[:62]}05", 4),
    }
    return "kubepods", {**NODE, **pods}


def audit(root: Path, conf: Path) -> dict[str, dict]:
    r = subprocess.run([sys.executable, "-m", "prioomd", "audit", "--once", "--json",
                        "--cgroup-root", str(root), "--config", str(conf)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    return {rec["domain"]: rec for rec in map(json.loads, r.stdout.splitlines())}


def order(rec: dict, leaves: dict[str, tuple[str, int]]) -> list[str]:
    """The ranked victims of one domain, as the test's names of their leaves."""
    names = {"/" + path: name for name, (path, _) in leaves.items()}
    return [names.get(c["victim_cgroup"], c["victim_cgroup"]) for c in rec["candidates"]]


@pytest.mark.parametrize("driver", [systemd_driver, cgroupfs_driver])
def test_kubernetes_node_preset_victim_order(driver, cg_parent: Path, tmp_path: Path) -> None:
    kubepods, leaves = driver()
    conf = tmp_path / "prioomd.toml"
    # the preset as shipped, plus enough ranked victims to see the whole order
    conf.write_text((PRESETS / "kubernetes-node.toml").read_text()
                    + "\n[daemon]\nmax_candidates = 20\n")
    tree = {path: {} for path, _ in leaves.values()}
    tree[kubepods] = {"memory.max": "400M"}  # node allocatable
    with Scenario(tree, base=cg_parent) as sc:
        for name, (path, mib) in leaves.items():
            sc.hog(path, f"{mib}M", name=name)
        recs = audit(cg_parent, conf)
        assert set(recs) == {"/", f"/{kubepods}"}, recs.keys()
        pods = ["be", "bu2", "bu1", "g1", "g2"]
        if "conmon" in leaves:
            pods = ["be", "bu2", "conmon", "bu1", "g1", "g2"]
        node = ["cron", "kubelet", "containerd", "sshd", "init"]
        print(driver.__name__, "root:", order(recs["/"], leaves))
        print(driver.__name__, f"/{kubepods}:", order(recs[f"/{kubepods}"], leaves))
        assert order(recs["/"], leaves) == ["session", *pods, *node]
        assert order(recs[f"/{kubepods}"], leaves) == pods
        assert recs["/"]["walk"][:2] == ["/", "/user.slice"]


def test_systemd_host_preset_victim_order(cg_parent: Path, tmp_path: Path) -> None:
    leaves = {
        **{k: v for k, v in NODE.items() if k != "kubelet"},
        "journald": ("system.slice/systemd-journald.service", 5),
        "nspawn": ("machine.slice/machine-web.scope", 30),
        "app": ("user.slice/user-1000.slice/user@1000.service/app.slice/app-x.scope", 9),
    }
    conf = tmp_path / "prioomd.toml"
    conf.write_text((PRESETS / "systemd-host.toml").read_text()
                    + "\n[daemon]\nmax_candidates = 20\n")
    with Scenario({path: {} for path, _ in leaves.values()}, base=cg_parent) as sc:
        for name, (path, mib) in leaves.items():
            sc.hog(path, f"{mib}M", name=name)
        rec = audit(cg_parent, conf)["/"]
        print("systemd-host root:", order(rec, leaves))
        # user.slice (2): the user manager's apps (0) before the session scope (8);
        # machine.slice (4); system.slice (10): cron (8) before the containerd (11),
        # then journald and sshd (12, larger first); init.scope (12) last.
        assert order(rec, leaves) == ["app", "session", "nspawn", "cron", "containerd",
                                      "journald", "sshd", "init"]
