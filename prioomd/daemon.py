"""`prioomd run`: event → detect → select → re-check → kill → audit → delay.

One poll loop (events.EventLoop) wakes on PSI triggers, on memory.events of
cgroup domains, on the config file, on victims' exits, on signals and on the
adaptive MemAvailable tick. Each wake-up samples the domains that may have
changed (two small reads for the root); only a domain under threat costs a
walk, which reads the walked path only (lazywalk.py). Dry-run takes the same
path and stops at the final syscall, so its audit records are exactly the
kills a live run would make.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prioomd import (
    attribution,
    audit,
    cgroupfs,
    cgroupns,
    config,
    detect,
    discovery,
    domains,
    guard,
    hooks,
    idle,
    kill,
    lazywalk,
    metrics,
    misses,
    procfs,
    select,
    selfprotect,
    snapshot,
    table,
)
from prioomd.contain import Containment
from prioomd.errors import ConfigError, Vanished
from prioomd.events import Event, EventLoop
from prioomd.model import Decision, KillResult
from prioomd.notify import Notifier
from prioomd.victims import Victims

log = logging.getLogger(__name__)

CONFIG_KEY = "config"
DISCOVERY_KEY = "discovery"
HOUSEKEEPING_S = 1.0  # the kernel's oom_kill counter, STATUS=: read/sent at most this often
# Plentiful memory: back in Python at least this often (the root's oom_kill counter,
# STATUS=); each return costs ~10 ms of CPU under TCG, as much as 10 samples in C.
IDLE_MAX_S = 30.0
QUIET_REPEAT_S = 30.0  # a domain with nothing to kill is reported at most this often
ERROR_BACKOFF_S = 0.1  # after the loop itself failed: no busy spin on a persistent error
# A victim that left its cgroup between the walk and the kill makes the ranking stale:
# decide again, at most this many times per event (a process hopping between cgroups
# faster than a walk must not keep the daemon in this loop; the next event retries).
MOVED_REDECISIONS = 3


@dataclass
class _DomainState:
    domain: domains.Domain
    prev: detect.Sample | None = None
    cooldown_until: float = 0.0  # dry-run: no real victim exits to wait for
    quiet_until: float = 0.0


class Daemon:
    def __init__(self, cfg: config.Config, config_path: str | None, sources: snapshot.Sources,
                 *, dry_run: bool, exit_after_s: float | None = None,
                 notifier: Notifier | None = None,
                 loop_factory: Callable[[], EventLoop] = EventLoop,
                 runtime_dir: str | None = None,
                 protect: Callable[[], list[str]] = selfprotect.protect_self) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.sources = sources
        self.dry_run = dry_run
        self.exit_after_s = exit_after_s
        self.notifier = notifier or Notifier()
        self._loop_factory = loop_factory
        self._protect = protect
        self.table = table.PriorityTable(cfg)
        self.gate = cfg.detect.post_action_gate()
        self.guard = guard.Guard(cfg.detect.cgroup_thresholds(), runtime_dir)
        self.sink = audit.AuditSink(cfg.audit.file or None,
                                    journal_send=audit.journal_sender() if cfg.audit.journal
                                    else None,
                                    stderr_is_journal=audit.stderr_is_journal())
        # Our own cgroup in the host's tree (private cgroup namespaces, our own pod).
        self.where = cgroupns.locate_self(sources.cgroup_root, sources.proc_root)
        self.killer = self._make_killer()
        self.dying = cfg.kill.dying_watch()
        self.hook_plan = cfg.kill.hook_plan()
        self.states: dict[str, _DomainState] = {}
        self.kills = 0
        self._contained = Containment(sources.clock)  # per event: bugs never end the loop
        self._stopping = False
        self._started_at = 0.0
        self._config_watched = False
        self.victims = Victims()
        self._status_sent = ("", 0.0)  # last STATUS= text, when
        self.discovery = discovery.Discovery(
            self.table, sources.cgroup_root, clock=sources.clock,
            max_watches=self._max_watches(cfg))
        self.idle = idle.IdleWait(os.path.join(sources.proc_root, "meminfo"),
                                  cfg.detect.root_thresholds())
        self.loop: EventLoop | None = None
        self.misses = misses.Misses(sources.proc_root, sources.kmsg_path, HOUSEKEEPING_S)
        self.metrics: metrics.Metrics | metrics.NullMetrics = metrics.NULL

    # ------------------------------------------------------------ set-up
    def _max_watches(self, cfg: config.Config) -> int:
        return cfg.daemon.max_watches or discovery.default_max_watches(self.sources.proc_root)

    def _above_floor(self, what: str = "SIGTERM grace") -> bool:
        """MemAvailable above the floor: time for a SIGTERM grace or a pre-kill hook."""
        try:
            s = domains.sample_root(self.sources.proc_root, self.sources.clock)
        except (OSError, ValueError, Vanished) as exc:  # no numbers: no time to spend
            log.warning("no %s: cannot read memory: %s", what, exc)
            return False
        return s.mem_available_bytes * 100 >= \
            s.mem_total_bytes * self.cfg.detect.mem_available_floor_pct

    def _make_killer(self) -> kill.Killer:
        return kill.Killer(self.sources.cgroup_root, proc_root=self.sources.proc_root,
                           clock=self.sources.clock, dry_run=self.dry_run,
                           protected_pids={1, os.getpid()},
                           policy=self.cfg.kill.kill_policy(grace_only_if=self._above_floor),
                           keepalive=lambda: self.notifier.watchdog(),
                           cgroupns_root=self.where.ns_root if self.where else "/")

    def _watch_config(self, loop: EventLoop) -> bool:
        """Watch the config file's directory; False while it does not exist."""
        if not self.config_path:
            return False
        try:
            loop.watch_config(CONFIG_KEY, self.config_path)
        except OSError as exc:
            log.debug("config %s not watched: %s", self.config_path, exc)
            return False
        self._config_watched = True
        return True

    def _arm(self, loop: EventLoop) -> None:
        """Arm a wake-up source for each enabled domain discovery knows, disarm
        the ones it no longer lists (the first call walks the tree)."""
        if not self.discovery.watched:
            self.discovery.run_all()
        wanted = self.discovery.domains
        for path in list(self.states):
            if path not in wanted or wanted[path] != self.states[path].domain:
                self._disarm(loop, path)
        stall_us, window_us = self.cfg.detect.psi_trigger_us()
        for path, dom in wanted.items():
            if path in self.states:
                continue
            pressure = (os.path.join(self.sources.proc_root, "pressure", "memory")
                        if dom.is_root else os.path.join(dom.cgdir, "memory.pressure"))
            try:
                info = loop.add_psi_trigger(f"psi:{path}", pressure, "some", stall_us, window_us)
                if info.warning:
                    log.warning("%s: %s", path, info.warning)
                if not dom.is_root:
                    loop.watch_file(f"events:{path}", dom.events_path)
                    if self.cfg.guard.enabled:
                        log.info("%s", self.guard.apply(dom))
            except (Vanished, ValueError, OSError) as exc:
                log.warning("%s: not watched: %s", path, exc)
                loop.remove(f"psi:{path}")
                continue
            state = _DomainState(dom)
            self.misses.arm(dom)
            self.states[path] = state
            log.info("watching domain %s (%s)", path, "global memory" if dom.is_root else
                     f"memory.max {dom.memory_max_bytes} bytes")

    def _disarm(self, loop: EventLoop, path: str) -> None:
        loop.remove(f"psi:{path}")
        loop.remove(f"events:{path}")
        self.guard.release(path)
        self.gate.forget(path)
        self.misses.disarm(path)
        self.states.pop(path, None)
        log.info("no longer watching domain %s", path)

    def _self_test(self) -> None:
        """One full decision per domain in dry-run: proves paths and permissions."""
        for state in list(self.states.values()):
            t0 = self.sources.clock()
            try:
                decision = self._decide(state.domain)
            except (Vanished, OSError, ValueError) as exc:  # gone since discovery: a skip
                log.info("self-test %s skipped: %s", state.domain.path, exc)
                continue
            took_ms = (self.sources.clock() - t0) * 1000
            first = decision.candidates[0] if decision.candidates else None
            log.info("self-test %s: %s in %.0f ms; now the victim would be %s", state.domain.path,
                     decision.outcome, took_ms,
                     f"{first.victim_cgroup} pid {first.pid} ({first.comm})" if first else "none")

    # ------------------------------------------------------------ the loop
    def run(self) -> int:
        with self._loop_factory() as loop:
            self.loop = loop
            try:  # from the first guard set on: whatever happens, it is put back
                self._start(loop)
                while not self._stopping:
                    if self._contained("the event loop", self._iterate, loop):
                        self.notifier.watchdog()
                    else:  # no ping: a loop that keeps failing is restarted
                        time.sleep(ERROR_BACKOFF_S)
            finally:
                self.notifier.stopping()
                self.guard.restore_all()
                self.sink.close()
                self.metrics.close()
                self.discovery.close()
                self.misses.close()
        return 0

    def _start(self, loop: EventLoop) -> None:
        self._watch_config(loop)
        unavailable = self.misses.open()
        if unavailable:
            log.info("%s: a global OOM kill cannot be told from one at a cgroup's own "
                     "limit; every kernel OOM kill counts as a miss of the root domain",
                     unavailable)
        self.metrics = metrics.start(self.cfg.metrics, dry_run=self.dry_run,
                                     walk=select.DEFAULT_BACKEND)
        # Victims' exits come from their pidfds, not the connector (victims.py).
        self._arm(loop)
        loop.watch_fd(DISCOVERY_KEY, self.discovery.fileno())
        log.info("watching %d cgroup directories for domains (cap %d)%s",
                 self.discovery.watched, self.discovery.max_watches,
                 f", {self.discovery.unwatched} more rescanned" if self.discovery.unwatched
                 else "")
        self.guard.settle()  # a crashed run's guards that this run did not take over
        if self.where is not None and self.where.ns_root != "/":
            log.info("private cgroup namespace rooted at %s: /proc/PID/cgroup paths are "
                     "mapped back to %s", self.where.ns_root, self.sources.cgroup_root)
        for note in cgroupns.exempt_own_pod(self.sources.cgroup_root, self.where,
                                            self.sources.proc_root) if self.where else ():
            log.info("%s", note)
        self._self_test()
        # Everything is imported and the first decisions are warm: lock it in
        # (after the self-test, so its garbage is freed, not locked).
        for warning in self._protect():
            log.warning("%s", warning)
        self._started_at = self.sources.clock()
        self.notifier.ready(self._status())
        log.info("prioomd running%s: %d domain(s)", " in dry-run" if self.dry_run else "",
                 len(self.states))

    def _idle_ok(self, loop: EventLoop) -> bool:
        """Memory is plentiful and nothing but the root needs a sample per tick:
        the adaptive sampling can run in the idle sampler (idle.py)."""
        root = self.states.get(domains.ROOT)
        return (root is not None and isinstance(root.prev, detect.RootSample)
                and idle.quiet(root.prev, self.cfg.detect.root_thresholds())
                and not (self.victims or self.discovery.busy)
                and not any(self.gate.waiting(p) for p in self.states)
                and all(k == f"psi:{domains.ROOT}" for k in loop.polling_keys()))

    def _timeout(self, idle_ok: bool = False) -> float:
        if self.discovery.busy:
            return 0.0
        t = self.cfg.detect.poll_max_s
        root = self.states.get(domains.ROOT)
        if idle_ok:  # the sampler polls adaptively; wake for our own timers only
            dues = [self.discovery.next_due(), None if self.exit_after_s is None
                    else self._started_at + self.exit_after_s]
            t = min([IDLE_MAX_S, *(d - self.sources.clock() for d in dues if d is not None)])
        elif root is not None and isinstance(root.prev, detect.RootSample):
            t = detect.next_poll_interval(root.prev, self.cfg.detect.root_thresholds())
        if self.notifier.watchdog_interval_s is not None:
            t = min(t, self.notifier.watchdog_interval_s)
        return t

    def _iterate(self, loop: EventLoop) -> None:
        if self._idle_ok(loop):  # plentiful memory: sampled in idle.py, not per tick here
            self._handle(loop, loop.wait(self._timeout(idle_ok=True), poll=self.idle))
        else:
            self._handle(loop, loop.wait(self._timeout()))

    def _handle(self, loop: EventLoop, events: list[Event]) -> None:
        now = self.sources.clock()
        woken: dict[str, str] = {}  # domain -> what woke it
        for ev in events:
            self._contained(f"a {ev.kind} event", self._on_event, loop, ev, woken)
        if self._stopping:
            return
        if self.config_path and not self._config_watched and self._watch_config(loop):
            self._contained("the reload", self.reload, loop)  # it came back, maybe new
        self._contained("domain discovery", self._discover, loop)
        polling = {k.split(":", 1)[1] for k in loop.polling_keys()}
        for path, state in list(self.states.items()):
            # The root is cheap to sample: every wake-up. A cgroup domain only
            # when it signalled, or when its PSI trigger fell back to polling.
            if state.domain.is_root or path in woken or path in polling:
                self._contained(f"the check of {path}", self._check, state,
                                woken.get(path, "poll"))
        self._send_status(now)
        if self.exit_after_s is not None and now - self._started_at >= self.exit_after_s:
            log.info("stopping: --exit-after %g s reached", self.exit_after_s)
            self._stopping = True

    def _discover(self, loop: EventLoop) -> None:
        if self.discovery.step():  # bounded work per wake-up
            self._arm(loop)

    def _on_event(self, loop: EventLoop, ev: Event, woken: dict[str, str]) -> None:
        if ev.kind == "signal-stop":
            log.info("stopping on signal")
            self._stopping = True
        elif ev.kind == "signal-reload" or (ev.kind == "file-changed" and ev.key == CONFIG_KEY):
            self.reload(loop)
        elif ev.kind == "proc-exit" and (pid := self.victims.exited(loop, ev)) is not None:
            self.gate.note_exit(pid)
        elif ev.kind == "fd-ready" and ev.key == DISCOVERY_KEY:
            self.discovery.read_events()
        elif ev.kind == "gone" and ev.key == CONFIG_KEY:
            self._config_watched = False
            log.warning("the directory of %s went away; the config in force stays, and is "
                        "reloaded once it is back", self.config_path)
        elif ev.kind == "gone" and ":" in ev.key:
            path = ev.key.split(":", 1)[1]
            if path in self.states:
                log.info("domain %s went away", path)
                self._disarm(loop, path)
        elif ev.kind in ("psi", "file-changed") and ":" in ev.key:
            woken[ev.key.split(":", 1)[1]] = "psi" if ev.kind == "psi" else "memory.events"

    def _check(self, state: _DomainState, woke_by: str) -> None:
        dom = state.domain
        try:
            cur = domains.sample(dom, self.sources)
        except Vanished:
            return
        except (OSError, ValueError) as exc:  # odd kernel files: skip this round, loudly
            if self.sources.clock() >= state.quiet_until:
                state.quiet_until = self.sources.clock() + QUIET_REPEAT_S
                log.warning("%s: cannot sample: %s", dom.path, exc)
            return
        self._note_misses(state, cur)
        # under the root's hard floor no average lags: once the victims are gone, the
        # next kill may not wait for the post-action delay (a leak outrunning the kill)
        floor = (isinstance(cur, detect.RootSample) and self.gate.waiting(dom.path)
                 and detect.assess_root(None, cur, self.cfg.detect.root_thresholds()) is not None)
        verdict = self.gate.check(dom.path, cur, emergency=floor)
        if not verdict.open:
            log.debug("%s: %s", dom.path, verdict.reason)
            return
        prev = verdict.baseline if verdict.baseline is not None else state.prev
        state.prev = cur
        if isinstance(cur, detect.RootSample):
            self.idle.prime(cur, None)  # its first sleep, as _timeout's would be
        if cur.taken_at < state.cooldown_until:
            return
        # recheck() is assess_root/assess_cgroup dispatched on the sample's kind.
        threat = detect.recheck(prev, cur, self.cfg.detect.root_thresholds(),
                                self.cfg.detect.cgroup_thresholds())
        if threat is not None:
            self._act(state, threat, prev, cur, woke_by)

    # ------------------------------------------------------------ acting
    def _decide(self, dom: domains.Domain) -> Decision:
        total_pages = None
        if not dom.is_root:
            swap_total = procfs.read_meminfo(self.sources.proc_root).get("SwapTotal", 0)
            total_pages = snapshot.limit_total_pages(
                dom.memory_max_bytes or 0, cgroupfs.read_swap_max(dom.cgdir), swap_total,
                procfs.page_size())
        # The lazy walk: reads the walked path, not the domain (snapshot.take is for
        # prioomd tree/audit, the full picture).
        # In-flight victims past the bound are not waited for (dying.py).
        decision, warnings, overdue = lazywalk.decide(
            dom.path, self.table, self.sources, total_pages,
            kernel_compat=self.cfg.daemon.kernel_compat,
            max_candidates=self.cfg.daemon.max_candidates,
            settle=lambda snap: self.dying.settle(snap, self.sources.clock()))
        for w in dict.fromkeys(warnings):
            log.debug("%s", w)
        for task in overdue:  # stuck with SIGKILL pending: reap it and stop waiting
            log.warning("%s: %s", dom.path, self.killer.reap(task.pid, task.start_ticks))
        return decision

    def _act(self, state: _DomainState, threat: detect.Threat, prev: detect.Sample | None,
             cur: detect.Sample, woke_by: str) -> None:
        dom = state.domain
        detected_at = cur.taken_at
        trigger = f"{threat.trigger} ({woke_by})"

        def still_threatened() -> bool:
            try:
                fresh = domains.sample(dom, self.sources)
            except Vanished:
                return False
            return detect.recheck(prev, fresh, self.cfg.detect.root_thresholds(),
                                  self.cfg.detect.cgroup_thresholds()) is not None

        for _round in range(1 + MOVED_REDECISIONS):
            try:
                decision = self._decide(dom)
            except Vanished:
                return
            if decision.outcome != "kill":
                if cur.taken_at >= state.quiet_until:
                    state.quiet_until = cur.taken_at + QUIET_REPEAT_S
                    log.warning("%s under threat (%s) but %s", dom.path, threat.reason,
                                decision.reason)
                    self._emit(decision, KillResult(None, decision.outcome, (), None, None, 0,
                                                    decision.reason, self.dry_run),
                               trigger, detected_at, threat)
                return
            log.info("%s: %s", dom.path, threat.reason)
            if _round == 0:
                self._hook("prekill", dom, decision, trigger)
            self.notifier.watchdog()  # the snapshot is behind us; the kill pings as it waits
            result = self.killer.execute(decision, recheck=still_threatened)
            self._emit(decision, result, trigger, detected_at, threat)
            if result.outcome != "moved":  # the victim left its cgroup: decide again
                break
        if result.candidate is not None and result.signal_sent_at is not None \
                and not self.dry_run:
            # Killed, or signalled without a confirmed exit ("failed", e.g. stuck in
            # D state): either way wait for it before anything else dies here.
            self.kills += result.outcome == "killed"
            pids = result.candidate.pids
            why_not = attribution.mark_killed(
                self.sources.cgroup_root,
                result.candidate.kill_cgroup or result.candidate.victim_cgroup, len(pids))
            if why_not is not None:
                log.debug("%s", why_not)
            self.gate.record_kill(dom.path, pids, cur, expected_bytes=result.freed_bytes)
            assert self.loop is not None
            for pid in pids:
                self.dying.note_kill(pid, result.signal_sent_at)
                self.victims.watch(self.loop, pid)
        elif result.outcome == "dry-run":
            state.cooldown_until = cur.taken_at + self.cfg.detect.post_action_delay_s
        if result.candidate is not None and (result.signal_sent_at is not None
                                             or result.outcome == "dry-run"):
            self._hook("postkill", dom, decision, trigger, result)

    def _hook(self, kind: str, dom: domains.Domain, decision: Decision, trigger: str,
              result: KillResult | None = None) -> None:
        """Run [kill] prekill_hook (here, bounded by hook_timeout_s, only when the
        threat leaves time: a cgroup domain under [guard], or the root above the
        floor) or postkill_hook (in a thread of its own: the loop never waits)."""
        plan = self.hook_plan
        path = plan.prekill if kind == "prekill" else plan.postkill
        cand = result.candidate if result is not None else decision.candidates[0]
        if not path or cand is None:
            return
        if kind == "prekill" and not (self.cfg.guard.enabled if not dom.is_root
                                      else self._above_floor("pre-kill hook")):
            log.info("%s: pre-kill hook skipped: no time to spare", dom.path)
            return
        env = hooks.facts(kind, decision, cand, trigger=trigger, dry_run=self.dry_run,
                          result=result)
        if kind == "prekill":
            hooks.run_logged(kind, path, env, plan.timeout_s,
                             keepalive=lambda: self.notifier.watchdog())
        else:
            threading.Thread(target=hooks.run_logged, args=(kind, path, env, plan.timeout_s),
                             name="prioomd-postkill", daemon=True).start()

    def _emit(self, decision: Decision, result: KillResult, trigger: str, detected_at: float,
              threat: detect.Threat) -> None:
        record = audit.build_decision_record(decision, result, trigger=trigger,
                                             detected_at=detected_at, numbers=threat.numbers)
        self.sink.emit(record)
        self.metrics.record(record)

    def _send_status(self, now: float) -> None:
        """STATUS= only when it changed, at most once per HOUSEKEEPING_S."""
        text = self._status()
        last, sent_at = self._status_sent
        if text != last and (now - sent_at >= HOUSEKEEPING_S or not last):
            self.notifier.status(text)
            self._status_sent = (text, now)

    def _note_misses(self, state: _DomainState, cur: detect.Sample) -> None:
        """The kernel killed in an enabled domain without us: audit it as a miss."""
        missed = self.misses.missed(state.domain, cur)
        if missed > 0:
            log.warning("%s: the kernel's OOM killer killed %d process(es) before prioomd "
                        "acted", state.domain.path, missed)
            record = audit.build_miss_record(state.domain.path, missed,
                                             dry_run=self.dry_run)
            self.sink.emit(record)
            self.metrics.record(record)

    # ------------------------------------------------------------ reload
    def _reguard(self) -> None:
        """[guard] or the thresholds its memory.high comes from changed: every armed
        domain's memory.high back to the administrator's, then the new guard on each
        (none with guard mode now off), as a restart would leave them."""
        released = len(self.guard.guarded)
        self.guard.restore_all()
        if not self.cfg.guard.enabled:
            log.info("guard mode off: memory.high restored on %d domain(s)", released)
            return
        for state in self.states.values():
            if state.domain.is_root:
                continue
            try:
                log.info("%s", self.guard.apply(state.domain))
            except (Vanished, ValueError, OSError) as exc:
                log.warning("%s: no guard: %s", state.domain.path, exc)

    def reload(self, loop: EventLoop) -> None:
        if not self.config_path:
            log.info("reload requested; no config file to read")
            return
        self.notifier.reloading()
        loop.remove(CONFIG_KEY)  # follow the links as they are now (a swapped symlink)
        self._config_watched = False
        self._watch_config(loop)
        try:
            cfg = config.load_config(self.config_path)
        except ConfigError as exc:
            log.error("new config rejected, the old one stays in force: %s", exc)
            self.metrics.reloaded(False)
            self.notifier.ready(self._status())
            return
        old_guard = (self.cfg.guard.enabled, self.guard.thresholds)
        self.cfg = cfg
        self.table = table.PriorityTable(cfg)
        self.killer = self._make_killer()
        self.hook_plan = cfg.kill.hook_plan()
        self.dying.timeout_s = cfg.kill.dying_timeout_s
        self.guard.thresholds = cfg.detect.cgroup_thresholds()
        if (cfg.guard.enabled, self.guard.thresholds) != old_guard:
            self._reguard()
        self.idle.set_thresholds(cfg.detect.root_thresholds())
        self.discovery.max_watches = self._max_watches(cfg)
        self.discovery.retable(self.table)  # examined over the next wake-ups, bounded
        self._arm(loop)
        self.metrics.reloaded(True)
        log.info("config %s reloaded: %d rules, %d domain(s)", self.config_path, len(cfg.rules),
                 len(self.states))
        self._self_test()  # what the new table would choose now, in the log
        self.notifier.ready(self._status())

    @property
    def errors(self) -> int:
        """Internal errors contained so far."""
        return self._contained.count

    def _status(self) -> str:
        mode = "dry-run, " if self.dry_run else ""
        errors = f", {self.errors} internal error(s)" if self.errors else ""
        return (f"{mode}{len(self.states)} domain(s), {self.kills} kill(s){errors}, "
                f"walk {select.DEFAULT_BACKEND}")
