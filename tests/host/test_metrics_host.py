"""The metrics of a real `prioomd run` on this machine's cgroup v2 tree, scraped over
its Unix socket while it runs, and its textfile after it stopped."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time

import pytest

from prioomd import cgroupfs

pc_parser = pytest.importorskip("prometheus_client.parser")


def _scrape(path: str) -> dict[str, float]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    conn = http.client.HTTPConnection("localhost", timeout=10)
    conn.sock = sock
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type", "").startswith("text/plain")
    text = resp.read().decode()
    conn.close()
    return {s.name + str(sorted(s.labels.items())): s.value
            for fam in pc_parser.text_string_to_metric_families(text) for s in fam.samples}


def test_a_running_daemon_is_scraped(tmp_path):
    try:
        root = cgroupfs.default_cgroup_root()
    except cgroupfs.NoCgroup2Mount as exc:
        pytest.skip(f"host tier: {exc}")
    sock, prom = tmp_path / "m.sock", tmp_path / "prioomd.prom"
    conf = tmp_path / "prioomd.toml"
    conf.write_text(f'[root]\nuse_priority_oom = true\n[audit]\nfile = ""\njournal = false\n'
                    f'[metrics]\nenabled = true\nlisten = "unix:{sock}"\ntextfile = "{prom}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "prioomd", "run", "--dry-run", "--config",
                             str(conf), "--cgroup-root", root, "--exit-after", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists(), "no metrics socket"
        live = _scrape(str(sock))
    finally:
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert live["prioomd_dry_run[]"] == 1
    walk = "c" if "C core" in subprocess.run(
        [sys.executable, "-m", "prioomd", "--version"], capture_output=True,
        text=True).stdout else "python"
    assert live[f"prioomd_walk_info[('implementation', '{walk}')]"] == 1
    assert live["prioomd_config_reloads_total[('result', 'ok')]"] == 0
    assert "metrics: listening on unix:" in out
    assert not sock.exists()  # removed on exit
    assert os.path.getsize(prom) > 0
