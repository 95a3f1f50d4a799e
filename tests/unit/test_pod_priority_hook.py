"""deploy/kubernetes/pod-priority-hook.py: the annotation prioomd.io/priority of a pod
becomes the trusted.prioomd.priority xattr of its cgroup, under either driver; hostile
annotations and uids are skipped."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import pytest

HOOK_PATH = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "pod-priority-hook.py"
_spec = importlib.util.spec_from_file_location("pod_priority_hook", HOOK_PATH)
assert _spec is not None and _spec.loader is not None
hook = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hook)

UID = "0f1e2d3c-aaaa-4bbb-8ccc-000000000001"


def pod(uid=UID, qos="Burstable", value="7", name="web"):
    meta = {"uid": uid, "namespace": "ns", "name": name}
    if value is not None:
        meta["annotations"] = {hook.ANNOTATION: value}
    return {"metadata": meta, "status": {"qosClass": qos}}


@pytest.mark.parametrize("value, want", [
    ("0", 0), ("12", 12), ("07", 7), ("13", None), ("-1", None), ("", None), (" 5", None),
    ("5\n", None), ("٣", None), ("100", None), (5, None), (None, None), ("1e1", None)])
def test_parse_priority(value, want):
    assert hook.parse_priority(value) == want


def test_pod_cgroups_for_each_class_and_driver():
    under = UID.replace("-", "_")
    assert hook.pod_cgroups(UID, "Guaranteed") == [
        f"/kubepods.slice/kubepods-pod{under}.slice", f"/kubepods/pod{UID}"]
    assert hook.pod_cgroups(UID, "BestEffort") == [
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{under}.slice",
        f"/kubepods/besteffort/pod{UID}"]


@pytest.mark.parametrize("uid, qos", [("../../etc", "Burstable"), (UID + "/x", "Burstable"),
                                       (UID, "Privileged"), (None, "Burstable")])
def test_hostile_uid_or_class_gives_no_path(uid, qos):
    assert hook.pod_cgroups(uid, qos) == []


@pytest.mark.parametrize("driver", ["systemd", "cgroupfs"])
def test_apply_writes_the_xattr_that_prioomd_reads(fake_root, driver, caplog):
    systemd, cgroupfs = hook.pod_cgroups(UID, "Burstable")
    path = systemd if driver == "systemd" else cgroupfs
    os.makedirs(os.path.join(fake_root, path.lstrip("/")))
    pods = {"items": [pod(), pod(uid="0f1e2d3c-aaaa-4bbb-8ccc-000000000002", value="99",
                                  name="evil"), pod(value=None, name="plain")]}
    with caplog.at_level(logging.INFO):
        assert hook.apply(fake_root, pods) == 1
        assert hook.apply(fake_root, pods) == 0  # unchanged: nothing rewritten
    assert "ns/evil" in caplog.text and "not an integer" in caplog.text
    assert os.getxattr(os.path.join(fake_root, path.lstrip("/")), hook.XATTR) == b"7"


def test_a_pod_without_a_cgroup_here_is_skipped(fake_root):
    assert hook.apply(fake_root, {"items": [pod()]}) == 0
