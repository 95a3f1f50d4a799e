"""The only reader of /proc: per-process facts, killability and the kernel's badness.

Pure ``parse_*(text)`` functions raise ``ValueError`` on malformed input; thin
readers take the proc root as a parameter (default "/proc", STYLE §4) so tests
run on fake trees. A process that exits while we read it is normal: ``read_task``
returns None, the other per-pid readers raise ``Vanished``. psutil is not used:
every fact needed here is one line of a /proc file, and the proc root must stay
a parameter.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass

from prioomd.cgparse import parse_flat_keyed
from prioomd.errors import Vanished, is_gone
from prioomd.model import TaskState

PF_KTHREAD = 0x00200000  # include/linux/sched.h
SIGKILL_BIT = 1 << (9 - 1)  # signal n is bit n-1 of the SigPnd/ShdPnd masks
OOM_SCORE_ADJ_MIN = -1000  # include/uapi/linux/oom.h
OOM_SCORE_ADJ_MAX = 1000
_STAT_MIN_FIELDS = 20  # fields after "(comm)" up to and including starttime

_INT_RE = re.compile(r"[+-]?[0-9]+")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")


def _to_int(word: str, what: str) -> int:
    if not _INT_RE.fullmatch(word):
        raise ValueError(f"{what}: expected an integer, got {word!r}")
    return int(word)


# ---------------------------------------------------------------- pure parsers


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/PID/stat that prioomd uses."""

    pid: int
    comm: str
    state: str  # one letter: R S D T t Z X I ...
    ppid: int
    flags: int  # task->flags; PF_KTHREAD marks a kernel thread
    start_ticks: int  # starttime, clock ticks since boot


def parse_stat(text: str) -> ProcStat:
    """/proc/PID/stat: ``pid (comm) state ppid ... flags ... starttime ...``.

    comm is printed unescaped and may hold spaces, parentheses and newlines,
    so it runs from the first "(" to the LAST ")".
    """
    open_at = text.find("(")
    close_at = text.rfind(")")
    if open_at < 0 or close_at < open_at:
        raise ValueError(f"stat: no '(comm)' in {text[:80]!r}")
    pid = _to_int(text[:open_at].strip(), "stat pid")
    fields = text[close_at + 1:].split()
    if len(fields) < _STAT_MIN_FIELDS:
        raise ValueError(f"stat: {len(fields)} fields after comm, need {_STAT_MIN_FIELDS}")
    state = fields[0]
    if len(state) != 1:
        raise ValueError(f"stat: bad state {state!r}")
    flags = _to_int(fields[6], "stat flags")
    start_ticks = _to_int(fields[19], "stat starttime")
    if pid <= 0 or flags < 0 or start_ticks < 0:
        raise ValueError(f"stat: negative or zero value in {text[:80]!r}")
    return ProcStat(pid=pid, comm=text[open_at + 1:close_at], state=state,
                    ppid=_to_int(fields[1], "stat ppid"), flags=flags,
                    start_ticks=start_ticks)


@dataclass(frozen=True)
class ProcStatus:
    """The fields of /proc/PID/status that prioomd uses (sizes in bytes)."""

    tgid: int
    has_mm: bool  # a VmRSS line is present: not a kernel thread, not a zombie
    vmrss_bytes: int
    vmswap_bytes: int
    vmpte_bytes: int
    sigpnd: int  # thread-private pending signals, bit n-1 = signal n
    shdpnd: int  # process-wide pending signals

    @property
    def sigkill_pending(self) -> bool:
        return bool((self.sigpnd | self.shdpnd) & SIGKILL_BIT)


def _kb_bytes(value: str, key: str) -> int:
    words = value.split()
    if len(words) != 2 or words[1] != "kB":
        raise ValueError(f"status {key}: expected 'N kB', got {value!r}")
    kb = _to_int(words[0], f"status {key}")
    if kb < 0:
        raise ValueError(f"status {key}: negative size {value!r}")
    return kb * 1024


def _hex_mask(value: str, key: str) -> int:
    word = value.strip()
    if not _HEX_RE.fullmatch(word):
        raise ValueError(f"status {key}: expected a hex mask, got {value!r}")
    return int(word, 16)


def parse_status(text: str) -> ProcStatus:
    """/proc/PID/status. Tgid is required; a missing Vm* line counts as 0 (kernel
    threads and zombies have none) and a missing signal mask as empty."""
    values: dict[str, str] = {}
    for line in text.split("\n"):
        key, sep, value = line.partition(":")
        if sep:
            values.setdefault(key.strip(), value)
    if "Tgid" not in values:
        raise ValueError("status: no Tgid line")
    sizes = {key: _kb_bytes(values[key], key) if key in values else 0
             for key in ("VmRSS", "VmSwap", "VmPTE")}
    return ProcStatus(
        tgid=_to_int(values["Tgid"].strip(), "status Tgid"),
        has_mm="VmRSS" in values,
        vmrss_bytes=sizes["VmRSS"], vmswap_bytes=sizes["VmSwap"], vmpte_bytes=sizes["VmPTE"],
        sigpnd=_hex_mask(values["SigPnd"], "SigPnd") if "SigPnd" in values else 0,
        shdpnd=_hex_mask(values["ShdPnd"], "ShdPnd") if "ShdPnd" in values else 0,
    )


def parse_oom_score_adj(text: str) -> int:
    """/proc/PID/oom_score_adj: an integer in -1000..1000."""
    adj = _to_int(text.strip(), "oom_score_adj")
    if not OOM_SCORE_ADJ_MIN <= adj <= OOM_SCORE_ADJ_MAX:
        raise ValueError(f"oom_score_adj: {adj} is outside -1000..1000")
    return adj


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo: ``"Key:  N kB"`` -> bytes; lines without a unit
    (HugePages_Total ...) are kept as plain counts."""
    out: dict[str, int] = {}
    for line in text.split("\n"):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        words = rest.split()
        if not sep or not key or not 1 <= len(words) <= 2 or words[1:] not in ([], ["kB"]):
            raise ValueError(f"meminfo: expected 'Key: N [kB]', got {line!r}")
        value = _to_int(words[0], f"meminfo {key}")
        out[key] = value * 1024 if len(words) == 2 else value
    return out


def parse_vmstat(text: str) -> dict[str, int]:
    """/proc/vmstat: ``"key value"`` per line (``oom_kill``, ``pgscan_direct`` ...), the
    flat keyed format of the cgroup files."""
    return parse_flat_keyed(text)


_V2_LINE = "0::"  # the default hierarchy: id 0, no controllers


def parse_pid_cgroup(text: str) -> str | None:
    """/proc/PID/cgroup: the cgroup v2 path (the ``0::/path`` entry), None when the
    process has no v2 entry (v1-only host).

    Cgroup names are tenant-chosen bytes, printed unescaped: a name may hold ":",
    bytes that are not UTF-8 (``text`` must be decoded with surrogateescape, as
    ``os.listdir`` decodes names) or end in " (deleted)"; cgroup_mkdir() refuses
    only newlines (and "/"). The kernel prints the default hierarchy's entry last
    (it is the first root registered and proc_cgroup_show() walks the roots
    newest first), so the path runs from the first line that starts with "0::"
    to the end of the text, less the one newline the kernel ends it with (a
    newline inside it, should an older kernel have allowed one, stays part of
    the name). The path is returned as printed: a
    " (deleted)" suffix is part of a live cgroup's name as often as it is the
    kernel's mark of a removed cgroup (which only a zombie can still be in), so
    only the cgroup tree can tell them apart (see kill.py).
    """
    at = 0
    while at < len(text):
        if text.startswith(_V2_LINE, at):
            path = text[at + len(_V2_LINE):]
            path = path[:-1] if path.endswith("\n") else path
            if not path.startswith("/"):
                raise ValueError(f"cgroup: v2 path is not absolute: {path[:80]!r}")
            return path
        end = text.find("\n", at)
        line = text[at:] if end < 0 else text[at:end]
        hier, sep1, rest = line.partition(":")
        _controllers, sep2, _path = rest.partition(":")
        if not (sep1 and sep2 and hier.isascii() and hier.isdigit()):
            raise ValueError(f"cgroup: expected 'id:controllers:path', got {line[:80]!r}")
        if end < 0:
            break
        at = end + 1
    return None


# ---------------------------------------------------------------- task facts


@dataclass(frozen=True)
class TaskFacts:
    """One process as /proc shows it at one moment (sizes in bytes).

    ``state``, the sizes and ``sigkill_pending`` come from the thread-group leader,
    or, once the leader has exited while other threads live (``pthread_exit()`` in
    main: the leader shows "Z" and no mm), from the live thread ``tid`` (spec
    §6.2: the kernel reads such a process through find_lock_task_mm()).
    """

    pid: int
    comm: str
    state: str
    flags: int
    start_ticks: int
    rss_bytes: int
    swap_bytes: int
    pte_bytes: int
    oom_score_adj: int
    sigkill_pending: bool
    is_kthread: bool
    has_mm: bool
    ppid: int = 0
    tid: int = 0  # the thread the state and sizes come from; 0: the leader (tid == pid)


def _read_at(dir_fd: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _exited(stat: ProcStat, status: ProcStatus) -> bool:
    return stat.state in ("Z", "X") or not status.has_mm


def _live_thread(dir_fd: int, pid: int) -> tuple[int, ProcStat, ProcStatus] | None:
    """The first thread of the process that has not exited and still has the mm,
    read through the process's own directory fd; None when there is none."""
    try:
        task_fd = os.open("task", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            names = os.listdir(task_fd)
        finally:
            os.close(task_fd)
    except OSError as exc:
        if is_gone(exc):
            return None
        raise
    tids = sorted(int(n) for n in names if n.isascii() and n.isdigit())
    for tid in tids:
        if tid == pid:
            continue
        try:
            stat = parse_stat(_read_at(dir_fd, f"task/{tid}/stat"))
            status = parse_status(_read_at(dir_fd, f"task/{tid}/status"))
        except OSError as exc:
            if is_gone(exc):  # that thread exited meanwhile: try the next
                continue
            raise
        if not _exited(stat, status):
            return tid, stat, status
    return None


def read_task(pid: int, proc_root: str = "/proc") -> TaskFacts | None:
    """Everything killability and badness need about one process; None when it is gone.

    The files are opened relative to one /proc/PID directory fd: that fd stays
    bound to the process it was opened for, so a recycled pid cannot mix two
    processes' facts (a late file of an exited process fails with ENOENT/ESRCH).
    A leader that exited before its threads is read through a live thread.
    """
    try:
        dir_fd = os.open(os.path.join(proc_root, str(pid)),
                         os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        if is_gone(exc):
            return None
        raise
    try:
        stat = parse_stat(_read_at(dir_fd, "stat"))
        status = parse_status(_read_at(dir_fd, "status"))
        adj = parse_oom_score_adj(_read_at(dir_fd, "oom_score_adj"))
        live = None
        if _exited(stat, status) and not stat.flags & PF_KTHREAD:
            live = _live_thread(dir_fd, pid)
    except OSError as exc:
        if is_gone(exc):
            return None
        raise
    finally:
        os.close(dir_fd)
    tid, state = 0, stat.state
    if live is not None:
        tid, live_stat, status = live
        state = live_stat.state
    return TaskFacts(
        pid=pid, comm=stat.comm, state=state, flags=stat.flags,
        start_ticks=stat.start_ticks, rss_bytes=status.vmrss_bytes,
        swap_bytes=status.vmswap_bytes, pte_bytes=status.vmpte_bytes, oom_score_adj=adj,
        sigkill_pending=status.sigkill_pending, is_kthread=bool(stat.flags & PF_KTHREAD),
        has_mm=status.has_mm, ppid=stat.ppid, tid=tid,
    )


def killability(facts: TaskFacts, self_pid: int, init_pid: int = 1) -> tuple[TaskState, str]:
    """Whether the walk may kill this process, and why not (spec §8, DESIGN §2).

    Order follows the kernel's oom_evaluate_task(): init and kernel threads are
    never candidates; a process without an mm (a zombie: no thread left; a
    leader that exited before its threads is read through a live thread by
    ``read_task`` and is killable, spec §6.2) frees nothing; an in-flight victim (SIGKILL
    pending, mm not yet released) is DYING, checked before -1000 as the kernel
    checks tsk_is_oom_victim() before oom_badness(): it frees memory either way.
    """
    if facts.pid == self_pid:
        return TaskState.UNKILLABLE, "prioomd itself"
    if facts.pid == init_pid:
        return TaskState.UNKILLABLE, f"init (pid {init_pid})"
    if facts.is_kthread:
        return TaskState.UNKILLABLE, "kernel thread"
    if facts.state in ("Z", "X") or not facts.has_mm:
        return TaskState.UNKILLABLE, "zombie" if facts.state in ("Z", "X") else "no mm"
    if facts.sigkill_pending:
        return TaskState.DYING, ""
    if facts.oom_score_adj == OOM_SCORE_ADJ_MIN:
        return TaskState.UNKILLABLE, "oom_score_adj -1000"
    return TaskState.KILLABLE, ""


def badness_pages(facts: TaskFacts, total_pages: int, page_size: int) -> int:
    """The kernel's oom_badness() in pages (mm/oom_kill.c), without its LONG_MIN
    for unkillable tasks (killability() says that): rss + swap entries + page
    table pages + adj x (total_pages / 1000), integer division as in the kernel."""
    return badness_from_parts(facts.rss_bytes, facts.swap_bytes, facts.pte_bytes,
                              facts.oom_score_adj, total_pages, page_size)


def badness_from_parts(rss_bytes: int, swap_bytes: int, pte_bytes: int, oom_score_adj: int,
                       total_pages: int, page_size: int) -> int:
    """badness_pages() on the numbers alone, to re-base a task on another domain."""
    points = rss_bytes // page_size + swap_bytes // page_size + pte_bytes // page_size
    return points + oom_score_adj * (total_pages // 1000)


def total_pages_global(meminfo: dict[str, int], page_size: int) -> int:
    """The badness basis of a global OOM: totalram + total swap, in pages."""
    try:
        return (meminfo["MemTotal"] + meminfo["SwapTotal"]) // page_size
    except KeyError as exc:
        raise ValueError(f"meminfo: no {exc.args[0]} line") from exc


# ---------------------------------------------------------------- thin readers


def _read_file(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")
    except OSError as exc:
        if is_gone(exc):
            raise Vanished(f"{path}: {os.strerror(exc.errno or 0)}") from exc
        raise


def read_meminfo(proc_root: str = "/proc") -> dict[str, int]:
    return parse_meminfo(_read_file(os.path.join(proc_root, "meminfo")))


def read_vmstat(proc_root: str = "/proc") -> dict[str, int]:
    return parse_vmstat(_read_file(os.path.join(proc_root, "vmstat")))


def read_pid_cgroup(pid: int, proc_root: str = "/proc", tid: int = 0) -> str | None:
    """The process's cgroup v2 path as /proc prints it (``tid``: through that
    thread, for a process whose leader exited); None without a v2 entry; Vanished
    when it is gone. Decoded with surrogateescape, as ``os.listdir`` decodes the
    same names, so a name that is not UTF-8 compares equal to its directory."""
    where = os.path.join(proc_root, str(pid), *(("task", str(tid)) if tid else ()), "cgroup")
    try:
        with open(where, "rb") as f:
            return parse_pid_cgroup(os.fsdecode(f.read()))
    except OSError as exc:
        if is_gone(exc):
            raise Vanished(f"{where}: {os.strerror(exc.errno or 0)}") from exc
        raise


def read_oom_score_adj(pid: int, proc_root: str = "/proc") -> int:
    """Vanished when the process is gone."""
    return parse_oom_score_adj(_read_file(os.path.join(proc_root, str(pid), "oom_score_adj")))


def list_pids(proc_root: str = "/proc") -> list[int]:
    """Every process (thread-group leader) in the proc root, ascending."""
    try:
        names = os.listdir(proc_root)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise Vanished(f"{proc_root}: no such directory") from exc
        raise
    return sorted(int(name) for name in names if name.isascii() and name.isdigit())


def page_size() -> int:
    """The kernel's PAGE_SIZE in bytes."""
    return os.sysconf("SC_PAGE_SIZE")
