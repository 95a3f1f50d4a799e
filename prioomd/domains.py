"""OOM domains: which ones are enabled, and one cheap sample of each.

A domain is the root (global memory, enabled by the root's use_priority_oom)
or a cgroup with use_priority_oom on and a memory.max of its own (spec §2: a
memcg OOM consults only the OOMing cgroup's own flag). Discovery reads only
xattrs and memory.max, never processes, and never on the decision path; the
daemon runs it per cgroup as events arrive (discovery.py). Guard mode lives in
guard.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from prioomd import cgparse, cgroupfs, detect, procfs, swaps, table
from prioomd.errors import ConfigError, Vanished
from prioomd.snapshot import Sources

ROOT = "/"


@dataclass(frozen=True)
class Domain:
    path: str  # "/" for the global domain
    cgdir: str
    memory_max_bytes: int | None  # None for the root
    events_path: str = ""  # its memory.events(.local), see events_file(); "" for the root

    @property
    def is_root(self) -> bool:
        return self.path == ROOT


NO_LIMIT = ("use_priority_oom is on but it has no memory.max of its own: no limit OOM can "
            "happen there, so it is not an OOM domain and is not watched")


def why_not_a_domain(path: str, use_priority_oom: bool, memory_max_bytes: int | None
                     ) -> str | None:
    """None when the cgroup is an OOM domain prioomd watches, else why it is not. The
    one definition (spec §2), shared by the daemon and the CLI's tree/audit/explain:
    the root with use_priority_oom, or a cgroup with use_priority_oom and a memory.max
    of its own (a memcg OOM consults only the OOMing cgroup's own flag)."""
    if not use_priority_oom:
        return "use_priority_oom is off"
    if path != ROOT and memory_max_bytes is None:
        return NO_LIMIT
    return None


def _resolve_upo(tbl: table.PriorityTable, path: str, cgdir: str, parent: str | None
                 ) -> tuple[bool, list[str]]:
    xattrs = cgroupfs.read_xattrs(cgdir, table.ALL_XATTRS)
    try:
        resolved = tbl.resolve(path, xattrs, cgroupfs.owner_uid(cgdir),
                               cgroupfs.owner_uid(parent) if parent else None)
    except ConfigError as exc:
        return False, [f"{path}: {exc}; use_priority_oom treated as off"]
    return bool(resolved.use_priority_oom.value), list(resolved.warnings)


def resolve_domain(tbl: table.PriorityTable, root: str, path: str, *, xattr_names:
                   frozenset[str] | None = None) -> tuple[Domain | None, bool, list[str]]:
    """One cgroup: (its Domain or None, whether use_priority_oom is on, warnings).

    ``xattr_names``: the names ``listxattr`` gave, when the caller has them: a
    cgroup without a use_priority_oom xattr, and no rule that could set it,
    is then known to be off without further reads. Vanished when it is gone."""
    if (xattr_names is not None and path != ROOT and not tbl.rules_set_use_priority_oom
            and xattr_names.isdisjoint(table.USE_PRIORITY_OOM_XATTRS)):
        return None, False, []
    cgdir = cgroupfs.rel_to_abs(root, path)
    parent = os.path.dirname(cgdir) if path != ROOT else None
    enabled, notes = _resolve_upo(tbl, path, cgdir, parent)
    if not enabled:
        return None, False, notes
    if path == ROOT:
        return Domain(ROOT, cgdir, None), True, notes
    limit = cgroupfs.read_memory_max(cgdir)
    why_not = why_not_a_domain(path, enabled, limit)
    if why_not is not None:
        notes.append(f"{path}: {why_not}")
        return None, True, notes
    return Domain(path, cgdir, limit, events_file(cgdir)), True, notes


def discover(tbl: table.PriorityTable, sources: Sources) -> tuple[list[Domain], list[str]]:
    """The enabled domains, root first; and the warnings met on the way. One walk
    of the whole tree: for one-shot views; the daemon follows events instead
    (discovery.Discovery)."""
    domains: list[Domain] = []
    notes: list[str] = []
    for path, _depth in cgroupfs.walk_tree(sources.cgroup_root):
        try:
            dom, _on, warnings = resolve_domain(tbl, sources.cgroup_root, path)
        except Vanished:
            continue
        notes.extend(warnings)
        if dom is not None:
            domains.append(dom)
    return domains, notes


def sample_root(proc_root: str, clock: Callable[[], float],
                sys_block: str = "/sys/block") -> detect.RootSample:
    """MemAvailable, swap and PSI of the whole machine: two small reads (and, with
    swap, /proc/swaps; with swap on zram, its mm_stat: see swaps.py). PSI is None
    on a kernel without it (psi=0, or built without): the floor needs none."""
    info = procfs.read_meminfo(proc_root)
    try:
        psi = cgroupfs.read_pressure(os.path.join(proc_root, "pressure", "memory"))
    except Vanished:  # no /proc/pressure at all: /proc itself cannot vanish
        psi = None
    swap_total, swap_free = info.get("SwapTotal", 0), info.get("SwapFree", 0)
    if swap_total > 0:
        swap_total, swap_free = _swap_headroom(proc_root, sys_block, swap_total, swap_free)
    return detect.RootSample(
        mem_total_bytes=info.get("MemTotal", 0),
        mem_available_bytes=info.get("MemAvailable", info.get("MemFree", 0)),
        swap_total_bytes=swap_total,
        swap_free_bytes=swap_free,
        psi_some_avg10_pct=psi.some.avg10_pct if psi else None,
        psi_full_avg10_pct=psi.full.avg10_pct if psi and psi.full else None,
        psi_some_total_us=psi.some.total_us if psi else None,
        taken_at=clock())


def _swap_headroom(proc_root: str, sys_block: str, total: int, free: int) -> tuple[int, int]:
    """Swap as headroom: zram devices count for what compression frees
    (swaps.effective_swap); meminfo's own numbers when /proc/swaps lists no zram."""
    try:
        devices = swaps.read_swaps(proc_root)
    except OSError:
        return total, free
    if all(d.zram_index is None for d in devices):
        return total, free
    return swaps.effective_swap(devices, swaps.read_zram_stats(devices, sys_block))


def events_file(cgdir: str) -> str:
    """memory.events.local where the kernel has it (>= 5.2): memory.events also
    counts the limit hits of descendants, which are domains of their own."""
    local = os.path.join(cgdir, "memory.events.local")
    return local if os.path.exists(local) else os.path.join(cgdir, "memory.events")


def read_events(domain: Domain) -> dict[str, int]:
    """The cgroup domain's memory.events(.local) counters."""
    with open(domain.events_path, encoding="ascii", errors="replace") as f:
        return cgparse.parse_flat_keyed(f.read())


def sample_cgroup(domain: Domain, clock: Callable[[], float]) -> detect.CgroupSample:
    """usage, limits, events and PSI of one cgroup domain. Vanished when it is gone."""
    cgdir = domain.cgdir
    events = read_events(domain)
    psi = cgroupfs.read_pressure(os.path.join(cgdir, "memory.pressure"))
    return detect.CgroupSample(
        path=domain.path,
        usage_bytes=cgroupfs.read_usage_bytes(cgdir),
        max_bytes=cgroupfs.read_memory_max(cgdir),
        high_bytes=cgroupfs.read_memory_high(cgdir),
        events=events,
        psi_some_avg10_pct=psi.some.avg10_pct if psi else None,
        psi_full_avg10_pct=psi.full.avg10_pct if psi and psi.full else None,
        psi_some_total_us=psi.some.total_us if psi else None,
        taken_at=clock())


def sample(domain: Domain, sources: Sources) -> detect.Sample:
    if domain.is_root:
        return sample_root(sources.proc_root, sources.clock)
    return sample_cgroup(domain, sources.clock)


def oom_kills(domain: Domain, proc_root: str, cur: detect.Sample | None = None) -> int | None:
    """The kernel's own OOM kill count in the domain, None if unreadable:
    /proc/vmstat for the root; for a cgroup, the memory.events of ``cur``
    (already read) or a fresh read."""
    try:
        if domain.is_root:
            return root_oom_kills(proc_root)
        events = cur.events if isinstance(cur, detect.CgroupSample) else read_events(domain)
        return events.get("oom_kill", 0)
    except (OSError, ValueError, Vanished):
        return None


def root_oom_kills(proc_root: str) -> int:
    """The kernel's own OOM kills since boot (/proc/vmstat oom_kill)."""
    return procfs.read_vmstat(proc_root).get("oom_kill", 0)

