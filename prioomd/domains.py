"""OOM domains: which ones are enabled, and one cheap sample of each.

A domain is the root (global memory, enabled by the root's use_priority_oom)
or a cgroup with use_priority_oom on and a memory.max of its own (spec §2: a
memcg OOM consults only the OOMing cgroup's own flag). Discovery reads only
xattrs and memory.max, never processes: it runs at start, on reload and on a
slow rescan, not on the decision path. Guard mode lives in guard.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from prioomd import cgroupfs, detect, procfs, table
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


def _resolve_upo(tbl: table.PriorityTable, path: str, cgdir: str, parent: str | None
                 ) -> tuple[bool, list[str]]:
    xattrs = cgroupfs.read_xattrs(cgdir, table.ALL_XATTRS)
    try:
        resolved = tbl.resolve(path, xattrs, cgroupfs.owner_uid(cgdir),
                               cgroupfs.owner_uid(parent) if parent else None)
    except ConfigError as exc:
        return False, [f"{path}: {exc}; use_priority_oom treated as off"]
    return bool(resolved.use_priority_oom.value), list(resolved.warnings)


def discover(tbl: table.PriorityTable, sources: Sources) -> tuple[list[Domain], list[str]]:
    """The enabled domains, root first; and the warnings met on the way."""
    domains: list[Domain] = []
    notes: list[str] = []
    root = sources.cgroup_root
    for path, _depth in cgroupfs.walk_tree(root):
        cgdir = cgroupfs.rel_to_abs(root, path)
        parent = os.path.dirname(cgdir) if path != ROOT else None
        try:
            enabled, warnings = _resolve_upo(tbl, path, cgdir, parent)
            notes.extend(warnings)
            if not enabled:
                continue
            if path == ROOT:
                domains.append(Domain(ROOT, cgdir, None))
                continue
            limit = cgroupfs.read_memory_max(cgdir)
        except Vanished:
            continue
        if limit is None:
            notes.append(f"{path}: use_priority_oom is on but it has no memory.max of its own: "
                         "no limit OOM can happen there, so it is not watched")
            continue
        domains.append(Domain(path, cgdir, limit, events_file(cgdir)))
    return domains, notes


def sample_root(proc_root: str, clock: Callable[[], float]) -> detect.RootSample:
    """MemAvailable, swap and PSI of the whole machine: two small reads. PSI is
    None on a kernel without it (psi=0, or built without): the floor needs none."""
    info = procfs.read_meminfo(proc_root)
    try:
        psi = cgroupfs.read_pressure(os.path.join(proc_root, "pressure", "memory"))
    except Vanished:  # no /proc/pressure at all: /proc itself cannot vanish
        psi = None
    return detect.RootSample(
        mem_total_bytes=info.get("MemTotal", 0),
        mem_available_bytes=info.get("MemAvailable", info.get("MemFree", 0)),
        swap_total_bytes=info.get("SwapTotal", 0),
        swap_free_bytes=info.get("SwapFree", 0),
        psi_some_avg10_pct=psi.some.avg10_pct if psi else None,
        psi_full_avg10_pct=psi.full.avg10_pct if psi and psi.full else None,
        psi_some_total_us=psi.some.total_us if psi else None,
        taken_at=clock())


def events_file(cgdir: str) -> str:
    """memory.events.local where the kernel has it (>= 5.2): memory.events also
    counts the limit hits of descendants, which are domains of their own."""
    local = os.path.join(cgdir, "memory.events.local")
    return local if os.path.exists(local) else os.path.join(cgdir, "memory.events")


def read_events(domain: Domain) -> dict[str, int]:
    """The cgroup domain's memory.events(.local) counters."""
    with open(domain.events_path, encoding="ascii", errors="replace") as f:
        return cgroupfs.parse_flat_keyed(f.read())


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


def root_oom_kills(proc_root: str) -> int:
    """The kernel's own OOM kills since boot (/proc/vmstat oom_kill)."""
    return procfs.read_vmstat(proc_root).get("oom_kill", 0)

