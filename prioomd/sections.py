"""The daemon's config sections: [detect], [kill], [guard], [audit], [metrics].

Declared with ``prioomd.options`` like the sections of ``config.py``; their
defaults are the ones ``detect``, ``gate``, ``dying`` and ``kill`` justify next to their
own constants, so each number has one home and one reason.

The runtime objects the daemon builds from a section come from the section's own
builder methods (``root_thresholds``, ``psi_trigger_us``, ``kill_policy``, ...),
and ``config`` calls every builder while validating (``BUILDERS``): a config that
``prioomd check-config`` accepts is one the daemon can build and arm, at start and
on reload. Relations between keys (``RELATIONS``) are checked first, so that the
usual mistakes get a message naming both keys and values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prioomd import detect, dying, gate, hooks, kill, psi_trigger
from prioomd.options import Check, option

PCT = Check(lambda v: 0 <= v <= 100, "0..100")
POSITIVE = Check(lambda v: v > 0, "> 0")
NON_NEGATIVE = Check(lambda v: v >= 0, ">= 0")
WINDOW = Check(lambda v: 500 <= v <= 10_000, "500..10000 (the kernel's PSI window range)")
POLL = Check(lambda v: detect.POLL_SHORTEST_S <= v <= detect.POLL_LONGEST_S,
             f"{detect.POLL_SHORTEST_S:g}..{detect.POLL_LONGEST_S:g}")
# A SIGTERM grace is spent while the machine is short of memory: a minute at most.
GRACE_LONGEST_S = 60.0
# Waiting longer than this for a SIGKILLed victim only delays the next decision.
CONFIRM_LONGEST_S = 600.0
# A post-action delay longer than an hour would leave a domain unguarded for good.
DELAY_LONGEST_S = 3600.0
GRACE = Check(lambda v: 0 <= v <= GRACE_LONGEST_S, f"0..{GRACE_LONGEST_S:g}")
CONFIRM = Check(lambda v: 0 < v <= CONFIRM_LONGEST_S, f"> 0 and <= {CONFIRM_LONGEST_S:g}")
DELAY = Check(lambda v: 0 <= v <= DELAY_LONGEST_S, f"0..{DELAY_LONGEST_S:g}")
DYING = Check(lambda v: 0 < v <= CONFIRM_LONGEST_S, f"> 0 and <= {CONFIRM_LONGEST_S:g}")
# A pre-kill hook runs while memory runs short: oomd's bound for its hooks.
HOOK_LONGEST_S = 5.0
HOOK_TIMEOUT = Check(lambda v: 0 < v <= HOOK_LONGEST_S, f"> 0 and <= {HOOK_LONGEST_S:g}")
HOOK_PATH = Check(lambda v: v == "" or (v.startswith("/") and "\0" not in v),
                  '"" (none) or an absolute path')


def _require(section: object, name: str, check: Check) -> None:
    """A builder's own check of a bound its runtime object does not enforce."""
    value = getattr(section, name)
    if not check.ok(value):
        raise ValueError(f"{name} must be {check.allowed}, got {value!r}")


@dataclass(frozen=True)
class Relation:
    """``lesser <= greater`` between two keys of one section, and why."""

    lesser: str
    greater: str
    why: str

_ROOT = detect.RootThresholds()
_CG = detect.CgroupThresholds()


@dataclass(frozen=True)
class DetectConfig:
    """[detect]: when a domain is under threat. PSI alone never kills: it must come
    with a memory shortage (root) or a domain near its memory.max (cgroup)."""

    mem_available_pct: float = option(
        _ROOT.mem_available_pct,
        "Root: MemAvailable below this % of MemTotal is a shortage; with PSI above "
        "its thresholds and rising, prioomd kills.", PCT)
    mem_available_floor_pct: float = option(
        _ROOT.mem_available_floor_pct,
        "Root: MemAvailable below this % (and swap short or absent) kills without PSI: "
        "hosts without swap stall too little before an OOM.", PCT)
    swap_free_pct: float = option(
        _ROOT.swap_free_pct, "Root: SwapFree below this % of SwapTotal is short.", PCT)
    psi_some_avg10_pct: float = option(
        _ROOT.psi_some_avg10_pct, "PSI memory 'some' avg10 that counts as pressure.", PCT)
    psi_full_avg10_pct: float = option(
        _ROOT.psi_full_avg10_pct, "PSI memory 'full' avg10 that counts as pressure.", PCT)
    poll_min_s: float = option(
        _ROOT.poll_min_s, "Shortest sleep of the adaptive MemAvailable poll, seconds.", POLL)
    poll_max_s: float = option(
        _ROOT.poll_max_s, "Longest sleep (plenty of memory: at most one wake-up per this); "
        "poll_min_s <= poll_max_s.", POLL)
    headroom_pct: float = option(
        _CG.headroom_pct, "Cgroup domains: headroom below memory.max, % of memory.max.", PCT)
    headroom_min_mib: int = option(
        _CG.headroom_min_bytes >> 20, "Cgroup domains: smallest headroom, MiB.", NON_NEGATIVE)
    headroom_max_mib: int = option(
        _CG.headroom_max_bytes >> 20,
        "Cgroup domains: largest headroom, MiB (>= headroom_min_mib).", NON_NEGATIVE)
    trigger_stall_ms: int = option(
        150, "PSI trigger: stall (ms per window) that wakes prioomd at once; at most "
        "trigger_window_ms.", POSITIVE)
    trigger_window_ms: int = option(
        2000, "PSI trigger window, ms; rounded up to a multiple of 2000 where the kernel "
        "demands it (no CAP_SYS_RESOURCE).", WINDOW)
    post_action_delay_s: float = option(
        gate.DEFAULT_DELAY_S, "After a kill, at most this long before the domain may be "
        "judged again (sooner once memory is freed or pressure stops rising, or, with "
        "the victims gone, the root is under its floor again).", DELAY)

    RELATIONS = (
        Relation("mem_available_floor_pct", "mem_available_pct",
                 "the floor that kills without PSI lies below the shortage level"),
        Relation("poll_min_s", "poll_max_s", "the shortest sleep cannot exceed the longest"),
        Relation("headroom_min_mib", "headroom_max_mib",
                 "the smallest headroom cannot exceed the largest"),
        Relation("trigger_stall_ms", "trigger_window_ms",
                 "a PSI trigger's stall is a part of its window (the kernel refuses more)"),
    )

    def root_thresholds(self) -> detect.RootThresholds:
        return detect.RootThresholds(
            mem_available_pct=self.mem_available_pct,
            mem_available_floor_pct=self.mem_available_floor_pct,
            swap_free_pct=self.swap_free_pct,
            psi_some_avg10_pct=self.psi_some_avg10_pct,
            psi_full_avg10_pct=self.psi_full_avg10_pct,
            poll_min_s=self.poll_min_s, poll_max_s=self.poll_max_s)

    def cgroup_thresholds(self) -> detect.CgroupThresholds:
        return detect.CgroupThresholds(
            headroom_pct=self.headroom_pct,
            headroom_min_bytes=self.headroom_min_mib << 20,
            headroom_max_bytes=self.headroom_max_mib << 20,
            psi_some_avg10_pct=self.psi_some_avg10_pct,
            psi_full_avg10_pct=self.psi_full_avg10_pct)

    def psi_trigger_us(self) -> tuple[int, int]:
        """(stall_us, window_us) of every domain's PSI trigger; ValueError when no
        kernel would accept it (the rule ``psi_trigger.arm`` enforces)."""
        stall_us, window_us = self.trigger_stall_ms * 1000, self.trigger_window_ms * 1000
        psi_trigger.validate("some", stall_us, window_us)
        return stall_us, window_us

    def post_action_gate(self) -> gate.PostActionGate:
        _require(self, "post_action_delay_s", DELAY)
        return gate.PostActionGate(delay_s=self.post_action_delay_s,
                                   stuck_victim_s=max(gate.DEFAULT_STUCK_VICTIM_S,
                                                      self.post_action_delay_s))


@dataclass(frozen=True)
class KillConfig:
    """[kill]: how a victim dies."""

    sigterm_grace_s: float = option(
        0.0, "SIGTERM first and wait this long before SIGKILL, while MemAvailable stays "
        "above the floor; 0 = SIGKILL at once.", GRACE)
    confirm_timeout_s: float = option(
        5.0, "How long to wait for a victim's exit before calling the kill failed.", CONFIRM)
    mrelease: bool = option(
        True, "process_mrelease() the victim's memory right after SIGKILL (Linux 5.15+).")
    dying_timeout_s: float = option(
        dying.DEFAULT_TIMEOUT_S, "A process with SIGKILL pending holds up new kills in "
        "its subtree at most this long, and dying processes hold a domain up at most this "
        "long in a row; then they are reaped with process_mrelease and skipped (the "
        "kernel's OOM reaper bound).", DYING)
    prekill_hook: str = option(
        "", "Executable run before a kill with the decision's facts in PRIOOMD_* variables, "
        "only when the threat leaves time (a cgroup domain under [guard], or MemAvailable "
        "above the floor); the kill follows whatever it does ('' = none).", HOOK_PATH)
    postkill_hook: str = option(
        "", "Executable run after a kill (signal sent), with the facts and PRIOOMD_OUTCOME; "
        "in the background, never delaying the loop ('' = none).", HOOK_PATH)
    hook_timeout_s: float = option(
        1.0, "A hook still running after this long is killed (with its process group).",
        HOOK_TIMEOUT)

    def kill_policy(self, grace_only_if: Callable[[], bool] | None = None) -> kill.KillPolicy:
        """The Killer's policy; ValueError for a wait the kill path cannot make."""
        _require(self, "sigterm_grace_s", GRACE)
        _require(self, "confirm_timeout_s", CONFIRM)
        return kill.KillPolicy(sigterm_grace_s=self.sigterm_grace_s, grace_only_if=grace_only_if,
                               confirm_timeout_s=self.confirm_timeout_s, mrelease=self.mrelease)

    def hook_plan(self) -> hooks.HookPlan:
        _require(self, "prekill_hook", HOOK_PATH)
        _require(self, "postkill_hook", HOOK_PATH)
        _require(self, "hook_timeout_s", HOOK_TIMEOUT)
        return hooks.HookPlan(self.prekill_hook, self.postkill_hook, self.hook_timeout_s)

    def dying_watch(self) -> dying.DyingWatch:
        _require(self, "dying_timeout_s", DYING)
        return dying.DyingWatch(self.dying_timeout_s)


@dataclass(frozen=True)
class GuardConfig:
    """[guard]: cgroup domains get memory.high = memory.max - headroom while prioomd
    runs, so the kernel throttles them (and prioomd can act) before its OOM killer."""

    enabled: bool = option(True, "Set memory.high on enabled cgroup domains (restored on exit, "
                                 "or on a reload that turns this off).")


@dataclass(frozen=True)
class AuditConfig:
    """[audit]: one JSON line per decision and per miss, and a journal entry."""

    file: str = option("/var/log/prioomd/audit.jsonl", "JSON lines audit file ('' = none).",
                       Check(lambda v: "\0" not in v, "without NUL characters"))
    journal: bool = option(True, "Send structured records to journald when it runs.")


def _is_listen_address(value: str) -> bool:
    if value.startswith("unix:"):
        return value[5:].startswith("/")
    host, sep, port = value.rpartition(":")
    return bool(sep and host) and port.isdigit() and 0 < int(port) < 65536


LISTEN = Check(_is_listen_address, '"HOST:PORT", "[IPV6]:PORT" or "unix:/PATH"')
ABSOLUTE_OR_EMPTY = Check(lambda v: v == "" or v.startswith("/"), 'an absolute path or ""')


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: Prometheus metrics (needs the prometheus-client package, the
    ``metrics`` extra). Off by default; when off nothing of it is imported."""

    enabled: bool = option(False, "Expose Prometheus metrics at all.")
    listen: str = option(
        "", "Serve /metrics over HTTP here: \"127.0.0.1:9381\", \"[::1]:9381\" or "
        "\"unix:/run/prioomd/metrics.sock\" ('' = no listener).",
        Check(lambda v: v == "" or _is_listen_address(v), LISTEN.allowed + " or \"\""))
    textfile: str = option(
        "", "Also write the metrics to this file for node_exporter's textfile collector "
        "(atomic rename, after every change; '' = none).", ABSOLUTE_OR_EMPTY)


# What the daemon builds from each section, at start and on every reload: config
# validation calls each of these, so whatever they refuse, check-config refuses.
BUILDERS: dict[str, tuple[Callable[[Any], object], ...]] = {
    "detect": (DetectConfig.root_thresholds, DetectConfig.cgroup_thresholds,
               DetectConfig.psi_trigger_us, DetectConfig.post_action_gate),
    "kill": (KillConfig.kill_policy, KillConfig.dying_watch, KillConfig.hook_plan),
}
