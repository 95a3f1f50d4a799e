"""Guard mode: memory.high = memory.max - headroom on cgroup domains (DESIGN §6).

The kernel then throttles a domain before its OOM killer runs, and prioomd gets
``high`` events and stall time in which to choose. Every value changed is put
back: on release, on a clean stop, and after a crash too. For that the value
the administrator had is kept in a state file (``STATE_FILE`` under the runtime
directory, /run/prioomd by default) before memory.high is touched, so that a
restarted daemon can tell its own leftover guard from the administrator's value.

Why a file under /run and not an xattr on the cgroup: the state must survive a
crash of the daemon and nothing longer. /run is a tmpfs, so a reboot (when every
cgroup is new) clears it; and a file lists every guarded cgroup, so a restart
finds a leftover guard even on a cgroup that is no longer a domain, without
walking the tree. Each entry carries the cgroup directory's inode number: a
cgroup removed and re-created under the same name is not mistaken for ours.

A leftover entry counts only while memory.high still holds the value we set;
anything else means someone changed it since, and their value is the one kept.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import TypeGuard

from prioomd import cgroupfs, detect
from prioomd.domains import Domain
from prioomd.errors import Vanished

log = logging.getLogger(__name__)

DEFAULT_RUNTIME_DIR = "/run/prioomd"
STATE_FILE = "guard.json"
STATE_VERSION = 1


def default_runtime_dir(environ: dict[str, str] | None = None) -> str:
    """systemd's RuntimeDirectory= (``$RUNTIME_DIRECTORY``, first entry), else /run/prioomd."""
    env = os.environ if environ is None else environ
    given = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return given or DEFAULT_RUNTIME_DIR


@dataclass(frozen=True)
class _Entry:
    cgdir: str
    ino: int  # the cgroup directory's inode: a re-created cgroup is another one
    original: int | None  # the administrator's memory.high (None: "max")
    set: int  # what the guard wrote


def _parse_state(text: str) -> dict[str, _Entry]:
    """The state file's entries; ValueError for anything malformed."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
        raise ValueError("not a version 1 guard state")
    out: dict[str, _Entry] = {}
    for path, raw in dict(doc.get("guards", {})).items():
        if not (isinstance(path, str) and isinstance(raw, dict)):
            raise ValueError(f"bad entry {path!r}")
        cgdir, ino, original, high = (raw.get(k) for k in ("cgdir", "ino", "original", "set"))
        if not (isinstance(cgdir, str) and _is_int(ino) and _is_int(high)
                and (original is None or _is_int(original))):
            raise ValueError(f"bad entry {path!r}")
        out[path] = _Entry(cgdir, ino, original, high)
    return out


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _ino(cgdir: str) -> int | None:
    try:
        return os.stat(cgdir).st_ino
    except OSError:
        return None


class Guard:
    """Sets, remembers and restores the guard. ``runtime_dir`` None keeps no
    state file (then a crash leaves the guard behind, as before)."""

    def __init__(self, thresholds: detect.CgroupThresholds, runtime_dir: str | None = None
                 ) -> None:
        self.thresholds = thresholds
        self._state_path = os.path.join(runtime_dir, STATE_FILE) if runtime_dir else None
        self._saved: dict[str, _Entry] = {}  # guards in place now
        self._leftover: dict[str, _Entry] = self._load()  # a previous run's, not yet settled

    # ------------------------------------------------------------ state file
    def _load(self) -> dict[str, _Entry]:
        if self._state_path is None:
            return {}
        try:
            with open(self._state_path, encoding="utf-8") as f:
                entries = _parse_state(f.read())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("guard state %s unreadable, ignored: %s", self._state_path, exc)
            return {}
        if entries:
            log.info("guard state of a previous run: %s", ", ".join(sorted(entries)))
        return entries

    def _persist(self) -> None:
        """Write every guard still to be restored (ours and unsettled leftovers);
        raises OSError when the state cannot be kept."""
        if self._state_path is None:
            return
        entries = {**self._leftover, **self._saved}
        if not entries:
            try:
                os.remove(self._state_path)
            except FileNotFoundError:
                pass
            return
        os.makedirs(os.path.dirname(self._state_path), mode=0o700, exist_ok=True)
        doc = {"version": STATE_VERSION, "guards": {p: asdict(e) for p, e in entries.items()}}
        tmp = self._state_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self._state_path)

    def _try_persist(self) -> None:
        try:
            self._persist()
        except OSError as exc:
            log.warning("guard state %s not updated: %s", self._state_path, exc)

    def _original(self, path: str, cgdir: str, current: int | None) -> tuple[int | None, str]:
        """The administrator's memory.high: the leftover entry's while memory.high
        still holds what a previous run set, else the value in place now."""
        old = self._leftover.pop(path, None)
        if old is not None and old.cgdir == cgdir and old.ino == _ino(cgdir) \
                and old.set == current:
            return old.original, f" (a previous run's guard; memory.high was {old.original})"
        return current, ""

    # ------------------------------------------------------------ the guard
    def apply(self, domain: Domain) -> str:
        """Set the guard on one domain; a line for the log."""
        if domain.is_root or domain.path in self._saved:
            return ""
        cgdir = domain.cgdir
        current = cgroupfs.read_memory_high(cgdir)
        original, note = self._original(domain.path, cgdir, current)
        headroom = detect.headroom_bytes(domain.memory_max_bytes or 0, self.thresholds)
        high = detect.guard_high_bytes(domain.memory_max_bytes, headroom,
                                       current_high_bytes=original)
        ino = _ino(cgdir)
        if high is None or ino is None:
            if note:  # our leftover is not wanted any more: put the original back
                self._write(domain.path, cgdir, original)
            self._try_persist()
            return f"{domain.path}: guard not needed (memory.high already at or below the guard)"
        entry = _Entry(cgdir, ino, original, high)
        self._saved[domain.path] = entry
        try:
            self._persist()  # before memory.high: a crash right after still restores
        except OSError as exc:
            del self._saved[domain.path]
            if note:
                self._write(domain.path, cgdir, original)
            return (f"{domain.path}: guard not set: its state cannot be kept in "
                    f"{self._state_path}: {exc.strerror or exc}")
        try:
            if current != high:
                cgroupfs.write_memory_high(cgdir, high)
        except (OSError, Vanished) as exc:
            del self._saved[domain.path]
            self._try_persist()
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return f"{domain.path}: cannot set memory.high: {why}; no guard"
        return (f"{domain.path}: guard memory.high={high} (memory.max="
                f"{domain.memory_max_bytes}){note}")

    def settle(self) -> None:
        """Restore the previous run's guards that this run did not take over (a
        domain no longer enabled, guard mode now off). Call after the first arming."""
        for path, old in list(self._leftover.items()):
            del self._leftover[path]
            try:
                still_ours = old.ino == _ino(old.cgdir) and \
                    cgroupfs.read_memory_high(old.cgdir) == old.set
            except (OSError, ValueError, Vanished):
                still_ours = False
            if still_ours:
                self._write(path, old.cgdir, old.original)
                log.info("%s: a previous run's guard removed, memory.high=%s again", path,
                         "max" if old.original is None else old.original)
        self._try_persist()

    def release(self, path: str) -> None:
        """Put the original back, unless someone changed memory.high meanwhile:
        then theirs is the administrator's value now."""
        saved = self._saved.pop(path, None)
        if saved is None:
            return
        try:
            ours = cgroupfs.read_memory_high(saved.cgdir) == saved.set
        except (OSError, ValueError, Vanished):
            ours = False
        if ours:
            self._write(path, saved.cgdir, saved.original)
        self._try_persist()

    def restore_all(self) -> None:
        for path in list(self._saved):
            self.release(path)

    def _write(self, path: str, cgdir: str, high: int | None) -> None:
        try:
            cgroupfs.write_memory_high(cgdir, high)
        except (OSError, Vanished) as exc:
            log.debug("%s: memory.high not restored: %s", path, exc)

    @property
    def guarded(self) -> frozenset[str]:
        return frozenset(self._saved)
