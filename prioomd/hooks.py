"""Pre-kill and post-kill hooks: an executable run with the decision's facts.

The executable comes from the config (root's file), never from a tenant. It is
run directly, never through a shell, with a fixed minimal environment plus
``PRIOOMD_*`` variables holding the facts (``facts``); tenant text in them
(cgroup names, comm) is passed raw, as the kernel gave it. stdin is /dev/null;
stdout and stderr go to an unlinked temporary file (a hook or a child it leaves
behind cannot block us on a full pipe), whose first ``OUTPUT_MAX`` bytes are
logged escaped. A hook still running at its timeout is SIGKILLed with its
process group; the caller's kill goes on regardless of what the hook did.

Before running, the file is checked: a regular executable file owned by root
(or by us) and writable by nobody else; otherwise it is skipped with a warning.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prioomd.attribution import kube_ids
from prioomd.model import Candidate, Decision, KillResult
from prioomd.textsafe import show

log = logging.getLogger(__name__)

OUTPUT_MAX = 4096  # bytes of a hook's output that reach the log
WAIT_SLICE_S = 1.0  # longest wait between keepalive pings while a hook runs
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LC_ALL": "C"}


@dataclass(frozen=True)
class HookPlan:
    """[kill]'s hooks: executables ('' = none) and the timeout of each run."""

    prekill: str = ""
    postkill: str = ""
    timeout_s: float = 1.0


@dataclass(frozen=True)
class HookResult:
    outcome: str  # "ok", "exit N", "signal N", "timeout", "skipped", "error"
    output: str  # the first OUTPUT_MAX bytes of stdout+stderr, escaped
    elapsed_s: float


def facts(kind: str, decision: Decision, cand: Candidate, *, trigger: str, dry_run: bool,
          result: KillResult | None = None) -> dict[str, bytes]:
    """The hook's PRIOOMD_* variables (raw bytes: names are tenants' bytes)."""
    target = cand.kill_cgroup or cand.victim_cgroup
    env: dict[str, str] = {
        "PRIOOMD_HOOK": kind,
        "PRIOOMD_DOMAIN": decision.domain,
        "PRIOOMD_TRIGGER": trigger,
        "PRIOOMD_DRY_RUN": "1" if dry_run else "0",
        "PRIOOMD_VICTIM_CGROUP": cand.victim_cgroup,
        "PRIOOMD_KILL_CGROUP": cand.kill_cgroup or "",
        "PRIOOMD_VICTIM_PID": str(cand.pid),
        "PRIOOMD_VICTIM_PIDS": " ".join(str(p) for p in cand.pids),
        "PRIOOMD_VICTIM_COMM": cand.comm,
        "PRIOOMD_RSS_BYTES": str(cand.rss_bytes),
        "PRIOOMD_REASON": cand.reason,
    }
    for key, value in kube_ids(target).items():
        env[f"PRIOOMD_K8S_{key.upper()}"] = value
    if result is not None:
        env["PRIOOMD_OUTCOME"] = result.outcome
        env["PRIOOMD_METHOD"] = result.method
        env["PRIOOMD_FREED_BYTES"] = str(result.freed_bytes)
    # surrogateescape gives a non-UTF-8 name its bytes back; NUL cannot be passed.
    return {k: os.fsencode(v).replace(b"\0", b"") for k, v in env.items()}


def unsafe(path: str) -> str | None:
    """None when ``path`` may be run as a hook, else why not."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        return f"{path}: not an executable regular file"
    if st.st_uid not in (0, os.geteuid()):
        return f"{path}: owned by uid {st.st_uid}, not root"
    if st.st_mode & 0o022:
        return f"{path}: writable by group or others"
    return None


def run(path: str, env: Mapping[str, bytes], timeout_s: float, *,
        keepalive: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic) -> HookResult:
    """Run the hook, wait at most ``timeout_s`` (pinging ``keepalive``)."""
    start = clock()
    why = unsafe(path)
    if why is not None:
        return HookResult("skipped", show(why), 0.0)
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(
                [path], env={**{k: v.encode() for k, v in BASE_ENV.items()}, **env},
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                close_fds=True, start_new_session=True, cwd="/")
        except OSError as exc:
            return HookResult("error", show(f"{path}: {exc.strerror or exc}"), clock() - start)
        code = _wait(proc, start + timeout_s, keepalive, clock)
        if code is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: only its processes
            except OSError:
                pass
            proc.wait()
            outcome = "timeout"
        else:
            outcome = "ok" if code == 0 else (f"exit {code}" if code > 0 else
                                              f"signal {-code}")
        out.seek(0)
        text = out.read(OUTPUT_MAX).decode("utf-8", "replace")
    return HookResult(outcome, show(text.strip()), clock() - start)


def _wait(proc: subprocess.Popen[bytes], deadline: float,
          keepalive: Callable[[], None] | None, clock: Callable[[], float]) -> int | None:
    while True:
        left = deadline - clock()
        if left <= 0:
            return proc.poll()
        if keepalive is not None:
            keepalive()
        try:
            return proc.wait(timeout=min(left, WAIT_SLICE_S))
        except subprocess.TimeoutExpired:
            continue


def run_logged(kind: str, path: str, env: Mapping[str, bytes], timeout_s: float, *,
               keepalive: Callable[[], None] | None = None) -> HookResult:
    """``run``, then one log line: info when it succeeded, a warning otherwise."""
    res = run(path, env, timeout_s, keepalive=keepalive)
    level = logging.INFO if res.outcome == "ok" else logging.WARNING
    log.log(level, "%s hook %s: %s after %.3f s%s", kind, show(path), res.outcome,
            res.elapsed_s, f"; output: {res.output}" if res.output else "")
    return res
