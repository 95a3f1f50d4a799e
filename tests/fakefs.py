"""Declarative fake cgroupfs and procfs trees for tests (STYLE §12).

File contents follow what a 6.x kernel prints (captured on 6.1/6.12/6.18).
Build trees under the ``fake_root`` fixture: it is tmpfs-backed, because
``cgroupfs.list_children`` orders siblings by inode number and only tmpfs (like
kernfs) hands out increasing inode numbers; ext4 does not.

cgroup spec (a dict; every key optional)::

    {"procs": [10, 11],                 # cgroup.procs (and cgroup.threads)
     "controllers": ["memory", "pids"], # cgroup.controllers; default: the parent's
                                        # subtree_control (root: DEFAULT_CONTROLLERS)
     "subtree_control": [...],          # default: controllers if there are children
     "memory.current": 100,             # int -> "100\\n"; str -> "str\\n"; None -> omitted
     "memory.max": "max", "memory.oom.group": 1, ...   # any file name works the same way
     "memory.events": {"oom_kill": 2},  # merged into the zeroed 6.x counters
     "memory.stat": {"anon": 4096},     # merged into the default keys
     "memory.pressure": (10.0, 5.0, 1.0, 12345),  # some avg10/60/300 %, total us;
                                        # full = zeros. Also cpu./io.pressure.
     "frozen": 0,                       # cgroup.events; populated is computed
     "xattrs": {"trusted.prioomd.priority": b"5"},
     "uid": 1000,                       # chown the directory (needs root)
     "raw": {"memory.max": "garbage"},  # written byte-exact, last
     "children": {"A": {...}, "B": {...}}}   # created in dict order

Files the kernel leaves off the root (memory.current, memory.max, cgroup.events,
cgroup.kill ...) are left off the fake root too unless the spec names them.
Without "memory" in controllers a cgroup has no memory.* files except
memory.pressure (PSI files exist regardless, as on this host's v2 tree).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from prioomd import cgroupfs

DEFAULT_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")
MEMORY_EVENTS_KEYS = ("low", "high", "max", "oom", "oom_kill", "oom_group_kill")
MEMORY_STAT_KEYS = (
    "anon", "file", "kernel", "kernel_stack", "pagetables", "sec_pagetables", "percpu",
    "sock", "vmalloc", "shmem", "zswap", "zswapped", "file_mapped", "file_dirty",
    "file_writeback", "swapcached", "anon_thp", "file_thp", "shmem_thp", "inactive_anon",
    "active_anon", "inactive_file", "active_file", "unevictable", "slab_reclaimable",
    "slab_unreclaimable", "slab", "workingset_refault_anon", "workingset_refault_file",
    "pgscan", "pgsteal", "pgscan_kswapd", "pgscan_direct", "pgfault", "pgmajfault",
)
# Non-root files of a memory-enabled cgroup and their default contents.
MEMORY_FILES: dict[str, object] = {
    "memory.current": None,  # computed: the children's sum
    "memory.min": 0, "memory.low": 0, "memory.high": "max", "memory.max": "max",
    "memory.peak": None,  # = memory.current
    "memory.oom.group": 0, "memory.swap.current": 0, "memory.swap.max": "max",
    "memory.swap.high": "max", "memory.swap.events": None, "memory.events": None,
    "memory.events.local": None,
}
_ROOT_ONLY_ABSENT = ("cgroup.events", "cgroup.type", "cgroup.freeze", "cgroup.kill")


def _psi(values: Any) -> str:
    if isinstance(values, str):
        return values
    a10, a60, a300, total = values
    return (f"some avg10={a10:.2f} avg60={a60:.2f} avg300={a300:.2f} total={total}\n"
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")


def _keyed(defaults: Mapping[str, int] | tuple[str, ...], override: Any) -> str:
    if isinstance(override, str):
        return override
    merged = dict.fromkeys(defaults, 0) if isinstance(defaults, tuple) else dict(defaults)
    merged.update(override or {})
    return "".join(f"{k} {v}\n" for k, v in merged.items())


def _write(path: str, content: str | bytes) -> None:
    with open(path, "wb") as f:
        f.write(content.encode() if isinstance(content, str) else content)


def _subtree(spec: Mapping[str, Any]) -> tuple[int, bool, int]:
    """(memory.current default, populated, number of descendants)."""
    usage, populated, count = 0, bool(spec.get("procs")), 0
    for child in spec.get("children", {}).values():
        c_usage, c_pop, c_count = _subtree(child)
        usage += child.get("memory.current") if isinstance(
            child.get("memory.current"), int) else c_usage
        populated = populated or c_pop
        count += 1 + c_count
    return usage, populated, count


def _files(spec: Mapping[str, Any], controllers: tuple[str, ...], is_root: bool) -> dict:
    usage, populated, descendants = _subtree(spec)
    procs = "".join(f"{pid}\n" for pid in spec.get("procs", []))
    children = spec.get("children", {})
    subtree = spec.get("subtree_control", controllers if children else ())
    files: dict[str, object] = {
        "cgroup.procs": procs, "cgroup.threads": procs,
        "cgroup.controllers": " ".join(controllers) + "\n",
        "cgroup.subtree_control": " ".join(subtree) + "\n",
        "cgroup.max.depth": "max", "cgroup.max.descendants": "max",
        "cgroup.stat": f"nr_descendants {descendants}\nnr_dying_descendants 0\n",
        "cgroup.events": f"populated {int(populated)}\nfrozen {spec.get('frozen', 0)}\n",
        "cgroup.type": "domain", "cgroup.freeze": spec.get("frozen", 0), "cgroup.kill": "",
        "cgroup.pressure": 1,
        "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
    }
    if "memory" in controllers:
        files.update(MEMORY_FILES)
        current = spec.get("memory.current", usage)
        files["memory.current"] = current
        files["memory.peak"] = current
        files["memory.events"] = _keyed(MEMORY_EVENTS_KEYS, spec.get("memory.events"))
        files["memory.events.local"] = _keyed(MEMORY_EVENTS_KEYS, None)
        files["memory.swap.events"] = "high 0\nmax 0\nfail 0\n"
        files["memory.stat"] = _keyed(MEMORY_STAT_KEYS, spec.get("memory.stat"))
    for kind in ("cpu", "io", "memory"):
        files[f"{kind}.pressure"] = _psi(spec.get(f"{kind}.pressure", (0, 0, 0, 0)))
    if is_root:  # the kernel's CFTYPE_NOT_ON_ROOT files
        for name in [*_ROOT_ONLY_ABSENT, *MEMORY_FILES]:
            if name not in spec:
                files.pop(name, None)
    for key, value in spec.items():
        if "." in key and key not in ("memory.events", "memory.stat") \
                and not key.endswith(".pressure"):
            files[key] = value
    return files


def _build(cgdir: str, spec: Mapping[str, Any], controllers: tuple[str, ...],
           is_root: bool) -> None:
    unknown = set(spec) - {"procs", "controllers", "subtree_control", "frozen", "xattrs",
                           "uid", "raw", "children"}
    unknown = {k for k in unknown if "." not in k}
    if unknown:
        raise ValueError(f"fake cgroup spec: unknown keys {sorted(unknown)}")
    controllers = tuple(spec.get("controllers", controllers))
    for name, value in _files(spec, controllers, is_root).items():
        if value is not None:
            text = value if isinstance(value, str) else str(value)
            _write(os.path.join(cgdir, name), text if not text or text.endswith("\n")
                   else text + "\n")
    for name, content in spec.get("raw", {}).items():
        _write(os.path.join(cgdir, name), content)
    for name, value in spec.get("xattrs", {}).items():
        os.setxattr(cgdir, name, value)
    if "uid" in spec:
        os.chown(cgdir, spec["uid"], -1)
    children = spec.get("children", {})
    subtree = tuple(spec.get("subtree_control", controllers if children else ()))
    for name, child in children.items():
        child_dir = os.path.join(cgdir, name)
        os.mkdir(child_dir)
        _build(child_dir, child, subtree, False)
    listed = [name for name, _key in cgroupfs.list_children(cgdir)]
    if listed != list(children):
        raise AssertionError(
            f"fake tree {cgdir}: list_children gives {listed}, created {list(children)}; "
            "the base directory must be on tmpfs (inode numbers in creation order)")


def make_cgroupfs(base_dir: str, spec: Mapping[str, Any]) -> str:
    """Build a fake cgroup v2 tree at ``base_dir/cgroup``; returns that root path."""
    root = os.path.join(base_dir, "cgroup")
    os.mkdir(root)
    _build(root, spec, tuple(spec.get("controllers", DEFAULT_CONTROLLERS)), True)
    return root


# ---------------------------------------------------------------- procfs

PF_KTHREAD = 0x00200000
PF_FORKNOEXEC, PF_SUPERPRIV = 0x00000040, 0x00000100  # typical flags of a user process
MEMINFO_KB = {
    "MemTotal": 16384000, "MemFree": 8192000, "MemAvailable": 12288000, "Buffers": 4716,
    "Cached": 186464, "SwapCached": 0, "Active": 84572, "Inactive": 168048,
    "Active(anon)": 1556, "Inactive(anon)": 68836, "Active(file)": 83016,
    "Inactive(file)": 99212, "Unevictable": 0, "Mlocked": 0, "SwapTotal": 0,
    "SwapFree": 0, "Zswap": 0, "Zswapped": 0, "Dirty": 1524, "Writeback": 0,
    "AnonPages": 74320, "Mapped": 42224, "Shmem": 8952, "KReclaimable": 70164,
    "Slab": 91900, "SReclaimable": 70164, "SUnreclaim": 21736, "KernelStack": 1496,
    "PageTables": 2096, "CommitLimit": 8192000, "Committed_AS": 138300,
    "HugePages_Total": 0, "HugePages_Free": 0, "Hugepagesize": 2048,
}
_MEMINFO_COUNTS = ("HugePages_Total", "HugePages_Free")
VMSTAT = {"nr_free_pages": 2048000, "pgscan_kswapd": 0, "pgscan_direct": 0,
          "pgsteal_kswapd": 0, "pgsteal_direct": 0, "oom_kill": 0}
_PROC_KEYS = {"comm", "state", "ppid", "rss_kb", "swap_kb", "pte_kb", "oom_score_adj",
              "starttime", "kthread", "sigkill_pending", "cgroup", "has_mm", "raw", "uid",
              "threads"}
_STATE_NAMES = {"R": "running", "S": "sleeping", "D": "disk sleep", "T": "stopped",
                "t": "tracing stop", "Z": "zombie", "X": "dead", "I": "idle"}


def _ppid(p: Mapping[str, Any]) -> int:
    return int(p.get("ppid", 2 if p.get("kthread") else 1))


def _stat_line(pid: int, p: Mapping[str, Any]) -> str:
    flags = PF_KTHREAD if p.get("kthread") else PF_FORKNOEXEC | PF_SUPERPRIV
    rss_pages = p.get("rss_kb", 0) // 4
    # fields 3..52 of proc_pid_stat(); starttime is field 22
    fields = [p.get("state", "S"), _ppid(p), pid, pid, 0, -1, flags, 120, 0, 0, 0, 3, 1, 0, 0,
              20, 0, 1, 0, p.get("starttime", 100), 10000000, rss_pages,
              18446744073709551615, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 17, 1, 0, 0, 0, 0,
              0, 0, 0, 0, 0, 0, 0, 0, 0]
    return f"{pid} ({p.get('comm', 'proc')}) " + " ".join(map(str, fields)) + "\n"


def _status(pid: int, p: Mapping[str, Any], tid: int | None = None) -> str:
    state = p.get("state", "S")
    kthread = bool(p.get("kthread"))
    has_mm = p.get("has_mm", not kthread and state not in ("Z", "X"))
    comm = p.get("comm", "proc").replace("\\", "\\\\").replace("\n", "\\n")
    pnd = f"{1 << 8:016x}" if p.get("sigkill_pending") else "0" * 16
    uid = p.get("uid", 0)
    lines = [f"Name:\t{comm}", "Umask:\t0022", f"State:\t{state} ({_STATE_NAMES.get(state, '?')})",
             f"Tgid:\t{pid}", "Ngid:\t0", f"Pid:\t{tid or pid}", f"PPid:\t{_ppid(p)}",
             "TracerPid:\t0", f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}", "Gid:\t0\t0\t0\t0",
             "FDSize:\t64", "Groups:\t ", f"NStgid:\t{pid}", f"NSpid:\t{pid}",
             f"Kthread:\t{int(kthread)}"]
    if has_mm:
        rss, swap, pte = p.get("rss_kb", 0), p.get("swap_kb", 0), p.get("pte_kb", 0)
        lines += [f"VmPeak:\t{rss * 2 + 4096:8d} kB", f"VmSize:\t{rss * 2 + 4096:8d} kB",
                  f"VmLck:\t{0:8d} kB", f"VmPin:\t{0:8d} kB", f"VmHWM:\t{rss:8d} kB",
                  f"VmRSS:\t{rss:8d} kB", f"RssAnon:\t{rss:8d} kB", f"RssFile:\t{0:8d} kB",
                  f"RssShmem:\t{0:8d} kB", f"VmData:\t{rss:8d} kB", f"VmStk:\t{132:8d} kB",
                  f"VmExe:\t{144:8d} kB", f"VmLib:\t{1956:8d} kB", f"VmPTE:\t{pte:8d} kB",
                  f"VmSwap:\t{swap:8d} kB", f"HugetlbPages:\t{0:8d} kB"]
    lines += ["CoreDumping:\t0", "Threads:\t1", "SigQ:\t0/96364", f"SigPnd:\t{pnd}",
              f"ShdPnd:\t{pnd}", "SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000",
              "SigCgt:\t0000000000000000", "CapEff:\t000001ffffffffff", "NoNewPrivs:\t0",
              "Cpus_allowed_list:\t0-1", "voluntary_ctxt_switches:\t1"]
    return "\n".join(lines) + "\n"


_THREAD_SHARED = ("comm", "ppid", "starttime", "cgroup", "uid", "oom_score_adj")


def _cgroup_file(path: str | bytes) -> bytes:
    """/proc/PID/cgroup of a unified host; ``path`` as bytes for names that are not UTF-8."""
    return b"0::" + (path if isinstance(path, bytes) else path.encode()) + b"\n"


def make_procfs(base_dir: str, procs: Mapping[int, Mapping[str, Any]],
                meminfo_kb: Mapping[str, int] | None = None,
                vmstat: Mapping[str, int] | None = None,
                pressure: Any = (0, 0, 0, 0)) -> str:
    """Build a fake /proc at ``base_dir/proc``; returns its path.

    ``procs``: ``{pid: {"comm", "state", "ppid", "rss_kb", "swap_kb", "pte_kb",
    "oom_score_adj", "starttime", "kthread", "sigkill_pending", "cgroup", "has_mm",
    "uid", "raw": {file: text}, "threads": {tid: {...}}}}``; a None value under "raw"
    omits that file. "threads" adds /proc/PID/task/TID/{stat,status,cgroup} for
    threads other than the leader: a live thread ("S") by default, with the
    process's comm, start time, cgroup and uid unless its spec says otherwise.
    ``meminfo_kb`` and ``vmstat`` are merged into realistic defaults;
    ``pressure`` is /proc/pressure/memory as for the cgroup spec.
    """
    root = os.path.join(base_dir, "proc")
    os.makedirs(os.path.join(root, "pressure"))
    info = {**MEMINFO_KB, **(meminfo_kb or {})}
    _write(os.path.join(root, "meminfo"), "".join(
        f"{k + ':':<16}{v:>8}\n" if k in _MEMINFO_COUNTS else f"{k + ':':<16}{v:>8} kB\n"
        for k, v in info.items()))
    _write(os.path.join(root, "vmstat"),
           "".join(f"{k} {v}\n" for k, v in {**VMSTAT, **(vmstat or {})}.items()))
    _write(os.path.join(root, "pressure", "memory"), _psi(pressure))
    for pid, p in procs.items():
        unknown = set(p) - _PROC_KEYS
        if unknown:
            raise ValueError(f"fake process {pid}: unknown keys {sorted(unknown)}")
        pdir = os.path.join(root, str(pid))
        os.mkdir(pdir)
        cgroup = p.get("cgroup", "/")
        files: dict[str, str | bytes | None] = {
            "stat": _stat_line(pid, p), "status": _status(pid, p),
            "oom_score_adj": f"{p.get('oom_score_adj', 0)}\n",
            "cgroup": _cgroup_file(cgroup), "comm": f"{p.get('comm', 'proc')}\n",
        }
        files.update(p.get("raw", {}))
        for name, content in files.items():
            if content is not None:
                _write(os.path.join(pdir, name), content)
        for tid, t in p.get("threads", {}).items():
            tdir = os.path.join(pdir, "task", str(tid))
            os.makedirs(tdir)
            spec = {**{k: p[k] for k in _THREAD_SHARED if k in p}, **t}
            _write(os.path.join(tdir, "stat"), _stat_line(tid, spec))
            _write(os.path.join(tdir, "status"), _status(pid, spec, tid))
            _write(os.path.join(tdir, "cgroup"), _cgroup_file(spec.get("cgroup", "/")))
    return root


# ---------------------------------------------------------------- fixture


def _tmpfs_dir() -> str | None:
    """A tmpfs directory for fake trees: $PRIOOMD_TEST_TMPFS, /dev/shm or /run."""
    with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
        tmpfs = {line.split()[1] for line in f if len(line.split()) > 2
                 and line.split()[2] == "tmpfs"}
    for candidate in (os.environ.get("PRIOOMD_TEST_TMPFS"), "/dev/shm", "/run"):
        if candidate and candidate in tmpfs and os.access(candidate, os.W_OK):
            return candidate
    return None


@pytest.fixture
def fake_root() -> Iterator[str]:
    """A private (0700) temporary directory on tmpfs, removed afterwards."""
    base = _tmpfs_dir()
    if base is None:
        pytest.fail("no writable tmpfs for fake cgroup trees (sibling order needs tmpfs "
                    "inode numbers); set PRIOOMD_TEST_TMPFS to a tmpfs directory")
    path = tempfile.mkdtemp(prefix="prioomd-test-", dir=base)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# /proc/self/mounts of a hybrid host (memory on v1, the v2 tree beside it) and of a
# unified one
HYBRID_MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
UNIFIED_MOUNTS = ("sysfs /sys sysfs rw 0 0\n"
                  "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n")
