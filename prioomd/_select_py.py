"""Reference victim selection: the executable form of spec §3.2-3.3.

This module and the C extension ``prioomd._select`` expose the same functions,
``select`` (the walk over a whole snapshot) and ``choose_child`` / ``pick_task``
(the steps of the lazy walk, at the end of this file), with the same contracts;
every selection test runs against both and a differential test compares them
on random trees. Numbers in, indices out: no
I/O, no strings, no global state.

Tree layout (flat arrays, one entry per cgroup of the OOM domain):

* ``parent[i]``: index of i's parent; ``parent[0] == -1`` (node 0 is the OOM
  domain root) and ``0 <= parent[i] < i`` for every other node.
* Siblings are in creation order: among the children of one parent, a lower
  index is an older cgroup. This is what the usage tie-break falls back on.
* ``priority[i]``: 0..12 (spec §1.4); the root's own value is never consulted.
* ``usage[i]``: bytes, ``memory.current`` (>= 0), the tie-break at equal priority.

Tasks (one entry per process, i.e. thread-group leader, of the domain):

* ``task_node[t]``: index of the cgroup the process is attached to.
* ``task_state[t]``: KILLABLE, UNKILLABLE (oom_score_adj -1000, pid 1, kernel
  thread, zombie, prioomd itself) or DYING (already sent SIGKILL and not yet
  gone: the kernel's un-reaped OOM victim, which aborts a selection that meets it).
* ``task_badness[t]``: the kernel's oom_badness in pages (may be negative).
* ``task_start[t]``: start time in any monotonic unit; at equal badness the
  most recently started process wins (least work lost).

Result: ``(status, candidates)`` where ``candidates`` is a list of
``(victim_node, task)`` pairs in kill order: the first is what the kernel
would pick now, each next one what it would pick once the previous task is
gone. ``status`` says why the list stopped: STATUS_OK (max_candidates
reached), STATUS_NONE (nothing killable is left in the domain) or
STATUS_ABORT (the next selection met a DYING task inside its victim subtree,
so the kernel would wait for that victim instead of killing another).

Exhausted subtrees: by default a process found unkillable is counted once per
selection, so a subtree is exhausted exactly when all of its processes were
evaluated unkillable (DESIGN §2, the rule the patch intends). With
``kernel_compat=True`` the kernel's arithmetic is reproduced bit for bit:
every scan re-counts the unkillable processes it meets and a victim that
yields nothing adds one more skip to itself and every ancestor (spec §6.1).
"""

from __future__ import annotations

from collections.abc import Sequence

KILLABLE = 0
UNKILLABLE = 1
DYING = 2

STATUS_OK = 0
STATUS_NONE = 1
STATUS_ABORT = 2

MAX_PRIORITY = 12  # MEMCG_OOM_PRIORITY, include/linux/memcontrol.h
_PRIO_SENTINEL = MAX_PRIORITY + 1  # DEF_PRIORITY + 1 in the walk

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def _check_int64(name: str, values: Sequence[int], lo: int = _INT64_MIN) -> None:
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name}: integers expected, got {type(v).__name__}")
        if v < lo or v > _INT64_MAX:
            raise ValueError(f"{name}: value {v} out of range")


def _validate(
    parent: Sequence[int],
    priority: Sequence[int],
    usage: Sequence[int],
    task_node: Sequence[int],
    task_state: Sequence[int],
    task_badness: Sequence[int],
    task_start: Sequence[int],
    max_candidates: int,
) -> None:
    n = len(parent)
    if n == 0:
        raise ValueError("empty tree: node 0 must be the domain root")
    if len(priority) != n or len(usage) != n:
        raise ValueError("parent, priority and usage must have the same length")
    t = len(task_node)
    if len(task_state) != t or len(task_badness) != t or len(task_start) != t:
        raise ValueError("task arrays must have the same length")
    _check_int64("parent", parent, lo=-1)
    _check_int64("priority", priority)
    _check_int64("usage", usage, lo=0)
    _check_int64("task_node", task_node)
    _check_int64("task_state", task_state)
    _check_int64("task_badness", task_badness)
    _check_int64("task_start", task_start)
    if parent[0] != -1:
        raise ValueError("parent[0] must be -1 (node 0 is the domain root)")
    for i in range(1, n):
        if not 0 <= parent[i] < i:
            raise ValueError(f"parent[{i}] = {parent[i]}: must be in [0, {i})")
    for i, p in enumerate(priority):
        if not 0 <= p <= MAX_PRIORITY:
            raise ValueError(f"priority[{i}] = {p}: must be in 0..{MAX_PRIORITY}")
    for j in range(t):
        if not 0 <= task_node[j] < n:
            raise ValueError(f"task_node[{j}] = {task_node[j]}: no such node")
        if task_state[j] not in (KILLABLE, UNKILLABLE, DYING):
            raise ValueError(f"task_state[{j}] = {task_state[j]}: unknown state")
    if not isinstance(max_candidates, int) or max_candidates < 1:
        raise ValueError("max_candidates must be >= 1")


def select(
    parent: Sequence[int],
    priority: Sequence[int],
    usage: Sequence[int],
    task_node: Sequence[int],
    task_state: Sequence[int],
    task_badness: Sequence[int],
    task_start: Sequence[int],
    kernel_compat: bool = False,
    max_candidates: int = 1,
) -> tuple[int, list[tuple[int, int]]]:
    """Rank victims as successive priority OOMs in this domain would kill them."""
    _validate(parent, priority, usage, task_node, task_state, task_badness, task_start,
              max_candidates)
    n = len(parent)
    ntasks = len(task_node)

    children: list[list[int]] = [[] for _ in range(n)]
    for i in range(1, n):
        children[parent[i]].append(i)
    # Pre-order (children in creation order): the order the kernel's
    # mem_cgroup_scan_tasks visits the victim subtree in.
    order: list[int] = []
    stack = [0]
    while stack:
        u = stack.pop()
        order.append(u)
        stack.extend(reversed(children[u]))
    pos = [0] * n
    for k, u in enumerate(order):
        pos[u] = k
    end = [0] * n  # subtree of u is order[pos[u]:end[u]]
    for u in reversed(order):
        e = pos[u] + 1
        for c in children[u]:
            e = max(e, end[c])
        end[u] = e
    tasks_of: list[list[int]] = [[] for _ in range(n)]
    for j in range(ntasks):
        tasks_of[task_node[j]].append(j)

    nr_procs = [0] * n  # css->nr_procs: processes in the subtree
    for j in range(ntasks):
        u = task_node[j]
        while u != -1:
            nr_procs[u] += 1
            u = parent[u]
    alive = [True] * ntasks

    candidates: list[tuple[int, int]] = []
    while True:
        status, victim, task = _select_once(
            parent, priority, usage, children, order, pos, end, tasks_of, nr_procs, alive,
            task_state, task_badness, task_start, kernel_compat)
        if status != STATUS_OK:
            return status, candidates
        candidates.append((victim, task))
        if len(candidates) >= max_candidates:
            return STATUS_OK, candidates
        # The chosen process is gone for the next selection.
        alive[task] = False
        u = task_node[task]
        while u != -1:
            nr_procs[u] -= 1
            u = parent[u]


def _select_once(
    parent: Sequence[int],
    priority: Sequence[int],
    usage: Sequence[int],
    children: list[list[int]],
    order: list[int],
    pos: list[int],
    end: list[int],
    tasks_of: list[list[int]],
    nr_procs: list[int],
    alive: list[bool],
    task_state: Sequence[int],
    task_badness: Sequence[int],
    task_start: Sequence[int],
    kernel_compat: bool,
) -> tuple[int, int, int]:
    """One mem_cgroup_select_bad_process(): (status, victim node, task)."""
    n = len(parent)
    skip = [0] * n  # num_oom_skip, reset for every selection
    counted = [False] * len(alive)

    def account_skip(u: int, k: int) -> None:
        while u != -1:
            skip[u] += k
            u = parent[u]

    while True:
        # mem_cgroup_select_victim_cgroup: descend into the lowest priority.
        victim = -1
        node = 0
        while node != -1:
            if nr_procs[node] <= skip[node]:
                break
            victim = node
            best = -1
            best_prio = _PRIO_SENTINEL
            for c in children[node]:
                if nr_procs[c] <= skip[c]:
                    continue
                if priority[c] > best_prio:
                    continue
                if priority[c] < best_prio:
                    best, best_prio = c, priority[c]
                    continue
                if usage[c] > usage[best]:  # strict: equal usage keeps the older
                    best = c
            node = best
        if victim == -1:
            return STATUS_NONE, -1, -1

        # Scan the victim subtree for the worst task.
        chosen = -1
        for k in range(pos[victim], end[victim]):
            u = order[k]
            for j in tasks_of[u]:
                if not alive[j]:
                    continue
                state = task_state[j]
                if state == UNKILLABLE:
                    if kernel_compat or not counted[j]:
                        counted[j] = True
                        account_skip(u, 1)
                    continue
                if state == DYING:
                    return STATUS_ABORT, victim, -1
                if (chosen == -1 or task_badness[j] > task_badness[chosen]
                        or (task_badness[j] == task_badness[chosen]
                            and task_start[j] >= task_start[chosen])):
                    chosen = j
        if chosen != -1:
            return STATUS_OK, victim, chosen
        if victim == 0:
            return STATUS_NONE, -1, -1
        if kernel_compat:
            account_skip(victim, 1)  # the over-count of spec §6.1
        # Intended rule: every live process of the victim subtree was just counted
        # once, so skip[victim] == nr_procs[victim] already: the subtree is exhausted.


# ---------------------------------------------------------------- the lazy walk's steps
#
# The lazy walk (prioomd/lazywalk.py) reads one level at a time and asks these two
# functions for the numbers; together with its bookkeeping they are select() cut at
# the points where it needs to read the next level.


def choose_child(priority: Sequence[int], usage: Sequence[int]) -> int:
    """One level of mem_cgroup_select_victim_cgroup: which of these children the walk
    descends into, or -1 when there is none.

    The children are those that still qualify (a process not known unkillable), in
    creation order: the lowest priority wins, then the strictly larger usage, then
    the older (lower index).
    """
    if len(priority) != len(usage):
        raise ValueError("priority and usage must have the same length")
    _check_int64("priority", priority)
    _check_int64("usage", usage, lo=0)
    for i, p in enumerate(priority):
        if not 0 <= p <= MAX_PRIORITY:
            raise ValueError(f"priority[{i}] = {p}: must be in 0..{MAX_PRIORITY}")
    best = -1
    best_prio = _PRIO_SENTINEL
    for c, p in enumerate(priority):
        if p > best_prio:
            continue
        if p < best_prio:
            best, best_prio = c, p
            continue
        if usage[c] > usage[best]:  # strict: equal usage keeps the older
            best = c
    return best


def pick_task(task_state: Sequence[int], task_badness: Sequence[int],
              task_start: Sequence[int]) -> tuple[int, int]:
    """The scan of the victim cgroup's subtree (spec §3.3): ``(status, task)``.

    Tasks in the scan's order (pre-order of the cgroups, cgroup.procs order within
    one). STATUS_ABORT and the first DYING task when there is one (the kernel waits
    for an in-flight victim); STATUS_OK and the worst KILLABLE task (badness, then
    the later start, then the later in scan order); else STATUS_NONE and -1.
    """
    t = len(task_state)
    if len(task_badness) != t or len(task_start) != t:
        raise ValueError("task arrays must have the same length")
    _check_int64("task_state", task_state)
    _check_int64("task_badness", task_badness)
    _check_int64("task_start", task_start)
    for j, s in enumerate(task_state):
        if s not in (KILLABLE, UNKILLABLE, DYING):
            raise ValueError(f"task_state[{j}] = {s}: unknown state")
    chosen = -1
    for j in range(t):
        state = task_state[j]
        if state == DYING:
            return STATUS_ABORT, j
        if state == KILLABLE and (
                chosen == -1 or task_badness[j] > task_badness[chosen]
                or (task_badness[j] == task_badness[chosen]
                    and task_start[j] >= task_start[chosen])):
            chosen = j
    return (STATUS_OK, chosen) if chosen != -1 else (STATUS_NONE, -1)
