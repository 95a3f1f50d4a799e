"""Prometheus metrics, fed by the audit records the daemon already emits.

``start(cfg, dry_run=..., walk=...)`` returns a ``Metrics`` (when ``[metrics]
enabled``) or ``NULL`` (a sink that does nothing). The daemon calls
``record(audit_record)`` where it emits an audit record, ``reloaded(ok)`` after a
reload attempt and ``close()`` on exit. prometheus_client is imported only by
``start`` when metrics are on (it costs about 7 MiB of RSS and 0.1 s at start), so a
daemon without metrics pays nothing.

Labels are bounded, whatever tenants do: ``domain`` (an enabled OOM domain; at most
``MAX_DOMAINS`` distinct values, later ones count as ``other``), ``trigger`` (the
detector's fixed vocabulary), ``outcome`` (the kill path's fixed vocabulary). No pid,
no victim cgroup, no process name. Metrics never stop the daemon: a missing package,
an address in use or a full disk cost a warning.

Exposition: an HTTP listener on ``HOST:PORT`` or a Unix socket (``unix:/PATH``), each
served by a daemon thread, and/or a textfile for node_exporter's textfile collector,
rewritten (temporary file + rename) after every change.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import stat
import threading
from collections.abc import Mapping
from typing import Any

from prioomd.sections import MetricsConfig

log = logging.getLogger(__name__)

MAX_DOMAINS = 32  # distinct domain label values; an operator enables domains, tenants may too
OTHER = "other"
TRIGGERS = frozenset({"pressure", "floor", "oom", "limit", "memory.events", "once"})
OUTCOMES = frozenset({"killed", "dry-run", "vanished", "refused", "pressure-gone", "failed",
                      "none", "wait"})
# Detection to SIGKILL and SIGKILL to exit: tens of ms natively, up to seconds under TCG
# or with a SIGTERM grace (README "What it costs").
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class NullMetrics:
    """Metrics off: every call is a no-op."""

    def record(self, record: Mapping[str, Any]) -> None:
        pass

    def reloaded(self, ok: bool) -> None:
        pass

    def close(self) -> None:
        pass


NULL = NullMetrics()


def label_text(value: object) -> str:
    """A label value that encodes as UTF-8 whatever bytes a cgroup name held."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def trigger_label(trigger: object) -> str:
    """``"pressure (psi)"`` -> ``"pressure"``; anything unknown -> ``"other"``."""
    word = str(trigger).split(" ", 1)[0]
    return word if word in TRIGGERS else OTHER


def outcome_label(outcome: object) -> str:
    return outcome if isinstance(outcome, str) and outcome in OUTCOMES else OTHER


def parse_listen(address: str) -> tuple[int, str | tuple[str, int]]:
    """``"unix:/p"`` -> (AF_UNIX, "/p"); ``"h:p"``, ``"[v6]:p"`` -> (AF_INET[6], (h, p)).
    The config has checked the shape already."""
    if address.startswith("unix:"):
        return socket.AF_UNIX, address[5:]
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        return socket.AF_INET6, (host[1:-1], int(port))
    return socket.AF_INET, (host, int(port))


class Metrics:
    """The metric families and their exposition; build with ``start``."""

    def __init__(self, cfg: MetricsConfig, *, dry_run: bool, walk: str) -> None:
        import prometheus_client as pc  # lazily: only when metrics are on

        self._pc = pc
        self.cfg = cfg
        self.registry = pc.CollectorRegistry()
        r = self.registry
        self._domains: set[str] = set()
        self._lock = threading.Lock()
        self.decisions = pc.Counter(
            "prioomd_decisions", "Decisions taken on a domain under threat, by outcome.",
            ["domain", "trigger", "outcome"], registry=r)
        self.kills = pc.Counter(
            "prioomd_kills", "Victims killed (outcome killed; dry-run kills nothing).",
            ["domain", "trigger"], registry=r)
        self.misses = pc.Counter(
            "prioomd_misses", "Processes the kernel's OOM killer killed in an enabled "
            "domain before prioomd acted.", ["domain"], registry=r)
        self.pressure = pc.Gauge(
            "prioomd_pressure_some_avg10_pct", "PSI memory some avg10 seen at the last "
            "decision in the domain.", ["domain"], registry=r)
        self.pressure_full = pc.Gauge(
            "prioomd_pressure_full_avg10_pct", "PSI memory full avg10 seen at the last "
            "decision in the domain.", ["domain"], registry=r)
        self.detect_to_signal = pc.Histogram(
            "prioomd_detect_to_signal_seconds", "From the sample that showed the threat to "
            "the signal sent (the decision's latency).", ["domain"],
            buckets=LATENCY_BUCKETS_S, registry=r)
        self.signal_to_exit = pc.Histogram(
            "prioomd_signal_to_exit_seconds", "From the signal sent to the victim's exit "
            "(the kill's latency).", ["domain"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.reloads = pc.Counter(
            "prioomd_config_reloads", "Configuration reloads, by result (ok, rejected).",
            ["result"], registry=r)
        self.audit_errors = pc.Counter(
            "prioomd_metrics_records_dropped", "Audit records the metrics could not read "
            "(a bug; the audit file still has them).", registry=r)
        pc.Gauge("prioomd_dry_run", "1 when prioomd decides but kills nothing.",
                 registry=r).set(1 if dry_run else 0)
        pc.Gauge("prioomd_walk_info", "The walk implementation in use (c or python).",
                 ["implementation"], registry=r).labels(label_text(walk)).set(1)
        self.reloads.labels("ok")
        self.reloads.labels("rejected")
        self._server: socketserver.BaseServer | None = None

    # ------------------------------------------------------------ feeding
    def _domain(self, value: object) -> str:
        text = label_text(value)
        if text in self._domains:
            return text
        if len(self._domains) < MAX_DOMAINS:
            self._domains.add(text)
            return text
        return OTHER

    def record(self, record: Mapping[str, Any]) -> None:
        """Count one audit record (``audit.build_decision_record``/``build_miss_record``)."""
        try:
            with self._lock:
                self._count(record)
        except (TypeError, ValueError, KeyError) as exc:
            self.audit_errors.inc()
            log.warning("metrics: record not counted: %s", exc)
        self._write_textfile()

    def _count(self, record: Mapping[str, Any]) -> None:
        domain = self._domain(record["domain"])
        if record.get("kind") == "miss":
            self.misses.labels(domain).inc(int(record.get("kernel_oom_kills") or 0))
            return
        trigger = trigger_label(record.get("trigger"))
        outcome = outcome_label(record.get("outcome"))
        self.decisions.labels(domain, trigger, outcome).inc()
        if outcome == "killed":
            self.kills.labels(domain, trigger).inc()
        for key, gauge in (("psi_some_avg10_pct", self.pressure),
                           ("psi_full_avg10_pct", self.pressure_full)):
            value = record.get(key)
            if isinstance(value, int | float):
                gauge.labels(domain).set(value)
        for key, hist in (("t_detect_to_signal_ms", self.detect_to_signal),
                          ("t_signal_to_exit_ms", self.signal_to_exit)):
            value = record.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                hist.labels(domain).observe(value / 1000)

    def reloaded(self, ok: bool) -> None:
        self.reloads.labels("ok" if ok else "rejected").inc()
        self._write_textfile()

    # ------------------------------------------------------------ exposition
    def exposition(self) -> bytes:
        """The text format, as a scrape would get it."""
        return bytes(self._pc.generate_latest(self.registry))

    def _write_textfile(self) -> None:
        if not self.cfg.textfile:
            return
        try:  # write_to_textfile writes a temporary file beside it and renames it
            self._pc.write_to_textfile(self.cfg.textfile, self.registry)
        except OSError as exc:
            log.warning("metrics: cannot write %s: %s", self.cfg.textfile, exc.strerror)

    def serve(self) -> str:
        """Start the listener (if configured) in a daemon thread; where it listens."""
        if not self.cfg.listen:
            return ""
        family, address = parse_listen(self.cfg.listen)
        handler = self._pc.MetricsHandler.factory(self.registry)
        server: socketserver.BaseServer
        if family == socket.AF_UNIX:
            assert isinstance(address, str)
            _unlink_socket(address)
            server = _UnixServer(address, handler)
            where = f"unix:{address}"
        else:
            assert isinstance(address, tuple)
            server = _tcp_server(family)(address, handler)
            host, port = address[0], server.server_address[1]
            where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        self._server = server
        threading.Thread(target=server.serve_forever, name="prioomd-metrics",
                         daemon=True).start()
        return where

    def close(self) -> None:
        self._write_textfile()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            if isinstance(server, _UnixServer):
                _unlink_socket(str(server.server_address))


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _tcp_server(family: int) -> type[socketserver.TCPServer]:
    from http.server import ThreadingHTTPServer

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True

    return Server


def _unlink_socket(path: str) -> None:
    """Remove a stale socket left by an earlier run (never a regular file)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


def start(cfg: MetricsConfig, *, dry_run: bool, walk: str) -> Metrics | NullMetrics:
    """Metrics as configured, listening already; ``NULL`` when off or impossible."""
    if not cfg.enabled:
        return NULL
    try:
        metrics = Metrics(cfg, dry_run=dry_run, walk=walk)
    except ImportError:
        log.warning("metrics: [metrics] enabled but prometheus-client is not installed "
                    "(pip install 'prioomd[metrics]'); running without metrics")
        return NULL
    try:
        where = metrics.serve()
    except (OSError, ValueError) as exc:
        log.warning("metrics: cannot listen on %s: %s; running without a listener",
                    cfg.listen, exc)
        where = ""
    metrics._write_textfile()
    log.info("metrics: %s%s", f"listening on {where}" if where else "no listener",
             f", textfile {cfg.textfile}" if cfg.textfile else "")
    return metrics
