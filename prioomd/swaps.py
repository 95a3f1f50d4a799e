"""What swap is worth: /proc/swaps and zram's /sys/block/zramN/mm_stat.

Swap on a disk is headroom: a page swapped out leaves RAM. Swap on zram is RAM
itself: a page swapped out to zram is stored there compressed, so it frees only
what compression saves, and nothing at all for incompressible data. Counting
zram's SwapFree as headroom (as /proc/meminfo does) lets a host with zram and
MemAvailable at zero look safe while the kernel's OOM killer is about to fire;
the bench's zram scenario showed exactly that. So zram swap counts for the
share that compression frees: ``1 - compressed/original``, measured from what
zram holds now (nothing known yet: nothing counted).

Parse apart from read (STYLE §5): ``parse_swaps`` and ``parse_mm_stat`` are pure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_ZRAM = re.compile(r"^/dev/zram(\d+)$")
# seq_file's escaping of the path column of /proc/swaps (mangle() of " \t\n\\").
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class SwapDevice:
    path: str
    size_bytes: int
    used_bytes: int

    @property
    def free_bytes(self) -> int:
        return max(self.size_bytes - self.used_bytes, 0)

    @property
    def zram_index(self) -> int | None:
        m = _ZRAM.match(self.path)
        return int(m.group(1)) if m else None


@dataclass(frozen=True)
class ZramStat:
    """The first three fields of mm_stat (Documentation/admin-guide/blockdev/zram)."""

    orig_data_bytes: int
    compr_data_bytes: int
    mem_used_bytes: int  # RAM zram takes, allocator overhead included


def parse_swaps(text: str) -> list[SwapDevice]:
    """/proc/swaps: the header, then "Filename Type Size Used Priority" in KiB.
    A line that does not parse is skipped (the kernel adds nothing else)."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        try:
            size_kib, used_kib = int(fields[2]), int(fields[3])
        except ValueError:
            continue
        if size_kib < 0 or used_kib < 0:
            continue
        path = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[0])
        out.append(SwapDevice(path, size_kib * 1024, used_kib * 1024))
    return out


def parse_mm_stat(text: str) -> ZramStat:
    """zram's mm_stat: orig_data_size compr_data_size mem_used_total ... (bytes).
    ValueError when its first three fields are not non-negative integers."""
    fields = text.split()
    if len(fields) < 3:
        raise ValueError(f"mm_stat: {len(fields)} fields, need 3")
    values = [int(f) for f in fields[:3]]
    if min(values) < 0:
        raise ValueError("mm_stat: negative size")
    return ZramStat(*values)


def zram_gain(stats: Sequence[ZramStat]) -> float:
    """The share of a page that swapping it to zram frees, 0..1, from what zram
    holds now: ``1 - mem_used/orig_data``. Nothing stored yet: 0 (unknown counts
    as nothing, so the floor still protects a host whose data will not compress)."""
    orig = sum(s.orig_data_bytes for s in stats)
    used = sum(s.mem_used_bytes for s in stats)
    if orig <= 0 or used <= 0:
        return 0.0
    return min(max(1.0 - used / orig, 0.0), 1.0)


def effective_swap(devices: Sequence[SwapDevice], zram: Mapping[int, ZramStat]
                   ) -> tuple[int, int]:
    """(total, free) bytes of swap as headroom: disks in full, zram devices at
    ``zram_gain`` of their size and free space. A zram device without stats
    (unreadable mm_stat) counts for nothing."""
    disk_total = sum(d.size_bytes for d in devices if d.zram_index is None)
    disk_free = sum(d.free_bytes for d in devices if d.zram_index is None)
    on_zram = [d for d in devices if d.zram_index is not None and d.zram_index in zram]
    gain = zram_gain([zram[d.zram_index] for d in on_zram if d.zram_index is not None])
    return (disk_total + int(sum(d.size_bytes for d in on_zram) * gain),
            disk_free + int(sum(d.free_bytes for d in on_zram) * gain))


def read_swaps(proc_root: str = "/proc") -> list[SwapDevice]:
    with open(os.path.join(proc_root, "swaps"), encoding="utf-8",
              errors="surrogateescape") as f:
        return parse_swaps(f.read())


def read_zram_stats(devices: Sequence[SwapDevice], sys_block: str = "/sys/block"
                    ) -> dict[int, ZramStat]:
    """mm_stat of every zram device swapped on; one that cannot be read is left out."""
    out = {}
    for d in devices:
        if d.zram_index is None:
            continue
        try:
            with open(os.path.join(sys_block, f"zram{d.zram_index}", "mm_stat"),
                      encoding="ascii", errors="replace") as f:
                out[d.zram_index] = parse_mm_stat(f.read())
        except (OSError, ValueError):
            continue
    return out
