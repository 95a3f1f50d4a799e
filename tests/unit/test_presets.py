"""etc/presets: every shipped preset is a valid configuration on its own, and the
choices its comments explain are the ones it makes (the order itself is checked on a
real kernel: tests/vm/guest/test_presets.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prioomd import config

PRESETS = Path(__file__).resolve().parents[2] / "etc" / "presets"


def rules(name: str) -> dict[str, config.Rule]:
    cfg = config.load_config(PRESETS / name)
    assert cfg.root.use_priority_oom is True
    return {r.path: r for r in cfg.rules}


@pytest.mark.parametrize("name", ["systemd-host.toml", "kubernetes-node.toml"])
def test_preset_is_valid_and_documented(name):
    text = (PRESETS / name).read_text()
    assert rules(name) and text.startswith("# prioomd preset:")


def test_systemd_host_order():
    r = rules("systemd-host.toml")
    prio = {p: r[p].priority for p in ("/init.scope", "/system.slice", "/machine.slice",
                                       "/user.slice")}
    assert prio["/init.scope"] > prio["/system.slice"] > prio["/machine.slice"] \
        > prio["/user.slice"]
    for unit in ("sshd", "systemd-journald", "containerd"):
        assert r[f"/system.slice/{unit}.service"].priority > r["/system.slice/*"].priority


@pytest.mark.parametrize("kubepods, guaranteed, burstable, besteffort", [
    ("/kubepods.slice", "/kubepods.slice/kubepods-pod*.slice",
     "/kubepods.slice/kubepods-burstable.slice", "/kubepods.slice/kubepods-besteffort.slice"),
    ("/kubepods", "/kubepods/pod*", "/kubepods/burstable", "/kubepods/besteffort"),
])
def test_kubernetes_node_order_for_each_driver(kubepods, guaranteed, burstable, besteffort):
    r = rules("kubernetes-node.toml")
    assert r[kubepods].use_priority_oom is True  # a limit domain as well as the root
    assert r["/system.slice"].priority > r[kubepods].priority > r["/user.slice"].priority
    assert r[guaranteed].priority > r[burstable].priority > r[besteffort].priority
    for unit in ("kubelet", "containerd", "crio"):
        assert r[f"/system.slice/{unit}.service"].priority == 12
