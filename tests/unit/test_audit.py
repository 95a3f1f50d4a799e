"""audit: record fields, JSON lines, journald mapping, and an audit file that fails."""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime

import pytest

from prioomd import audit
from prioomd.audit import AuditSink, build_decision_record, build_miss_record
from prioomd.model import Attempt, Candidate, Decision, KillResult

TS = datetime(2025, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)
VICTIM = Candidate(victim_cgroup="/batch.slice/job1", pid=4242, comm="stress", badness=9000,
                   rss_bytes=1536 << 20, kill_cgroup=None, pids=(4242,),
                   reason="lowest priority 0 under /batch.slice; largest badness")
GONE = Candidate(victim_cgroup="/batch.slice/job0", pid=4000, comm="old", badness=9500,
                 rss_bytes=2 << 30, kill_cgroup=None, pids=(4000,), reason="first pick")
NEXT = Candidate(victim_cgroup="/batch.slice/job2", pid=4300, comm="make", badness=10,
                 rss_bytes=4 << 20, kill_cgroup=None, pids=(4300,), reason="runner-up")
DECISION = Decision(domain="/", candidates=(GONE, VICTIM, NEXT), outcome="kill",
                    reason="priority walk / -> /batch.slice", backend="c",
                    walk=("/", "/batch.slice"))
KILLED = KillResult(candidate=VICTIM, outcome="killed",
                    attempts=(Attempt(4000, "vanished", "gone"), Attempt(4242, "killed", "ok")),
                    signal_sent_at=10.0125, exited_at=10.0375, freed_bytes=1536 << 20,
                    detail="SIGKILL pid 4242 (stress) in /batch.slice/job1", method="pidfd")
NUMBERS = {"mem_available_bytes": 812 << 20, "psi_some_avg10_pct": 41.2, "swap_free_bytes": 0}


def decision_record(**kw):
    args = {"trigger": "psi", "detected_at": 10.0, "numbers": NUMBERS, "ts": TS, **kw}
    return build_decision_record(DECISION, KILLED, **args)


def test_decision_record_fields():
    r = decision_record()
    assert r["kind"] == "decision" and r["ts"] == "2025-03-01T12:30:45.123Z"
    assert (r["domain"], r["outcome"], r["dry_run"], r["trigger"]) == ("/", "killed", False, "psi")
    assert (r["victim_cgroup"], r["victim_pid"], r["victim_pids"], r["kill_cgroup"]) == (
        "/batch.slice/job1", 4242, [4242], None)
    assert r["reason"] == VICTIM.reason and r["decision_reason"] == DECISION.reason
    assert r["backend"] == "c" and r["walk"] == ["/", "/batch.slice"]
    assert r["freed_bytes"] == 1536 << 20
    assert r["t_detect_to_signal_ms"] == pytest.approx(12.5)
    assert r["t_signal_to_exit_ms"] == pytest.approx(25.0)
    assert r["mem_available_bytes"] == 812 << 20 and r["psi_some_avg10_pct"] == 41.2
    assert r["candidates"] == [
        {"rank": 0, "cgroup": "/batch.slice/job0", "pid": 4000, "comm": "old", "badness": 9500,
         "rss_bytes": 2 << 30, "kill_cgroup": None, "outcome": "vanished"},
        {"rank": 2, "cgroup": "/batch.slice/job2", "pid": 4300, "comm": "make", "badness": 10,
         "rss_bytes": 4 << 20, "kill_cgroup": None, "outcome": None},
    ]


def test_decision_record_names_the_pod_and_container_it_killed():
    uid, cid = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9", "ab" * 32
    path = (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
            f"{uid.replace('-', '_')}.slice/cri-containerd-{cid}.scope")
    cand = Candidate(victim_cgroup=path, pid=7, comm="java", badness=1, rss_bytes=1,
                     kill_cgroup=None, pids=(7,), reason="r")
    result = KillResult(cand, "killed", (Attempt(7, "killed", "ok"),), 1.0, 1.1, 1, "ok",
                        method="pidfd")
    r = build_decision_record(Decision("/", (cand,), "kill", "r", "c"), result,
                              trigger="psi", ts=TS)
    assert (r["k8s_pod_uid"], r["k8s_container_id"], r["k8s_qos_class"],
            r["k8s_container_runtime"]) == (uid, cid, "Burstable", "containerd")
    assert audit.journal_fields(r)["PRIOOMD_K8S_POD_UID"] == uid
    plain = decision_record()
    assert plain["k8s_pod_uid"] is None and plain["k8s_container_id"] is None


def test_decision_record_without_a_victim_or_timings():
    result = KillResult(None, "no-candidate", (), None, None, 0, "no candidate in /")
    empty = Decision(domain="/", candidates=(), outcome="none", reason="nothing killable",
                     backend="python")
    r = build_decision_record(empty, result, trigger="once", ts=TS)
    assert r["victim_pid"] is None and r["victim_pids"] == [] and r["victim_cgroup"] is None
    assert r["reason"] == "nothing killable" and r["candidates"] == []
    assert r["t_detect_to_signal_ms"] is None and r["t_signal_to_exit_ms"] is None
    assert "No kill in domain /" in audit.format_message(r)


def test_numbers_must_not_clash_or_be_odd():
    with pytest.raises(ValueError):
        decision_record(numbers={"outcome": 1})
    with pytest.raises(ValueError):
        decision_record(numbers={"Bad Name": 1})
    r = decision_record(numbers={"psi_some_avg10_pct": float("nan")})
    assert r["psi_some_avg10_pct"] is None  # JSON has no NaN


def test_miss_record():
    r = build_miss_record("/batch.slice", 2, dry_run=True, numbers={"memory_max_bytes": 1 << 30},
                          ts=TS)
    assert r == {"kind": "miss", "ts": "2025-03-01T12:30:45.123Z", "domain": "/batch.slice",
                 "kernel_oom_kills": 2, "dry_run": True, "trigger": "memory.events",
                 "memory_max_bytes": 1 << 30}
    msg = audit.format_message(r)
    assert "Kernel OOM killer killed 2 process(es) in domain /batch.slice" in msg
    assert "memory_max=1.0GiB" in msg and "(dry-run)" in msg


def test_message_names_victim_numbers_rule_and_reason():
    msg = audit.format_message(decision_record())
    assert msg.startswith("Killed process 4242 (stress) in /batch.slice/job1: ")
    for part in ("domain /", "trigger psi", "freed ~1.5GiB", "t_detect_to_signal=12.5ms",
                 "mem_available=812.0MiB", "psi_some_avg10=41.20%", "swap_free=0B",
                 f"reason: {VICTIM.reason}", f"rule: {DECISION.reason}"):
        assert part in msg, part
    assert "\n" not in msg


def test_message_for_a_cgroup_kill_and_dry_run():
    group = Candidate(victim_cgroup="/a", pid=7, comm="x", badness=1, rss_bytes=0,
                      kill_cgroup="/a", pids=(7, 8, 9), reason="oom.group")
    result = KillResult(group, "dry-run", (Attempt("/a", "dry-run", ""),), None, None, 3 << 20,
                        "would kill", True, "cgroup.kill")
    d = Decision("/", (group,), "kill", "walk", "python")
    r = build_decision_record(d, result, trigger="once", ts=TS)
    assert r["kill_cgroup"] == "/a" and r["dry_run"] is True and r["victim_pids"] == [7, 8, 9]
    assert audit.format_message(r).startswith("Would kill cgroup /a (3 processes) (dry-run)")


def test_journal_fields():
    fields = audit.journal_fields(decision_record())
    assert fields["MESSAGE_ID"] == audit.DECISION_MESSAGE_ID
    assert fields["PRIORITY"] == str(audit.LOG_WARNING)
    assert fields["MESSAGE"] == audit.format_message(decision_record())
    expect = {"PRIOOMD_DOMAIN": "/", "PRIOOMD_VICTIM_CGROUP": "/batch.slice/job1",
              "PRIOOMD_VICTIM_PID": "4242", "PRIOOMD_TRIGGER": "psi",
              "PRIOOMD_OUTCOME": "killed", "PRIOOMD_DRY_RUN": "false",
              "PRIOOMD_MEM_AVAILABLE_BYTES": str(812 << 20),
              "PRIOOMD_PSI_SOME_AVG10_PCT": "41.2", "PRIOOMD_FREED_BYTES": str(1536 << 20),
              "PRIOOMD_VICTIM_PIDS": "4242", "PRIOOMD_WALK": "/ /batch.slice"}
    assert expect.items() <= fields.items()
    assert "PRIOOMD_TS" not in fields and "PRIOOMD_CANDIDATES" not in fields
    assert "PRIOOMD_KILL_CGROUP" not in fields  # null fields are left out
    assert all(re.fullmatch(r"[A-Z0-9_]{1,64}", k) for k in fields)
    miss = audit.journal_fields(build_miss_record("/", 1, dry_run=False, ts=TS))
    assert miss["MESSAGE_ID"] == audit.MISS_MESSAGE_ID
    assert miss["PRIOOMD_KERNEL_OOM_KILLS"] == "1" and miss["PRIORITY"] == "4"
    assert audit.DECISION_MESSAGE_ID != audit.MISS_MESSAGE_ID
    assert all(re.fullmatch(r"[0-9a-f]{32}", m)
               for m in (audit.DECISION_MESSAGE_ID, audit.MISS_MESSAGE_ID))


@pytest.mark.parametrize("outcome, prio", [("killed", 4), ("failed", 3), ("refused", 4),
                                           ("dry-run", 5), ("pressure-gone", 6),
                                           ("vanished", 6), ("no-candidate", 6)])
def test_priority(outcome, prio):
    assert audit.priority({"kind": "decision", "outcome": outcome}) == prio


def test_sink_appends_json_lines(tmp_path):
    path = tmp_path / "new" / "dir" / "audit.jsonl"
    sink = AuditSink(str(path))
    first, second = decision_record(), build_miss_record("/", 1, dry_run=False, ts=TS)
    sink.emit(first)
    sink.emit(second)
    sink.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [first, second]
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)


def test_sink_reopens_after_rotation(tmp_path):
    path = tmp_path / "audit.jsonl"
    sink = AuditSink(str(path), fsync=True)
    sink.emit(decision_record())
    os.rename(path, tmp_path / "audit.jsonl.1")  # logrotate without copytruncate
    sink.emit(decision_record())
    assert len(path.read_text().splitlines()) == 1
    assert len((tmp_path / "audit.jsonl.1").read_text().splitlines()) == 1
    sink.close()


def test_sink_sends_to_the_journal(tmp_path, caplog):
    sent: list[dict] = []
    sink = AuditSink(None, journal_send=lambda **kw: sent.append(kw))
    with caplog.at_level(logging.DEBUG, logger="prioomd.audit"):
        sink.emit(decision_record())
    assert len(sent) == 1 and sent[0] == audit.journal_fields(decision_record())
    kills = [r for r in caplog.records if r.message.startswith("Killed process 4242")]
    assert len(kills) == 1 and kills[0].levelno == logging.WARNING
    runners = [r for r in caplog.records if "runner-up" in r.message]
    assert [r.levelno for r in runners] == [logging.DEBUG] * 2
    assert "runner-up #0: pid 4000 (old)" in runners[0].message
    assert "not tried" in runners[1].message


def test_sink_does_not_log_twice_into_the_journal(caplog):
    sink = AuditSink(None, journal_send=lambda **kw: None, stderr_is_journal=True)
    with caplog.at_level(logging.DEBUG, logger="prioomd.audit"):
        sink.emit(decision_record())
    kill_line = next(r for r in caplog.records if r.message.startswith("Killed"))
    assert kill_line.levelno == logging.DEBUG


def test_journal_failure_is_a_warning(caplog):
    def broken(**kw: str) -> None:
        raise OSError(111, "Connection refused")

    AuditSink(None, journal_send=broken).emit(decision_record())
    assert "not sent to the journal" in caplog.text


def test_unwritable_audit_file_warns_and_carries_on(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    sink = AuditSink(str(blocker / "audit.jsonl"))  # parent is a regular file: ENOTDIR
    with caplog.at_level(logging.DEBUG, logger="prioomd.audit"):
        sink.emit(decision_record())
        sink.emit(decision_record())
    failures = [r for r in caplog.records if "not written" in r.message]
    assert [r.levelno for r in failures] == [logging.WARNING, logging.DEBUG]  # no flood
    assert any(r.message.startswith("Killed process") for r in caplog.records)


def test_full_disk_is_a_warning(caplog):
    sink = AuditSink("/dev/full")
    sink.emit(decision_record())
    assert "not written" in caplog.text and "No space left" in caplog.text


def test_journal_sender_without_journald(tmp_path):
    assert audit.journal_sender(str(tmp_path / "no-socket")) is None
    sock = tmp_path / "socket"
    sock.write_text("")
    assert audit.journal_sender(str(sock)) is not None  # systemd-python is installed


def test_stderr_is_journal(tmp_path):
    with open(tmp_path / "f", "w") as f:
        st = os.fstat(f.fileno())
        assert audit.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"},
                                       f.fileno())
        assert not audit.stderr_is_journal({"JOURNAL_STREAM": "1:2"}, f.fileno())
        assert not audit.stderr_is_journal({}, f.fileno())


def test_failing_file_is_reported_at_most_once_a_minute(caplog):
    now = [0.0]
    sink = AuditSink("/dev/full", clock=lambda: now[0])  # every write: ENOSPC
    with caplog.at_level(logging.WARNING, logger="prioomd.audit"):
        for t in (0.0, 1.0, 59.0, 60.0, 61.0, 119.0):
            now[0] = t
            sink.emit(decision_record())
    reports = [r.getMessage() for r in caplog.records if "not written" in r.getMessage()]
    assert len(reports) == 2 and "4 record(s) missing" in reports[1]  # at 0 s and 60 s
    assert sink.lost == 6


def test_a_torn_last_line_is_not_glued_to_the_next_record(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"kind":"decision"}\n{"kind":"dec')  # cut short by an earlier crash
    sink = AuditSink(str(path))
    sink.emit(decision_record())
    sink.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[1] == b'{"kind":"dec' and json.loads(lines[2])["kind"] == "decision"
    assert lines[-1] == b""


# ---------------------------------------------------------------- hostile names

HOSTILE = Candidate(victim_cgroup="/t/evil\x1b[31m\x07\udcff", pid=4242,
                    comm="a\nKilled pid 1)", badness=9000, rss_bytes=1 << 20,
                    kill_cgroup=None, pids=(4242,), reason="worst task a\nKilled pid 1)")
HOSTILE_DECISION = Decision(domain="/", candidates=(HOSTILE, NEXT), outcome="kill",
                            reason="walk / -> /t/evil\x1b[31m\x07\udcff", backend="c",
                            walk=("/", "/t", "/t/evil\x1b[31m\x07\udcff"))
HOSTILE_KILLED = KillResult(candidate=HOSTILE, outcome="killed",
                            attempts=(Attempt(4242, "killed", "ok"),), signal_sent_at=1.0,
                            exited_at=1.5, freed_bytes=1 << 20, detail="SIGKILL\u202e",
                            method="pidfd")


def hostile_record():
    return build_decision_record(HOSTILE_DECISION, HOSTILE_KILLED, trigger="psi", ts=TS)


def test_message_escapes_tenant_names_on_one_line():
    msg = audit.format_message(hostile_record())
    assert msg.startswith("Killed process 4242 (a\\nKilled pid 1)) in "
                          "/t/evil\\x1b[31m\\a\\xff: ")
    assert msg.isprintable()  # no newline, ESC, BEL, lone surrogate


def test_journal_keeps_raw_names_and_bytes_that_are_not_utf8():
    fields = audit.journal_fields(hostile_record())
    assert fields["MESSAGE"] == audit.format_message(hostile_record())
    assert fields["PRIOOMD_VICTIM_COMM"] == "a\nKilled pid 1)"
    assert fields["PRIOOMD_DETAIL"] == "SIGKILL\u202e"
    # A str field could not carry the byte 0xff (systemd.journal.send would raise
    # and the entry be lost): bytes, the name as the kernel has it.
    assert fields["PRIOOMD_VICTIM_CGROUP"] == b"/t/evil\x1b[31m\x07\xff"
    assert fields["PRIOOMD_WALK"] == b"/ /t /t/evil\x1b[31m\x07\xff"


def test_json_line_keeps_raw_names(tmp_path):
    path = tmp_path / "audit.jsonl"
    sink = AuditSink(str(path))
    sink.emit(hostile_record())
    sink.close()
    (line,) = path.read_bytes().splitlines()
    assert line.isascii()
    back = json.loads(line)
    assert back["victim_comm"] == "a\nKilled pid 1)"
    assert back["victim_cgroup"].encode("utf-8", "surrogateescape") == b"/t/evil\x1b[31m\x07\xff"


def test_log_lines_escape_names(caplog):
    with caplog.at_level(logging.DEBUG, logger="prioomd.audit"):
        AuditSink(None).emit(hostile_record())
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2  # the kill and one runner-up
    assert all(m.isprintable() for m in messages), messages


def test_journal_field_with_a_surrogate_no_byte_decodes_to():
    fields = audit.journal_fields(build_miss_record("/x\ud800", 1, dry_run=False, ts=TS))
    assert fields["PRIOOMD_DOMAIN"] == b"/x\\ud800"
    assert fields["MESSAGE"].startswith("Kernel OOM killer killed 1 process(es) in domain "
                                        "/x\\ud800")
