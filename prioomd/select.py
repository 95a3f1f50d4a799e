"""Victim selection: a Snapshot in, a ranked Decision out. Pure: no I/O.

The walk itself runs in the C core (``prioomd._select``) when it is importable
and in its pure-Python twin (``prioomd._select_py``) otherwise; both give
identical results. This module turns the walk's indices into names, applies
``memory.oom.group`` (spec §4) and writes the reason a human reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType

from prioomd import _select_py
from prioomd.detect import fmt_bytes
from prioomd.model import Candidate, Decision, Snapshot, TaskState

try:
    from prioomd import _select as _select_c  # type: ignore[attr-defined]
except ImportError:  # no compiler at install time: the twin gives the same results
    _select_c = None

BACKENDS: dict[str, ModuleType] = {"python": _select_py}
if _select_c is not None:
    BACKENDS["c"] = _select_c

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
        [int(t.state) for t in tasks],
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
        if whole is None:
            pids: tuple[int, ...] = (task.pid,)
            kill_cgroup = None
            what = f"pid {task.pid} ({task.comm})"
        else:
            inside = _subtree_of(children, whole)
            members = [x for x in tasks if x.node in inside]
            pids = tuple(x.pid for x in members if x.state != TaskState.UNKILLABLE)
            spared = len(members) - len(pids)
            # The kill path spares -1000 members and prioomd itself (the
            # kernel's oom.group rule) by killing such a group task by task.
            kill_cgroup = nodes[whole].path
            how = "whole" if spared == 0 else f"sparing {spared} unkillable"
            what = (f"cgroup {nodes[whole].path} {how} ({len(pids)} processes, "
                    f"{why_whole}), chosen through pid {task.pid} ({task.comm})")
        covered.update(pids)
        if first_victim == -1:
            first_victim = victim
        steps = _walk_story(snapshot, victim, children, killable_in)
        story = " > ".join(steps) or "the domain root itself"
        candidates.append(Candidate(
            victim_cgroup=nodes[victim].path,
            pid=task.pid,
            comm=task.comm,
            badness=task.badness,
            rss_bytes=task.rss_bytes,
            kill_cgroup=kill_cgroup,
            pids=pids,
            start_ticks=task.start_ticks,
            reason=(f"walk from {snapshot.domain}: {story}; worst task in "
                    f"{nodes[victim].path}: {what}, badness {task.badness} pages, "
                    f"rss {fmt_bytes(task.rss_bytes)}"),
        ))
        if len(candidates) >= max_candidates:
            break

    if candidates:
        walked = tuple(nodes[u].path for u in _chain(snapshot, first_victim))
        return Decision(snapshot.domain, tuple(candidates), "kill", candidates[0].reason, name,
                        walked)
    if status == _select_py.STATUS_ABORT:
        dying = [t for t in tasks if t.state == TaskState.DYING]
        who = ", ".join(f"pid {t.pid} ({t.comm})" for t in dying[:3])
        return Decision(snapshot.domain, (), "wait",
                        f"a previous victim is still exiting ({who}); the kernel would wait "
                        "for it rather than kill another", name)
    unkillable = sum(1 for t in tasks if t.state == TaskState.UNKILLABLE)
    return Decision(snapshot.domain, (), "none",
                    f"nothing killable in {snapshot.domain}: {len(tasks)} processes, "
                    f"{unkillable} unkillable", name)

