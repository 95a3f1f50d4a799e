"""Gather a whole OOM domain into an immutable Snapshot (STYLE §1).

What ``prioomd tree`` and ``audit`` show, and the reference the daemon's lazy
walk (lazywalk.py, which reads only the walked path through ``resolve`` and
``make_task`` here) is tested against. With lazywalk, the only module that
combines cgroupfs, procfs and the priority table. A cgroup or process that
vanishes while we read it is left out, never an error.

Memory controller (spec §1.2): where the hierarchy has the memory controller,
a cgroup without it is not a node of the walk: its processes count toward the
nearest memory-enabled ancestor, as the kernel's css lookup makes them. Where
the hierarchy has no memory controller at all (this project's development
hosts, whose memory controller is bound to cgroup v1), every cgroup is a node
and its usage counts as 0, so priorities still decide.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from prioomd import cgroupfs, procfs, table
from prioomd.errors import ConfigError, Vanished
from prioomd.model import CgroupNode, Setting, Snapshot, Task

log = logging.getLogger(__name__)

_DEFAULT_PRIORITY = Setting(0, "default")
_DEFAULT_UPO = Setting(False, "default")


@dataclass(frozen=True)
class Sources:
    """Where the snapshot reads from (STYLE §4: roots are parameters)."""

    cgroup_root: str
    proc_root: str = "/proc"
    kmsg_path: str = "/dev/kmsg"  # the kernel's log: which OOM kills were global
    self_pid: int = os.getpid()
    clock: Callable[[], float] = time.monotonic


def abs_dir(sources: Sources, path: str) -> str:
    return cgroupfs.rel_to_abs(sources.cgroup_root, path)


def _join(parent: str, name: str) -> str:
    return f"/{name}" if parent == "/" else f"{parent}/{name}"


def has_memory(sources: Sources) -> bool:
    """Whether the hierarchy has the memory controller (else every cgroup is a node)."""
    try:
        return "memory" in cgroupfs.read_controllers(sources.cgroup_root)
    except (OSError, Vanished):
        return False


def resolve(tbl: table.PriorityTable, path: str, cgdir: str, parent_owner: int | None,
            warnings: list[str]) -> tuple[Setting, Setting, Setting]:
    """The cgroup's priority, use_priority_oom and kill granularity from the table
    (xattrs read here); ``parent_owner`` is the uid owning the parent directory
    (None for the root)."""
    xattrs = cgroupfs.read_xattrs(cgdir, table.ALL_XATTRS)
    owner = cgroupfs.owner_uid(cgdir)
    try:
        resolved = tbl.resolve(path, xattrs, owner, parent_owner)
        warnings.extend(resolved.warnings)
    except ConfigError as exc:
        warnings.append(f"{path}: {exc}; using the defaults")
        prio, upo, kill = _DEFAULT_PRIORITY, _DEFAULT_UPO, table.DEFAULT_KILL
    else:
        prio, upo, kill = resolved.priority, resolved.use_priority_oom, resolved.kill
    return (table.ROOT_PRIORITY if path == "/" else prio), upo, kill


def make_task(facts: procfs.TaskFacts, node: int, self_pid: int, total_pages: int,
              page_size: int) -> Task:
    state, why = procfs.killability(facts, self_pid)
    return Task(
        pid=facts.pid, node=node, comm=facts.comm, state=state, why_unkillable=why,
        badness=procfs.badness_pages(facts, total_pages, page_size),
        start_ticks=facts.start_ticks, rss_bytes=facts.rss_bytes,
        swap_bytes=facts.swap_bytes, pte_bytes=facts.pte_bytes,
        oom_score_adj=facts.oom_score_adj,
    )


def global_total_pages(sources: Sources, page_size: int) -> int:
    """RAM + swap in pages: the badness basis of a global OOM."""
    meminfo = procfs.read_meminfo(sources.proc_root)
    return procfs.total_pages_global(meminfo, page_size)


def domain_total_pages(node: CgroupNode, swap_max_bytes: int | None, global_pages: int,
                       swap_total_bytes: int, page_size: int) -> int:
    """The badness basis of a memcg OOM: the domain's limit (memory + swap)."""
    if node.memory_max_bytes is None:
        return global_pages
    return limit_total_pages(node.memory_max_bytes, swap_max_bytes, swap_total_bytes,
                             page_size)


def limit_total_pages(memory_max_bytes: int, swap_max_bytes: int | None,
                      swap_total_bytes: int, page_size: int) -> int:
    """mem_cgroup_get_max(): memory.max plus the swap the cgroup may use, in pages."""
    swap = swap_total_bytes if swap_max_bytes is None else min(swap_max_bytes,
                                                                  swap_total_bytes)
    return max(1, (memory_max_bytes + swap) // page_size)


def take(domain: str, tbl: table.PriorityTable, sources: Sources,
         total_pages: int | None = None) -> tuple[Snapshot, list[str]]:
    """Read the domain's subtree: nodes in pre-order, siblings in creation order.

    Returns the snapshot and the warnings met (bad xattrs, rule conflicts).
    Raises Vanished only when the domain root itself is gone.
    """
    page_size = procfs.page_size()
    if total_pages is None:
        total_pages = global_total_pages(sources, page_size)
    memory_mode = has_memory(sources)
    warnings: list[str] = []
    nodes: list[CgroupNode] = []
    tasks: list[Task] = []

    root_dir = abs_dir(sources, domain)
    if not os.path.isdir(root_dir):
        raise Vanished(f"cgroup {domain} does not exist under {sources.cgroup_root}")
    parent_dir = os.path.dirname(root_dir) if domain != "/" else None
    # (path, directory, parent directory, walk-node index of the parent or -1,
    #  creation key)
    stack: list[tuple[str, str, str | None, int, tuple[int, int]]] = [
        (domain, root_dir, parent_dir, -1, (0, 0))]
    while stack:
        path, cgdir, pdir, parent_node, key = stack.pop()
        try:
            is_node = (parent_node == -1 or not memory_mode
                       or "memory" in cgroupfs.read_controllers(cgdir))
            if is_node:
                prio, upo, kill = resolve(tbl, path, cgdir,
                                          cgroupfs.owner_uid(pdir) if pdir else None, warnings)
                nodes.append(CgroupNode(
                    path=path, parent=parent_node, priority=prio, use_priority_oom=upo,
                    usage_bytes=cgroupfs.read_usage_bytes(cgdir),
                    memory_max_bytes=cgroupfs.read_memory_max(cgdir),
                    oom_group=cgroupfs.read_oom_group(cgdir),
                    creation_key=key, kill=kill,
                ))
                here = len(nodes) - 1
            else:
                here = parent_node  # no memory css: folded into the ancestor
            pids = cgroupfs.read_procs(cgdir)
            children = cgroupfs.list_children(cgdir)
        except (Vanished, FileNotFoundError):
            log.debug("cgroup %s vanished while being read", path)
            if nodes and nodes[-1].path == path:
                nodes.pop()
            continue
        for pid in pids:
            facts = procfs.read_task(pid, sources.proc_root)
            if facts is not None:
                tasks.append(make_task(facts, here, sources.self_pid, total_pages, page_size))
        for name, ckey in reversed(children):
            stack.append((_join(path, name), os.path.join(cgdir, name), cgdir, here, ckey))

    snap = Snapshot(domain=domain, nodes=tuple(nodes), tasks=tuple(tasks),
                    total_pages=total_pages, taken_at=sources.clock())
    return snap, warnings


def restrict(snapshot: Snapshot, node: int, total_pages: int, page_size: int) -> Snapshot:
    """The sub-snapshot of one node's subtree, as its own OOM domain (pure).

    Badness is recomputed on the new domain's basis (spec §3.3: totalpages is
    the OOMing memcg's limit, not the machine's).
    """
    keep = [node]
    index = {node: 0}
    for i in range(node + 1, len(snapshot.nodes)):
        if snapshot.nodes[i].parent in index:
            index[i] = len(keep)
            keep.append(i)
    nodes = tuple(
        replace(snapshot.nodes[i], parent=index.get(snapshot.nodes[i].parent, -1)
                if i != node else -1)
        for i in keep)
    tasks = tuple(
        replace(t, node=index[t.node],
                badness=procfs.badness_from_parts(t.rss_bytes, t.swap_bytes, t.pte_bytes,
                                                  t.oom_score_adj, total_pages, page_size))
        for t in snapshot.tasks if t.node in index)
    return Snapshot(domain=snapshot.nodes[node].path, nodes=nodes, tasks=tasks,
                    total_pages=total_pages, taken_at=snapshot.taken_at)
