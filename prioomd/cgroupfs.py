"""The only reader (and xattr writer) of the cgroup v2 filesystem.

Two layers (STYLE §5): pure ``parse_*(text)`` functions that turn the text of
one kernel file into a value and raise ``ValueError`` naming what was wrong,
and thin ``read_*(cgdir)`` functions that read one file of a cgroup directory.

Contracts shared by every reader:

* ``cgdir`` is an absolute directory path (see ``rel_to_abs``).
* A cgroup that disappears while we read it raises ``Vanished`` (ENOENT on
  the directory, ENODEV on a kernfs file of a removed cgroup, see errors.py).
* A file that a live cgroup does not have (no memory controller, the root
  cgroup, PSI disabled) gives the documented default, never an exception.
* Other OSErrors (EACCES, EPERM, ...) propagate: they are the caller's
  warning to give, with backoff (STYLE §6).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prioomd.errors import PrioomdError, Vanished, is_gone

log = logging.getLogger(__name__)

_INT_RE = re.compile(r"[+-]?[0-9]+")  # int() alone would accept "1_000" and non-ASCII digits
_PCT_RE = re.compile(r"[0-9]+(\.[0-9]+)?")  # PSI prints "%lu.%02lu"
_CONTROLLER_RE = re.compile(r"[a-z0-9_]+")
_OCTAL_ESCAPE_RE = re.compile(r"\\([0-7]{3})")  # mangle() in fs/proc_namespace.c

# errnos of getxattr meaning "no such attribute here"
_XATTR_ABSENT = frozenset({errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP})


class NoCgroup2Mount(PrioomdError):
    """No cgroup2 filesystem is mounted: prioomd has nothing to manage."""


# ---------------------------------------------------------------- pure parsers


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


# ---------------------------------------------------------------- paths


def rel_to_abs(root: str, relpath: str) -> str:
    """Cgroup path ("/" or "/a/b", as in model.py) -> directory under ``root``.

    Only the canonical form is accepted: no empty, "." or ".." components, so a
    path can never leave ``root``.
    """
    if relpath == "/":
        return root
    parts = relpath.split("/")
    if len(parts) < 2 or parts[0] != "" or any(p in ("", ".", "..") for p in parts[1:]):
        raise ValueError(f"not a canonical cgroup path: {relpath!r}")
    return os.path.join(root, *parts[1:])


def abs_to_rel(root: str, abspath: str) -> str:
    """Directory under ``root`` -> cgroup path; ValueError when it is not under ``root``."""
    root_n = os.path.normpath(root)
    path_n = os.path.normpath(abspath)
    if path_n == root_n:
        return "/"
    prefix = root_n.rstrip("/") + "/"
    if not path_n.startswith(prefix):
        raise ValueError(f"{abspath!r} is not under the cgroup root {root!r}")
    return "/" + path_n[len(prefix):]


# ---------------------------------------------------------------- thin readers


@contextmanager
def _gone_is_vanished(path: str) -> Iterator[None]:
    """Translate 'gone' errnos (errors.is_gone) into Vanished; others propagate."""
    try:
        yield
    except OSError as exc:
        if is_gone(exc):
            raise Vanished(f"{path}: {os.strerror(exc.errno or 0)}") from exc
        raise


def _read_text(path: str) -> str:
    """Read a whole kernel file; Vanished when it (or its cgroup) is gone."""
    with _gone_is_vanished(path), open(path, "rb") as f:
        return f.read().decode("utf-8", errors="replace")


def _read_optional(cgdir: str, name: str) -> str | None:
    """Read ``cgdir/name``; None when the file is absent from a cgroup that still exists."""
    path = os.path.join(cgdir, name)
    try:
        return _read_text(path)
    except Vanished as exc:
        if isinstance(exc.__cause__, FileNotFoundError) and os.path.isdir(cgdir):
            return None
        raise


def read_procs(cgdir: str) -> list[int]:
    """The processes (tgids) attached to exactly this cgroup."""
    try:
        return parse_procs(_read_text(os.path.join(cgdir, "cgroup.procs")))
    except OSError as exc:
        # A threaded cgroup refuses reads of cgroup.procs: its processes are
        # listed by the threaded domain above it (kernel: cgroup_procs_start).
        if exc.errno == errno.EOPNOTSUPP:
            return []
        raise


def read_threads(cgdir: str) -> list[int]:
    """``cgroup.threads``: the threads (tids) attached to exactly this cgroup; unlike
    cgroup.procs, readable in threaded cgroups too."""
    return parse_procs(_read_text(os.path.join(cgdir, "cgroup.threads")))


def read_usage_bytes(cgdir: str) -> int:
    """``memory.current``; 0 where there is none (no memory controller, the root)."""
    text = _read_optional(cgdir, "memory.current")
    return 0 if text is None else parse_int(text)


def read_memory_max(cgdir: str) -> int | None:
    """``memory.max`` in bytes; None for "max" or no memory controller."""
    text = _read_optional(cgdir, "memory.max")
    return None if text is None else parse_max(text)


def read_memory_high(cgdir: str) -> int | None:
    """``memory.high`` in bytes; None for "max" or no memory controller."""
    text = _read_optional(cgdir, "memory.high")
    return None if text is None else parse_max(text)


def write_memory_high(cgdir: str, high_bytes: int | None) -> None:
    """Set ``memory.high`` (None writes "max"): prioomd's guard mode (DESIGN §6)."""
    value = "max" if high_bytes is None else str(int(high_bytes))
    with _gone_is_vanished(cgdir), open(os.path.join(cgdir, "memory.high"), "w") as f:
        f.write(value)


def read_swap_max(cgdir: str) -> int | None:
    """``memory.swap.max`` in bytes; None for "max" or no swap accounting."""
    text = _read_optional(cgdir, "memory.swap.max")
    return None if text is None else parse_max(text)


def read_events(cgdir: str) -> dict[str, int]:
    """``memory.events`` counters (low, high, max, oom, oom_kill, ...); {} when absent."""
    text = _read_optional(cgdir, "memory.events")
    return {} if text is None else parse_flat_keyed(text)


def read_cgroup_events(cgdir: str) -> dict[str, int]:
    """``cgroup.events`` (populated, frozen); {} for the root, which has none."""
    text = _read_optional(cgdir, "cgroup.events")
    return {} if text is None else parse_flat_keyed(text)


def read_populated(cgdir: str) -> bool:
    """Whether the subtree holds any process. The root has no cgroup.events and is
    always populated (kernel threads live there)."""
    events = read_cgroup_events(cgdir)
    if not events:
        return True
    if "populated" not in events:
        raise ValueError(f"{cgdir}/cgroup.events: no 'populated' key")
    return events["populated"] != 0


def populated_children(cgdir: str, names: list[str]) -> list[bool | None]:
    """``read_populated`` of each child ``cgdir/name``, None for a child that is gone:
    the walk's read of a whole level, paid once per sibling. Opened relative to one
    descriptor of ``cgdir`` (no path lookup from the root per child): about a third of
    the cost of ``read_populated`` in a loop (bench/populated.py). Vanished when
    ``cgdir`` itself is gone."""
    with _gone_is_vanished(cgdir):
        dfd = os.open(cgdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    out: list[bool | None] = []
    try:
        for name in names:
            try:
                fd = os.open(f"{name}/cgroup.events", os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)
            except OSError as exc:
                if not is_gone(exc):
                    raise
                # as read_populated: no cgroup.events in a directory that exists reads
                # as populated (only the root lacks one on a real cgroupfs)
                out.append(True if isinstance(exc, FileNotFoundError)
                           and _is_dir_at(dfd, name) else None)
                continue
            try:
                chunks = [os.read(fd, 4096)]
                while len(chunks[-1]) == 4096:  # never for a real cgroup.events
                    chunks.append(os.read(fd, 4096))
            except OSError as exc:
                if not is_gone(exc):
                    raise
                out.append(None)
                continue
            finally:
                os.close(fd)
            data = b"".join(chunks)
            if data[:10] == b"populated " and data[10:12] in (b"0\n", b"1\n"):
                out.append(data[10:11] == b"1")  # as the kernel writes it: no parse
                continue
            events = parse_flat_keyed(data.decode("utf-8", errors="replace"))
            if not events:
                out.append(True)
            elif "populated" not in events:
                raise ValueError(f"{cgdir}/{name}/cgroup.events: no 'populated' key")
            else:
                out.append(events["populated"] != 0)
    finally:
        os.close(dfd)
    return out


def _is_dir_at(dfd: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def read_pressure(path: str) -> Pressure | None:
    """A PSI file by its full path; None where PSI is unavailable (file absent in a
    directory that exists, cgroup.pressure=0, or psi=0 at boot: EOPNOTSUPP).
    Vanished when the directory is gone (a removed cgroup; also /proc/pressure on
    a kernel built without PSI)."""
    parent = os.path.dirname(path)
    try:
        text = _read_optional(parent, os.path.basename(path))
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP):
            return None
        raise
    return None if text is None else parse_pressure(text)


def read_oom_group(cgdir: str) -> bool:
    """``memory.oom.group``; False where there is none."""
    text = _read_optional(cgdir, "memory.oom.group")
    return False if text is None else parse_bool01(text)


def read_controllers(cgdir: str) -> frozenset[str]:
    """``cgroup.controllers``: the controllers this cgroup has."""
    return parse_controllers(_read_text(os.path.join(cgdir, "cgroup.controllers")))


def read_subtree_control(cgdir: str) -> frozenset[str]:
    """``cgroup.subtree_control``: the controllers enabled for this cgroup's children."""
    return parse_controllers(_read_text(os.path.join(cgdir, "cgroup.subtree_control")))


def creation_key(cgdir: str) -> tuple[int, int]:
    """Sibling order of a cgroup: ``(0, inode)``.

    kernfs numbers a node ``generation << 32 | cyclic id`` (64-bit st_ino), so the
    inode grows with creation, like the css serial number the kernel walks in.
    The leading 0 is reserved for a birth time should statx be used one day.
    """
    with _gone_is_vanished(cgdir):
        return (0, os.stat(cgdir).st_ino)


def list_children(cgdir: str) -> list[tuple[str, tuple[int, int]]]:
    """Child cgroups as ``(name, creation_key)``, oldest first.

    Uses the inode number of each directory entry (no stat per child). Files
    are skipped; a child that vanishes while we list is simply not there.
    Vanished when ``cgdir`` itself is gone.
    """
    children = []
    with _gone_is_vanished(cgdir), os.scandir(cgdir) as entries:
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
            except OSError as exc:
                if is_gone(exc):
                    continue
                raise
            children.append((entry.name, (0, entry.inode())))
    children.sort(key=lambda child: (child[1], child[0]))
    return children


def walk_tree(root_cgdir: str, rel_start: str = "/") -> Iterator[tuple[str, int]]:
    """Pre-order walk from ``rel_start``: ``(cgroup path, depth)``, depth 0 at the start.

    Children come in creation order. Lazy: a node's children are listed just
    before it is yielded, and a node found gone at that moment is left out with
    its subtree (so a vanished ``rel_start`` yields nothing).
    """
    stack: list[tuple[str, int]] = [(rel_start, 0)]
    while stack:
        rel, depth = stack.pop()
        try:
            children = list_children(rel_to_abs(root_cgdir, rel))
        except Vanished:
            log.debug("cgroup %s vanished during the walk", rel)
            continue
        yield rel, depth
        base = "" if rel == "/" else rel
        for name, _key in reversed(children):
            stack.append((f"{base}/{name}", depth + 1))


# ---------------------------------------------------------------- xattrs, owner


def read_xattrs(cgdir: str, names: Iterable[str]) -> dict[str, bytes]:
    """The extended attributes among ``names`` that the cgroup has.

    Absent, unsupported, or not visible to us (trusted.* without CAP_SYS_ADMIN:
    EPERM/EACCES, logged at debug) all mean "not set". Vanished when the
    cgroup is gone.
    """
    found: dict[str, bytes] = {}
    for name in names:
        try:
            found[name] = os.getxattr(cgdir, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in _XATTR_ABSENT:
                continue
            if exc.errno in (errno.EPERM, errno.EACCES):
                log.debug("xattr %s of %s is not readable by us: %s", name, cgdir,
                          os.strerror(exc.errno))
                continue
            if is_gone(exc):
                raise Vanished(f"{cgdir}: {os.strerror(exc.errno or 0)}") from exc
            raise
    return found


def write_xattr(cgdir: str, name: str, value: bytes) -> None:
    """Set one extended attribute; Vanished when the cgroup is gone, other errors raise."""
    with _gone_is_vanished(cgdir):
        os.setxattr(cgdir, name, value, follow_symlinks=False)


def remove_xattr(cgdir: str, name: str) -> bool:
    """Remove one extended attribute; False when it was not set."""
    try:
        with _gone_is_vanished(cgdir):
            os.removexattr(cgdir, name, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return False
        raise
    return True


def owner_uid(cgdir: str) -> int:
    """The uid owning the cgroup directory (a delegated subtree's user)."""
    with _gone_is_vanished(cgdir):
        return os.stat(cgdir).st_uid


# ---------------------------------------------------------------- the root


def default_cgroup_root(mounts_path: str = "/proc/self/mounts") -> str:
    """Where prioomd's cgroup tree is: ``/sys/fs/cgroup`` when that is a cgroup2
    mount (unified hosts), else the first cgroup2 mount (hybrid hosts:
    ``/sys/fs/cgroup/unified``). NoCgroup2Mount when there is none."""
    with open(mounts_path, "rb") as f:
        mounts = cgroup2_mounts(os.fsdecode(f.read()))
    if "/sys/fs/cgroup" in mounts:
        return "/sys/fs/cgroup"
    if mounts:
        return mounts[0]
    raise NoCgroup2Mount(f"no cgroup2 filesystem is mounted (looked in {mounts_path})")
