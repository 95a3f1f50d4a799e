"""The priority walk on hand-made trees, against spec §3 and §6.1.

Every test runs on both backends through the ``walk`` fixture (conftest.py).
Expected results are derived from the spec by hand; the reasoning is in the
docstrings and comments, never in outputs of the code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import pytest

from prioomd.model import TaskState

K, U, D = 0, 1, 2  # KILLABLE, UNKILLABLE, DYING
OK, NONE, ABORT = 0, 1, 2  # STATUS_*


@dataclass(frozen=True)
class Tree:
    """Named cgroups and processes, turned into the walk's flat arrays."""

    nodes: tuple[tuple[str, str | None, int, int], ...]  # (name, parent, priority, usage)
    tasks: tuple[tuple[str, str, int, int, int], ...]  # (label, node, state, badness, start)

    def arrays(self) -> tuple[list[int], ...]:
        index = {name: i for i, (name, _, _, _) in enumerate(self.nodes)}
        parent = [-1 if p is None else index[p] for _, p, _, _ in self.nodes]
        priority = [prio for _, _, prio, _ in self.nodes]
        usage = [use for _, _, _, use in self.nodes]
        task_node = [index[node] for _, node, _, _, _ in self.tasks]
        task_state = [state for _, _, state, _, _ in self.tasks]
        task_badness = [bad for _, _, _, bad, _ in self.tasks]
        task_start = [start for _, _, _, _, start in self.tasks]
        return parent, priority, usage, task_node, task_state, task_badness, task_start

    def run(self, walk: ModuleType, **kwargs: object) -> tuple[int, list[tuple[str, str]]]:
        """select(), with (victim cgroup, process) by name."""
        status, found = walk.select(*self.arrays(), **kwargs)
        return status, [(self.nodes[v][0], self.tasks[t][0]) for v, t in found]


def tree(nodes: Sequence[tuple[str, str | None, int, int]],
         tasks: Sequence[tuple[str, str, int, int, int]]) -> Tree:
    return Tree(tuple(nodes), tuple(tasks))


def task(label: str, node: str, state: int = K, badness: int = 100,
         start: int = 0) -> tuple[str, str, int, int, int]:
    return (label, node, state, badness, start)


# Spec §3.5 (Documentation/alibaba/interfaces.rst): A=10, B=8 under root;
# C=5, D=6 under A; E=7, F=8 under B. Creation order = list order.
EXAMPLE_NODES = [
    ("root", None, 0, 0),
    ("A", "root", 10, 0),
    ("B", "root", 8, 0),
    ("C", "A", 5, 0),
    ("D", "A", 6, 0),
    ("E", "B", 7, 0),
    ("F", "B", 8, 0),
]

BOTH_MODES = pytest.mark.parametrize("kernel_compat", [False, True], ids=["intended", "compat"])


# --------------------------------------------------------------- module surface


def test_constants(walk: ModuleType) -> None:
    assert (walk.KILLABLE, walk.UNKILLABLE, walk.DYING) == (K, U, D)
    assert (walk.STATUS_OK, walk.STATUS_NONE, walk.STATUS_ABORT) == (OK, NONE, ABORT)
    assert walk.MAX_PRIORITY == 12
    assert [int(s) for s in TaskState] == [K, U, D]


def test_result_shape_and_inputs_untouched(walk: ModuleType) -> None:
    t = tree(EXAMPLE_NODES, [task("c", "C"), task("e", "E")])
    arrays = t.arrays()
    copies = [list(a) for a in arrays]
    result = walk.select(*arrays, max_candidates=2)
    assert isinstance(result, tuple) and len(result) == 2
    status, found = result
    assert status == OK and type(status) is int
    assert isinstance(found, list)
    assert all(type(p) is tuple and len(p) == 2 and all(type(x) is int for x in p)
               for p in found)
    assert [list(a) for a in arrays] == copies


def test_tuples_ranges_and_int_subclasses_accepted(walk: ModuleType) -> None:
    """Any sequence of ints; TaskState (an IntEnum) is an int."""
    status, found = walk.select((-1, 0), range(2), (0, 0), range(1, 2),
                                [TaskState.KILLABLE], (100,), (0,), kernel_compat=1)
    assert (status, found) == (OK, [(1, 0)])


# ------------------------------------------------------------- worked example §3.5


@BOTH_MODES
def test_worked_example_victim_is_E(walk: ModuleType, kernel_compat: bool) -> None:
    """A(10) vs B(8) → B; E(7) vs F(8) → E; the worst process in E dies."""
    t = tree(EXAMPLE_NODES, [
        task("r", "root", badness=900),
        task("c", "C", badness=800),
        task("d", "D", badness=700),
        task("e_small", "E", badness=10),
        task("e_big", "E", badness=20),
        task("f", "F", badness=600),
    ])
    assert t.run(walk, kernel_compat=kernel_compat) == (OK, [("E", "e_big")])


@BOTH_MODES
def test_worked_example_full_ranking(walk: ModuleType, kernel_compat: bool) -> None:
    """§3.5 steps 1-5: E, then F (B still has F), then B is empty → A: C (5) before
    D (6), and root's own processes last, once every child is empty."""
    t = tree(EXAMPLE_NODES, [
        task("r", "root", badness=10**6),
        task("c", "C"), task("d", "D"), task("e", "E"), task("f", "F"),
    ])
    assert t.run(walk, kernel_compat=kernel_compat, max_candidates=10) == (NONE, [
        ("E", "e"), ("F", "f"), ("C", "c"), ("D", "d"), ("root", "r"),
    ])


@BOTH_MODES
def test_E_all_unkillable_moves_to_F(walk: ModuleType, kernel_compat: bool) -> None:
    """§3.5 step 4. F holds two processes, so even the kernel's over-count of
    §6.1 leaves B open: after E, B.nr_procs = 2 + 2 = 4 > B.skip = 2 + 1."""
    t = tree(EXAMPLE_NODES, [
        task("c", "C"), task("d", "D"),
        task("e1", "E", U, badness=10**6), task("e2", "E", U),
        task("f1", "F", badness=5), task("f2", "F", badness=50),
    ])
    assert t.run(walk, kernel_compat=kernel_compat) == (OK, [("F", "f2")])


def test_E_all_unkillable_single_process_F(walk: ModuleType) -> None:
    """§3.5 step 6: with one process in F the intended rule still moves to F,
    while the kernel's over-count closes B right after E (B.nr_procs = 2 + 1 <=
    B.skip = 2 + 1), so the walk goes into A and picks C."""
    t = tree(EXAMPLE_NODES, [
        task("c", "C"), task("d", "D"),
        task("e1", "E", U), task("e2", "E", U),
        task("f", "F"),
    ])
    assert t.run(walk) == (OK, [("F", "f")])
    assert t.run(walk, kernel_compat=True) == (OK, [("C", "c")])


# ------------------------------------------------------------------ over-count §6.1


def test_overcount_literal_example(walk: ModuleType) -> None:
    """§6.1 as written: X holds A (priority 0, one -1000 process) and B
    (priority 5, one killable process), and nothing else is in the domain.
    Intended: A is exhausted, B's process is found. Kernel: after A, X.skip =
    root.skip = 2 = nr_procs, so the walk returns NONE at the root: B is never
    considered (the global-OOM panic case of §6.1)."""
    t = tree(
        [("root", None, 0, 0), ("X", "root", 0, 0), ("A", "X", 0, 0), ("B", "X", 5, 0)],
        [task("a", "A", U), task("b", "B")],
    )
    assert t.run(walk) == (OK, [("B", "b")])
    assert t.run(walk, kernel_compat=True) == (NONE, [])


def test_overcount_skips_X_as_a_whole(walk: ModuleType) -> None:
    """§6.1 with a sibling Y (priority 5) of X: the kernel skips X as a whole
    and kills in Y, although X's child B still has a killable process."""
    t = tree(
        [("root", None, 0, 0), ("X", "root", 0, 0), ("Y", "root", 5, 0),
         ("A", "X", 0, 0), ("B", "X", 5, 0)],
        [task("a", "A", U), task("b", "B", badness=10), task("y", "Y", badness=10**6)],
    )
    assert t.run(walk) == (OK, [("B", "b")])
    assert t.run(walk, kernel_compat=True) == (OK, [("Y", "y")])


def test_overcount_root_scan_still_sees_the_whole_subtree(walk: ModuleType) -> None:
    """Kernel mode, with one process of root's own: after A, root.nr_procs = 3
    > root.skip = 2 but X (2 <= 2) is closed, so root is the victim cgroup and
    its scan covers the whole tree (§3.2 item 5): B's process, the worst, is
    picked with root as the victim cgroup."""
    t = tree(
        [("root", None, 0, 0), ("X", "root", 0, 0), ("A", "X", 0, 0), ("B", "X", 5, 0)],
        [task("r", "root", badness=1), task("a", "A", U, badness=10**6),
         task("b", "B", badness=1000)],
    )
    assert t.run(walk) == (OK, [("B", "b")])
    assert t.run(walk, kernel_compat=True) == (OK, [("root", "b")])


def test_overcount_exhausts_root_with_own_process(walk: ModuleType) -> None:
    """§6.1, at the root: one exhausted child is enough to close a root with one
    process of its own (root.nr_procs = 2 <= root.skip = 1 + 1). Intended: the
    root's own process is found once X is exhausted."""
    t = tree([("root", None, 0, 0), ("X", "root", 0, 0)],
             [task("r", "root"), task("x", "X", U)])
    assert t.run(walk) == (OK, [("root", "r")])
    assert t.run(walk, kernel_compat=True) == (NONE, [])


@BOTH_MODES
def test_unkillable_counted_once_per_selection(walk: ModuleType, kernel_compat: bool) -> None:
    """I (priority 0) holds one -1000 process of its own and a child C with two.
    C is exhausted first, then I is the victim and its scan meets C's processes
    again. Intended: they are not counted twice, so root.skip = 3 < nr_procs = 4
    and root's own process is found. Kernel: C → C=I=root=2+1; I closed (3 <= 3);
    root 4 > 3 is the victim and its scan finds r as well."""
    t = tree(
        [("root", None, 0, 0), ("I", "root", 0, 0), ("C", "I", 0, 0)],
        [task("r", "root"), task("i", "I", U), task("c1", "C", U), task("c2", "C", U)],
    )
    assert t.run(walk, kernel_compat=kernel_compat) == (OK, [("root", "r")])


def test_kernel_recounts_on_every_scan(walk: ModuleType) -> None:
    """I holds two -1000 processes, its child C one; root has three killable
    processes of its own. Kernel: C → C=I=root=1+1; I (3 > 2) is the victim
    and its scan counts i1, i2 and c1 again: I=root=2+3+1=6, and root.nr_procs
    = 6 <= 6 closes the root: NONE. Intended: C=I=root=1, then I=root=3 and
    the root (6 > 3) is the victim: its worst process dies."""
    t = tree(
        [("root", None, 0, 0), ("I", "root", 0, 0), ("C", "I", 0, 0)],
        [task("r1", "root", badness=1), task("r2", "root", badness=3),
         task("r3", "root", badness=2), task("i1", "I", U), task("i2", "I", U),
         task("c1", "C", U)],
    )
    assert t.run(walk) == (OK, [("root", "r2")])
    assert t.run(walk, kernel_compat=True) == (NONE, [])


# ----------------------------------------------------------------------- tie-breaks


@BOTH_MODES
def test_equal_priority_larger_usage_wins(walk: ModuleType, kernel_compat: bool) -> None:
    t = tree(
        [("root", None, 0, 0), ("p", "root", 3, 100), ("q", "root", 3, 300),
         ("r", "root", 3, 200), ("hi", "root", 4, 10**12)],
        [task("tp", "p"), task("tq", "q"), task("tr", "r"), task("th", "hi")],
    )
    assert t.run(walk, kernel_compat=kernel_compat, max_candidates=4) == (OK, [
        ("q", "tq"), ("r", "tr"), ("p", "tp"), ("hi", "th"),
    ])


@BOTH_MODES
def test_equal_usage_older_sibling_wins(walk: ModuleType, kernel_compat: bool) -> None:
    """Strict '>' on usage: at equal usage the first-created (lower index) stays."""
    t = tree(
        [("root", None, 0, 0), ("hi", "root", 9, 0), ("old", "root", 2, 500),
         ("mid", "root", 2, 500), ("new", "root", 2, 500)],
        [task("tn", "new"), task("tm", "mid"), task("to", "old"), task("th", "hi")],
    )
    assert t.run(walk, kernel_compat=kernel_compat, max_candidates=3) == (OK, [
        ("old", "to"), ("mid", "tm"), ("new", "tn"),
    ])


def test_priority_beats_usage(walk: ModuleType) -> None:
    t = tree(
        [("root", None, 0, 0), ("big", "root", 3, 10**15), ("small", "root", 2, 1)],
        [task("b", "big"), task("s", "small")],
    )
    assert t.run(walk) == (OK, [("small", "s")])


# --------------------------------------------------------------- which cgroups count


@BOTH_MODES
def test_empty_cgroups_never_chosen(walk: ModuleType, kernel_compat: bool) -> None:
    """nr_procs == 0 means skipped (§3.2 item 8), whatever memory.current says."""
    t = tree(
        [("root", None, 0, 0), ("cache", "root", 0, 2**62), ("emptyinner", "root", 0, 2**62),
         ("emptyleaf", "emptyinner", 0, 2**62), ("app", "root", 12, 1)],
        [task("a", "app")],
    )
    assert t.run(walk, kernel_compat=kernel_compat, max_candidates=5) == (NONE, [
        ("app", "a"),
    ])


@BOTH_MODES
def test_inner_processes_only_after_children(walk: ModuleType, kernel_compat: bool) -> None:
    """I's own process outranks nothing while a child qualifies (§3.2 item 6):
    L (priority 12) goes first, though I's process is far worse."""
    t = tree(
        [("root", None, 0, 0), ("I", "root", 0, 0), ("L", "I", 12, 0), ("Z", "root", 5, 0)],
        [task("i", "I", badness=10**9), task("l", "L", badness=1), task("z", "Z")],
    )
    assert t.run(walk, kernel_compat=kernel_compat, max_candidates=3) == (OK, [
        ("L", "l"), ("I", "i"), ("Z", "z"),
    ])


def test_inner_processes_after_unkillable_children(walk: ModuleType) -> None:
    """Intended: L and M (all -1000) are exhausted, then I is the victim and its
    own process dies. Kernel: L → L=I=2, root=2; M → M=2, I=4, root=4; I
    (nr 3 <= 4) and root (nr 3 <= 4) are closed: NONE."""
    t = tree(
        [("root", None, 0, 0), ("I", "root", 0, 0), ("L", "I", 0, 0), ("M", "I", 1, 0)],
        [task("i", "I"), task("l", "L", U, badness=10**6), task("m", "M", U)],
    )
    assert t.run(walk) == (OK, [("I", "i")])
    assert t.run(walk, kernel_compat=True) == (NONE, [])


@BOTH_MODES
def test_priorities_compared_among_siblings_only(walk: ModuleType, kernel_compat: bool) -> None:
    """§3.2 item 4: Lo (1) < Hi (12) at the top, so Lo's priority-12 child dies
    before Hi's priority-0 child; the root's own priority is never read."""
    nodes = [("root", None, 0, 0), ("Hi", "root", 12, 0), ("Lo", "root", 1, 0),
             ("h", "Hi", 0, 0), ("l", "Lo", 12, 0)]
    tasks = [task("th", "h", badness=10**6), task("tl", "l", badness=1)]
    expected = (NONE, [("l", "tl"), ("h", "th")])
    assert tree(nodes, tasks).run(walk, kernel_compat=kernel_compat,
                                  max_candidates=9) == expected
    nodes[0] = ("root", None, 12, 0)
    assert tree(nodes, tasks).run(walk, kernel_compat=kernel_compat,
                                  max_candidates=9) == expected


# ------------------------------------------------------------------- task states


@BOTH_MODES
def test_unkillable_never_chosen(walk: ModuleType, kernel_compat: bool) -> None:
    """-1000 processes are skipped however bad; the killable one in the same
    cgroup is chosen and the cgroup is not exhausted by the others. Then E is
    exhausted and F (two processes, so B stays open in both modes) follows."""
    t = tree(EXAMPLE_NODES, [
        task("e_adj", "E", U, badness=10**9), task("e_ok", "E", K, badness=1),
        task("e_init", "E", U, badness=10**8), task("f1", "F", badness=10**7),
        task("f2", "F", badness=1),
    ])
    assert t.run(walk, kernel_compat=kernel_compat, max_candidates=2) == (OK, [
        ("E", "e_ok"), ("F", "f1"),
    ])


@BOTH_MODES
def test_dying_in_victim_aborts(walk: ModuleType, kernel_compat: bool) -> None:
    """An in-flight victim inside the victim subtree: wait, kill nothing."""
    t = tree(EXAMPLE_NODES, [task("e", "E", badness=10**6), task("e_dying", "E", D),
                             task("f", "F")])
    assert t.run(walk, kernel_compat=kernel_compat) == (ABORT, [])


@BOTH_MODES
def test_dying_only_cgroup_is_not_empty(walk: ModuleType, kernel_compat: bool) -> None:
    """A DYING process still counts in nr_procs, so E is walked into and aborts."""
    t = tree(EXAMPLE_NODES, [task("e_dying", "E", D), task("f", "F"), task("c", "C")])
    assert t.run(walk, kernel_compat=kernel_compat) == (ABORT, [])


@BOTH_MODES
def test_dying_elsewhere_does_not_stop_a_kill(walk: ModuleType, kernel_compat: bool) -> None:
    """DYING processes outside the victim subtree (in F, in A's subtree, in the
    root's own processes) are never scanned when E is the victim."""
    t = tree(EXAMPLE_NODES, [
        task("r_dying", "root", D), task("c_dying", "C", D), task("f_dying", "F", D),
        task("e", "E"),
    ])
    assert t.run(walk, kernel_compat=kernel_compat) == (OK, [("E", "e")])


@BOTH_MODES
def test_ranking_stops_at_dying(walk: ModuleType, kernel_compat: bool) -> None:
    """E's process is the first pick; the next selection goes to F and meets
    the in-flight victim there: ABORT, with the one candidate found."""
    t = tree(EXAMPLE_NODES, [task("e", "E"), task("f_dying", "F", D), task("c", "C")])
    assert t.run(walk, kernel_compat=kernel_compat, max_candidates=5) == (ABORT, [
        ("E", "e"),
    ])


@BOTH_MODES
def test_badness_tie_most_recent_start_wins(walk: ModuleType, kernel_compat: bool) -> None:
    t = tree(EXAMPLE_NODES, [
        task("newer", "E", badness=50, start=2000),
        task("older", "E", badness=50, start=1000),
        task("small", "E", badness=49, start=9999),
    ])
    assert t.run(walk, kernel_compat=kernel_compat, max_candidates=3) == (OK, [
        ("E", "newer"), ("E", "older"), ("E", "small"),
    ])


def test_full_tie_last_found_wins(walk: ModuleType) -> None:
    """Equal badness and start: the later one in scan order replaces the
    earlier (the kernel's >= 5.9 rule, spec §3.3); within a cgroup the scan
    follows the task order."""
    t = tree(EXAMPLE_NODES, [task("first", "E", badness=7, start=5),
                             task("second", "E", badness=7, start=5)])
    assert t.run(walk, max_candidates=2) == (OK, [("E", "second"), ("E", "first")])


@BOTH_MODES
def test_negative_badness_still_killable(walk: ModuleType, kernel_compat: bool) -> None:
    t = tree(EXAMPLE_NODES, [
        task("very_neg", "E", badness=-(2**63)), task("neg", "E", badness=-5),
    ])
    assert t.run(walk, kernel_compat=kernel_compat, max_candidates=3) == (NONE, [
        ("E", "neg"), ("E", "very_neg"),
    ])


# ------------------------------------------------------------------ degenerate trees


@BOTH_MODES
def test_root_only(walk: ModuleType, kernel_compat: bool) -> None:
    root = [("root", None, 0, 0)]
    assert tree(root, []).run(walk, kernel_compat=kernel_compat) == (NONE, [])
    assert tree(root, [task("u", "root", U)]).run(walk, kernel_compat=kernel_compat) == (
        NONE, [])
    assert tree(root, [task("d", "root", D)]).run(walk, kernel_compat=kernel_compat) == (
        ABORT, [])
    t = tree(root, [task("a", "root", badness=1), task("u", "root", U),
                    task("b", "root", badness=2)])
    assert t.run(walk, kernel_compat=kernel_compat, max_candidates=5) == (NONE, [
        ("root", "b"), ("root", "a"),
    ])


@BOTH_MODES
def test_nothing_killable(walk: ModuleType, kernel_compat: bool) -> None:
    t = tree(EXAMPLE_NODES, [task(f"u{n}", n, U) for n in ("root", "C", "D", "E", "F")])
    assert t.run(walk, kernel_compat=kernel_compat, max_candidates=3) == (NONE, [])
    assert tree(EXAMPLE_NODES, []).run(walk, kernel_compat=kernel_compat) == (NONE, [])


# ---------------------------------------------------------------------- ranking


@BOTH_MODES
def test_max_candidates(walk: ModuleType, kernel_compat: bool) -> None:
    """The ranking stops with STATUS_OK when max_candidates is reached, even if
    that was the last killable process; STATUS_NONE only when a further
    selection found nothing."""
    t = tree(EXAMPLE_NODES, [
        task("e1", "E", badness=5), task("e2", "E", badness=9), task("e3", "E", badness=7),
        task("f", "F"),
    ])
    assert t.run(walk, kernel_compat=kernel_compat) == (OK, [("E", "e2")])
    assert t.run(walk, kernel_compat=kernel_compat, max_candidates=3) == (OK, [
        ("E", "e2"), ("E", "e3"), ("E", "e1"),
    ])
    full = [("E", "e2"), ("E", "e3"), ("E", "e1"), ("F", "f")]
    assert t.run(walk, kernel_compat=kernel_compat, max_candidates=4) == (OK, full)
    assert t.run(walk, kernel_compat=kernel_compat, max_candidates=5) == (NONE, full)
    assert t.run(walk, kernel_compat=kernel_compat, max_candidates=2**80) == (NONE, full)


def test_ranking_resets_skips_between_selections(walk: ModuleType) -> None:
    """Kernel mode: the over-count of one selection does not carry over; each
    selection repeats it from zero. First: E (all -1000) closes B (F has one
    process), C is picked. Second: the same, D. Third, only e and f are left:
    E's closure brings root.skip to 2 = nr_procs, so f is never found.
    Intended: F, then C and D; the fourth selection exhausts E and B, NONE."""
    t = tree(EXAMPLE_NODES, [task("e", "E", U), task("f", "F"), task("c", "C"),
                             task("d", "D")])
    assert t.run(walk, kernel_compat=True, max_candidates=4) == (NONE, [
        ("C", "c"), ("D", "d"),
    ])
    assert t.run(walk, max_candidates=4) == (NONE, [("F", "f"), ("C", "c"), ("D", "d")])


# ---------------------------------------------------------------------- validation

GOOD = ([-1, 0, 0], [0, 1, 2], [0, 5, 5], [1, 2], [K, K], [1, 2], [3, 4])


def _with(index: int, value: object) -> list[object]:
    args: list[object] = [list(a) for a in GOOD]
    args[index] = value
    return args


INVALID = [
    pytest.param(_with(0, []), {}, ValueError, "empty tree", id="empty"),
    pytest.param(_with(1, [0, 1]), {}, ValueError, "same length", id="priority-len"),
    pytest.param(_with(2, [0, 1, 2, 3]), {}, ValueError, "same length", id="usage-len"),
    pytest.param(_with(4, [K]), {}, ValueError, "task arrays", id="state-len"),
    pytest.param(_with(6, [1, 2, 3]), {}, ValueError, "task arrays", id="start-len"),
    pytest.param(_with(0, [-1, 0, True]), {}, TypeError, "parent: integers", id="bool"),
    pytest.param(_with(1, [0, 1.0, 2]), {}, TypeError, "priority: integers", id="float"),
    pytest.param(_with(5, ["1", 2]), {}, TypeError, "task_badness: integers", id="str"),
    pytest.param(_with(3, [1, None]), {}, TypeError, "task_node: integers", id="none"),
    pytest.param(_with(2, None), {}, TypeError, None, id="not-a-sequence"),
    pytest.param(_with(0, [-2, 0, 0]), {}, ValueError, "out of range", id="parent<-1"),
    pytest.param(_with(0, [0, 0, 0]), {}, ValueError, r"parent\[0\]", id="root-parent"),
    pytest.param(_with(0, [-1, 0, 2]), {}, ValueError, r"parent\[2\] = 2", id="self-parent"),
    pytest.param(_with(0, [-1, -1, 0]), {}, ValueError, r"parent\[1\] = -1", id="2nd-root"),
    pytest.param(_with(1, [0, 13, 0]), {}, ValueError, r"priority\[1\] = 13", id="prio>12"),
    pytest.param(_with(1, [0, 0, -1]), {}, ValueError, r"priority\[2\] = -1", id="prio<0"),
    pytest.param(_with(1, [13, 0, 0]), {}, ValueError, r"priority\[0\]", id="root-prio"),
    pytest.param(_with(2, [0, -1, 0]), {}, ValueError, "usage: value -1", id="usage<0"),
    pytest.param(_with(5, [2**63, 0]), {}, ValueError, "out of range", id="int64-max"),
    pytest.param(_with(6, [-(2**63) - 1, 0]), {}, ValueError, "out of range", id="int64-min"),
    pytest.param(_with(3, [1, 3]), {}, ValueError, r"task_node\[1\] = 3", id="no-node"),
    pytest.param(_with(4, [K, 3]), {}, ValueError, r"task_state\[1\] = 3", id="state"),
    pytest.param(_with(4, [-1, K]), {}, ValueError, r"task_state\[0\]", id="state<0"),
    pytest.param(list(GOOD), {"max_candidates": 0}, ValueError, "max_candidates",
                 id="maxc-0"),
    pytest.param(list(GOOD), {"max_candidates": -(2**70)}, ValueError, "max_candidates",
                 id="maxc-huge-neg"),
    pytest.param(list(GOOD), {"max_candidates": 1.0}, ValueError, "max_candidates",
                 id="maxc-float"),
    pytest.param(list(GOOD), {"max_candidates": "2"}, ValueError, "max_candidates",
                 id="maxc-str"),
]


@pytest.mark.parametrize(("args", "kwargs", "exc", "match"), INVALID)
def test_invalid_input(walk: ModuleType, args: list[object], kwargs: dict[str, object],
                       exc: type[Exception], match: str | None) -> None:
    with pytest.raises(exc, match=match):
        walk.select(*args, **kwargs)


def test_valid_baseline_of_invalid_cases(walk: ModuleType) -> None:
    """GOOD itself is accepted, so each INVALID case fails for its one change."""
    assert walk.select(*GOOD, max_candidates=2) == (OK, [(1, 0), (2, 1)])


def test_missing_argument(walk: ModuleType) -> None:
    with pytest.raises(TypeError):
        walk.select(*GOOD[:6])


# ---------------------------------------------------------------- the lazy walk's steps


@pytest.mark.parametrize(("priority", "usage", "expected"), [
    ([], [], -1),  # no qualifying child: the walk stops here
    ([5], [0], 0),
    ([10, 8], [0, 0], 1),  # spec §3.5 step 1: B (8) over A (10)
    ([3, 3, 3], [10, 20, 20], 1),  # equal priority: larger usage; equal usage: older
    ([12, 0, 0], [2**63 - 1, 0, 1], 2),  # priority first, usage only among equals
    ([0, 0], [7, 7], 0),  # full tie: the older sibling
])
def test_choose_child(walk: ModuleType, priority: list[int], usage: list[int],
                      expected: int) -> None:
    assert walk.choose_child(priority, usage) == expected
    assert walk.choose_child(tuple(priority), tuple(usage)) == expected


@pytest.mark.parametrize(("state", "badness", "start", "expected"), [
    ([], [], [], (NONE, -1)),
    ([U, U], [9, 9], [0, 0], (NONE, -1)),  # all unkillable: the subtree is exhausted
    ([K, U, K], [5, 99, 7], [0, 0, 0], (OK, 2)),  # -1000 is never the pick
    ([K, K], [5, 5], [2, 1], (OK, 0)),  # equal badness: the later start wins
    ([K, K], [5, 5], [1, 1], (OK, 1)),  # full tie: the later in scan order
    ([K, K, D, K], [1, 2, 3, 4], [0, 0, 0, 0], (ABORT, 2)),  # an in-flight victim: wait
    ([K], [-(2**63)], [0], (OK, 0)),  # negative badness is still eligible (>= 5.9)
])
def test_pick_task(walk: ModuleType, state: list[int], badness: list[int], start: list[int],
                   expected: tuple[int, int]) -> None:
    assert walk.pick_task(state, badness, start) == expected


@pytest.mark.parametrize(("fn", "args", "exc", "message"), [
    ("choose_child", ([0, 1], [0]), ValueError, "same length"),
    ("choose_child", ([13], [0]), ValueError, r"priority\[0\] = 13"),
    ("choose_child", ([0], [-1]), ValueError, "usage: value -1 out of range"),
    ("choose_child", ([True], [0]), TypeError, "integers expected, got bool"),
    ("choose_child", (None, [0]), TypeError, None),
    ("pick_task", ([0], [0], []), ValueError, "same length"),
    ("pick_task", ([3], [0], [0]), ValueError, r"task_state\[0\] = 3: unknown state"),
    ("pick_task", ([0], [2**63], [0]), ValueError, "out of range"),
    ("pick_task", ([0], [0], ["1"]), TypeError, "integers expected, got str"),
])
def test_lazy_steps_reject_bad_input(walk: ModuleType, fn: str, args: tuple[object, ...],
                                     exc: type[Exception], message: str | None) -> None:
    with pytest.raises(exc, match=message):
        getattr(walk, fn)(*args)
