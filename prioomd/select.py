"""Victim selection: a Snapshot in, a ranked Decision out. Pure: no I/O.

The walk itself runs in the C core (``prioomd._select``) when it is importable
and in its pure-Python twin (``prioomd._select_py``) otherwise; both give
identical results. This module turns the walk's indices into names, applies
``memory.oom.group`` (spec §4) and writes the reason a human reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType

from prioomd import _select_py, twins
from prioomd.detect import fmt_bytes
from prioomd.model import Candidate, Decision, Snapshot, Task, TaskState

BACKENDS: dict[str, ModuleType] = twins.backends(_select_py, "prioomd._select")
DEFAULT_BACKEND = "c" if "c" in BACKENDS else "python"

WalkFn = Callable[..., tuple[int, list[tuple[int, int]]]]


def backend_description() -> str:
    """What `prioomd --version` prints about the walk."""
    if DEFAULT_BACKEND == "c":
        return "walk: C core (prioomd._select)"
    return "walk: pure Python (prioomd._select_py; the C core is not built)"


def _walk_fn(backend: str | None) -> WalkFn:
    name = backend or DEFAULT_BACKEND
    try:
        return BACKENDS[name].select  # type: ignore[no-any-return]
    except KeyError:
        raise ValueError(f"walk backend {name!r} is not available "
                         f"(have: {', '.join(sorted(BACKENDS))})") from None


def _subtree_of(children: Sequence[Sequence[int]], root: int) -> set[int]:
    """Indices of root and its descendants."""
    inside = set()
    stack = [root]
    while stack:
        u = stack.pop()
        inside.add(u)
        stack.extend(children[u])
    return inside


def _chain(snapshot: Snapshot, node: int) -> list[int]:
    """Indices from the domain root down to node."""
    chain = []
    while node != -1:
        chain.append(node)
        node = snapshot.nodes[node].parent
    return chain[::-1]


def oom_group_root(snapshot: Snapshot, node: int) -> int | None:
    """The highest ancestor of node, up to the domain root, with memory.oom.group=1.

    This is mem_cgroup_get_oom_group(): it may reach beyond the cgroup the
    priority walk chose (spec §4).
    """
    found = None
    u = node
    while u != -1:
        if snapshot.nodes[u].oom_group:
            found = u
        u = snapshot.nodes[u].parent
    return found


def kill_target(snapshot: Snapshot, children: Sequence[Sequence[int]], victim: int,
                group: int | None) -> tuple[int | None, str]:
    """The cgroup to kill whole (None: the one process) and why.

    ``kill = "cgroup"`` on the cgroup where the walk stopped takes that cgroup;
    memory.oom.group (``group``, from oom_group_root) is honoured either way, and
    the wider of the two wins. The domain root "/" is never killed whole.
    """
    node = snapshot.nodes[victim]
    if node.kill.value != "cgroup" or node.path == "/":
        return group, "memory.oom.group=1"
    if group is not None and victim not in _subtree_of(children, group):
        group = None  # a group below the victim: the victim's cgroup is wider
    if group is not None:
        return group, "memory.oom.group=1"
    return victim, f"kill = cgroup from {node.kill.source}"


def _walk_story(snapshot: Snapshot, victim: int, children: Sequence[Sequence[int]],
                killable_in: Sequence[int]) -> tuple[str, ...]:
    """'path (priority p over siblings...)' for each level the walk descended."""
    steps = []
    for u in _chain(snapshot, victim)[1:]:
        node = snapshot.nodes[u]
        others = [
            f"{snapshot.nodes[i].path} {snapshot.nodes[i].priority.value}"
            for i in children[node.parent]
            if i != u and killable_in[i] > 0
        ]
        passed = f" over {', '.join(others)}" if others else ""
        steps.append(f"{node.path} (priority {node.priority.value}{passed})")
    return tuple(steps)


def _killable_counts(snapshot: Snapshot) -> list[int]:
    counts = [0] * len(snapshot.nodes)
    for task in snapshot.tasks:
        if task.state != TaskState.KILLABLE:
            continue
        u = task.node
        while u != -1:
            counts[u] += 1
            u = snapshot.nodes[u].parent
    return counts


def walk_state(task: Task) -> int:
    """The state the walk sees for a task: the one place both walks (this module's
    and lazywalk's) turn a Task into a walk state, so a rule about in-flight
    victims applies to both."""
    return int(task.state)


def make_candidate(domain: str, victim_cgroup: str, task: Task, story: str,
                   group: str | None, members: Sequence[Task],
                   why_whole: str = "memory.oom.group=1") -> Candidate:
    """One ranked kill: ``task``, or the cgroup ``group`` (memory.oom.group, or
    ``kill = cgroup``: ``why_whole``; see kill_target) whose subtree holds
    ``members``. ``story`` is the walk, level by level."""
    if group is None:
        pids: tuple[int, ...] = (task.pid,)
        what = f"pid {task.pid} ({task.comm})"
    else:
        pids = tuple(x.pid for x in members if x.state != TaskState.UNKILLABLE)
        spared = len(members) - len(pids)
        # The kill path spares -1000 members and prioomd itself (the kernel's
        # oom.group rule) by killing such a group task by task.
        how = "whole" if spared == 0 else f"sparing {spared} unkillable"
        what = (f"cgroup {group} {how} ({len(pids)} processes, "
                f"{why_whole}), chosen through pid {task.pid} ({task.comm})")
    return Candidate(
        victim_cgroup=victim_cgroup, pid=task.pid, comm=task.comm, badness=task.badness,
        rss_bytes=task.rss_bytes, kill_cgroup=group, pids=pids, start_ticks=task.start_ticks,
        reason=(f"walk from {domain}: {story or 'the domain root itself'}; worst task in "
                f"{victim_cgroup}: {what}, badness {task.badness} pages, "
                f"rss {fmt_bytes(task.rss_bytes)}"),
    )


def wait_decision(domain: str, dying: Sequence[Task], backend: str) -> Decision:
    """The walk met an in-flight victim (a DYING task) where it would kill."""
    who = ", ".join(f"pid {t.pid} ({t.comm})" for t in dying[:3])
    return Decision(domain, (), "wait",
                    f"a previous victim is still exiting ({who}); the kernel would wait "
                    "for it rather than kill another", backend)


def none_decision(domain: str, tasks: Sequence[Task], backend: str) -> Decision:
    unkillable = sum(1 for t in tasks if t.state == TaskState.UNKILLABLE)
    return Decision(domain, (), "none",
                    f"nothing killable in {domain}: {len(tasks)} processes, "
                    f"{unkillable} unkillable", backend)


def select_victims(
    snapshot: Snapshot,
    *,
    kernel_compat: bool = False,
    max_candidates: int = 5,
    backend: str | None = None,
) -> Decision:
    """Rank the victims of this OOM domain as successive priority OOMs would."""
    walk = _walk_fn(backend)
    nodes, tasks = snapshot.nodes, snapshot.tasks
    parent = [n.parent for n in nodes]
    # The walk returns one entry per process; oom.group kills can cover later
    # entries, so ask for more and fold them below.
    status, ranked = walk(
        parent,
        [int(n.priority.value) for n in nodes],
        [n.usage_bytes for n in nodes],
        [t.node for t in tasks],
        [walk_state(t) for t in tasks],
        [t.badness for t in tasks],
        [t.start_ticks for t in tasks],
        kernel_compat=kernel_compat,
        max_candidates=max(1, min(len(tasks), max_candidates * 4)) if tasks else 1,
    )
    name = backend or DEFAULT_BACKEND
    children: list[list[int]] = [[] for _ in nodes]
    for i, p in enumerate(parent[1:], start=1):
        children[p].append(i)
    killable_in = _killable_counts(snapshot)

    candidates: list[Candidate] = []
    first_victim = -1
    covered: set[int] = set()
    for victim, t in ranked:
        task = tasks[t]
        if task.pid in covered:
            continue
        group = oom_group_root(snapshot, task.node)
        whole, why_whole = kill_target(snapshot, children, victim, group)
        members: list[Task] = []
        if whole is not None:
            inside = _subtree_of(children, whole)
            members = [x for x in tasks if x.node in inside]
        cand = make_candidate(
            snapshot.domain, nodes[victim].path, task,
            " > ".join(_walk_story(snapshot, victim, children, killable_in)),
            None if whole is None else nodes[whole].path, members, why_whole)
        covered.update(cand.pids)
        if first_victim == -1:
            first_victim = victim
        candidates.append(cand)
        if len(candidates) >= max_candidates:
            break

    if candidates:
        walked = tuple(nodes[u].path for u in _chain(snapshot, first_victim))
        return Decision(snapshot.domain, tuple(candidates), "kill", candidates[0].reason, name,
                        walked)
    if status == _select_py.STATUS_ABORT:
        return wait_decision(snapshot.domain,
                             [t for t in tasks if t.state == TaskState.DYING], name)
    return none_decision(snapshot.domain, tasks, name)
