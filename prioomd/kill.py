"""The only place that kills: cgroup.kill, pidfd signals, process_mrelease.

``Killer.execute(decision)`` walks the ranked candidates in order (STYLE §3) and
kills at most one. A candidate that exited, refused or errored before anything
was sent is an outcome, and the walk falls through to the next one. A candidate
that is alive but no longer under the cgroup the walk chose ("moved") ends the
walk: the ranking no longer holds, the caller decides again.

One process: pidfd_open, check it is still the walk's choice (the same process:
same start time, whatever its name now; still under victim_cgroup as the cgroup
tree confirms; not a kernel thread, zombie, -1000 or already dying), then
[SIGTERM + grace, waiting on the pidfd], SIGKILL, process_mrelease, and wait
for the pidfd to poll readable. Without pidfds (kernel < 5.3) kill(2) is used
and /proc/PID/stat starttime is re-read before each signal (pid-reuse guard).

A whole cgroup (memory.oom.group): write "1" to cgroup.kill (atomic, fork-safe)
and wait for cgroup.events "populated 0" (POLLPRI). cgroup.kill spares nothing,
so a subtree holding a protected process, or one that the walk did not vet and
that is a kernel thread or -1000 (the kernel's oom.group rule), and a kernel
without cgroup.kill (< 5.14), get SIGKILL task by task from cgroup.procs,
repeated until only spared processes remain.

Dry-run walks the same path and stops before the final syscall, after a
permission probe (signal 0, or W_OK on cgroup.kill). The re-check runs once,
right before the first destructive act (SIGTERM when a grace applies): a victim
asked to go is finished off rather than left half-terminated.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prioomd import cgparse, cgroupfs, procfs, victim
from prioomd.errors import Vanished, is_gone
from prioomd.model import Attempt, Candidate, Decision, KillResult
from prioomd.procfs import OOM_SCORE_ADJ_MIN, TaskFacts
from prioomd.syscalls import LinuxSyscalls, Syscalls, poll_wait

log = logging.getLogger(__name__)

# Re-check period where the kernel offers nothing to wait on (no pidfd; a
# subtree that spared members keep populated); without a pidfd the first
# checks come sooner, doubling from 1 ms (a SIGKILLed task usually exits in 1 ms).
POLL_TICK_S = 0.02
POLL_FIRST_TICK_S = 0.001
# Longest single wait on cgroup.events: a safety net should a change
# notification be missed; normally POLLPRI wakes us within a millisecond.
EVENTS_TICK_S = 0.1
# Pidfds opened to mrelease a cgroup kill: the biggest victims are reaped at
# once, the rest of a large group exits at its own pace.
MRELEASE_MAX = 64
# Longest single wait when the caller asked to be kept alive: a third of the
# shortest sane WatchdogSec (3 s), so the service manager never sees a hang.
KEEPALIVE_TICK_S = 1.0
_REFUSED_ERRNOS = frozenset({errno.EPERM, errno.EACCES, errno.EROFS})
# EINVAL: not dying yet / already reaped; ESRCH: gone; ENOSYS: kernel < 5.15.
_BENIGN_MRELEASE_ERRNOS = frozenset({errno.EINVAL, errno.ESRCH, errno.ENOSYS})

Waiter = Callable[[int | None, int, float], None]
Recheck = Callable[[], bool] | None


@dataclass(frozen=True)
class KillPolicy:
    """How to kill. ``grace_only_if()`` (when set) is asked at kill time whether
    the SIGTERM grace may be spent, e.g. only while memory is not critical."""

    sigterm_grace_s: float = 0.0
    grace_only_if: Callable[[], bool] | None = None
    confirm_timeout_s: float = 5.0
    mrelease: bool = True


@dataclass(frozen=True)
class _Step:
    """One candidate's attempt; ``final`` ends the walk."""

    outcome: str
    detail: str
    final: bool = False
    sent_at: float | None = None
    exited_at: float | None = None
    freed_bytes: int = 0
    method: str = ""


class Killer:
    """Kills at most one candidate per ``execute``. Everything external comes in:
    roots, clock, waiter (``wait(fd or None, poll_mask, timeout_s)``) and the
    syscall layer. ``protected_pids`` always gains our own pid; pid <= 1 and
    kernel threads are never signalled either."""

    def __init__(
        self,
        cgroup_root: str,
        *,
        proc_root: str = "/proc",
        clock: Callable[[], float] = time.monotonic,
        wait: Waiter = poll_wait,
        dry_run: bool = False,
        protected_pids: Iterable[int] = (),
        policy: KillPolicy | None = None,
        syscalls: Syscalls | None = None,
        keepalive: Callable[[], None] | None = None,
        cgroupns_root: str = "/",
    ) -> None:
        """``keepalive`` (the service watchdog's ping) is called at least every
        KEEPALIVE_TICK_S while the kill waits (grace, confirmation): a kill may
        wait ``sigterm_grace_s + confirm_timeout_s``, longer than WatchdogSec.
        ``cgroupns_root``: our cgroup namespace's root in the tree (cgroupns.py)."""
        self.cgroup_root = cgroup_root
        self._locator = victim.Locator(cgroup_root, proc_root, ns_root=cgroupns_root)
        self.proc_root = proc_root
        self.dry_run = dry_run
        self.policy = policy if policy is not None else KillPolicy()
        self.protected_pids = frozenset(protected_pids) | {os.getpid()}
        self._clock = clock
        self._wait = wait if keepalive is None else _keeping_alive(wait, keepalive)
        self._sys: Syscalls = syscalls if syscalls is not None else LinuxSyscalls()

    def execute(self, decision: Decision, recheck: Recheck = None) -> KillResult:
        """Kill the first candidate that can be killed; ``recheck()`` False right
        before the first destructive act aborts with "pressure-gone"."""
        attempts: list[Attempt] = []
        for cand in decision.candidates:
            if cand.kill_cgroup:
                step = self._kill_cgroup(cand, cand.kill_cgroup, recheck)
            else:
                step = self._kill_task(cand, recheck)
            attempts.append(Attempt(cand.kill_cgroup or cand.pid, step.outcome, step.detail))
            if step.final:
                return KillResult(
                    cand, step.outcome, tuple(attempts), step.sent_at, step.exited_at,
                    step.freed_bytes, step.detail, self.dry_run, step.method,
                )
        if not attempts:
            outcome, detail = "no-candidate", f"no candidate in {decision.domain}"
        else:
            seen = {a.outcome for a in attempts}
            outcome = next(o for o in ("failed", "refused", "vanished") if o in seen)
            detail = "; ".join(f"{a.target}: {a.outcome}" for a in attempts)
        return KillResult(None, outcome, tuple(attempts), None, None, 0, detail, self.dry_run)

    # -- one process ----------------------------------------------------------

    def _kill_task(self, cand: Candidate, recheck: Recheck) -> _Step:
        pid = cand.pid
        if self._protected(pid):
            return _refused(f"pid {pid} is protected")
        try:
            pidfd = self._sys.pidfd_open(pid) if self._sys.has_pidfd else None
        except OSError as exc:
            return _error_step(exc, f"pid {pid}")
        try:
            return self._kill_opened(cand, pidfd, recheck)
        finally:
            if pidfd is not None:
                self._sys.close(pidfd)

    def _kill_opened(self, cand: Candidate, pidfd: int | None, recheck: Recheck) -> _Step:
        pid = cand.pid
        try:  # the pidfd pins the process: check it is still the one the walk chose
            facts = self._facts(pid)
            wrong = victim.check(cand, facts, lambda: self._locator.locate(pid, facts.tid))
            if wrong is not None:
                if wrong.outcome == "refused":
                    return _refused(wrong.detail)
                return _Step(wrong.outcome, wrong.detail, wrong.final)
            if self.dry_run:  # stop before the final syscall, after a permission probe
                self._send(pid, pidfd, facts, 0)
        except (OSError, Vanished, ValueError) as exc:
            return _error_step(exc, f"pid {pid}")
        what = f"pid {pid} ({facts.comm}) in {cand.victim_cgroup}"
        rss, method = cand.rss_bytes, ("pidfd" if pidfd is not None else "kill")
        if self.dry_run:
            return _Step("dry-run", f"would SIGKILL {what}", True, None, None, rss, method)
        if recheck is not None and not recheck():
            return _Step("pressure-gone", f"re-check before killing {what}", True)
        grace_s = self._grace_s()
        try:
            self._send(pid, pidfd, facts, signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
        except OSError as exc:  # nothing was sent: the next candidate may do
            return _error_step(exc, what)
        sent_at = self._clock()
        if grace_s > 0:
            exited_at = self._wait_exit(pid, pidfd, facts, grace_s)
            if exited_at is None:
                try:
                    self._send(pid, pidfd, facts, signal.SIGKILL)
                    sent_at = self._clock()
                except OSError as exc:
                    if not is_gone(exc):
                        log.warning("SIGKILL %s after SIGTERM failed: %s", what, exc)
                        return _Step("failed", f"SIGTERM sent to {what}, SIGKILL failed: {exc}",
                                     True, sent_at, None, rss, method)
                    exited_at = self._clock()  # it left between the grace and SIGKILL
            if exited_at is not None:
                return _Step("killed", f"{what} exited after SIGTERM", True, sent_at,
                             exited_at, rss, method)
        self._mrelease(pidfd, what)
        exited_at = self._wait_exit(pid, pidfd, facts, self.policy.confirm_timeout_s)
        if exited_at is None:
            detail = f"SIGKILL sent to {what}, still there after {self.policy.confirm_timeout_s} s"
            log.warning("%s", detail)
            return _Step("failed", detail, True, sent_at, None, rss, method)
        return _Step("killed", f"SIGKILL {what}", True, sent_at, exited_at, rss, method)

    def _send(self, pid: int, pidfd: int | None, facts: TaskFacts, sig: int) -> None:
        if pidfd is not None:
            self._sys.pidfd_send_signal(pidfd, sig)
            return
        now = procfs.read_task(pid, self.proc_root)  # no pidfd: guard against pid reuse
        if now is None or now.start_ticks != facts.start_ticks:
            raise OSError(errno.ESRCH, f"pid {pid} is gone or reused (start time changed)")
        self._sys.kill(pid, sig)

    def _exited(self, pid: int, pidfd: int | None, facts: TaskFacts) -> bool:
        if pidfd is not None:
            return self._sys.pidfd_exited(pidfd)
        try:
            now = procfs.read_task(pid, self.proc_root)
        except (OSError, ValueError):
            return False
        return now is None or now.start_ticks != facts.start_ticks or now.state in ("Z", "X")

    def _wait_exit(
        self, pid: int, pidfd: int | None, facts: TaskFacts, timeout_s: float
    ) -> float | None:
        """Monotonic time the exit was seen, None on timeout."""
        deadline, tick = self._clock() + timeout_s, POLL_FIRST_TICK_S
        while not self._exited(pid, pidfd, facts):
            left = deadline - self._clock()
            if left <= 0:
                return None
            if pidfd is not None:
                self._wait(pidfd, select.POLLIN, left)
            else:
                self._wait(None, 0, min(left, tick))
                tick = min(tick * 2, POLL_TICK_S)
        return self._clock()

    def _mrelease(self, pidfd: int | None, what: str) -> None:
        if pidfd is None or not self.policy.mrelease:
            return
        try:
            self._sys.process_mrelease(pidfd)
        except OSError as exc:
            level = logging.DEBUG if exc.errno in _BENIGN_MRELEASE_ERRNOS else logging.WARNING
            log.log(level, "process_mrelease %s: %s", what, exc)

    def _grace_s(self) -> float:
        p = self.policy
        if p.sigterm_grace_s <= 0 or (p.grace_only_if is not None and not p.grace_only_if()):
            return 0.0
        return p.sigterm_grace_s

    def reap(self, pid: int, start_ticks: int) -> str:
        """process_mrelease a process whose SIGKILL has been pending too long
        (dying.py), as the kernel's OOM reaper would; what was done, for the log.

        The call takes the victim's mmap lock for reading and may block behind a
        writer that the stuck task itself holds up, so it runs in a thread of its
        own: the loop never waits on a stuck task.
        """
        what = f"pid {pid}, SIGKILL pending too long"
        if self.dry_run or not (self.policy.mrelease and self._sys.has_pidfd):
            return f"{what}: not reaped ({'dry-run' if self.dry_run else 'no mrelease'})"
        try:
            pidfd = self._sys.pidfd_open(pid)
        except OSError as exc:
            return f"{what}: not reaped ({exc.strerror or exc})"
        try:
            facts = procfs.read_task(pid, self.proc_root)
        except (OSError, ValueError):
            facts = None
        if facts is None or facts.start_ticks != start_ticks:
            self._sys.close(pidfd)
            return f"{what}: gone before the reap"

        def release() -> None:
            try:
                self._mrelease(pidfd, what)
            finally:
                self._sys.close(pidfd)

        threading.Thread(target=release, name=f"prioomd-reap-{pid}", daemon=True).start()
        return f"{what}: process_mrelease"

    # -- a whole cgroup -------------------------------------------------------

    def _kill_cgroup(self, cand: Candidate, path: str, recheck: Recheck) -> _Step:
        if path == "/":
            return _refused("refusing to kill the root cgroup")
        cg_dir = cgroupfs.rel_to_abs(self.cgroup_root, path)  # ValueError: a selection bug
        verdicts: dict[int, bool] = {}
        try:
            members = self._members(path)
            targets = [p for p in members if not self._spared(p, cand, verdicts)]
        except (OSError, ValueError) as exc:
            return _error_step(exc, path)
        if not members:
            return _Step("vanished", f"{path} has no processes left")
        if not targets:
            return _refused(f"{path}: all {len(members)} processes are protected")
        kill_file = os.path.join(cg_dir, "cgroup.kill")
        use_kill_file = len(targets) == len(members) and os.path.exists(kill_file)
        method = "cgroup.kill" if use_kill_file else "cgroup.procs"
        what = f"cgroup {path} ({len(targets)} of {len(members)} processes)"
        if self.dry_run:
            try:
                if use_kill_file and not os.access(kill_file, os.W_OK):
                    raise OSError(errno.EACCES, f"{kill_file} is not writable")
                if not use_kill_file:
                    self._sys.kill(targets[0], 0)
            except OSError as exc:
                return _error_step(exc, what)
            return _Step("dry-run", f"would kill {what} via {method}", True, None, None,
                         self._usage_bytes(cg_dir, cand), method)
        if recheck is not None and not recheck():
            return _Step("pressure-gone", f"re-check before killing {what}", True)
        freed_bytes = self._usage_bytes(cg_dir, cand)
        pidfds = self._open_pidfds(targets)
        events_fd = _open_or_none(os.path.join(cg_dir, "cgroup.events"))
        try:
            if use_kill_file:
                try:
                    _write_one(kill_file)
                except OSError as exc:
                    if not (exc.errno == errno.ENOENT and os.path.isdir(cg_dir)):
                        return _error_step(exc, what)
                    use_kill_file, method = False, "cgroup.procs"  # no cgroup.kill: < 5.14
            if not use_kill_file:
                live, refused = self._kill_round(path, cand, verdicts)
                if live == 0:
                    return _Step("vanished", f"{what}: emptied before the kill")
                if refused == live:
                    return _refused(f"{what}: every SIGKILL refused")
            sent_at = self._clock()
            for fd in pidfds:
                self._mrelease(fd, what)
            exited_at = self._wait_cgroup(path, cand, verdicts, events_fd, use_kill_file)
        finally:
            for fd in pidfds:
                self._sys.close(fd)
            if events_fd is not None:
                os.close(events_fd)
        if exited_at is None:
            detail = f"{method} on {what}: not empty after {self.policy.confirm_timeout_s} s"
            log.warning("%s", detail)
            return _Step("failed", detail, True, sent_at, None, freed_bytes, method)
        return _Step("killed", f"{method} {what}", True, sent_at, exited_at, freed_bytes, method)

    def _kill_round(
        self, path: str, cand: Candidate, verdicts: dict[int, bool], send: bool = True
    ) -> tuple[int, int]:
        """SIGKILL (``send``) every unspared process of the subtree; (live, refused).
        Pids come from cgroup.procs an instant earlier: kill(2) is as safe here."""
        live = refused = 0
        for pid in self._members(path):
            if self._spared(pid, cand, verdicts):
                continue
            live += 1
            try:
                if send:
                    self._sys.kill(pid, signal.SIGKILL)
            except OSError as exc:
                if exc.errno in _REFUSED_ERRNOS:
                    refused += 1
                elif not is_gone(exc):
                    raise
        return live, refused

    def _wait_cgroup(
        self, path: str, cand: Candidate, verdicts: dict[int, bool],
        events_fd: int | None, use_kill_file: bool,
    ) -> float | None:
        """Monotonic time the subtree emptied (of unspared processes), None on timeout."""
        deadline = self._clock() + self.policy.confirm_timeout_s
        while True:
            if use_kill_file:
                done = not self._populated(events_fd, path)
            else:
                done = self._kill_round(path, cand, verdicts, send=False)[0] == 0
            if done:
                return self._clock()
            left = deadline - self._clock()
            if left <= 0:
                return None
            tick = EVENTS_TICK_S if use_kill_file and events_fd is not None else POLL_TICK_S
            self._wait(events_fd, select.POLLPRI, min(left, tick))
            # Repeat until empty: forks that raced a round get theirs. After
            # cgroup.kill too: it signals each leader thread alone, and a leader
            # that already exited (pthread_exit() in main) takes no signal, so
            # its live threads run on; kill(2) signals the whole thread group.
            self._kill_round(path, cand, verdicts)

    def _populated(self, events_fd: int | None, path: str) -> bool:
        """cgroup.events "populated", read through the fd we poll (a read re-arms
        POLLPRI); failing that, whether the subtree still lists a process."""
        try:
            if events_fd is not None:
                os.lseek(events_fd, 0, os.SEEK_SET)
                text = os.read(events_fd, 4096).decode("ascii", "replace")
                return cgparse.parse_flat_keyed(text).get("populated", 0) != 0
        except (OSError, ValueError):
            pass
        return bool(self._members(path))

    def _members(self, path: str) -> list[int]:
        """Pids of cgroup.procs across the subtree (empty once it is gone)."""
        found: dict[int, None] = {}
        for rel, _depth in cgroupfs.walk_tree(self.cgroup_root, path):
            try:
                found.update(dict.fromkeys(
                    cgroupfs.read_procs(cgroupfs.rel_to_abs(self.cgroup_root, rel))))
            except Vanished:
                continue
        return list(found)

    def _spared(self, pid: int, cand: Candidate, verdicts: dict[int, bool]) -> bool:
        """Protected, or (not vetted by the selection) a kernel thread or -1000."""
        if pid not in verdicts:
            spare = self._protected(pid)
            if not spare and pid not in cand.pids:
                try:
                    facts = procfs.read_task(pid, self.proc_root)
                except (OSError, ValueError):
                    facts = None  # unreadable: the kernel would not spare it either
                spare = facts is not None and (
                    facts.is_kthread or facts.oom_score_adj == OOM_SCORE_ADJ_MIN)
            verdicts[pid] = spare
        return verdicts[pid]

    def _open_pidfds(self, pids: list[int]) -> list[int]:
        if not (self.policy.mrelease and self._sys.has_pidfd):
            return []
        fds = []
        for pid in pids[:MRELEASE_MAX]:
            try:
                fds.append(self._sys.pidfd_open(pid))
            except OSError:
                continue
        return fds

    def _usage_bytes(self, cg_dir: str, cand: Candidate) -> int:
        """memory.current of the cgroup (its whole charge), else the candidate's rss."""
        try:
            usage = cgroupfs.read_usage_bytes(cg_dir)
        except (OSError, ValueError, Vanished):
            usage = 0
        return usage or cand.rss_bytes

    # -- shared ---------------------------------------------------------------

    def _protected(self, pid: int) -> bool:
        return pid <= 1 or pid in self.protected_pids

    def _facts(self, pid: int) -> TaskFacts:
        facts = procfs.read_task(pid, self.proc_root)
        if facts is None:
            raise Vanished(f"pid {pid} is gone")
        return facts


def _keeping_alive(wait: Waiter, keepalive: Callable[[], None]) -> Waiter:
    """``wait`` cut into slices of at most KEEPALIVE_TICK_S, ``keepalive()`` before
    each: every caller of the waiter loops until its own deadline anyway."""
    def sliced(fd: int | None, events: int, timeout_s: float) -> None:
        keepalive()
        wait(fd, events, min(timeout_s, KEEPALIVE_TICK_S))
    return sliced


def _refused(detail: str) -> _Step:
    log.warning("not killing: %s", detail)
    return _Step("refused", detail)


def _error_step(exc: Exception, what: str) -> _Step:
    """Error -> outcome (STYLE §6): gone is debug-level news, a refusal a warning."""
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if isinstance(exc, Vanished) or is_gone(exc):
        log.debug("%s: gone (%s)", what, why)
        return _Step("vanished", f"{what}: gone ({why})")
    if isinstance(exc, OSError) and exc.errno in _REFUSED_ERRNOS:
        return _refused(f"{what}: {why}")
    log.warning("kill %s failed: %s", what, exc)
    return _Step("failed", f"{what}: {exc}")


def _write_one(path: str) -> None:
    """Write "1"; never O_CREAT: an absent cgroup.kill (kernel < 5.14) is ENOENT."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"1")
    finally:
        os.close(fd)


def _open_or_none(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
