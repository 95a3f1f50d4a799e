"""The only reader (and xattr writer) of the cgroup v2 filesystem.

Two layers (STYLE §5): the pure ``parse_*(text)`` functions of ``cgparse``, which
turn the text of one kernel file into a value and raise ``ValueError`` naming what
was wrong, and here the thin ``read_*(cgdir)`` functions that read one file of a
cgroup directory.

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
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prioomd.cgparse import (
    Pressure,
    cgroup2_mounts,
    parse_bool01,
    parse_controllers,
    parse_flat_keyed,
    parse_int,
    parse_max,
    parse_pressure,
    parse_procs,
)
from prioomd.errors import PrioomdError, Vanished, is_gone

log = logging.getLogger(__name__)

# errnos of getxattr meaning "no such attribute here"
_XATTR_ABSENT = frozenset({errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP})


class NoCgroup2Mount(PrioomdError):
    """No cgroup2 filesystem is mounted: prioomd has nothing to manage."""


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
