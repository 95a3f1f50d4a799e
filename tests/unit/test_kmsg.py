"""kmsg: which OOM kills the kernel logged as global, and which at a cgroup's limit."""

from __future__ import annotations

import pytest

from prioomd import kmsg

# As Linux 6.1 writes them to /dev/kmsg (prio = facility << 3 | level; facility 0: kernel)
GLOBAL = (b"6,2417,113212345,-;oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),"
          b"cpuset=/,mems_allowed=0,global_oom,task_memcg=/system.slice/high,task=python,"
          b"pid=133,uid=0")
MEMCG = (b"6,2418,113299999,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),"
         b"cpuset=/,mems_allowed=0,oom_memcg=/box,task_memcg=/box,task=python,pid=7,uid=0")


@pytest.mark.parametrize(("line", "kind"), [
    (GLOBAL, "global"),
    (MEMCG, "memcg"),
    (b"4,1,2,-;oom-kill:constraint=CONSTRAINT_CPUSET,nodemask=(null)", "global"),
    (b"6,1,2,c;oom-kill:constraint=CONSTRAINT_MEMORY_POLICY", "global"),
    # userspace may write /dev/kmsg, never as the kernel (facility 0): not counted
    (b"14,3,4,-;oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/x", None),
    (b"12,3,4,-;" + GLOBAL.partition(b";")[2], None),
    # the kernel's other lines about the same kill
    (b"3,2419,113212400,-;Out of memory: Killed process 133 (python) total-vm:4kB", None),
    (b"4,2416,113212300,-;python invoked oom-killer: gfp_mask=0x140cca", None),
    (b"6,1,2,-;oom-kill:constraint=", None),
    (b"6,1,2,-;oom-kill:constraint=,nodemask=(null)", None),
    (b"6,1,2,-;oom-kill:", None),
    (b"oom-kill:constraint=CONSTRAINT_NONE", None),  # no record header
    (b"x,1,2,-;oom-kill:constraint=CONSTRAINT_NONE", None),
    (b"-6,1,2,-;oom-kill:constraint=CONSTRAINT_NONE", None),
    (b"", None),
])
def test_oom_kill_kind(line, kind):
    assert kmsg.oom_kill_kind(line) == kind


def test_counts_what_is_logged_after_it_opened(tmp_path):
    log = tmp_path / "kmsg"
    log.write_bytes(GLOBAL + b"\n" + MEMCG + b"\n")  # before: not counted
    k = kmsg.OomKills(str(log))
    assert not k.unavailable
    assert k.read() == (0, 0)
    with open(log, "ab") as f:
        f.write(MEMCG + b"\n SUBSYSTEM=memory\n DEVICE=+memcg:box\n")
        f.write(b"14,9,9,-;oom-kill:constraint=CONSTRAINT_MEMCG,forged\n")
        f.write(GLOBAL[:40])  # a record cut in two by the read: counted once complete
    assert k.read() == (0, 1)
    with open(log, "ab") as f:
        f.write(GLOBAL[40:] + b"\n")
    assert k.read() == (1, 1)
    assert k.read() == (1, 1)  # nothing new
    k.close()
    assert k.read() is None


def test_without_the_device_it_says_why_and_reads_nothing(tmp_path):
    k = kmsg.OomKills(str(tmp_path / "no-kmsg"))
    assert "no-kmsg" in k.unavailable and k.read() is None
