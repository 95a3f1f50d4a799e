"""attribution: kubelet cgroup paths parsed, kill counters written as xattrs."""

from __future__ import annotations

import os

import pytest

from prioomd import attribution
from prioomd.attribution import kube_ids, parse_counter

UID = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"
UID_ = UID.replace("-", "_")
CID = "ab" * 32


@pytest.mark.parametrize("path, want", [
    # systemd driver, containerd / CRI-O / docker
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/"
     f"cri-containerd-{CID}.scope",
     {"pod_uid": UID, "qos_class": "Burstable", "container_id": CID,
      "container_runtime": "containerd"}),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/"
     f"crio-{CID}.scope",
     {"pod_uid": UID, "qos_class": "BestEffort", "container_id": CID,
      "container_runtime": "cri-o"}),
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/docker-{CID}.scope",
     {"pod_uid": UID, "qos_class": "Guaranteed", "container_id": CID,
      "container_runtime": "docker"}),
    # the pod cgroup itself (a whole-pod kill)
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice",
     {"pod_uid": UID, "qos_class": "Burstable"}),
    # cgroupfs driver
    (f"/kubepods/burstable/pod{UID}/{CID}",
     {"pod_uid": UID, "qos_class": "Burstable", "container_id": CID}),
    (f"/kubepods/pod{UID}/{CID}", {"pod_uid": UID, "qos_class": "Guaranteed",
                                   "container_id": CID}),
    # under a prefix (a node-level slice), and a deeper cgroup of the container
    (f"/system.slice/kubelet/kubepods/besteffort/pod{UID}/{CID}/sub",
     {"pod_uid": UID, "qos_class": "BestEffort", "container_id": CID}),
])
def test_kubelet_layouts(path, want):
    assert kube_ids(path) == want


@pytest.mark.parametrize("path", [
    "/", "/system.slice/sshd.service", "/kubepods.slice", "/kubepods/burstable",
    f"/user.slice/kubepods-burstable-pod{UID_}.slice",  # not under kubepods
    f"/kubepods.slice/kubepods-burstable-pod{UID_}.slice",  # QoS level skipped
    f"/kubepods.slice/kubepods-besteffort.slice/kubepods-burstable-pod{UID_}.slice",
    f"/kubepods/burstable/pod{UID}x/{CID}",
    f"/kubepods/burstable/pod{UID.upper()}",
    f"/kubepods/burstable/x/pod{UID}",  # a tenant's name deeper down
    "/kubepods/burstable/pod" + "0" * 10_000,
])
def test_other_paths_are_not_pods(path):
    assert kube_ids(path) == {}


def test_a_container_name_made_below_the_container_is_not_believed():
    fake = "cd" * 32
    got = kube_ids(f"/kubepods/pod{UID}/{CID}/{fake}")
    assert got["container_id"] == CID
    got = kube_ids(f"/kubepods/pod{UID}/x/{fake}")
    assert "container_id" not in got and got["pod_uid"] == UID


@pytest.mark.parametrize("raw, want", [(None, 0), (b"7", 7), (b"7\n", 7), (b"-1", 0),
                                       (b"x", 0), (b"9" * 40, 0), (b"", 0)])
def test_parse_counter(raw, want):
    assert parse_counter(raw) == want


def test_mark_killed_counts_kills_and_processes(tmp_path):
    cg = tmp_path / "a"
    cg.mkdir()
    try:
        os.setxattr(cg, "trusted.probe", b"1")
    except OSError as exc:
        pytest.skip(f"no trusted xattrs on {tmp_path}: {exc.strerror}")
    assert attribution.mark_killed(str(tmp_path), "/a", 3) is None
    assert attribution.mark_killed(str(tmp_path), "/a", 1) is None
    assert os.getxattr(cg, attribution.XATTR_OOMS) == b"2"
    assert os.getxattr(cg, attribution.XATTR_KILLED) == b"4"
    os.setxattr(cg, attribution.XATTR_OOMS, b"garbage")
    assert attribution.mark_killed(str(tmp_path), "/a", 1) is None
    assert os.getxattr(cg, attribution.XATTR_OOMS) == b"1"


def test_mark_killed_of_a_vanished_cgroup_says_why(tmp_path):
    why = attribution.mark_killed(str(tmp_path), "/gone", 1)
    assert why is not None and "/gone" in why
