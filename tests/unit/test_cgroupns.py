"""cgroupns: our own cgroup in the host's tree, private cgroup namespaces, our own pod."""

from __future__ import annotations

import os

import pytest

from prioomd import cgroupns

POD = "/kubepods.slice/kubepods-pod0f1e2d3c_aaaa_4bbb_8ccc_000000000001.slice"
CTR = POD + "/cri-containerd-" + "ab" * 32 + ".scope"


@pytest.mark.parametrize("ns_root, path, host", [
    ("/", "/system.slice/a", "/system.slice/a"),
    (CTR, "/", CTR),
    (CTR, "/../../kubepods-burstable.slice/x", "/kubepods.slice/kubepods-burstable.slice/x"),
    (CTR, "/../../../../../../etc", "/etc"),  # ".." never climbs above the root
    ("/a", "/../b", "/b"),
])
def test_to_host(ns_root, path, host):
    assert cgroupns.to_host(ns_root, path) == host


@pytest.mark.parametrize("host, ns, root", [
    (CTR, "/", CTR),
    ("/system.slice/prioomd.service", "/system.slice/prioomd.service", "/"),
    ("/a/b/c", "/b/c", "/a"),
    ("/a/xb/c", "/b/c", None),  # not on a component boundary
    ("/a/b", "/../b", None),
    ("/a/b", "/z", None),
])
def test_ns_root_of(host, ns, root):
    assert cgroupns.ns_root_of(host, ns) == root


@pytest.mark.parametrize("cgroup, pod", [
    (CTR, POD),
    (POD, POD),
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
     "0f1e2d3c_aaaa_4bbb_8ccc_000000000001.slice/crio-conmon-1.scope",
     "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
     "0f1e2d3c_aaaa_4bbb_8ccc_000000000001.slice"),
    ("/kubepods/besteffort/pod0f1e2d3c-aaaa-4bbb-8ccc-000000000001/" + "ab" * 32,
     "/kubepods/besteffort/pod0f1e2d3c-aaaa-4bbb-8ccc-000000000001"),
    ("/system.slice/prioomd.service", None),
    ("/", None),
    ("/user.slice/pod-lookalike", None),
])
def test_pod_of(cgroup, pod):
    assert cgroupns.pod_of(cgroup) == pod


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _tree(base, cgroups: dict[str, list[int]], procs: dict[int, str]) -> tuple[str, str]:
    root, proc = os.path.join(base, "cg"), os.path.join(base, "proc")
    for path, pids in cgroups.items():
        d = os.path.join(root, path.lstrip("/"))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write("".join(f"{p}\n" for p in pids))
    for pid, ns_path in procs.items():
        os.makedirs(os.path.join(proc, str(pid)))
        with open(os.path.join(proc, str(pid), "cgroup"), "w") as f:
            f.write(f"0::{ns_path}\n")
        with open(os.path.join(proc, str(pid), "oom_score_adj"), "w") as f:
            f.write("-998\n")
    return root, proc


def test_locate_self_in_the_hosts_namespace(tmp_path):
    root, proc = _tree(tmp_path, {"/": [1], "/system.slice/prioomd.service": [42]},
                       {42: "/system.slice/prioomd.service"})
    where = cgroupns.locate_self(root, proc, pid=42)
    assert where == cgroupns.SelfLocation("/system.slice/prioomd.service", "/")


def test_locate_self_in_a_private_namespace_searches_the_tree(tmp_path):
    root, proc = _tree(tmp_path, {"/": [1], "/system.slice/kubelet.service": [7],
                                  CTR: [42], POD + "/cri-containerd-pause.scope": [40]},
                       {42: "/"})
    where = cgroupns.locate_self(root, proc, pid=42)
    assert where == cgroupns.SelfLocation(CTR, CTR)


def test_locate_self_gives_up_past_the_search_bound(tmp_path):
    root, proc = _tree(tmp_path, {"/": [1], CTR: [42]}, {42: "/"})
    assert cgroupns.locate_self(root, proc, pid=42, max_dirs=2) is None


def test_locate_self_outside_the_tree_is_none(tmp_path):
    root, proc = _tree(tmp_path, {"/": [1], "/a": [5]}, {42: "/elsewhere"})
    assert cgroupns.locate_self(root, proc, pid=42) is None
    assert cgroupns.locate_self(root, proc, pid=43) is None  # no /proc/43


def test_exempt_own_pod_marks_every_other_process_of_the_pod(tmp_path):
    me = os.getpid()
    root, proc = _tree(tmp_path, {"/": [1], CTR: [me], POD + "/cri-containerd-pause.scope": [40],
                                  POD + "/cri-containerd-hook.scope": [41],
                                  "/kubepods.slice/other": [50]},
                       {40: "/", 41: "/", 50: "/"})
    notes = cgroupns.exempt_own_pod(root, cgroupns.SelfLocation(CTR, CTR), proc)
    adj = {pid: _read(os.path.join(proc, str(pid), "oom_score_adj")) for pid in (40, 41, 50)}
    assert adj == {40: "-1000", 41: "-1000", 50: "-998\n"}
    assert notes[-1].startswith(f"own pod {POD}: 2 other process(es)")


def test_exempt_own_pod_outside_a_pod_does_nothing(tmp_path):
    root, proc = _tree(tmp_path, {"/": [1, 40]}, {40: "/"})
    assert cgroupns.exempt_own_pod(root, cgroupns.SelfLocation("/system.slice/p", "/"),
                                   proc) == []
    assert _read(os.path.join(proc, "40", "oom_score_adj")) == "-998\n"


def test_exempt_own_pod_reports_what_it_could_not_do(tmp_path):
    root, proc = _tree(tmp_path, {"/": [1], CTR: [os.getpid(), 77]}, {})
    notes = cgroupns.exempt_own_pod(root, cgroupns.SelfLocation(CTR, CTR), proc)
    assert "cannot set oom_score_adj -1000 on pid 77" in notes[0]
