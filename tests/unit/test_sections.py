"""sections.py: one validation. check-config accepts exactly the configs the daemon
can build and arm (issue 7 item 4): every builder the daemon calls at start and on
reload is also called by config validation."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prioomd import config, daemon, snapshot
from prioomd.errors import ConfigError
from prioomd.events import EventLoop
from prioomd.sections import BUILDERS, DetectConfig, KillConfig
from tests import fakefs, trees

SRC = "/etc/prioomd/test.toml"
POLL_MS_MAX = 2**31 - 1  # poll(2) takes a C int of milliseconds
SECTION_KEYS = {"detect": config.keys_of(DetectConfig, "detect"),
                "kill": config.keys_of(KillConfig, "kill")}


@pytest.fixture(scope="module")
def roots() -> Iterator[snapshot.Sources]:
    """A root domain and a cgroup domain (/B with a memory.max), both enabled."""
    with tempfile.TemporaryDirectory() as base:
        cg, procs = trees.worked_example()
        cg["children"]["B"]["xattrs"][trees.UPO] = b"1"
        root = fakefs.make_cgroupfs(base, cg)
        with open(os.path.join(root, "B", "memory.max"), "w") as f:
            f.write(str(1 << 30))
        proc = fakefs.make_procfs(base, procs, meminfo_kb={"MemTotal": 4 << 20,
                                                           "MemAvailable": 3 << 20})
        yield snapshot.Sources(cgroup_root=root, proc_root=proc)


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (\\u0000 for NUL)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return str(value)


def _text(values: dict[str, dict[str, Any]]) -> str:
    out = ["[root]\nuse_priority_oom = true\n[audit]\nfile = \"\"\njournal = false\n"]
    for section, keys in values.items():
        out.append(f"[{section}]\n" + "".join(f"{k} = {_toml_value(v)}\n"
                                               for k, v in keys.items()))
    return "".join(out)


def _pollable(seconds: float) -> bool:
    return math.isfinite(seconds) and 0 <= math.ceil(seconds * 1000) <= POLL_MS_MAX


def builds_and_arms(values: dict[str, dict[str, Any]], sources: snapshot.Sources) -> bool:
    """What ``prioomd run`` does with a config, short of waiting: build the daemon
    (thresholds, gate, guard, killer), arm every enabled domain, take one wake-up,
    and hand poll(2) the waits it would (loop tick, SIGTERM grace, kill confirm)."""
    cfg = config.Config(source=SRC, root=config.RootConfig(use_priority_oom=True),
                        audit=config.AuditConfig(file="", journal=False),
                        detect=DetectConfig(**values.get("detect", {})),
                        kill=KillConfig(**values.get("kill", {})))
    try:
        d = daemon.Daemon(cfg, None, sources, dry_run=True, protect=lambda: [],
                          loop_factory=lambda: EventLoop(signals=False))
        with EventLoop(signals=False) as loop:
            d.loop = loop
            d._arm(loop)
            armed = set(d.states) == {"/", "/B"}
            d._handle(loop, [])
            waits = [d._timeout(), d.killer.policy.sigterm_grace_s,
                     d.killer.policy.confirm_timeout_s, d.gate.delay_s]
        d.guard.restore_all()
    except (ValueError, OverflowError, ArithmeticError):
        return False
    return armed and all(_pollable(w) for w in waits)


def accepts(values: dict[str, dict[str, Any]]) -> bool:
    try:
        config.parse_config(_text(values), SRC)
    except ConfigError:
        return False
    return True


_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1.0, 200.0),
    st.sampled_from([0.0, 0.005, 0.01, 0.1, 1.0, 5.0, 60.0, 61.0, 100.0, 600.0, 3600.0,
                     1e9, 1e300]),
)
_INTS = st.one_of(st.integers(-5, 20_000), st.sampled_from([0, 1, 500, 10_000, 2**40, 10**30]))


_STRS = st.sampled_from(["", "/usr/bin/true", "relative/hook", "/a\x00b", "/"])


def _value(kind: type) -> st.SearchStrategy[Any]:
    return (_FLOATS if kind is float else _INTS if kind is int else _STRS if kind is str
            else st.booleans())


@st.composite
def configs(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    """Some keys of [detect] and [kill] set, each to a typed value (wrong types are
    refused by the type check, tested in test_options)."""
    out: dict[str, dict[str, Any]] = {}
    for section, keys in SECTION_KEYS.items():
        chosen = draw(st.lists(st.sampled_from(keys), max_size=4, unique_by=lambda k: k.name))
        out[section] = {k.name: draw(_value(k.kind)) for k in chosen}
    return out


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(values=configs())
def test_check_config_accepts_exactly_what_the_daemon_builds_and_arms(
        values: dict[str, dict[str, Any]], roots: snapshot.Sources) -> None:
    assert accepts(values) == builds_and_arms(values, roots), _text(values)


@pytest.mark.parametrize(("section", "key", "value"), [
    ("detect", "mem_available_floor_pct", 20.0),  # above mem_available_pct (10)
    ("detect", "poll_min_s", 5.0),  # above poll_max_s (1)
    ("detect", "headroom_min_mib", 2000),  # above headroom_max_mib (1024)
    ("detect", "poll_max_s", float("inf")),  # OverflowError in the loop
    ("detect", "trigger_stall_ms", 3000),  # above the window: no domain armed
    ("kill", "confirm_timeout_s", 1e300),  # OverflowError in poll at kill time
])
def test_issue_cases_are_refused_and_would_not_build(section: str, key: str, value: Any,
                                                      roots: snapshot.Sources) -> None:
    values = {section: {key: value}}
    with pytest.raises(ConfigError) as info:
        config.parse_config(_text(values), SRC)
    assert f"{SRC}: [{section}] {key} = {_toml_value(value)}:" in str(info.value)
    assert not builds_and_arms(values, roots)


def test_defaults_build_and_arm(roots: snapshot.Sources) -> None:
    assert accepts({}) and builds_and_arms({}, roots)


def test_every_builder_is_a_method_of_its_section() -> None:
    for name, builders in BUILDERS.items():
        for build in builders:
            assert build(config.SECTIONS[name]()) is not None
