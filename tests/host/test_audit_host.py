"""audit.AuditSink on a real full filesystem: a 12 KiB tmpfs mounted under the
test's temp dir (and unmounted after). Skips where mounting is not allowed."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from prioomd import audit


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k,mode=0700", "tmpfs",
                           str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _record(i: int) -> audit.AuditRecord:
    # ~700 bytes a line: a dozen fit in 12 KiB, and the last one in tears
    return audit.build_miss_record("/tenant/" + "x" * 640 + f"/{i}", 1, dry_run=False)


def test_full_disk_keeps_every_line_whole_and_reports_once_a_minute(
        tiny_fs: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tiny_fs / "audit.jsonl"
    now = [1000.0]
    journal: list[dict[str, str]] = []
    sink = audit.AuditSink(str(path), journal_send=lambda **kw: journal.append(kw),
                           clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="prioomd.audit"):
        for i in range(40):
            sink.emit(_record(i))
            now[0] += 1.0  # 40 records in 40 s: one report
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a whole line
    parsed = [json.loads(line) for line in lines[:-1]]  # every line parses
    assert 0 < len(parsed) < 40 and sink.lost == 40 - len(parsed)
    assert [p["domain"] for p in parsed] == [_record(i)["domain"] for i in range(len(parsed))]
    assert len(journal) == 40  # the journal got every record
    reports = [r for r in caplog.records if "not written" in r.getMessage()]
    assert len(reports) == 1

    os.remove(path)  # space again
    now[0] += 61.0
    with caplog.at_level(logging.WARNING, logger="prioomd.audit"):
        sink.emit(_record(99))
    assert json.loads(path.read_text())["domain"] == _record(99)["domain"]
    assert f"{sink.lost} record(s) missing" in caplog.text
    sink.close()
