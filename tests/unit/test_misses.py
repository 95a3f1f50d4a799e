"""misses: the kernel's own OOM kills per armed domain, less those at a cgroup's limit."""

from __future__ import annotations

import os

from prioomd import detect, misses
from prioomd.domains import ROOT, Domain
from tests import fakefs

MEMCG = b"6,9,9,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),oom_memcg=/box\n"
NONE = b"6,9,9,-;oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),global_oom\n"


def _root_sample(at: float) -> detect.RootSample:
    return detect.RootSample(4 << 30, 2 << 30, 0, 0, 0.0, 0.0, 0, at)


def _vmstat(proc: str, oom_kill: int) -> None:
    with open(os.path.join(proc, "vmstat"), "w") as f:
        f.write(f"nr_free_pages 1000\noom_kill {oom_kill}\n")


def _setup(fake_root, tmp_path, kmsg_exists=True):
    proc = fakefs.make_procfs(fake_root, {}, vmstat={"oom_kill": 5})
    log = tmp_path / "kmsg"
    if kmsg_exists:
        log.write_bytes(NONE)  # logged before: not counted
    m = misses.Misses(proc, str(log), every_s=1.0)
    root = Domain(ROOT, "/sys/fs/cgroup", None)
    return proc, log, m, root


def test_root_misses_leave_out_the_kills_at_a_cgroups_own_limit(fake_root, tmp_path):
    proc, log, m, root = _setup(fake_root, tmp_path)
    assert m.open() == ""
    m.arm(root)
    assert m.missed(root, _root_sample(10.0)) == 0
    _vmstat(proc, 8)  # three kills: one global, two at a container's limit
    with open(log, "ab") as f:
        f.write(MEMCG + NONE + MEMCG)
    assert m.missed(root, _root_sample(10.5)) == 0  # /proc/vmstat once a second at most
    assert m.missed(root, _root_sample(11.0)) == 1
    assert m.missed(root, _root_sample(12.0)) == 0  # each kill told once
    _vmstat(proc, 9)  # a kill the log has no line for (yet): a miss, never hidden
    assert m.missed(root, _root_sample(13.0)) == 1
    m.close()


def test_without_the_kernels_log_every_kill_of_the_host_is_a_root_miss(fake_root, tmp_path):
    proc, _, m, root = _setup(fake_root, tmp_path, kmsg_exists=False)
    assert "kmsg" in m.open()
    m.arm(root)
    _vmstat(proc, 7)
    assert m.missed(root, _root_sample(10.0)) == 2


def test_a_cgroup_domain_counts_its_own_memory_events(fake_root, tmp_path):
    proc, _, m, _ = _setup(fake_root, tmp_path)
    m.open()
    root = fakefs.make_cgroupfs(fake_root, {"children": {"d": {"memory.max": str(1 << 30)}}})
    dom = Domain("/d", os.path.join(root, "d"), 1 << 30,
                 os.path.join(root, "d", "memory.events"))

    def sample(oom_kill: int, at: float) -> detect.CgroupSample:
        return detect.CgroupSample("/d", 0, 1 << 30, None, {"oom_kill": oom_kill},
                                   None, None, None, at)

    m.arm(dom)
    assert m.missed(dom, sample(0, 1.0)) == 0
    assert m.missed(dom, sample(2, 1.1)) == 2  # every sample: no once-a-second gate
    m.disarm("/d")
    assert m.missed(dom, sample(3, 1.2)) == 0  # disarmed: a fresh count, nothing told
    m.close()
