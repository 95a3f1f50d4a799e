"""Fuzzing procfs's parsers: /proc/PID/{stat,status,cgroup,oom_score_adj},
/proc/meminfo, /proc/vmstat. A process name is the tenant's: any bytes but NUL,
newlines and parentheses included. Result or ValueError, nothing else."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from prioomd import procfs
from tests.fuzzing import WORDS, fuzz, lines_of, ok_or

# What a tenant can put in comm (PR_SET_NAME, /proc/PID/comm): 15 bytes, no NUL,
# read by procfs as UTF-8 (a byte that is not, as replace/surrogateescape makes it).
COMMS = st.binary(max_size=15).filter(lambda b: b"\x00" not in b).flatmap(
    lambda b: st.sampled_from([b.decode("utf-8", "replace"),
                               b.decode("utf-8", "surrogateescape")]))
U64 = st.integers(0, 2**64 - 1)


def stat_line(pid: int, comm: str, state: str, ppid: int, flags: int, start: int,
              rest: list[int]) -> str:
    """proc_pid_stat()'s format: pid (comm) state ppid ... flags (9) ... starttime (22) ..."""
    fields = [state, str(ppid), "1", "1", "0", "-1", str(flags)] + [str(x) for x in rest[:12]]
    fields += [str(start)] + [str(x) for x in rest[12:]]
    return f"{pid} ({comm}) " + " ".join(fields) + "\n"


@fuzz
@given(st.text())
def test_stat_arbitrary_text(text: str) -> None:
    ok_or(ValueError, procfs.parse_stat, text)


@fuzz
@given(st.integers(-5, 2**22), COMMS, st.lists(WORDS, max_size=60))
def test_stat_near_valid(pid: int, comm: str, words: list[str]) -> None:
    stat = ok_or(ValueError, procfs.parse_stat, f"{pid} ({comm}) " + " ".join(words))
    if stat is not None:
        assert isinstance(stat, procfs.ProcStat) and stat.comm == comm


@fuzz
@given(st.integers(1, 2**22), COMMS, st.sampled_from("RSDTtZXIPKW"), st.integers(0, 2**22),
       st.integers(0, 2**32 - 1), U64, st.lists(U64, min_size=32, max_size=45))
def test_stat_round_trip(pid: int, comm: str, state: str, ppid: int, flags: int, start: int,
                         rest: list[int]) -> None:
    """Whatever the name, the kernel's numbers come back: the name cannot shift them."""
    stat = procfs.parse_stat(stat_line(pid, comm, state, ppid, flags, start, rest))
    assert stat == procfs.ProcStat(pid=pid, comm=comm, state=state, ppid=ppid, flags=flags,
                                   start_ticks=start)


STATUS_KEYS = st.sampled_from(["Name", "Tgid", "VmRSS", "VmSwap", "VmPTE", "SigPnd", "ShdPnd",
                               "State", "Pid", "Uid"])


@fuzz
@given(st.one_of(st.text(), lines_of(st.one_of(STATUS_KEYS, WORDS))))
def test_status_arbitrary(text: str) -> None:
    ok_or(ValueError, procfs.parse_status, text)


@fuzz
@given(COMMS, st.integers(1, 2**22), st.integers(0, 2**40), st.integers(0, 2**40),
       st.integers(0, 2**40), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_status_round_trip(comm: str, tgid: int, rss_kb: int, swap_kb: int, pte_kb: int,
                           sigpnd: int, shdpnd: int) -> None:
    """Status as the kernel writes it (the name's backslash and newline escaped,
    task_name()): whatever the name, the numbers come back."""
    name = comm.replace("\\", "\\\\").replace("\n", "\\n")
    text = (f"Name:\t{name}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{tgid}\n"
            f"VmRSS:\t{rss_kb:8d} kB\nVmPTE:\t{pte_kb:8d} kB\nVmSwap:\t{swap_kb:8d} kB\n"
            f"SigPnd:\t{sigpnd:016x}\nShdPnd:\t{shdpnd:016x}\n")
    st_ = procfs.parse_status(text)
    assert (st_.tgid, st_.vmrss_bytes, st_.vmswap_bytes, st_.vmpte_bytes, st_.sigpnd,
            st_.shdpnd) == (tgid, rss_kb << 10, swap_kb << 10, pte_kb << 10, sigpnd, shdpnd)
    assert st_.has_mm


@fuzz
@given(st.one_of(st.text(), lines_of(separators=st.sampled_from([":", "::", "/", " ", ""]))))
def test_pid_cgroup_arbitrary(text: str) -> None:
    path = ok_or(ValueError, procfs.parse_pid_cgroup, text)
    assert path is None or (isinstance(path, str) and path.startswith("/"))


@fuzz
@given(st.lists(st.text(st.characters(exclude_characters="\n\x00"), min_size=1), max_size=4),
       st.booleans())
def test_pid_cgroup_round_trip(names: list[str], deleted: bool) -> None:
    """Cgroup names (any bytes but '/', NUL and, in the kernel, newline) come back as
    printed: a " (deleted)" suffix stays (only the cgroup tree can tell a removed
    cgroup from one named so; see victim.py)."""
    names = [n.replace("/", "_") for n in names]
    path = "/" + "/".join(names) + (" (deleted)" if deleted else "")
    text = f"12:memory:/ignored\n0::{path}\n"
    assert procfs.parse_pid_cgroup(text) == path


@fuzz
@given(st.one_of(st.text(), WORDS))
def test_oom_score_adj(text: str) -> None:
    adj = ok_or(ValueError, procfs.parse_oom_score_adj, text)
    assert adj is None or -1000 <= adj <= 1000  # type: ignore[operator]


@fuzz
@given(st.integers(-1000, 1000))
def test_oom_score_adj_round_trip(adj: int) -> None:
    assert procfs.parse_oom_score_adj(f"{adj}\n") == adj


@fuzz
@given(st.one_of(st.text(), lines_of(), lines_of(separators=st.sampled_from([":", " ", ":  "]))))
def test_meminfo_arbitrary(text: str) -> None:
    out = ok_or(ValueError, procfs.parse_meminfo, text)
    assert out is None or all(isinstance(v, int) for v in out.values())  # type: ignore[attr-defined]


@fuzz
@given(st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9_()]{0,20}", fullmatch=True),
                       st.tuples(st.integers(0, 2**50), st.booleans()), max_size=40))
def test_meminfo_round_trip(values: dict[str, tuple[int, bool]]) -> None:
    text = "".join(f"{k}:{' ' * 8}{v:8d}{' kB' if kb else ''}\n" for k, (v, kb) in values.items())
    assert procfs.parse_meminfo(text) == {k: v * 1024 if kb else v
                                          for k, (v, kb) in values.items()}


@fuzz
@given(st.one_of(st.text(), lines_of()))
def test_vmstat_arbitrary(text: str) -> None:
    ok_or(ValueError, procfs.parse_vmstat, text)
