"""The daemon's decision: the priority walk reading only what it walks (spec §3.2-3.3).

``snapshot.take`` + ``select.select_victims`` read a whole OOM domain, then decide:
the full picture that ``prioomd tree`` and ``audit`` show, and the reference.
``decide`` here takes the same decision (tests/unit/test_lazywalk.py compares
both on random trees) reading, at each level the walk visits, only what the
level needs, the way the kernel walks:

* the children's ``cgroup.events`` ``populated`` (a subtree with no process is
  never chosen, spec §3.2 point 8), then, for the populated ones, their
  priority (the same table as the snapshot: ``snapshot.resolve``) and
  ``memory.current``; ``prioomd._select.choose_child`` picks one;
* process facts (/proc) only in the cgroup where the walk stops, whose subtree
  is scanned for the worst task (``pick_task``); when that yields nothing the
  subtree is marked exhausted and the walk starts again from the root.

Why ``populated`` is enough. The kernel's test "still has a process not known
unkillable" is ``nr_procs > num_oom_skip``. While nothing in a subtree has been
counted (skip 0) that is ``nr_procs > 0``, and ``populated`` is true whenever the
subtree holds a process. It can also be true with no process to count (only
threads of a process listed in a threaded domain above; a process that exited or
was ranked already): the walk then arrives at a cgroup whose scan finds fewer
processes than its skip count needs, marks it as not qualifying and starts
again. That is the full walk's choice too: at every level the lazy walk chooses
the best of a superset of the qualifying children, and a choice that turns out
to qualify is the best of the qualifying ones. Where a skip count is positive
(an ancestor of a subtree found exhausted) the processes are counted
(``cgroup.procs`` only, no /proc) until the count beats the skip: with the
kernel's over-count (``kernel_compat``, spec §6.1) an ancestor can be exhausted
while a child still qualifies, exactly as in the full walk.

Everything read is cached for the one decision, so the successive selections
that rank the candidates re-read nothing on the path they share. Cgroups and
processes that vanish mid-walk count as empty, never as errors.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from prioomd import _select_py, cgroupfs, procfs, select, snapshot, table
from prioomd.errors import Vanished
from prioomd.model import Candidate, Decision, Setting, Snapshot, Task
from prioomd.victim import Locator, under

_GONE = (Vanished, FileNotFoundError, NotADirectoryError)
_T = TypeVar("_T")
# Walks per decision at most: each further one only after settle() relabelled a
# dying task the previous walk met (it then reads past it).
_SETTLE_ROUNDS = 8
# /proc scans for the processes of a populated subtree whose cgroup.procs listed
# nobody (a process moving between its cgroups, see _Tree.strays).
_STRAY_SCANS = 3


class _Node:
    """One cgroup of the walk (memory-enabled, or any cgroup without the memory
    controller in the hierarchy); what was read about it, read at most once."""

    __slots__ = ("ident", "path", "cgdir", "parent", "populated", "kids", "folded", "pids",
                 "tasks", "priority", "kill", "usage", "oom_group", "owner")

    def __init__(self, ident: int, path: str, cgdir: str, parent: _Node | None,
                 populated: bool) -> None:
        self.ident = ident
        self.path = path
        self.cgdir = cgdir
        self.parent = parent
        self.populated = populated
        self.kids: list[_Node] | None = None  # populated walk children, creation order
        self.folded: list[str] | None = None  # populated children without memory
        self.pids: list[int] | None = None  # own processes, with the folded children's
        self.tasks: list[Task] | None = None
        self.priority: Setting | None = None
        self.kill: Setting | None = None  # kill granularity, resolved with the priority
        self.usage: int | None = None
        self.oom_group: bool | None = None
        self.owner: int | None = None


class _Tree:
    """The domain as far as the walk has read it."""

    def __init__(self, domain: str, tbl: table.PriorityTable, sources: snapshot.Sources,
                 total_pages: int, page_size: int) -> None:
        self.tbl = tbl
        self.sources = sources
        self.total_pages = total_pages
        self.page_size = page_size
        self.memory_mode = snapshot.has_memory(sources)
        self.warnings: list[str] = []
        self.nodes: list[_Node] = []
        root_dir = snapshot.abs_dir(sources, domain)
        if not os.path.isdir(root_dir):
            raise Vanished(f"cgroup {domain} does not exist under {sources.cgroup_root}")
        self.root = self._node(domain, root_dir, None, True)
        self._strays_sought: set[int] = set()

    def _node(self, path: str, cgdir: str, parent: _Node | None, populated: bool) -> _Node:
        node = _Node(len(self.nodes), path, cgdir, parent, populated)
        self.nodes.append(node)
        return node

    def _children(self, cgdir: str) -> Iterator[tuple[str, str]]:
        """(name, directory) of the populated children, oldest first."""
        try:
            names = [name for name, _key in cgroupfs.list_children(cgdir)]
            populated = cgroupfs.populated_children(cgdir, names)
        except _GONE:
            return
        for name, full in zip(names, populated, strict=True):
            if full:
                yield name, os.path.join(cgdir, name)

    def kids(self, node: _Node) -> list[_Node]:
        if node.kids is None:
            node.kids, node.folded = [], []
            for name, child in self._children(node.cgdir):
                try:
                    walked = (not self.memory_mode
                              or "memory" in cgroupfs.read_controllers(child))
                except _GONE:
                    continue
                if walked:
                    path = f"/{name}" if node.path == "/" else f"{node.path}/{name}"
                    node.kids.append(self._node(path, child, node, True))
                else:  # no memory css: its processes are the node's (spec §1.2)
                    node.folded.append(child)
        return node.kids

    def pids(self, node: _Node) -> list[int]:
        """The node's own processes, then its folded children's, in pre-order."""
        if node.pids is None:
            self.kids(node)
            assert node.folded is not None
            pids: list[int] = []
            stack = [*reversed(node.folded), node.cgdir]
            while stack:
                cgdir = stack.pop()
                try:
                    pids.extend(cgroupfs.read_procs(cgdir))
                except _GONE:
                    continue
                if cgdir != node.cgdir:
                    stack.extend(reversed([c for _, c in self._children(cgdir)]))
            node.pids = pids
        return node.pids

    def tasks(self, node: _Node) -> list[Task]:
        if node.tasks is None:
            src = self.sources
            node.tasks = []
            for pid in self.pids(node):
                facts = procfs.read_task(pid, src.proc_root)
                if facts is not None:
                    node.tasks.append(snapshot.make_task(
                        facts, node.ident, src.self_pid, self.total_pages, self.page_size))
        return node.tasks

    def strays(self, node: _Node) -> bool:
        """For a subtree that reads populated although its cgroup.procs files listed
        nobody: find its processes through /proc, and True when some were found.

        Each cgroup.procs is read at its own moment, so a process moving between
        the subtree's cgroups can be in none of them when each is read; a tenant
        hopping between two cgroups it owns would so hide its whole subtree, and
        the walk would pass to a higher-priority sibling (the kernel counts
        nr_procs atomically and has no such gap). Wherever the process is, its
        /proc/PID/cgroup names it, checked against the tree (victim.Locator).
        Once per node and decision: it reads every process's cgroup on the host,
        so only here. A cgroup populated by threads alone finds nothing, as before.
        """
        if node.ident in self._strays_sought:
            return False
        self._strays_sought.add(node.ident)
        locator = Locator(self.sources.cgroup_root, self.sources.proc_root)
        for _scan in range(_STRAY_SCANS):
            try:
                if not cgroupfs.read_populated(node.cgdir):
                    return False
                pids = procfs.list_pids(self.sources.proc_root)
            except (*_GONE, OSError):
                return False
            found = [pid for pid in pids
                     if (where := locator.locate(pid)) is not None
                     and under(where, node.path)]
            if found:
                self.warnings.append(
                    f"{node.path}: populated, but its cgroup.procs listed no process; "
                    f"{len(found)} found through /proc (moving between its cgroups)")
                node.pids, node.tasks = found, None
                return True
        return False

    def _settings(self, node: _Node) -> None:
        if node.priority is None or node.kill is None:
            parent = node.parent
            if parent is not None and parent.owner is None:
                parent.owner = _owner(parent.cgdir)
            try:
                prio, _upo, kill = snapshot.resolve(self.tbl, node.path, node.cgdir,
                                                    None if parent is None else parent.owner,
                                                    self.warnings)
            except _GONE:
                prio, kill = table.DEFAULT_PRIORITY, table.DEFAULT_KILL
            node.priority, node.kill = prio, kill

    def priority(self, node: _Node) -> int:
        self._settings(node)
        assert node.priority is not None
        return int(node.priority.value)

    def kill(self, node: _Node) -> Setting:
        """The kill granularity ("process" or "cgroup") of the node (table.py)."""
        self._settings(node)
        assert node.kill is not None
        return node.kill

    def usage(self, node: _Node) -> int:
        if node.usage is None:
            node.usage = _or_default(lambda: cgroupfs.read_usage_bytes(node.cgdir), 0)
        return node.usage

    def oom_group(self, node: _Node) -> bool:
        if node.oom_group is None:
            node.oom_group = _or_default(lambda: cgroupfs.read_oom_group(node.cgdir), False)
        return node.oom_group


def _or_default(read: Callable[[], _T], default: _T) -> _T:
    try:
        return read()
    except _GONE:
        return default


def _owner(cgdir: str) -> int | None:
    try:
        return cgroupfs.owner_uid(cgdir)
    except _GONE:
        return None


@dataclass
class _Round:
    """One selection's counters (the kernel's num_oom_skip; reset every selection)."""

    skip: dict[int, int] = field(default_factory=dict)
    dead: set[int] = field(default_factory=set)  # found not to qualify


class _Walk:
    def __init__(self, tree: _Tree, kernel_compat: bool, backend: str) -> None:
        self.tree = tree
        self.compat = kernel_compat
        self.fn = select.BACKENDS[backend]
        self.gone: set[int] = set()  # pids ranked already: gone for the next selections
        self.relabel: dict[int, Task] = {}  # pid -> the task as settle() relabelled it

    def _count(self, node: _Node, need: int) -> int:
        """Processes in node's subtree, counted until there are ``need``: from
        cgroup.procs alone, so one that exits meanwhile still counts (as in the
        kernel until its exit), and the scan of a victim re-checks."""
        total, stack = 0, [node]
        while stack and total < need:
            u = stack.pop()
            total += sum(1 for p in self.tree.pids(u) if p not in self.gone)
            stack.extend(reversed(self.tree.kids(u)))
        return total

    def _qualifies(self, node: _Node, rnd: _Round) -> bool:
        """nr_procs > num_oom_skip; while skip is 0, populated stands in (see the top)."""
        if node.ident in rnd.dead or not node.populated:
            return False
        skip = rnd.skip.get(node.ident, 0)
        return skip == 0 or self._count(node, skip + 1) > skip

    def subtree_tasks(self, node: _Node, ranked_too: bool = False) -> list[Task]:
        """The tasks of node's subtree in the kernel's scan order; those ranked
        already only with ``ranked_too``."""
        out: list[Task] = []
        stack = [node]
        gone = set() if ranked_too else self.gone
        while stack:
            u = stack.pop()
            out.extend(self.relabel.get(t.pid, t) for t in self.tree.tasks(u)
                       if t.pid not in gone)
            stack.extend(reversed(self.tree.kids(u)))
        return out

    def _listed_any(self, node: _Node) -> bool:
        """Whether any cgroup.procs of node's subtree listed a process (ranked
        ones too: a subtree emptied by the ranking is not a stray's hiding place)."""
        stack = [node]
        while stack:
            u = stack.pop()
            if self.tree.pids(u):
                return True
            stack.extend(self.tree.kids(u))
        return False

    def _account(self, node: _Node | None, k: int, rnd: _Round) -> None:
        while node is not None:
            rnd.skip[node.ident] = rnd.skip.get(node.ident, 0) + k
            node = node.parent

    def once(self) -> tuple[int, _Node | None, Task | None, list[tuple[_Node, list[_Node]]]]:
        """One mem_cgroup_select_bad_process(): (status, victim, task, levels), where
        levels are (chosen child, the children it was chosen among) along the walk."""
        rnd, tree = _Round(), self.tree
        while True:
            victim: _Node | None = None
            node: _Node | None = tree.root
            levels: list[tuple[_Node, list[_Node]]] = []
            while node is not None and self._qualifies(node, rnd):
                victim = node
                among = [c for c in tree.kids(node) if self._qualifies(c, rnd)]
                i = self.fn.choose_child([tree.priority(c) for c in among],
                                         [tree.usage(c) for c in among])
                node = among[i] if i >= 0 else None
                if node is not None:
                    levels.append((node, among))
            if victim is None:
                return _select_py.STATUS_NONE, None, None, []
            tasks = self.subtree_tasks(victim)
            skip = rnd.skip.get(victim.ident, 0)
            if not skip and not self._listed_any(victim) and tree.strays(victim):
                tasks = self.subtree_tasks(victim)  # its processes were moving (strays)
            if len(tasks) <= skip:  # populated, but nothing left to count: not a victim
                rnd.dead.add(victim.ident)
                continue
            status, j = self.fn.pick_task([select.walk_state(t) for t in tasks],
                                          [t.badness for t in tasks],
                                          [t.start_ticks for t in tasks])
            if status != _select_py.STATUS_NONE:
                return status, victim, tasks[j], levels
            if victim is tree.root:
                return status, None, None, []
            # Every task here is unkillable. Intended rule: mark exactly this subtree
            # exhausted (count the tasks not counted yet). kernel_compat: every scan
            # re-counts them all and the victim adds one more (spec §6.1).
            self._account(victim, len(tasks) + 1 if self.compat else len(tasks) - skip, rnd)


def _story(levels: list[tuple[_Node, list[_Node]]], tree: _Tree) -> str:
    steps = []
    for chosen, among in levels:
        others = [f"{c.path} {tree.priority(c)}" for c in among if c is not chosen]
        passed = f" over {', '.join(others)}" if others else ""
        steps.append(f"{chosen.path} (priority {tree.priority(chosen)}{passed})")
    return " > ".join(steps)


def _oom_group(walk: _Walk, task: Task) -> _Node | None:
    """mem_cgroup_get_oom_group(): the highest ancestor up to the domain root with
    memory.oom.group=1 (read upward only)."""
    tree = walk.tree
    found: _Node | None = None
    node: _Node | None = tree.nodes[task.node]
    while node is not None:
        if tree.oom_group(node):
            found = node
        node = node.parent
    return found


def _kill_target(walk: _Walk, victim: _Node, task: Task
                 ) -> tuple[str | None, list[Task], str]:
    """select.kill_target on the walked path: the cgroup to kill whole (None: the
    one process), every task of its subtree, and why."""
    whole, why = _oom_group(walk, task), "memory.oom.group=1"
    kill = walk.tree.kill(victim)
    if kill.value == "cgroup" and victim.path != "/":
        if whole is not None and not _is_ancestor(whole, victim):
            whole = None  # a group below the victim: the victim's cgroup is wider
        if whole is None:
            whole, why = victim, f"kill = cgroup from {kill.source}"
    if whole is None:
        return None, [], why
    return whole.path, walk.subtree_tasks(whole, ranked_too=True), why


def _is_ancestor(node: _Node, of: _Node) -> bool:
    """node is ``of`` or one of its ancestors."""
    cur: _Node | None = of
    while cur is not None and cur is not node:
        cur = cur.parent
    return cur is node


Settle = Callable[[Snapshot], tuple[Snapshot, tuple[Task, ...]]]


def _rank(walk: _Walk, domain: str, max_candidates: int, name: str) -> Decision:
    """As select_victims: up to 4 selections per candidate, oom.group kills covering
    later ones; each selection after the first re-reads nothing it shares."""
    tree = walk.tree
    walk.gone = set()
    candidates: list[Candidate] = []
    covered: set[int] = set()
    first_walk: tuple[str, ...] = ()
    status, task = _select_py.STATUS_OK, None
    for _ in range(max(1, max_candidates * 4)):
        status, victim, task, levels = walk.once()
        if status != _select_py.STATUS_OK:
            break
        assert victim is not None and task is not None
        walk.gone.add(task.pid)
        if task.pid in covered:
            continue
        group, members, why_whole = _kill_target(walk, victim, task)
        cand = select.make_candidate(domain, victim.path, task, _story(levels, tree), group,
                                     members, why_whole)
        covered.update(cand.pids)
        if not candidates:
            first_walk = (domain, *(chosen.path for chosen, _ in levels))
        candidates.append(cand)
        if len(candidates) >= max_candidates:
            break
    if candidates:
        return Decision(domain, tuple(candidates), "kill", candidates[0].reason, name,
                        first_walk)
    if status == _select_py.STATUS_ABORT:
        assert task is not None
        return select.wait_decision(domain, [task], name)
    return select.none_decision(domain, [walk.relabel.get(t.pid, t) for t in _read(tree)],
                                name)


def _read(tree: _Tree) -> list[Task]:
    return [t for n in tree.nodes if n.tasks is not None for t in n.tasks]


def decide(domain: str, tbl: table.PriorityTable, sources: snapshot.Sources,
           total_pages: int | None = None, *, kernel_compat: bool = False,
           max_candidates: int = 5, backend: str | None = None,
           settle: Settle | None = None) -> tuple[Decision, list[str], tuple[Task, ...]]:
    """select.select_victims(snapshot.take(...)) without reading the whole domain.

    ``settle`` (dying.DyingWatch.settle at a given time) relabels the in-flight
    victims the walk should no longer wait for; it sees the tasks the walk has
    read, as read, and the walk runs again while it relabels more (it reads
    more). Returns the decision, the warnings met (bad xattrs, rule conflicts)
    and the tasks ``settle`` gave out as overdue. Raises Vanished only when the
    domain root itself is gone.
    """
    name = backend or select.DEFAULT_BACKEND
    if name not in select.BACKENDS:
        raise ValueError(f"walk backend {name!r} is not available "
                         f"(have: {', '.join(sorted(select.BACKENDS))})")
    page_size = procfs.page_size()
    if total_pages is None:
        total_pages = snapshot.global_total_pages(sources, page_size)
    tree = _Tree(domain, tbl, sources, total_pages, page_size)
    walk = _Walk(tree, kernel_compat, name)
    overdue: list[Task] = []
    decision = _rank(walk, domain, max_candidates, name)
    for _ in range(_SETTLE_ROUNDS if settle is not None else 0):
        assert settle is not None
        seen = tuple(_read(tree))
        settled, crossed = settle(Snapshot(domain, (), seen, total_pages, sources.clock()))
        overdue.extend(crossed)
        relabel = {t.pid: t for t, raw in zip(settled.tasks, seen, strict=True)
                   if t is not raw}
        if relabel == walk.relabel:
            break
        walk.relabel = relabel
        decision = _rank(walk, domain, max_candidates, name)
    return decision, tree.warnings, tuple(overdue)
