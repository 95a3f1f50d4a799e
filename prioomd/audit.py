"""One structured record per decision: a JSON line, a journal entry, a log line.

A record is a flat dict (``AuditRecord``) built by ``build_decision_record``
(what ``Killer.execute`` did with a Decision, and why) or ``build_miss_record``
(the kernel's OOM killer fired in an enabled domain without us: memory.events
``oom_kill`` rose). ``AuditSink.emit`` appends it as one JSON line to the audit
file, sends it to journald with ``PRIOOMD_*`` fields, and logs one human line;
runners-up follow at debug level (STYLE §13). Nothing here may stop the
daemon: a failing audit file or journal costs a warning, never a crash.

Journal entries carry a fixed MESSAGE_ID per record kind, so that
``journalctl MESSAGE_ID=<id>`` lists every kill or every miss:

* decision: ``704e54b2a03b4c80bd52c117ffcac056`` (``DECISION_MESSAGE_ID``)
* miss:     ``2c55840d0f4f4101ba591ed5c2852673`` (``MISS_MESSAGE_ID``)

Every scalar field of the record becomes ``PRIOOMD_<NAME>`` (booleans as
"true"/"false", lists of scalars space-separated), except ``ts``: the journal
has its own timestamp.

Names are tenants' text. The human line (the log line and the journal's MESSAGE)
escapes them (``textsafe.show``: one line, no control characters); the JSON line
and the ``PRIOOMD_*`` fields keep the raw value. A byte of a name that is not
UTF-8 (read with surrogateescape) is, in the JSON line, the lone surrogate
``\\udcNN`` (NN the byte: ``json.loads(line)[k].encode("utf-8", "surrogateescape")``
gives the name's bytes back) and, in the journal, that raw byte.
"""

from __future__ import annotations

import errno
import importlib
import json
import logging
import math
import os
import re
import stat
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from prioomd.attribution import kube_ids
from prioomd.model import Decision, KillResult
from prioomd.textsafe import show

log = logging.getLogger(__name__)

DECISION_MESSAGE_ID = "704e54b2a03b4c80bd52c117ffcac056"
MISS_MESSAGE_ID = "2c55840d0f4f4101ba591ed5c2852673"
JOURNAL_SOCKET = "/run/systemd/journal/socket"
MAX_RUNNERS_UP = 10  # candidates listed per record: enough to explain a fall-through
FILE_ERROR_REPEAT_S = 60.0  # a failing audit file is reported at most this often

AuditRecord = dict[str, Any]
JournalSend = Callable[..., object]

# syslog priorities (sd-daemon.h / syslog.h)
LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO = 3, 4, 5, 6
_PRIORITY = {"killed": LOG_WARNING, "failed": LOG_ERR, "refused": LOG_WARNING,
             "dry-run": LOG_NOTICE, "miss": LOG_WARNING}
_LOG_LEVEL = {LOG_ERR: logging.ERROR, LOG_WARNING: logging.WARNING,
              LOG_NOTICE: logging.INFO, LOG_INFO: logging.INFO}
_NUMBER_KEY = re.compile(r"[a-z][a-z0-9_]*\Z")


def _now_iso(ts: datetime | None) -> str:
    ts = ts if ts is not None else datetime.now(UTC)
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _merge_numbers(record: AuditRecord, numbers: Mapping[str, float | int] | None) -> None:
    """Embed caller numbers (names carry units: ``mem_available_bytes``);
    non-finite floats become null. A bad or clashing name is a bug."""
    for key, value in (numbers or {}).items():
        if not _NUMBER_KEY.match(key) or key in record:
            raise ValueError(f"audit number name {key!r} is invalid or clashes with a field")
        finite = not isinstance(value, float) or math.isfinite(value)
        record[key] = value if finite else None


def _ms(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round((end - start) * 1000.0, 3)


def build_decision_record(
    decision: Decision,
    result: KillResult,
    *,
    trigger: str,
    detected_at: float | None = None,
    numbers: Mapping[str, float | int] | None = None,
    ts: datetime | None = None,
) -> AuditRecord:
    """The record of one decision and what the kill path did with it.

    ``trigger`` says what woke us ("psi", "meminfo", "memory.events", "once");
    ``detected_at`` is the monotonic time detection fired (for
    ``t_detect_to_signal_ms``). ``candidates`` lists the runners-up in rank
    order with the outcome of their attempt (null: not tried)."""
    cand = result.candidate
    tried = {i: a.outcome for i, a in enumerate(result.attempts)}
    record: AuditRecord = {
        "kind": "decision",
        "ts": _now_iso(ts),
        "domain": decision.domain,
        "outcome": result.outcome,
        "dry_run": result.dry_run,
        "trigger": trigger,
        "victim_cgroup": cand.victim_cgroup if cand else None,
        "victim_pid": cand.pid if cand else None,
        "victim_pids": list(cand.pids) if cand else [],
        "victim_comm": cand.comm if cand else None,
        "kill_cgroup": cand.kill_cgroup if cand else None,
        **_kube_fields(cand.kill_cgroup or cand.victim_cgroup if cand else None),
        "reason": cand.reason if cand else decision.reason,
        "decision_outcome": decision.outcome,
        "decision_reason": decision.reason,
        "walk": list(decision.walk),
        "backend": decision.backend,
        "method": result.method or None,
        "detail": result.detail,
        "freed_bytes": result.freed_bytes,
        "t_detect_to_signal_ms": _ms(detected_at, result.signal_sent_at),
        "t_signal_to_exit_ms": _ms(result.signal_sent_at, result.exited_at),
    }
    _merge_numbers(record, numbers)
    record["candidates"] = [
        {"rank": i, "cgroup": c.victim_cgroup, "pid": c.pid, "comm": c.comm,
         "badness": c.badness, "rss_bytes": c.rss_bytes, "kill_cgroup": c.kill_cgroup,
         "outcome": tried.get(i)}
        for i, c in enumerate(decision.candidates) if c is not cand
    ][:MAX_RUNNERS_UP]
    return record


KUBE_FIELDS = ("pod_uid", "container_id", "qos_class", "container_runtime")


def _kube_fields(path: str | None) -> dict[str, str | None]:
    """k8s_pod_uid, k8s_container_id...: the pod and container the kill took,
    parsed from the cgroup path (attribution.kube_ids); None outside Kubernetes."""
    ids = kube_ids(path) if path else {}
    return {f"k8s_{k}": ids.get(k) for k in KUBE_FIELDS}


def build_miss_record(
    domain: str,
    kernel_oom_kills: int,
    *,
    dry_run: bool,
    trigger: str = "memory.events",
    numbers: Mapping[str, float | int] | None = None,
    ts: datetime | None = None,
) -> AuditRecord:
    """The kernel killed ``kernel_oom_kills`` processes (the memory.events
    ``oom_kill`` delta) in an enabled domain before prioomd acted."""
    record: AuditRecord = {"kind": "miss", "ts": _now_iso(ts), "domain": domain,
                           "kernel_oom_kills": kernel_oom_kills, "dry_run": dry_run,
                           "trigger": trigger}
    _merge_numbers(record, numbers)
    return record


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TiB"


def _fmt_number(key: str, value: float | int | None) -> str:
    if value is None:
        return f"{key}=n/a"
    for suffix, fmt in (("_bytes", _human_bytes), ("_pct", lambda v: f"{v:.2f}%"),
                        ("_ms", lambda v: f"{v:.1f}ms"), ("_us", lambda v: f"{v:.0f}us"),
                        ("_s", lambda v: f"{v:.3g}s")):
        if key.endswith(suffix):
            return f"{key[: -len(suffix)]}={fmt(value)}"
    return f"{key}={value}"


_CORE_KEYS = frozenset({
    "kind", "ts", "domain", "outcome", "dry_run", "trigger", "victim_cgroup", "victim_pid",
    "victim_pids", "victim_comm", "kill_cgroup", "reason", "decision_outcome",
    "decision_reason", "walk", "backend", "method", "detail", "freed_bytes",
    "t_detect_to_signal_ms", "t_signal_to_exit_ms", "candidates", "kernel_oom_kills",
})


def _numbers_of(record: Mapping[str, Any]) -> str:
    return " ".join(_fmt_number(k, v) for k, v in record.items() if k not in _CORE_KEYS)


def format_message(record: Mapping[str, Any]) -> str:
    """The human one-liner: victim, numbers with units, rule and reason; escaped."""
    return show(_message(record))


def _message(record: Mapping[str, Any]) -> str:
    nums = _numbers_of(record)
    dry = " (dry-run)" if record.get("dry_run") else ""
    if record["kind"] == "miss":
        return (f"Kernel OOM killer killed {record['kernel_oom_kills']} process(es) in domain "
                f"{record['domain']} before prioomd acted{dry}" + (f": {nums}" if nums else ""))
    outcome = record["outcome"]
    if record.get("kill_cgroup"):
        victim = f"cgroup {record['kill_cgroup']} ({len(record['victim_pids'])} processes)"
    elif record.get("victim_pid") is not None:
        victim = (f"process {record['victim_pid']} ({record['victim_comm']}) in "
                  f"{record['victim_cgroup']}")
    else:
        victim = ""
    head = {"killed": f"Killed {victim}", "dry-run": f"Would kill {victim} (dry-run)",
            "pressure-gone": f"Spared {victim}: pressure gone at re-check",
            "failed": f"Kill of {victim} not confirmed"}.get(outcome, "")
    if not head or not victim:
        head = f"No kill in domain {record['domain']}{dry}: {outcome} ({record['detail']})"
    facts = [f"domain {record['domain']}", f"trigger {record['trigger']}"]
    if outcome in ("killed", "dry-run", "failed"):
        facts.append(f"freed ~{_human_bytes(record['freed_bytes'])}")
    for key in ("t_detect_to_signal_ms", "t_signal_to_exit_ms"):
        if record.get(key) is not None:
            facts.append(_fmt_number(key, record[key]))
    if nums:
        facts.append(nums)
    return (f"{head}: {', '.join(facts)}; reason: {record['reason']}; "
            f"rule: {record['decision_reason']}")


def priority(record: Mapping[str, Any]) -> int:
    """syslog priority: kills and misses warn, failures are errors, the rest info."""
    key = "miss" if record["kind"] == "miss" else record["outcome"]
    return _PRIORITY.get(key, LOG_INFO)


def _journal_value(value: Any) -> str | bytes | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return _raw(str(value))
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return _raw(" ".join(str(v) for v in value))
    return None  # None, and nested values: those live in the JSON line


def _raw(text: str) -> str | bytes:
    """Text as the journal takes it: bytes where a name held bytes that are not
    UTF-8 (surrogateescape), which a str field could not carry."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no byte decodes to: not a kernel name
        return text.encode("utf-8", errors="backslashreplace")


def journal_fields(record: Mapping[str, Any]) -> dict[str, str | bytes]:
    """MESSAGE, MESSAGE_ID, PRIORITY and one PRIOOMD_<NAME> per scalar field."""
    fields: dict[str, str | bytes] = {
        "MESSAGE": format_message(record),
        "MESSAGE_ID": MISS_MESSAGE_ID if record["kind"] == "miss" else DECISION_MESSAGE_ID,
        "PRIORITY": str(priority(record)),
    }
    for key, value in record.items():
        text = _journal_value(value) if key != "ts" else None
        if text is not None:
            fields["PRIOOMD_" + key.upper()] = text
    return fields


def journal_sender(socket_path: str = JOURNAL_SOCKET) -> JournalSend | None:
    """``systemd.journal.send`` where journald listens and the binding is
    installed, else None. Call at start: it imports."""
    if not os.path.exists(socket_path):
        return None
    try:  # by name: the repo's systemd/ (unit files) would shadow it for type checkers
        journal = importlib.import_module("systemd.journal")
    except ImportError:
        log.info("systemd-python is not installed: audit records skip the journal")
        return None
    send: JournalSend = journal.send
    return send


def stderr_is_journal(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """True when our stderr is already a journal stream (systemd sets
    JOURNAL_STREAM=dev:ino): then the log line would repeat the journal entry."""
    stream = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return bool(stream) and stream == f"{st.st_dev}:{st.st_ino}"


class AuditSink:
    """Where records go: the JSON-lines file (``path`` None: none), journald
    (``journal_send`` None: none) and the log. When the journal gets the entry
    and stderr is the journal too, the log line drops to debug (no duplicates).

    A record reaches the file whole or not at all: one write per line, and a short
    write (a full disk) is cut off again, so the file stays one JSON value per
    line. A failing file (ENOSPC, EIO...) is reported at most once a minute
    (``clock``: monotonic seconds); ``lost`` counts the records it missed, which
    still went to the journal and the log."""

    def __init__(
        self,
        path: str | None,
        *,
        journal_send: JournalSend | None = None,
        fsync: bool = False,
        stderr_is_journal: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._send = journal_send
        self._fsync = fsync
        self._quiet_log = journal_send is not None and stderr_is_journal
        self._clock = clock
        self._fd: int | None = None
        self._file_id: tuple[int, int] | None = None
        self._newline_first = False  # the file ends in a torn line: start a new one
        self._failing_since_lost = 0  # lost when the current run of failures began
        self._quiet_until: float | None = None  # None: the file is not failing
        self.lost = 0

    def emit(self, record: AuditRecord) -> None:
        if self.path is not None:
            self._append(record)
        if self._send is not None:
            try:
                self._send(**journal_fields(record))
            except (OSError, ValueError) as exc:
                log.warning("audit record not sent to the journal: %s", exc)
        level = _LOG_LEVEL[priority(record)]
        log.log(logging.DEBUG if self._quiet_log else level, "%s", format_message(record))
        for c in record.get("candidates", ()):
            log.debug("  runner-up #%d: pid %d (%s) in %s, badness %d, rss %s: %s",
                      c["rank"], c["pid"], show(c["comm"]), show(c["cgroup"]), c["badness"],
                      _human_bytes(c["rss_bytes"]), c["outcome"] or "not tried")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd, self._file_id = None, None

    def _append(self, record: AuditRecord) -> None:
        assert self.path is not None
        try:
            data = (json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n").encode()
            fd = self._open(self.path)
            if self._newline_first:
                data = b"\n" + data
            _write_whole(fd, data)
            self._newline_first = False
            if self._fsync:
                os.fsync(fd)
        except (OSError, ValueError) as exc:
            self.close()
            self.lost += 1
            self._file_failed(exc)
            return
        if self._quiet_until is not None:
            log.warning("audit file %s written again; %d record(s) missing from it went "
                        "to the journal and the log only", self.path,
                        self.lost - self._failing_since_lost)
            self._quiet_until = None

    def _file_failed(self, exc: Exception) -> None:
        now = self._clock()
        if self._quiet_until is None:
            self._failing_since_lost = self.lost - 1
        elif now < self._quiet_until:
            log.debug("audit file %s not written: %s", self.path, exc)
            return
        self._quiet_until = now + FILE_ERROR_REPEAT_S
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        log.warning("audit file %s not written: %s (%d record(s) missing so far; carrying "
                    "on, the journal and the log still get them; next report in %.0f s)",
                    self.path, why, self.lost - self._failing_since_lost, FILE_ERROR_REPEAT_S)

    def _open(self, path: str) -> int:
        """The open fd; reopened when the file was rotated or removed meanwhile."""
        if self._fd is not None:
            try:
                st = os.stat(path)
                same = (st.st_dev, st.st_ino) == self._file_id
            except OSError:
                same = False
            if not same:
                self.close()
        if self._fd is None:
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, mode=0o750, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            st = os.fstat(fd)
            self._fd, self._file_id = fd, (st.st_dev, st.st_ino)
            self._newline_first = stat.S_ISREG(st.st_mode) and _ends_torn(path, st.st_size)
        return self._fd


def _write_whole(fd: int, data: bytes) -> None:
    """Append ``data`` in one write, or leave the file as it was: a short write
    (the disk filled up mid-record) is truncated away again."""
    before = os.lseek(fd, 0, os.SEEK_END)
    written = os.write(fd, data)
    if written == len(data):
        return
    try:
        os.ftruncate(fd, before)
        undone = "undone"
    except OSError as exc:  # the next open sees the torn line and starts a new one
        undone = f"not undone: {exc.strerror}"
    raise OSError(errno.ENOSPC, f"short write, {written} of {len(data)} bytes ({undone})")


def _ends_torn(path: str, size: int) -> bool:
    """True when the file's last byte is not a newline (a torn last record)."""
    if size <= 0:
        return False
    try:
        with open(path, "rb") as f:
            f.seek(size - 1)
            return f.read(1) not in (b"\n", b"")
    except OSError:
        return False
