"""procfs: parsers table-tested with hostile input, killability, badness, fake /proc."""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prioomd import procfs
from prioomd.errors import Vanished
from prioomd.model import TaskState
from tests.fakefs import make_procfs

# ---------------------------------------------------------------- /proc/PID/stat

# captured on the 6.18 development host
STAT_CAT = ("4583 (cat) R 4569 4569 3163 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 1 0 25742 3133440 "
            "362 18446744073709551615 94675332071424 94675332091305 140736047169296 0 0 0 0 0 "
            "0 0 0 0 17 1 0 0 0 0 0 94675332107312 94675332108928 94675833622528 "
            "140736047172299 140736047172319 140736047172319 140736047173611 0\n")
STAT_KTHREADD = ("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 14 0 0 "
                 "18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 "
                 "0 0 0 0\n")
TAIL = " S 1 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0 0\n"


def test_parse_stat_real_lines():
    cat = procfs.parse_stat(STAT_CAT)
    assert (cat.pid, cat.comm, cat.state, cat.ppid, cat.flags, cat.start_ticks) == (
        4583, "cat", "R", 4569, 4194304, 25742)
    kthreadd = procfs.parse_stat(STAT_KTHREADD)
    assert kthreadd.flags & procfs.PF_KTHREAD
    assert kthreadd.start_ticks == 14


@pytest.mark.parametrize("comm", [
    "a) (b", ") (", "x) S 1 2 3", "with space", "", "((", "))", "a\nb", "tab\there", "ünï",
])
def test_parse_stat_hostile_comm(comm):
    got = procfs.parse_stat(f"42 ({comm}){TAIL}")
    assert (got.pid, got.comm, got.state, got.ppid, got.start_ticks) == (42, comm, "S", 1, 777)


@given(st.text(max_size=64))
def test_parse_stat_any_comm_round_trips(comm):
    assert procfs.parse_stat(f"7 ({comm}){TAIL}").comm == comm


@pytest.mark.parametrize("text", [
    "", "\n", "garbage", "42 cat S 1", "42 (cat) S 1 1 1\n",  # truncated
    "42 (cat" + TAIL, "(cat)" + TAIL, "x (cat)" + TAIL, "0 (cat)" + TAIL, "-1 (cat)" + TAIL,
    "42 (cat) SS 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777\n",
    "42 (cat) S 1 1 1 0 -1 zz 0 0 0 0 0 0 0 0 20 0 1 0 777\n",
    "42 (cat) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 -5\n",
    "42 (cat) S 1 1 1 0 -1 -1 0 0 0 0 0 0 0 0 20 0 1 0 5\n",
])
def test_parse_stat_rejects(text):
    with pytest.raises(ValueError):
        procfs.parse_stat(text)


def test_parse_stat_huge_numbers():
    big = 18446744073709551615
    got = procfs.parse_stat(f"4194304 (x) S 1 1 1 0 -1 {big} 0 0 0 0 0 0 0 0 20 0 1 0 {big}\n")
    assert (got.pid, got.flags, got.start_ticks) == (4194304, big, big)


# ---------------------------------------------------------------- /proc/PID/status

STATUS_USER = """\
Name:\tcat
Umask:\t0022
State:\tR (running)
Tgid:\t4584
Pid:\t4584
PPid:\t4569
VmPeak:\t    3776 kB
VmRSS:\t    2136 kB
VmPTE:\t      48 kB
VmSwap:\t      12 kB
SigQ:\t0/96364
SigPnd:\t0000000000000000
ShdPnd:\t0000000000000000
SigBlk:\t0000000000000000
"""
STATUS_KTHREAD = ("Name:\tkthreadd\nState:\tS (sleeping)\nTgid:\t2\nPid:\t2\nKthread:\t1\n"
                  "Threads:\t1\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n")


def test_parse_status_user_process():
    got = procfs.parse_status(STATUS_USER)
    assert got.tgid == 4584 and got.has_mm
    assert (got.vmrss_bytes, got.vmswap_bytes, got.vmpte_bytes) == (2136 * 1024, 12 * 1024,
                                                                    48 * 1024)
    assert not got.sigkill_pending


@pytest.mark.parametrize("text", [STATUS_KTHREAD, "Name:\tz\nState:\tZ (zombie)\nTgid:\t9\n"])
def test_parse_status_without_mm(text):
    got = procfs.parse_status(text)
    assert not got.has_mm
    assert (got.vmrss_bytes, got.vmswap_bytes, got.vmpte_bytes) == (0, 0, 0)


@pytest.mark.parametrize("sigpnd, shdpnd, want", [
    ("0000000000000100", "0000000000000000", True),  # SIGKILL to this thread
    ("0000000000000000", "0000000000000100", True),  # SIGKILL to the process
    ("0000000000000000", "0000000000004100", True),  # with SIGTERM
    ("0000000000000200", "0000000000000000", False),  # SIGUSR1 (10)
    ("0000000000000080", "0000000000004000", False),  # SIGBUS (8) and SIGTERM (15)
    ("ffffffffffffffff", "0000000000000000", True),
])
def test_parse_status_sigkill_pending(sigpnd, shdpnd, want):
    text = STATUS_USER.replace("SigPnd:\t0000000000000000", f"SigPnd:\t{sigpnd}").replace(
        "ShdPnd:\t0000000000000000", f"ShdPnd:\t{shdpnd}")
    assert procfs.parse_status(text).sigkill_pending is want


def test_parse_status_escaped_name_cannot_inject_lines():
    # the kernel escapes \n in Name (proc_task_name(..., escape=true))
    got = procfs.parse_status("Name:\tx\\nTgid:\t1\n" + STATUS_USER.split("\n", 1)[1])
    assert got.tgid == 4584


@pytest.mark.parametrize("text", [
    "", "\n", "Name:\tcat\n",  # truncated before Tgid
    STATUS_USER.replace("Tgid:\t4584", "Tgid:\tabc"),
    STATUS_USER.replace("2136 kB", "2136"),
    STATUS_USER.replace("2136 kB", "2136 MB"),
    STATUS_USER.replace("2136 kB", "-5 kB"),
    STATUS_USER.replace("2136 kB", "x kB"),
    STATUS_USER.replace("SigPnd:\t0000000000000000", "SigPnd:\tzz"),
    STATUS_USER.replace("ShdPnd:\t0000000000000000", "ShdPnd:\t"),
])
def test_parse_status_rejects(text):
    with pytest.raises(ValueError):
        procfs.parse_status(text)


# ---------------------------------------------------------------- small files


@pytest.mark.parametrize("text, want", [
    ("0\n", 0), ("-1000\n", -1000), ("1000", 1000), ("  -17 \n", -17),
])
def test_parse_oom_score_adj(text, want):
    assert procfs.parse_oom_score_adj(text) == want


@pytest.mark.parametrize("text", ["", "\n", "1001", "-1001", "abc", "1.0", "0x10", "1 2",
                                  "99999999999999999999"])
def test_parse_oom_score_adj_rejects(text):
    with pytest.raises(ValueError):
        procfs.parse_oom_score_adj(text)


MEMINFO = """\
MemTotal:       24683656 kB
MemAvailable:   24301804 kB
Active(anon):       1556 kB
SwapTotal:             0 kB
VmallocTotal:   34359738367 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
"""


def test_parse_meminfo():
    got = procfs.parse_meminfo(MEMINFO)
    assert got["MemTotal"] == 24683656 * 1024
    assert got["Active(anon)"] == 1556 * 1024
    assert got["VmallocTotal"] == 34359738367 * 1024
    assert got["HugePages_Total"] == 0
    assert procfs.parse_meminfo("") == {}


@pytest.mark.parametrize("text", [
    "MemTotal 5 kB\n", "MemTotal: x kB\n", "MemTotal: 5 MB\n", "MemTotal: 5 kB extra\n",
    "MemTotal:\n", ": 5 kB\n",
])
def test_parse_meminfo_rejects(text):
    with pytest.raises(ValueError):
        procfs.parse_meminfo(text)


def test_parse_vmstat():
    got = procfs.parse_vmstat("nr_free_pages 1038969\noom_kill 3\npgscan_direct 0\n")
    assert got["oom_kill"] == 3
    assert procfs.parse_vmstat("") == {}


@pytest.mark.parametrize("text", ["oom_kill\n", "oom_kill 1 2\n", "oom_kill x\n"])
def test_parse_vmstat_rejects(text):
    with pytest.raises(ValueError):
        procfs.parse_vmstat(text)


HYBRID_CGROUP = ("9:name=systemd:/\n8:pids:/\n4:memory:/process_api/adee393a6db0c5e0\n"
                 "1:cpu:/\n0::/\n")


@pytest.mark.parametrize("text, want", [
    (HYBRID_CGROUP, "/"),
    ("0::/user.slice/user-1000.slice/session-2.scope\n",
     "/user.slice/user-1000.slice/session-2.scope"),
    ("0::/a:b\n", "/a:b"),
    # Names are tenant bytes: kept as printed. " (deleted)" may be part of a live
    # cgroup's name; only the tree tells it from the kernel's mark (kill.py).
    ("0::/low/x (deleted)\n", "/low/x (deleted)"),
    ("0::/low/a\n0::/high\n", "/low/a\n0::/high"),  # (cgroup_mkdir refuses newlines)
    ("0::/low/\udcff\udcfe\n", "/low/\udcff\udcfe"),  # not UTF-8 (surrogateescape)
    ("4:memory:/x\n1:cpu:/\n", None),  # v1-only host
    ("", None),
])
def test_parse_pid_cgroup(text, want):
    assert procfs.parse_pid_cgroup(text) == want


@pytest.mark.parametrize("text", ["garbage\n", "0:/x\n", "0::relative\n"])
def test_parse_pid_cgroup_rejects(text):
    with pytest.raises(ValueError):
        procfs.parse_pid_cgroup(text)


# ---------------------------------------------------------------- killability, badness

BASE = procfs.TaskFacts(pid=500, comm="hog", state="S", flags=0, start_ticks=10,
                        rss_bytes=400 * 1024, swap_bytes=8 * 1024, pte_bytes=8 * 1024,
                        oom_score_adj=0, sigkill_pending=False, is_kthread=False, has_mm=True)


@pytest.mark.parametrize("changes, want", [
    ({}, (TaskState.KILLABLE, "")),
    ({"oom_score_adj": 1000}, (TaskState.KILLABLE, "")),
    ({"oom_score_adj": -999}, (TaskState.KILLABLE, "")),
    ({"oom_score_adj": -1000}, (TaskState.UNKILLABLE, "oom_score_adj -1000")),
    ({"pid": 1}, (TaskState.UNKILLABLE, "init (pid 1)")),
    ({"pid": 4242}, (TaskState.UNKILLABLE, "prioomd itself")),
    ({"is_kthread": True, "has_mm": False}, (TaskState.UNKILLABLE, "kernel thread")),
    ({"state": "Z", "has_mm": False}, (TaskState.UNKILLABLE, "zombie")),
    ({"state": "X", "has_mm": False}, (TaskState.UNKILLABLE, "zombie")),
    ({"has_mm": False}, (TaskState.UNKILLABLE, "no mm")),
    ({"sigkill_pending": True}, (TaskState.DYING, "")),
    ({"sigkill_pending": True, "state": "D"}, (TaskState.DYING, "")),
    # precedence
    ({"sigkill_pending": True, "has_mm": False}, (TaskState.UNKILLABLE, "no mm")),
    ({"sigkill_pending": True, "state": "Z", "has_mm": False}, (TaskState.UNKILLABLE, "zombie")),
    ({"sigkill_pending": True, "oom_score_adj": -1000}, (TaskState.DYING, "")),
    ({"pid": 1, "oom_score_adj": -1000}, (TaskState.UNKILLABLE, "init (pid 1)")),
    ({"pid": 4242, "sigkill_pending": True}, (TaskState.UNKILLABLE, "prioomd itself")),
])
def test_killability(changes, want):
    assert procfs.killability(replace(BASE, **changes), self_pid=4242) == want


def test_killability_init_of_a_pid_namespace():
    facts = replace(BASE, pid=77)
    assert procfs.killability(facts, self_pid=4242, init_pid=77)[0] == TaskState.UNKILLABLE
    assert procfs.killability(replace(BASE, pid=1), 4242, init_pid=77)[0] == TaskState.KILLABLE


@pytest.mark.parametrize("changes, total_pages, want", [
    ({}, 1_000_000, 100 + 2 + 2),
    ({"oom_score_adj": 500}, 1_000_000, 104 + 500 * 1000),
    ({"oom_score_adj": -1000}, 1_000_000, 104 - 1000 * 1000),
    ({"oom_score_adj": -1}, 1_999, 104 - 1),  # 1999 // 1000 == 1, as in the kernel
    ({"oom_score_adj": 1000}, 999, 104),  # totalpages < 1000: the adj term vanishes
    ({"rss_bytes": 4095, "swap_bytes": 0, "pte_bytes": 0}, 1000, 0),
    ({"rss_bytes": 0, "swap_bytes": 0, "pte_bytes": 0}, 1000, 0),
])
def test_badness_pages(changes, total_pages, want):
    assert procfs.badness_pages(replace(BASE, **changes), total_pages, 4096) == want


def test_total_pages_global():
    meminfo = {"MemTotal": 16 << 30, "SwapTotal": 4 << 30}
    assert procfs.total_pages_global(meminfo, 4096) == (20 << 30) // 4096
    with pytest.raises(ValueError, match="SwapTotal"):
        procfs.total_pages_global({"MemTotal": 1}, 4096)


def test_page_size():
    size = procfs.page_size()
    assert size >= 4096 and size & (size - 1) == 0


# ---------------------------------------------------------------- readers on a fake /proc

PROCS = {
    1: {"comm": "systemd", "rss_kb": 11352, "pte_kb": 108},
    2: {"comm": "kthreadd", "kthread": True, "ppid": 0},
    300: {"comm": "web) (worker", "rss_kb": 4000, "swap_kb": 400, "pte_kb": 40,
          "oom_score_adj": 200, "starttime": 5000, "cgroup": "/system.slice/web.service"},
    301: {"comm": "defunct", "state": "Z"},
    302: {"comm": "dying", "sigkill_pending": True, "rss_kb": 100},
    303: {"comm": "sshd", "oom_score_adj": -1000, "rss_kb": 50},
}


@pytest.fixture
def proc(fake_root):
    return make_procfs(fake_root, PROCS, meminfo_kb={"MemTotal": 8 << 20, "SwapTotal": 1 << 20},
                       vmstat={"oom_kill": 7})


def test_read_task(proc):
    web = procfs.read_task(300, proc)
    assert web is not None
    assert (web.comm, web.state, web.start_ticks, web.oom_score_adj) == (
        "web) (worker", "S", 5000, 200)
    assert (web.rss_bytes, web.swap_bytes, web.pte_bytes) == (4000 << 10, 400 << 10, 40 << 10)
    assert web.has_mm and not web.is_kthread and not web.sigkill_pending and web.ppid == 1
    assert procfs.killability(web, self_pid=9999) == (TaskState.KILLABLE, "")


@pytest.mark.parametrize("pid, want", [
    (1, (TaskState.UNKILLABLE, "init (pid 1)")),
    (2, (TaskState.UNKILLABLE, "kernel thread")),
    (301, (TaskState.UNKILLABLE, "zombie")),
    (302, (TaskState.DYING, "")),
    (303, (TaskState.UNKILLABLE, "oom_score_adj -1000")),
])
def test_read_task_killability(proc, pid, want):
    facts = procfs.read_task(pid, proc)
    assert facts is not None
    assert procfs.killability(facts, self_pid=9999) == want


def test_read_task_of_a_missing_pid_is_none(proc):
    assert procfs.read_task(12345, proc) is None


def test_read_task_pid_vanishing_mid_read_is_none(proc, monkeypatch):
    real_read_at = procfs._read_at

    def read_then_exit(dir_fd, name):
        text = real_read_at(dir_fd, name)
        shutil.rmtree(os.path.join(proc, "300"))  # the process exits after the first file
        return text

    monkeypatch.setattr(procfs, "_read_at", read_then_exit)
    assert procfs.read_task(300, proc) is None


@pytest.mark.parametrize("err", [errno.ESRCH, errno.ENOENT])
def test_read_task_gone_errnos_are_none(proc, monkeypatch, err):
    def fail(dir_fd, name):
        raise OSError(err, os.strerror(err))
    monkeypatch.setattr(procfs, "_read_at", fail)
    assert procfs.read_task(300, proc) is None


def test_read_task_eacces_propagates(proc, monkeypatch):
    def fail(dir_fd, name):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(procfs, "_read_at", fail)
    with pytest.raises(PermissionError):
        procfs.read_task(300, proc)


def test_read_task_hostile_file_is_a_value_error(fake_root):
    proc = make_procfs(fake_root, {5: {"raw": {"oom_score_adj": "-2000\n"}}})
    with pytest.raises(ValueError):
        procfs.read_task(5, proc)


def test_read_task_missing_file_is_none(fake_root):
    proc = make_procfs(fake_root, {5: {"raw": {"status": None}}})
    assert procfs.read_task(5, proc) is None


def test_read_meminfo_vmstat_and_badness_basis(proc):
    meminfo = procfs.read_meminfo(proc)
    assert meminfo["MemTotal"] == 8 << 30
    assert meminfo["HugePages_Total"] == 0
    assert procfs.total_pages_global(meminfo, 4096) == (9 << 30) // 4096
    assert procfs.read_vmstat(proc)["oom_kill"] == 7


def test_read_pid_cgroup_decodes_names_as_listdir_does(fake_root):
    name = b"\xff\xfe (deleted)"  # not UTF-8, and ending in the kernel's mark
    proc = make_procfs(fake_root, {7: {"cgroup": b"/low/" + name}})
    os.mkdir(os.path.join(os.fsencode(fake_root), name))
    listed = [n for n in os.listdir(fake_root) if n != "proc"]
    assert procfs.read_pid_cgroup(7, proc) == "/low/" + listed[0]


# A process whose leader called pthread_exit() while another thread holds the memory:
# the leader shows "Z" and no mm; the kernel still kills it (spec §6.2).
LEADER_EXITED = {"comm": "tenant", "state": "Z", "has_mm": False, "starttime": 77,
                 "threads": {401: {"rss_kb": 102400, "swap_kb": 8, "pte_kb": 200}}}


def test_read_task_of_an_exited_leader_reads_a_live_thread(fake_root):
    proc = make_procfs(fake_root, {400: LEADER_EXITED})
    facts = procfs.read_task(400, proc)
    assert facts is not None
    assert (facts.pid, facts.tid, facts.state, facts.start_ticks) == (400, 401, "S", 77)
    assert (facts.rss_bytes, facts.swap_bytes, facts.pte_bytes) == (
        102400 << 10, 8 << 10, 200 << 10)
    assert procfs.killability(facts, self_pid=9999) == (TaskState.KILLABLE, "")


@pytest.mark.parametrize("threads, want", [
    ({}, (TaskState.UNKILLABLE, "zombie")),  # no thread left: a true zombie
    ({401: {"state": "Z", "has_mm": False}}, (TaskState.UNKILLABLE, "zombie")),
    ({401: {"state": "Z", "has_mm": False}, 402: {"rss_kb": 10}},
     (TaskState.KILLABLE, "")),
    ({401: {"rss_kb": 10, "sigkill_pending": True}}, (TaskState.DYING, "")),
])
def test_exited_leader_killability_follows_its_threads(fake_root, threads, want):
    proc = make_procfs(fake_root, {400: {**LEADER_EXITED, "threads": threads}})
    facts = procfs.read_task(400, proc)
    assert facts is not None
    assert procfs.killability(facts, self_pid=9999) == want


def test_read_pid_cgroup_of_a_thread(fake_root):
    proc = make_procfs(fake_root, {400: {**LEADER_EXITED, "cgroup": "/old (deleted)",
                                         "threads": {401: {"cgroup": "/new"}}}})
    assert procfs.read_pid_cgroup(400, proc) == "/old (deleted)"
    assert procfs.read_pid_cgroup(400, proc, tid=401) == "/new"


def test_read_pid_cgroup_and_adj(proc):
    assert procfs.read_pid_cgroup(300, proc) == "/system.slice/web.service"
    assert procfs.read_pid_cgroup(1, proc) == "/"
    assert procfs.read_oom_score_adj(303, proc) == -1000
    with pytest.raises(Vanished):
        procfs.read_pid_cgroup(12345, proc)
    with pytest.raises(Vanished):
        procfs.read_oom_score_adj(12345, proc)


def test_list_pids(proc):
    os.mkdir(os.path.join(proc, "self"))
    assert procfs.list_pids(proc) == [1, 2, 300, 301, 302, 303]
    with pytest.raises(Vanished):
        procfs.list_pids(os.path.join(proc, "nope"))


def test_readers_without_proc_files(fake_root):
    with pytest.raises(Vanished):
        procfs.read_meminfo(fake_root)
    with pytest.raises(Vanished):
        procfs.read_vmstat(fake_root)


def test_make_procfs_rejects_unknown_keys(fake_root):
    with pytest.raises(ValueError, match="unknown keys"):
        make_procfs(fake_root, {5: {"rss": 1}})
