"""Prometheus metrics: counting audit records, bounded labels, real scrapes over
TCP and a Unix socket, the textfile, and nothing imported when off."""

from __future__ import annotations

import http.client
import logging
import os
import socket
import subprocess
import sys
import urllib.request

import pytest

from prioomd import config, metrics
from prioomd.errors import ConfigError
from prioomd.sections import MetricsConfig

pc_parser = pytest.importorskip("prometheus_client.parser")


def _decision(domain="/", outcome="killed", trigger="pressure (psi)", **extra):
    return {"kind": "decision", "domain": domain, "outcome": outcome, "trigger": trigger,
            "victim_pid": 4242, "victim_cgroup": "/tenant/evil\nname", "dry_run": False,
            "t_detect_to_signal_ms": 40.0, "t_signal_to_exit_ms": 120.0,
            "psi_some_avg10_pct": 55.5, **extra}


def _samples(text: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = text.decode() if isinstance(text, bytes) else text
    out = {}
    for fam in pc_parser.text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _metrics(**kw) -> metrics.Metrics:
    return metrics.Metrics(MetricsConfig(enabled=True, **kw), dry_run=False, walk="c")


def test_decisions_kills_misses_and_latencies_are_counted():
    m = _metrics()
    m.record(_decision())
    m.record(_decision(outcome="refused", trigger="limit (memory.events)",
                       t_detect_to_signal_ms=None, t_signal_to_exit_ms=None))
    m.record({"kind": "miss", "domain": "/", "kernel_oom_kills": 3, "dry_run": False,
              "trigger": "memory.events"})
    m.reloaded(True)
    m.reloaded(False)
    s = _samples(m.exposition())
    assert s[("prioomd_decisions_total", (("domain", "/"), ("outcome", "killed"),
                                          ("trigger", "pressure")))] == 1
    assert s[("prioomd_decisions_total", (("domain", "/"), ("outcome", "refused"),
                                          ("trigger", "limit")))] == 1
    assert s[("prioomd_kills_total", (("domain", "/"), ("trigger", "pressure")))] == 1
    assert s[("prioomd_misses_total", (("domain", "/"),))] == 3
    assert s[("prioomd_detect_to_signal_seconds_count", (("domain", "/"),))] == 1
    assert s[("prioomd_detect_to_signal_seconds_sum", (("domain", "/"),))] == pytest.approx(0.04)
    assert s[("prioomd_signal_to_exit_seconds_bucket", (("domain", "/"), ("le", "0.25")))] == 1
    assert s[("prioomd_pressure_some_avg10_pct", (("domain", "/"),))] == 55.5
    assert s[("prioomd_config_reloads_total", (("result", "ok"),))] == 1
    assert s[("prioomd_config_reloads_total", (("result", "rejected"),))] == 1
    assert s[("prioomd_dry_run", ())] == 0
    assert s[("prioomd_walk_info", (("implementation", "c"),))] == 1


def test_no_pid_cgroup_or_name_ever_becomes_a_label():
    m = _metrics()
    m.record(_decision())
    text = m.exposition().decode()
    assert "4242" not in text and "evil" not in text
    labels = {k for (_, ls) in _samples(text) for k, _ in ls}
    assert labels <= {"domain", "trigger", "outcome", "result", "implementation", "le"}


def test_hostile_values_map_to_bounded_labels():
    m = _metrics()
    for i in range(metrics.MAX_DOMAINS + 50):
        m.record(_decision(domain=f"/tenant/d{i}", outcome=f"weird{i}", trigger=f"x{i} (y)"))
    m.record(_decision(domain="/bad\udcffname\n"))  # non-UTF-8 bytes of a cgroup name
    s = _samples(m.exposition())
    domains = {dict(ls)["domain"] for (n, ls) in s if n == "prioomd_decisions_total"}
    assert len(domains) == metrics.MAX_DOMAINS + 1 and "other" in domains
    outcomes = {dict(ls)["outcome"] for (n, ls) in s if n == "prioomd_decisions_total"}
    triggers = {dict(ls)["trigger"] for (n, ls) in s if n == "prioomd_decisions_total"}
    assert outcomes == {"other", "killed"} and triggers == {"other", "pressure"}


def test_label_helpers():
    assert metrics.trigger_label("floor (poll)") == "floor"
    assert metrics.trigger_label(None) == "other"
    assert metrics.outcome_label("dry-run") == "dry-run"
    assert metrics.outcome_label(["killed"]) == "other"
    assert metrics.label_text("/a\udcffb") == "/a\\udcffb"
    assert metrics.parse_listen("unix:/run/x.sock") == (socket.AF_UNIX, "/run/x.sock")
    assert metrics.parse_listen("[::1]:9381") == (socket.AF_INET6, ("::1", 9381))
    assert metrics.parse_listen("127.0.0.1:9381") == (socket.AF_INET, ("127.0.0.1", 9381))


def test_a_malformed_record_is_dropped_and_counted_not_raised(caplog):
    m = _metrics()
    with caplog.at_level(logging.WARNING):
        m.record({"kind": "decision"})  # no domain
    s = _samples(m.exposition())
    assert s[("prioomd_metrics_records_dropped_total", ())] == 1
    assert "not counted" in caplog.text


def test_http_listener_is_scraped(tmp_path):
    m = metrics.start(MetricsConfig(enabled=True, listen="127.0.0.1:0"), dry_run=True,
                      walk="python")
    assert isinstance(m, metrics.Metrics)
    try:
        m.record(_decision(outcome="dry-run"))
        assert m._server is not None
        port = m._server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert r.status == 200
            s = _samples(r.read())
        assert s[("prioomd_dry_run", ())] == 1
        assert s[("prioomd_decisions_total", (("domain", "/"), ("outcome", "dry-run"),
                                              ("trigger", "pressure")))] == 1
    finally:
        m.close()


def _scrape_unix(path: str) -> bytes:
    conn = http.client.HTTPConnection("localhost", timeout=10)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    conn.sock = sock
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    assert resp.status == 200
    body = resp.read()
    conn.close()
    return body


def test_unix_socket_listener_is_scraped_and_removed_on_close(tmp_path):
    path = tmp_path / "metrics.sock"
    path_stale = socket.socket(socket.AF_UNIX)
    path_stale.bind(str(path))  # a stale socket of an earlier run is replaced
    path_stale.close()
    m = metrics.start(MetricsConfig(enabled=True, listen=f"unix:{path}"), dry_run=False,
                      walk="c")
    try:
        m.record(_decision())
        s = _samples(_scrape_unix(str(path)))
        assert s[("prioomd_kills_total", (("domain", "/"), ("trigger", "pressure")))] == 1
    finally:
        m.close()
    assert not path.exists()


def test_a_regular_file_at_the_socket_path_is_not_removed(tmp_path, caplog):
    path = tmp_path / "metrics.sock"
    path.write_text("not mine")
    with caplog.at_level(logging.WARNING):
        m = metrics.start(MetricsConfig(enabled=True, listen=f"unix:{path}"), dry_run=False,
                          walk="c")
    m.close()
    assert path.read_text() == "not mine"
    assert "cannot listen" in caplog.text


def test_textfile_is_rewritten_atomically_after_each_record(tmp_path):
    out = tmp_path / "prioomd.prom"
    m = metrics.start(MetricsConfig(enabled=True, textfile=str(out)), dry_run=False, walk="c")
    assert _samples(out.read_text())[("prioomd_dry_run", ())] == 0  # written at start
    m.record(_decision())
    s = _samples(out.read_text())
    assert s[("prioomd_kills_total", (("domain", "/"), ("trigger", "pressure")))] == 1
    assert os.listdir(tmp_path) == ["prioomd.prom"]  # no temporary file left behind
    m.close()


def test_textfile_on_an_unwritable_path_warns(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        m = metrics.start(MetricsConfig(enabled=True, textfile=str(tmp_path / "no" / "x.prom")),
                          dry_run=False, walk="c")
        m.record(_decision())
    assert "cannot write" in caplog.text


def test_off_is_null_and_imports_nothing():
    code = ("import sys; from prioomd import daemon, metrics; "
            "from prioomd.sections import MetricsConfig; "
            "m = metrics.start(MetricsConfig(), dry_run=False, walk='c'); "
            "assert m is metrics.NULL; m.record({}); m.reloaded(True); m.close(); "
            "assert 'prometheus_client' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_enabled_without_the_package_runs_without_metrics(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import raises
    with caplog.at_level(logging.WARNING):
        m = metrics.start(MetricsConfig(enabled=True, listen="127.0.0.1:0"), dry_run=False,
                          walk="c")
    assert m is metrics.NULL
    assert "prometheus-client is not installed" in caplog.text


@pytest.mark.parametrize("listen", ["127.0.0.1:9381", "[::1]:9381", "unix:/run/p.sock", ""])
def test_config_accepts_listen(listen):
    cfg = config.parse_config(f'[metrics]\nenabled = true\nlisten = "{listen}"\n', "t.toml")
    assert cfg.metrics.listen == listen and cfg.metrics.enabled


@pytest.mark.parametrize("listen", ["9381", "localhost", ":9381", "h:0", "h:99999",
                                    "unix:relative.sock", "h:port"])
def test_config_rejects_listen(listen):
    with pytest.raises(ConfigError, match=r"\[metrics\] listen"):
        config.parse_config(f'[metrics]\nlisten = "{listen}"\n', "t.toml")


def test_config_rejects_a_relative_textfile():
    with pytest.raises(ConfigError, match=r"\[metrics\] textfile"):
        config.parse_config('[metrics]\ntextfile = "x.prom"\n', "t.toml")
