"""deploy/kubernetes: the manifests validate offline against the Kubernetes schemas
(kubernetes-validate ships them), the DaemonSet asks for what prioomd needs and
nothing it does not, and the ConfigMap is the shipped preset, verbatim and valid."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

from prioomd import config

yaml = pytest.importorskip("yaml")
kv = pytest.importorskip("kubernetes_validate", reason="pip install '.[dev]'")

KDIR = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
VERSIONS = ("1.28.0", "1.37.0")  # the first kubelet that sets memory.oom.group; the newest


def docs() -> list[dict]:
    out = []
    for path in sorted(KDIR.glob("*.yaml")):
        out += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def by_kind(kind: str) -> dict:
    (doc,) = [d for d in docs() if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly(version):
    kinds = set()
    for doc in docs():
        kv.validate(doc, version, strict=True)
        kinds.add(doc["kind"])
    assert kinds == {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                     "ConfigMap", "DaemonSet"}


def test_the_validator_catches_a_mistake():
    bad = copy.deepcopy(by_kind("DaemonSet"))
    bad["spec"]["template"]["spec"]["hostPid"] = True  # wrong case: not a field
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, VERSIONS[-1], strict=True)


def test_daemonset_has_what_prioomd_needs():
    spec = by_kind("DaemonSet")["spec"]["template"]["spec"]
    assert spec["hostPID"] is True
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in spec["tolerations"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["cgroup"]["hostPath"]["path"] == "/sys/fs/cgroup"
    assert volumes["proc"]["hostPath"]["path"] == "/proc"
    daemon = next(c for c in spec["containers"] if c["name"] == "prioomd")
    caps = daemon["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"]
    assert {"KILL", "SYS_ADMIN", "SYS_RESOURCE"} <= set(caps["add"])
    assert "privileged" not in daemon["securityContext"]
    for c in spec["containers"]:  # Guaranteed: requests = limits
        assert c["resources"]["requests"] == c["resources"]["limits"], c["name"]
    mounts = {m["name"]: m["mountPath"] for m in daemon["volumeMounts"]}
    assert mounts["cgroup"] == "/sys/fs/cgroup"
    assert daemon["args"][:3] == ["run", "--config", "/etc/prioomd/prioomd.toml"]
    assert spec["serviceAccountName"] == by_kind("ServiceAccount")["metadata"]["name"]


def test_rbac_is_read_only_on_pods():
    (rule,) = by_kind("ClusterRole")["rules"]
    assert rule["resources"] == ["pods"] and set(rule["verbs"]) == {"get", "list", "watch"}


def test_configmap_is_the_preset_and_valid():
    spec = importlib.util.spec_from_file_location("mk", KDIR / "make-configmap.py")
    assert spec is not None and spec.loader is not None
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    assert (KDIR / "configmap.yaml").read_text() == mk.render(), \
        "run python3 deploy/kubernetes/make-configmap.py"
    text = by_kind("ConfigMap")["data"]["prioomd.toml"]
    assert text.startswith(mk.PRESET.read_text())
    cfg = config.parse_config(text, "configmap.yaml")
    assert cfg.root.use_priority_oom and cfg.metrics.enabled
    assert any(r.path == "/kubepods.slice" and r.use_priority_oom for r in cfg.rules)


def test_daemonset_arguments_are_ones_prioomd_accepts():
    from prioomd import cli
    spec = by_kind("DaemonSet")["spec"]["template"]["spec"]
    daemon = next(c for c in spec["containers"] if c["name"] == "prioomd")
    args = cli.build_parser().parse_args(daemon["args"])
    assert args.command == "run" and args.config == "/etc/prioomd/prioomd.toml"
    hook = next(c for c in spec["containers"] if c["name"] == "pod-priority-hook")
    assert hook["command"][-1] == "/usr/local/lib/prioomd/pod-priority-hook.py"
    assert "COPY deploy/kubernetes/pod-priority-hook.py " + hook["command"][-1] in \
        (KDIR.parents[1] / "Dockerfile").read_text()
