"""Configuration: TOML text -> validated, frozen ``Config`` (STYLE §11, stage 2).

``prioomd check-config`` stops after this stage. Every problem is reported as a
``ConfigError`` whose message names the file, the key (``[daemon] max_candidates``,
``[[cgroup]] #3 (path "/a/*") priority``) and the bad value, and says what is allowed;
all problems of a file are reported together, one per line.

The schema is declarative (``prioomd.options``). A section is a frozen dataclass whose
fields are declared with ``option(default, doc, check)``; the field's annotation is its
TOML type. To add a section (``[detect]``, ``[kill]``, ...):

1. write ``class DetectConfig`` with ``option(...)`` fields, its docstring the
   section's documentation;
2. add ``"detect": DetectConfig`` to ``SECTIONS``;
3. add ``detect: DetectConfig = field(default_factory=DetectConfig)`` to ``Config``.

Validation, unknown-key errors, ``defaults()`` and ``schema()`` (from which the docs
and ``--help`` are generated) then cover it with no further code.

Cgroup rules (``[[cgroup]]``) are globs on the path relative to the cgroup root (syntax
in ``prioomd.glob``), compiled once here. Specificity decides between rules that match
the same path, see ``Rule.specificity``; two equally specific rules that disagree are a
configuration error (detected here where the patterns alone prove it, in ``table``
otherwise).
"""

from __future__ import annotations

import difflib
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prioomd.errors import ConfigError
from prioomd.glob import Glob, compile_glob, is_exact, literal_prefix
from prioomd.options import (
    Check,
    KeyInfo,
    at_least,
    check_table,
    keys_of,
    option,
    show_value,
)
from prioomd.sections import (
    BUILDERS,
    AuditConfig,
    DetectConfig,
    GuardConfig,
    KillConfig,
    MetricsConfig,
)
from prioomd.textsafe import show

DEFAULT_CONFIG_PATH = "/etc/prioomd/prioomd.toml"
BUILTIN_SOURCE = "built-in defaults"  # Config.source when no file was read
MAX_PRIORITY = 12  # MEMCG_OOM_PRIORITY, spec §1.1
RULES_KEY = "cgroup"  # the [[cgroup]] array of tables
# Far above any real file (10^4 rules are ~1 MiB); a bound on what a reload reads.
MAX_CONFIG_BYTES = 16 << 20

PRIORITY = Check(lambda v: 0 <= v <= MAX_PRIORITY, f"0..{MAX_PRIORITY}")
KILL_MODES = ("process", "cgroup")  # kill granularity: the worst process, or the whole cgroup
KILL_MODE = Check(lambda v: v in KILL_MODES, 'one of "process", "cgroup"')
ABSOLUTE_PATH = Check(lambda v: v.startswith("/") and "\0" not in v,
                      'starting with "/", without NUL characters')


# --- the sections (declared with prioomd.options) ---------------------------------


@dataclass(frozen=True)
class DaemonConfig:
    """[daemon]: where prioomd looks and how many victims it ranks."""

    cgroup_root: str | None = option(
        None,
        "Path of the cgroup v2 mount. Unset: /sys/fs/cgroup when that is cgroup2, "
        "else the cgroup2 mount found in /proc/self/mounts.",
        ABSOLUTE_PATH,
    )
    kernel_compat: bool = option(
        False,
        "Reproduce the kernel's over-count of unkillable processes (spec §6.1) "
        "instead of the rule the patch intends.",
    )
    max_candidates: int = option(
        5, "How many ranked victims a decision carries (the kill path falls through).",
        at_least(1),
    )
    max_watches: int | None = option(
        None,
        "Most inotify watches prioomd takes to find new cgroups (one per cgroup "
        "directory). Unset: a quarter of fs.inotify.max_user_watches, a limit every "
        "program of the same user shares. Cgroups past it are rescanned, 256 a second.",
        at_least(1),
    )


@dataclass(frozen=True)
class RootConfig:
    """[root]: the root cgroup, i.e. global (system-wide) memory pressure."""

    use_priority_oom: bool = option(
        False,
        "Use priority selection for global OOM (memory.use_priority_oom of the root; "
        "the kernel's default is false, the shipped file sets true).",
    )


@dataclass(frozen=True)
class HintsConfig:
    """[hints]: the peers' xattrs (systemd-oomd, oomd) mapped to priorities (layer 4)."""

    enabled: bool = option(True, "Read the peers' xattrs at all.")
    oomd_avoid: int = option(
        10, "Priority for user.oomd_avoid (systemd-oomd) and trusted.oomd_avoid (oomd).",
        PRIORITY,
    )
    oomd_omit: int = option(12, "Priority for user.oomd_omit (systemd-oomd).", PRIORITY)
    oomd_prefer: int = option(0, "Priority for trusted.oomd_prefer (oomd).", PRIORITY)


@dataclass(frozen=True)
class _RuleKeys:
    """[[cgroup]]: one rule; path plus priority and/or use_priority_oom."""

    path: str | None = option(
        None, "Glob on the cgroup path relative to the cgroup root (required).",
        ABSOLUTE_PATH,
    )
    priority: int | None = option(
        None, "Priority among siblings, higher = more important (killed later).", PRIORITY
    )
    use_priority_oom: bool | None = option(
        None, "Use priority selection when this cgroup's own memory.max is hit."
    )
    kill: str | None = option(
        None, 'Kill granularity when the walk stops here: "process" (the worst process) '
        'or "cgroup" (the whole cgroup; memory.oom.group still widens either).', KILL_MODE,
    )


SECTIONS: dict[str, type] = {
    "daemon": DaemonConfig,
    "root": RootConfig,
    "hints": HintsConfig,
    "detect": DetectConfig,
    "kill": KillConfig,
    "guard": GuardConfig,
    "audit": AuditConfig,
    "metrics": MetricsConfig,
}
_SECTION_KEYS = {name: keys_of(cls, name) for name, cls in SECTIONS.items()}
_RULE_KEYS = keys_of(_RuleKeys, f"[{RULES_KEY}]")


def schema() -> tuple[KeyInfo, ...]:
    """Every documented key: the sections in order, then the keys of a [[cgroup]] rule."""
    return tuple(k for keys in _SECTION_KEYS.values() for k in keys) + _RULE_KEYS


def defaults() -> dict[str, dict[str, Any]]:
    """The default of every section key (None: unset), for docs and --help."""
    return {name: {k.name: k.default for k in keys} for name, keys in _SECTION_KEYS.items()}


# --- rules ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One ``[[cgroup]]`` entry, validated, its glob compiled."""

    number: int  # 1-based position in the file: the "#N" of messages
    path: str  # the glob as written
    priority: int | None
    use_priority_oom: bool | None
    glob: Glob = field(repr=False, compare=False)
    kill: str | None = None  # "process" | "cgroup"

    @classmethod
    def make(cls, number: int, path: str, priority: int | None = None,
             use_priority_oom: bool | None = None, kill: str | None = None) -> Rule:
        """Build a rule (compiles the glob; ValueError when it is invalid)."""
        return cls(number, path, priority, use_priority_oom, compile_glob(path), kill)

    @property
    def exact(self) -> bool:
        return is_exact(self.path)

    @property
    def specificity(self) -> tuple[int, int]:
        """Larger is more specific: an exact path beats any glob; among globs, a
        longer literal prefix beats a shorter one."""
        return (1 if self.exact else 0, len(literal_prefix(self.path)))

    @property
    def label(self) -> str:
        return f"[[{RULES_KEY}]] #{self.number} (path {show_value(self.path)})"

    def matches(self, cgroup_path: str) -> bool:
        return self.glob.matches(cgroup_path)

    def get(self, key: str) -> int | bool | str | None:
        value: int | bool | str | None = getattr(self, key)
        return value


RULE_SETTINGS = ("priority", "use_priority_oom", "kill")  # what a rule can set, resolved apart


@dataclass(frozen=True)
class Config:
    """The validated configuration; ``Config()`` is the built-in defaults."""

    source: str = BUILTIN_SOURCE  # the file it came from, for messages and Setting.source
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    root: RootConfig = field(default_factory=RootConfig)
    hints: HintsConfig = field(default_factory=HintsConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    kill: KillConfig = field(default_factory=KillConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    rules: tuple[Rule, ...] = ()


# --- loading ----------------------------------------------------------------------


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate a config file.

    ``None`` means DEFAULT_CONFIG_PATH, and its absence means the built-in defaults;
    a path given explicitly must exist. Raises ConfigError.
    """
    explicit = path is not None
    name = os.fspath(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        raw = _read_regular(name)
    except FileNotFoundError:
        if not explicit:
            return Config()
        raise ConfigError(f"{name}: configuration file not found") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the configuration file: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (byte {exc.start}): TOML files are UTF-8") \
            from None
    return parse_config(text, name)


def _read_regular(name: str) -> bytes:
    """The bytes of a regular file (symlinks followed); ConfigError for anything else.

    Opened non-blocking, so that a FIFO cannot hang ``check-config`` or a reload before
    fstat() shows what it is; a device or a directory is refused the same way."""
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{name}: not a regular file ({_file_kind(st.st_mode)}): the "
                              "configuration must be a regular file (or a symlink to one)")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{name}: {st.st_size} bytes: a configuration file is at most "
                              f"{MAX_CONFIG_BYTES} bytes")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    for test, word in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return word
    return "not a file"


def parse_config(text: str, source: str) -> Config:
    """Validate TOML text; ``source`` names it in messages. Raises ConfigError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError(f"{source}: invalid TOML: arrays or inline tables nested too "
                          "deeply") from None
    except ValueError as exc:  # an integer past Python's 4300-digit conversion limit
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    problems: list[str] = []
    sections: dict[str, Any] = {}
    rules: list[Rule] = []
    for key, value in data.items():
        if key in SECTIONS:
            if isinstance(value, dict):
                sections[key] = _build_section(SECTIONS[key], value, key, source, problems)
            else:
                problems.append(f"{source}: {key} = {show_value(value)}: must be a table, [{key}]")
        elif key == RULES_KEY:
            rules = _build_rules(value, source, problems)
        else:
            problems.append(f"{source}: {_unknown_top_level(key, value)}")
    if not problems:
        problems.extend(_rule_conflicts(rules, source))
        problems.extend(_runtime_problems(sections, source))
    if problems:
        # One line per problem: a key can hold a newline (a quoted TOML key).
        raise ConfigError("\n".join(show(p) for p in problems))
    return Config(source=source, rules=tuple(rules), **sections)


def _build_section(cls: type, table: Mapping[str, Any], section: str, source: str,
                   problems: list[str]) -> Any:
    values = check_table(table, _SECTION_KEYS[section], f"[{section}]", source, problems)
    return cls(**values)


def _runtime_problems(sections: Mapping[str, Any], source: str) -> list[str]:
    """Relations between keys, then every runtime object the daemon builds from a
    section (``sections.BUILDERS``): what they refuse would crash ``run`` or a reload."""
    problems = []
    for name, cls in SECTIONS.items():
        built = sections.get(name, cls())
        for rel in getattr(cls, "RELATIONS", ()):
            lesser, greater = getattr(built, rel.lesser), getattr(built, rel.greater)
            if lesser > greater:
                problems.append(f"{source}: [{name}] {rel.lesser} = {show_value(lesser)}: must be "
                                f"<= {rel.greater} ({show_value(greater)}): {rel.why}")
        if problems:
            continue
        for build in BUILDERS.get(name, ()):
            try:
                build(built)
            except ValueError as exc:
                problems.append(f"{source}: [{name}]: {exc}")
    return problems


def _build_rules(value: Any, source: str, problems: list[str]) -> list[Rule]:
    if isinstance(value, dict):
        problems.append(f"{source}: [{RULES_KEY}]: cgroup rules are an array of tables: "
                        f"write [[{RULES_KEY}]], once per rule")
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        problems.append(f"{source}: {RULES_KEY} = {show_value(value)}: cgroup rules are an array "
                        f"of tables: write [[{RULES_KEY}]], once per rule")
        return []
    rules = []
    for number, table in enumerate(value, start=1):
        path = table.get("path")
        where = f"[[{RULES_KEY}]] #{number}"
        if isinstance(path, str):
            where += f" (path {show_value(path)})"
        before = len(problems)
        keys = check_table(table, _RULE_KEYS, where, source, problems)
        if "path" not in table:
            problems.append(f"{source}: {where}: missing required key path "
                            '(a glob relative to the cgroup root, e.g. "/system.slice/*")')
            continue
        if len(problems) > before:
            continue
        if path == "/":
            problems.extend(_root_rule_problems(table, where, source))
            continue
        if not any(k in keys for k in RULE_SETTINGS):
            problems.append(f"{source}: {where}: sets nothing: give priority (0..{MAX_PRIORITY}), "
                            'use_priority_oom (true or false) and/or kill ("process" or "cgroup")')
            continue
        try:
            rules.append(Rule.make(number, path, keys.get("priority"),
                                   keys.get("use_priority_oom"), keys.get("kill")))
        except ValueError as exc:
            problems.append(f"{source}: {where} path = {show_value(path)}: {exc}")
    return rules


def _root_rule_problems(table: Mapping[str, Any], where: str, source: str) -> list[str]:
    fix = "configure the root in [root] (use_priority_oom), not in a rule"
    problems = []
    if "priority" in table:
        problems.append(f"{source}: {where} priority = {show_value(table['priority'])}: the root "
                        f"cgroup has no priority (no siblings, spec §1.4); {fix}")
    if "use_priority_oom" in table:
        problems.append(f"{source}: {where} use_priority_oom = "
                        f"{show_value(table['use_priority_oom'])}: {fix}")
    return problems or [f"{source}: {where}: {fix}"]


def _rule_conflicts(rules: list[Rule], source: str) -> list[str]:
    """Equally specific rules that can match one path and disagree (load-time part).

    Identical patterns, or patterns where one's text is matched by the other, are
    proved to overlap here; any other overlap is caught when a path hits both
    (``table.PriorityTable.resolve``).
    """
    problems = []
    for i, a in enumerate(rules):
        for b in rules[i + 1:]:
            if a.specificity != b.specificity:
                continue
            if a.path == b.path:
                witness = a.path
            elif b.matches(a.path):
                witness = a.path
            elif a.matches(b.path):
                witness = b.path
            else:
                continue
            for key in RULE_SETTINGS:
                va, vb = a.get(key), b.get(key)
                if va is not None and vb is not None and va != vb:
                    problems.append(
                        f"{source}: {a.label} and {b.label} are equally specific, both match "
                        f"{show_value(witness)} and disagree on {key} "
                        f"({show_value(va)} vs {show_value(vb)}): "
                        "make them agree, or make one more specific (an exact path, or a "
                        "longer literal prefix before the first wildcard)")
    return problems


def _unknown_top_level(key: str, value: Any) -> str:
    names = [*SECTIONS, RULES_KEY]
    if isinstance(value, dict):
        close = difflib.get_close_matches(key, names, n=1)
        hint = f"; did you mean [{close[0]}]?" if close else ""
        return f"[{key}]: unknown section{hint} (known: {', '.join(names)})"
    homes = [s for s, keys in _SECTION_KEYS.items() if any(k.name == key for k in keys)]
    if homes:
        hint = f"; it belongs in [{homes[0]}]"
    else:
        close = difflib.get_close_matches(key, names, n=1)
        hint = f"; did you mean [{close[0]}]?" if close else ""
    return f"{key} = {show_value(value)}: unknown key at the top level{hint}"
