"""The priority table: merges config rules, xattrs and peer hints (DESIGN §3).

Pure: the caller (cgroupfs/snapshot) reads the xattrs named in ``ALL_XATTRS`` and the
owner uids of the cgroup and of its parent directory, and passes them in. Each key is
resolved on its own, from the first source, in this order, that gives a valid value:

1. ``trusted.prioomd.priority`` / ``trusted.prioomd.use_priority_oom`` (only root
   can write ``trusted.*``);
2. the most specific ``[[cgroup]]`` rule that sets the key (a rule that sets only
   ``priority`` does not shadow another rule's ``use_priority_oom``);
3. ``user.prioomd.priority`` / ``user.prioomd.use_priority_oom``, under the
   delegation rule: honoured iff the cgroup's owner uid equals its parent's. Who can
   write C's user xattrs owns C; C may rank itself among its siblings only if that
   party also owns their common parent. A delegated user orders its own children,
   but a delegation root (owner u, parent owned by root) cannot lift itself above
   the siblings it was delegated among;
4. peer hints (priority only; ``[hints] enabled``), the first that is set in this
   order, which keeps each peer's own rule: ``trusted.oomd_prefer`` before
   ``trusted.oomd_avoid`` (oomd: prefer wins over avoid), then ``user.oomd_omit``
   before ``user.oomd_avoid`` (systemd-oomd: omit wins over avoid); root-only
   ``trusted.*`` hints before ``user.*`` ones, which follow the delegation rule too;
5. the default: priority 0, use_priority_oom false. Nothing is inherited (spec §1.4).

The kill granularity (``kill``: ``process``, the worst process, or ``cgroup``, the
whole cgroup where the walk stops) resolves the same way from
``trusted.prioomd.kill``, the rules' ``kill`` key, ``user.prioomd.kill``, then the
default ``process`` (peer hints do not set it).

The root cgroup "/" has no priority (spec §1.4); its use_priority_oom comes from
``trusted.prioomd.use_priority_oom`` or ``[root] use_priority_oom`` only.

Bad xattr values never raise: the value is ignored, a warning naming the cgroup, the
xattr and the value is returned, and the next source applies. Every unusable xattr
present is reported, even when a higher source won, so a typo never hides behind a
working setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from prioomd.config import KILL_MODES, MAX_PRIORITY, Config, Rule
from prioomd.errors import ConfigError
from prioomd.glob import literal_prefix
from prioomd.model import Setting
from prioomd.options import show_value

XATTR_PRIORITY = "trusted.prioomd.priority"
XATTR_USE_PRIORITY_OOM = "trusted.prioomd.use_priority_oom"
USER_XATTR_PRIORITY = "user.prioomd.priority"
USER_XATTR_USE_PRIORITY_OOM = "user.prioomd.use_priority_oom"
XATTR_KILL = "trusted.prioomd.kill"
USER_XATTR_KILL = "user.prioomd.kill"
HINT_OOMD_PREFER = "trusted.oomd_prefer"  # oomd: kill this cgroup first
HINT_OOMD_AVOID = "trusted.oomd_avoid"  # oomd: kill this cgroup last
HINT_SYSTEMD_OMIT = "user.oomd_omit"  # systemd-oomd ManagedOOMPreference=omit
HINT_SYSTEMD_AVOID = "user.oomd_avoid"  # systemd-oomd ManagedOOMPreference=avoid

PRIORITY_XATTRS = (XATTR_PRIORITY, USER_XATTR_PRIORITY)
USE_PRIORITY_OOM_XATTRS = (XATTR_USE_PRIORITY_OOM, USER_XATTR_USE_PRIORITY_OOM)
KILL_XATTRS = (XATTR_KILL, USER_XATTR_KILL)
SETTABLE_XATTRS = PRIORITY_XATTRS + USE_PRIORITY_OOM_XATTRS + KILL_XATTRS  # `prioomd set`
# Layer 4 in precedence order, each with the [hints] key giving its priority.
HINT_XATTRS: tuple[tuple[str, str], ...] = (
    (HINT_OOMD_PREFER, "oomd_prefer"),
    (HINT_OOMD_AVOID, "oomd_avoid"),
    (HINT_SYSTEMD_OMIT, "oomd_omit"),
    (HINT_SYSTEMD_AVOID, "oomd_avoid"),
)
ALL_XATTRS = SETTABLE_XATTRS + tuple(name for name, _ in HINT_XATTRS)  # what to read

ROOT = "/"
ROOT_PRIORITY = Setting(0, "root: no priority (spec §1.4)")
DEFAULT_PRIORITY = Setting(0, "default")
DEFAULT_USE_PRIORITY_OOM = Setting(False, "default")
DEFAULT_KILL = Setting("process", "default")
ROOT_KILL = Setting("process", "root: never killed whole")

# Decimal, an optional single trailing newline (what `echo` writes), no sign, no
# blanks; the digit cap keeps a hostile value from becoming a huge int.
_PRIORITY_RE = re.compile(rb"([0-9]{1,4})\n?")
_BOOL_RE = re.compile(rb"([01])\n?")
_KILL_RE = re.compile(rb"(process|cgroup)\n?")
# systemd's parse_boolean, which is how systemd-oomd reads its hints.
_HINT_TRUE = frozenset({b"1", b"yes", b"y", b"true", b"t", b"on"})
_HINT_FALSE = frozenset({b"0", b"no", b"n", b"false", b"f", b"off"})


@dataclass(frozen=True)
class Resolved:
    """The effective settings of one cgroup."""

    priority: Setting
    use_priority_oom: Setting
    warnings: tuple[str, ...]
    kill: Setting = DEFAULT_KILL  # kill granularity: "process" or "cgroup"


@dataclass(frozen=True)
class _Source:
    """One source considered for one key, for resolve() and explain()."""

    layer: int  # 1..5, the precedence layer
    label: str  # becomes Setting.source when this source wins
    value: int | bool | str | None  # None: gives no value
    note: str  # what was seen, for explain()
    error: ConfigError | None = None  # equally specific rules disagree
    why: str = ""  # why it wins, when not the layer's usual reason


def parse_priority(raw: bytes) -> int | None:
    """A priority xattr value, or None when it is not a decimal 0..12."""
    m = _PRIORITY_RE.fullmatch(raw)
    if m is None or int(m.group(1)) > MAX_PRIORITY:
        return None
    return int(m.group(1))


def parse_use_priority_oom(raw: bytes) -> bool | None:
    """A use_priority_oom xattr value, or None when it is not 0 or 1."""
    m = _BOOL_RE.fullmatch(raw)
    return None if m is None else m.group(1) == b"1"


def parse_hint(raw: bytes) -> bool | None:
    """A peer hint: True set, False explicitly off, None unparsable."""
    word = raw[:-1] if raw.endswith(b"\n") else raw
    word = word.lower()
    if word in _HINT_TRUE:
        return True
    if word in _HINT_FALSE:
        return False
    return None


def parse_kill(raw: bytes) -> str | None:
    """A kill-granularity xattr value, or None when it is not process or cgroup."""
    m = _KILL_RE.fullmatch(raw)
    return None if m is None else m.group(1).decode()


def validate_xattr_value(name: str, text: str) -> bytes:
    """The bytes ``prioomd set NAME TEXT`` writes; ValueError with the reason."""
    word = text.strip()
    if name in PRIORITY_XATTRS:
        if not (word.isascii() and word.isdigit()) or int(word) > MAX_PRIORITY:
            raise ValueError(f"{name}: {text!r} is not a priority: must be an integer "
                             f"0..{MAX_PRIORITY} (higher = more important, killed later)")
        return str(int(word)).encode()
    if name in USE_PRIORITY_OOM_XATTRS:
        lowered = word.lower()
        if lowered in ("1", "true", "yes", "on"):
            return b"1"
        if lowered in ("0", "false", "no", "off"):
            return b"0"
        raise ValueError(f"{name}: {text!r} is not a boolean: must be 1 or 0 "
                         "(true/false, yes/no, on/off)")
    if name in KILL_XATTRS:
        if word not in KILL_MODES:
            raise ValueError(f"{name}: {text!r} is not a kill granularity: must be "
                             "process (the worst process) or cgroup (the whole cgroup)")
        return word.encode()
    raise ValueError(f"{name!r} is not an xattr prioomd sets: use one of "
                     f"{', '.join(SETTABLE_XATTRS)}")


def _show_bytes(raw: bytes) -> str:
    return repr(raw) if len(raw) <= 40 else repr(raw[:40])[:-1] + "...'"


def _delegation_refusal(owner_uid: int | None, parent_owner_uid: int | None) -> str | None:
    """None when user.* xattrs are honoured, else why not."""
    if owner_uid is None or parent_owner_uid is None:
        return "the owner of the cgroup or of its parent is unknown"
    if owner_uid != parent_owner_uid:
        return (f"cgroup owned by uid {owner_uid} but its parent by uid {parent_owner_uid}: "
                "a delegation root cannot rank itself above its siblings")
    return None


class PriorityTable:
    """Resolves priority and use_priority_oom of cgroups for one Config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # Most specific first; equal specificity in file order.
        self._rules = sorted(config.rules, key=lambda r: (-r.specificity[0],
                                                          -r.specificity[1], r.number))
        # Discovery may skip cgroups without a use_priority_oom xattr when no rule sets it.
        self.rules_set_use_priority_oom = any(r.use_priority_oom is not None
                                              for r in config.rules)

    def resolve(self, path: str, xattrs: Mapping[str, bytes], owner_uid: int | None,
                parent_owner_uid: int | None) -> Resolved:
        """Effective settings of the cgroup at ``path`` (relative to the cgroup root).

        ``xattrs`` holds those of ``ALL_XATTRS`` that are set (absent ones omitted);
        the uids are the owners of the cgroup directory and of its parent (None:
        unknown, which refuses user.* xattrs). Raises ConfigError only when the
        config itself is ambiguous for this path (two equally specific rules match
        and disagree) and no trusted xattr decided first; callers log it and treat
        the cgroup's value as unresolved.
        """
        warnings: list[str] = []
        settings = []
        for sources in self._all_sources(path, xattrs, owner_uid, parent_owner_uid, warnings):
            winner = _winner(sources)
            if winner.error is not None:
                raise winner.error
            assert winner.value is not None
            settings.append(Setting(winner.value, winner.label))
        return Resolved(settings[0], settings[1], tuple(warnings), settings[2])

    def explain(self, path: str, xattrs: Mapping[str, bytes], owner_uid: int | None,
                parent_owner_uid: int | None) -> list[str]:
        """Human-readable lines: every source considered for each key, in precedence
        order (matching rules most specific first), the winner and why, the warnings.
        Never raises for an ambiguous config: it reports it."""
        lines = [f"cgroup {path} (owner uid {owner_uid}, parent owner uid {parent_owner_uid})"]
        warnings: list[str] = []
        all_sources = self._all_sources(path, xattrs, owner_uid, parent_owner_uid, warnings)
        for key, sources in zip(("priority", "use_priority_oom", "kill"), all_sources, strict=True):
            winner = _winner(sources)
            if winner.error is not None:
                lines.append(f"{key}: UNRESOLVED: {winner.error}")
            else:
                lines.append(f"{key} = {show_value(winner.value)} from {winner.label} "
                             f"({winner.why or _WHY[winner.layer]})")
            passed = False
            for s in sources:
                if s is winner:
                    verdict, passed = ("  <- wins" if s.error is None else "  <- error"), True
                else:
                    verdict = "  (shadowed)" if passed and s.value is not None else ""
                layer = f"{s.layer}." if s.layer else "-"
                lines.append(f"  {layer} {s.label}: {s.note}{verdict}")
        lines.extend(f"warning: {w}" for w in warnings)
        return lines

    # --- the sources of both keys -----------------------------------------------

    def _all_sources(self, path: str, xattrs: Mapping[str, bytes], owner_uid: int | None,
                     parent_owner_uid: int | None,
                     warnings: list[str]) -> tuple[list[_Source], ...]:
        if not path.startswith("/"):
            raise ValueError(f"cgroup path {path!r} must start with '/'")
        if path == ROOT:
            return self._root_sources(xattrs, warnings)
        refusal = _delegation_refusal(owner_uid, parent_owner_uid)
        matching = [r for r in self._rules if r.matches(path)]
        priority = [
            _xattr_source(1, path, XATTR_PRIORITY, xattrs, None, warnings),
            *self._rule_sources("priority", path, matching),
            _xattr_source(3, path, USER_XATTR_PRIORITY, xattrs, refusal, warnings),
            *(self._hint_sources(path, xattrs, refusal, warnings)
              or [_Source(4, "hints", None, "no peer hint set")]),
            _Source(5, DEFAULT_PRIORITY.source, DEFAULT_PRIORITY.value, "nothing else applies"),
        ]
        use_priority_oom = [
            _xattr_source(1, path, XATTR_USE_PRIORITY_OOM, xattrs, None, warnings),
            *self._rule_sources("use_priority_oom", path, matching),
            _xattr_source(3, path, USER_XATTR_USE_PRIORITY_OOM, xattrs, refusal, warnings),
            _Source(5, DEFAULT_USE_PRIORITY_OOM.source, DEFAULT_USE_PRIORITY_OOM.value,
                    "nothing else applies"),
        ]
        kill = [
            _xattr_source(1, path, XATTR_KILL, xattrs, None, warnings),
            *self._rule_sources("kill", path, matching),
            _xattr_source(3, path, USER_XATTR_KILL, xattrs, refusal, warnings),
            _Source(5, DEFAULT_KILL.source, DEFAULT_KILL.value, "nothing else applies"),
        ]
        return priority, use_priority_oom, kill

    def _root_sources(self, xattrs: Mapping[str, bytes],
                      warnings: list[str]) -> tuple[list[_Source], ...]:
        for name in PRIORITY_XATTRS + (USER_XATTR_USE_PRIORITY_OOM,) + KILL_XATTRS:
            if name in xattrs:
                why = ("the root cgroup has no priority (spec §1.4)" if name in PRIORITY_XATTRS
                       else "the root cgroup is never killed whole" if name in KILL_XATTRS
                       else "only trusted.* xattrs or [root] configure the root")
                warnings.append(f"{ROOT}: xattr {name} = {_show_bytes(xattrs[name])} "
                                f"ignored: {why}")
        priority = [_Source(0, ROOT_PRIORITY.source, ROOT_PRIORITY.value,
                            "never consulted, whatever the xattrs say",
                            why="the OOM root is never compared with siblings")]
        value = self.config.root.use_priority_oom
        use_priority_oom = [
            _xattr_source(1, ROOT, XATTR_USE_PRIORITY_OOM, xattrs, None, warnings),
            _Source(2, f"config {self.config.source} [root] use_priority_oom", value,
                    show_value(value), why="the root is configured by [root], not by rules"),
        ]
        kill = [_Source(0, ROOT_KILL.source, ROOT_KILL.value, "never consulted",
                        why="a kill never takes the whole root cgroup")]
        return priority, use_priority_oom, kill

    def _rule_sources(self, key: str, path: str, matching: list[Rule]) -> list[_Source]:
        out: list[_Source] = []
        setters = [r for r in matching if r.get(key) is not None]
        for other in setters[1:]:
            top = setters[0]
            if other.specificity != top.specificity:
                break
            if other.get(key) != top.get(key):
                error = ConfigError(
                    f"{self.config.source}: {top.label} and {other.label} are equally "
                    f"specific, both match cgroup {show_value(path)} and disagree on {key} "
                    f"({show_value(top.get(key))} vs {show_value(other.get(key))}): make "
                    "them agree, or make one more specific")
                out.append(_Source(2, "config conflict", None,
                                   f"rules #{top.number} and #{other.number} are equally "
                                   "specific and disagree", error))
                break
        for rule in matching:
            label = f"config {self.config.source} [[cgroup]] #{rule.number} path " \
                    f"{show_value(rule.path)}"
            kind = "exact path" if rule.exact else (
                f"glob, literal prefix {show_value(literal_prefix(rule.path))}")
            value = rule.get(key)
            note = (f"does not set {key} ({kind})" if value is None
                    else f"{key} = {show_value(value)} ({kind})")
            out.append(_Source(2, label, value, note))
        return out

    def _hint_sources(self, path: str, xattrs: Mapping[str, bytes], refusal: str | None,
                      warnings: list[str]) -> list[_Source]:
        hints = self.config.hints
        out = []
        for name, hint_key in HINT_XATTRS:
            if name not in xattrs:
                continue
            label, raw = f"hint {name}", xattrs[name]
            shown = _show_bytes(raw)
            if not hints.enabled:
                out.append(_Source(4, label, None, f"{shown}: ignored, [hints] enabled = false"))
                continue
            if name.startswith("user.") and refusal is not None:
                warnings.append(f"{path}: xattr {name} = {shown} ignored: {refusal}")
                out.append(_Source(4, label, None, f"{shown}: ignored: {refusal}"))
                continue
            on = parse_hint(raw)
            if on is None:
                warnings.append(f"{path}: xattr {name} = {shown} ignored: not a boolean "
                                "(1/0, yes/no, true/false, on/off)")
                out.append(_Source(4, label, None, f"{shown}: invalid, ignored"))
            elif not on:
                out.append(_Source(4, label, None, f"{shown}: off"))
            else:
                value = getattr(hints, hint_key)
                out.append(_Source(4, label, value, f"{shown} -> [hints] {hint_key} = {value}"))
        return out


_WHY = {
    1: "trusted xattr: highest precedence",
    2: "most specific matching config rule",
    3: "user xattr, owner may rank this cgroup",
    4: "peer hint, first set in hint order",
    5: "no source gave a value",
}


def _xattr_source(layer: int, path: str, name: str, xattrs: Mapping[str, bytes],
                  refusal: str | None, warnings: list[str]) -> _Source:
    label = f"xattr {name}"
    if name not in xattrs:
        return _Source(layer, label, None, "not set")
    raw = xattrs[name]
    shown = _show_bytes(raw)
    if refusal is not None:
        warnings.append(f"{path}: xattr {name} = {shown} ignored: {refusal}")
        return _Source(layer, label, None, f"{shown}: ignored: {refusal}")
    value: int | bool | str | None
    if name in PRIORITY_XATTRS:
        value, allowed = parse_priority(raw), f"a decimal 0..{MAX_PRIORITY}"
    elif name in KILL_XATTRS:
        value, allowed = parse_kill(raw), "process or cgroup"
    else:
        value, allowed = parse_use_priority_oom(raw), "0 or 1"
    if value is None:
        warnings.append(f"{path}: xattr {name} = {shown} ignored: must be {allowed} "
                        "(ASCII, optional trailing newline)")
        return _Source(layer, label, None, f"{shown}: invalid, ignored")
    return _Source(layer, label, value, shown)


def _winner(sources: list[_Source]) -> _Source:
    """The first source with a value, or a conflict met before one."""
    return next(s for s in sources if s.value is not None or s.error is not None)
