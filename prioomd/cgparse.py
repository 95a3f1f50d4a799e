"""Pure parsers of cgroup v2 (and /proc/self/mounts) text: the first of cgroupfs's two
layers (STYLE §5). Each turns the text of one kernel file into a value and raises
``ValueError`` naming what was wrong; none touches a file (cgroupfs reads them).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_INT_RE = re.compile(r"[+-]?[0-9]+")  # int() alone would accept "1_000" and non-ASCII digits
_PCT_RE = re.compile(r"[0-9]+(\.[0-9]+)?")  # PSI prints "%lu.%02lu"
_CONTROLLER_RE = re.compile(r"[a-z0-9_]+")
_OCTAL_ESCAPE_RE = re.compile(r"\\([0-7]{3})")  # mangle() in fs/proc_namespace.c


def _to_int(word: str, what: str) -> int:
    if not _INT_RE.fullmatch(word):
        raise ValueError(f"{what}: expected an integer, got {word!r}")
    return int(word)


def parse_int(text: str) -> int:
    """One decimal integer (``memory.current``, ``memory.peak`` ...); a sign is allowed."""
    return _to_int(text.strip(), "integer file")


def parse_max(text: str) -> int | None:
    """A limit file (``memory.max``, ``memory.high``): ``"max"`` -> None, else bytes >= 0."""
    word = text.strip()
    if word == "max":
        return None
    value = _to_int(word, "limit file")
    if value < 0:
        raise ValueError(f"limit file: negative limit {word!r}")
    return value


def parse_bool01(text: str) -> bool:
    """A ``0``/``1`` flag file such as ``memory.oom.group``."""
    word = text.strip()
    if word not in ("0", "1"):
        raise ValueError(f"flag file: expected 0 or 1, got {word!r}")
    return word == "1"


def parse_procs(text: str) -> list[int]:
    """``cgroup.procs``: one pid (> 0) per line, in the kernel's order."""
    pids = []
    for line in text.split("\n"):
        word = line.strip()
        if not word:
            continue
        pid = _to_int(word, "cgroup.procs")
        if pid <= 0:
            raise ValueError(f"cgroup.procs: invalid pid {word!r}")
        pids.append(pid)
    return pids


def parse_flat_keyed(text: str) -> dict[str, int]:
    """Flat keyed files: ``"key value"`` per line (memory.events, memory.stat, cgroup.events,
    /proc/vmstat). Blank lines are skipped; a duplicate key is an error."""
    out: dict[str, int] = {}
    for line in text.split("\n"):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ValueError(f"flat keyed file: expected 'key value', got {line!r}")
        key, word = fields
        if key in out:
            raise ValueError(f"flat keyed file: duplicate key {key!r}")
        out[key] = _to_int(word, f"flat keyed file, key {key!r}")
    return out


@dataclass(frozen=True)
class PressureLine:
    """One line of a PSI file: the share of wall time stalled, and the total stall."""

    avg10_pct: float
    avg60_pct: float
    avg300_pct: float
    total_us: int


@dataclass(frozen=True)
class Pressure:
    """A PSI file. ``full`` is None where the kernel prints no "full" line."""

    some: PressureLine
    full: PressureLine | None


def _parse_pressure_line(kind: str, fields: list[str]) -> PressureLine:
    values: dict[str, str] = {}
    for field in fields:
        key, sep, word = field.partition("=")
        if not sep:
            raise ValueError(f"pressure {kind!r}: expected key=value, got {field!r}")
        values[key] = word  # unknown keys are tolerated (future kernels)
    pcts = []
    for key in ("avg10", "avg60", "avg300"):
        pct_word = values.get(key, "")
        if not _PCT_RE.fullmatch(pct_word):
            raise ValueError(f"pressure {kind!r}: bad or missing {key}: {pct_word!r}")
        pct = float(pct_word)
        if pct > 100.0:
            raise ValueError(f"pressure {kind!r}: {key}={pct_word} is over 100%")
        pcts.append(pct)
    total_us = _to_int(values.get("total", ""), f"pressure {kind!r} total")
    if total_us < 0:
        raise ValueError(f"pressure {kind!r}: negative total {total_us}")
    return PressureLine(pcts[0], pcts[1], pcts[2], total_us)


def parse_pressure(text: str) -> Pressure:
    """A PSI file (``<cg>/memory.pressure``, ``/proc/pressure/memory``)::

        some avg10=0.12 avg60=0.05 avg300=0.01 total=123456
        full avg10=0.00 avg60=0.00 avg300=0.00 total=7890
    """
    lines: dict[str, PressureLine] = {}
    for line in text.split("\n"):
        fields = line.split()
        if not fields:
            continue
        kind = fields[0]
        if kind not in ("some", "full"):
            raise ValueError(f"pressure file: unknown line {line!r}")
        if kind in lines:
            raise ValueError(f"pressure file: duplicate {kind!r} line")
        lines[kind] = _parse_pressure_line(kind, fields[1:])
    if "some" not in lines:
        raise ValueError("pressure file: no 'some' line")
    return Pressure(lines["some"], lines.get("full"))


def parse_controllers(text: str) -> frozenset[str]:
    """``cgroup.controllers`` / ``cgroup.subtree_control``: space-separated names."""
    names = text.split()
    for name in names:
        if not _CONTROLLER_RE.fullmatch(name):
            raise ValueError(f"controller list: invalid name {name!r}")
    return frozenset(names)


def _unescape_mount_field(field: str) -> str:
    return _OCTAL_ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 8)), field)


def cgroup2_mounts(mounts_text: str) -> list[str]:
    """Every cgroup2 mount point of a /proc/self/mounts text, in mount order.

    Fields are separated by one space: the kernel escapes only space, tab, newline
    and backslash in a path (mangle()), so other whitespace (\\x1c..\\x1f, \\v,
    U+00A0 ...) that ``str.split()`` would split on belongs to the path."""
    found = []
    for line in mounts_text.split("\n"):
        if not line:
            continue
        fields = line.split(" ")
        if len(fields) < 3:
            raise ValueError(f"mounts: expected 'source target fstype ...', got {line!r}")
        if fields[2] == "cgroup2":
            found.append(_unescape_mount_field(fields[1]))
    return found


def hierarchy_path(cgroup_root: str, mounts_text: str) -> str:
    """Where ``cgroup_root`` sits inside its cgroup2 hierarchy, in the form
    /proc/PID/cgroup uses: "/" for the mount point itself, "/sub/dir" when
    prioomd is pointed at a subtree; "/" when it is on no cgroup2 mount."""
    root = os.path.normpath(cgroup_root)
    best = ""
    for mount in cgroup2_mounts(mounts_text):
        mount = os.path.normpath(mount)
        inside = root == mount or root.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best = mount
    if not best or root == best:
        return "/"
    return "/" + root[len(best):].strip("/")


def find_cgroup2_mount(mounts_text: str) -> str | None:
    """The first cgroup2 mount point (octal escapes such as ``\\040`` decoded), or None."""
    found = cgroup2_mounts(mounts_text)
    return found[0] if found else None
