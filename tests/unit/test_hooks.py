"""hooks: the facts a hook gets, who may be a hook, and its timeout."""

from __future__ import annotations

import os
import time

import pytest

from prioomd import hooks
from prioomd.model import Candidate, Decision, KillResult

NAME = "/pods/a\udcffb\nx"  # a non-UTF-8 byte and a newline: a tenant's name
CAND = Candidate(victim_cgroup=NAME, pid=42, comm="ev\x1bil", badness=1, rss_bytes=4096,
                 kill_cgroup=None, pids=(42,), reason="walk: ...")
DECISION = Decision("/", (CAND,), "kill", "r", "c")


def script(tmp_path, body, name="hook", mode=0o755):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return str(path)


def test_facts_are_raw_bytes():
    env = hooks.facts("prekill", DECISION, CAND, trigger="psi", dry_run=False)
    assert env["PRIOOMD_VICTIM_CGROUP"] == b"/pods/a\xffb\nx"
    assert env["PRIOOMD_VICTIM_COMM"] == b"ev\x1bil"
    assert env["PRIOOMD_VICTIM_PID"] == b"42" and env["PRIOOMD_KILL_CGROUP"] == b""
    assert env["PRIOOMD_HOOK"] == b"prekill" and env["PRIOOMD_DRY_RUN"] == b"0"
    assert "PRIOOMD_OUTCOME" not in env


def test_post_facts_carry_the_outcome_and_the_pod():
    path = f"/kubepods/pod{'0' * 8}-{'1' * 4}-{'2' * 4}-{'3' * 4}-{'4' * 12}/{'a' * 64}"
    cand = Candidate(path, 7, "java", 1, 1, path, (7, 8), "r")
    result = KillResult(cand, "killed", (), 1.0, 2.0, 99, "ok", method="cgroup.kill")
    env = hooks.facts("postkill", DECISION, cand, trigger="psi", dry_run=True, result=result)
    assert env["PRIOOMD_OUTCOME"] == b"killed" and env["PRIOOMD_FREED_BYTES"] == b"99"
    assert env["PRIOOMD_VICTIM_PIDS"] == b"7 8" and env["PRIOOMD_DRY_RUN"] == b"1"
    assert env["PRIOOMD_K8S_CONTAINER_ID"] == b"a" * 64


def test_a_recording_hook_gets_the_facts_and_nothing_else(tmp_path):
    out = tmp_path / "env"
    hook = script(tmp_path, f'env > "{out}"\necho "said \\033[31mred"\n')
    env = hooks.facts("prekill", DECISION, CAND, trigger="psi", dry_run=False)
    res = hooks.run(hook, env, 5.0)
    assert res.outcome == "ok"
    assert "\x1b" not in res.output and "said" in res.output  # escaped for the log
    got = out.read_bytes()
    assert b"PRIOOMD_VICTIM_PID=42\n" in got and b"PRIOOMD_VICTIM_CGROUP=/pods/a\xffb\nx" in got
    assert b"HOME=" not in got and b"PYTEST" not in got  # not our environment


def test_a_hanging_hook_is_killed_with_its_children_at_the_timeout(tmp_path):
    pids = tmp_path / "pids"
    hook = script(tmp_path, f'sleep 600 &\necho $! $$ > "{pids}"\nwait\n')
    start = time.monotonic()
    res = hooks.run(hook, {}, 0.5)
    assert res.outcome == "timeout"
    assert time.monotonic() - start < 10  # the bound is the point: not the hook's 600 s
    for pid in map(int, pids.read_text().split()):
        assert _dead(pid), pid


def _dead(pid):
    """Gone, or a zombie its new parent has not reaped yet, within a generous bound."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.01)
    return False


def test_exit_status_is_reported(tmp_path):
    assert hooks.run(script(tmp_path, "exit 3\n"), {}, 5.0).outcome == "exit 3"


@pytest.mark.parametrize("mode, why", [(0o775, "writable by group"), (0o644, "not an executable"),
                                       (0o757, "writable by group or others")])
def test_unsafe_hooks_are_skipped(tmp_path, mode, why):
    marker = tmp_path / "ran"
    hook = script(tmp_path, f'touch "{marker}"\n', mode=mode)
    res = hooks.run(hook, {}, 5.0)
    assert res.outcome == "skipped" and why in res.output and not marker.exists()


def test_a_hook_owned_by_someone_else_is_skipped(tmp_path):
    hook = script(tmp_path, "exit 0\n")
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    os.chown(hook, 1234, -1)
    assert "owned by uid 1234" in hooks.run(hook, {}, 5.0).output


def test_a_missing_hook_is_skipped(tmp_path):
    assert hooks.run(str(tmp_path / "nope"), {}, 5.0).outcome == "skipped"
