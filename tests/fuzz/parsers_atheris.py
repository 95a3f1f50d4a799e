"""Coverage-guided fuzzing of the parsers of untrusted input with atheris.

Not collected by pytest. Run: ``bash tests/fuzz/run-atheris.sh SECONDS parsers``.
The first byte of an input picks the parser, the rest is its input (text decoded
as the readers decode it, or raw bytes for xattrs and netlink). A parser must
return or raise its documented exception (ValueError; ConfigError for the
config); anything else stops the run with the input saved.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports():
    from prioomd import cgparse, config, proc_connector, procfs, table, textsafe
    from prioomd.errors import ConfigError


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


def _config(data: bytes) -> object:
    try:
        return config.parse_config(_text(data), "fuzz.toml")
    except ConfigError:
        return None


def _xattr(data: bytes) -> object:
    return (table.parse_priority(data), table.parse_use_priority_oom(data),
            table.parse_hint(data))


def _show(data: bytes) -> object:
    shown = textsafe.show(_text(data))
    if not shown.isprintable() or textsafe.show(shown) != shown:
        raise AssertionError(f"show({_text(data)!r}) = {shown!r}")
    return shown


TARGETS: list[Callable[[bytes], object]] = [
    lambda d: procfs.parse_stat(_text(d)),
    lambda d: procfs.parse_status(_text(d)),
    lambda d: procfs.parse_pid_cgroup(_text(d)),
    lambda d: procfs.parse_meminfo(_text(d)),
    lambda d: procfs.parse_vmstat(_text(d)),
    lambda d: procfs.parse_oom_score_adj(_text(d)),
    lambda d: cgparse.parse_pressure(_text(d)),
    lambda d: cgparse.parse_flat_keyed(_text(d)),
    lambda d: cgparse.parse_max(_text(d)),
    lambda d: cgparse.parse_procs(_text(d)),
    lambda d: cgparse.parse_controllers(_text(d)),
    lambda d: cgparse.hierarchy_path("/sys/fs/cgroup/x", _text(d)),
    proc_connector.parse_datagram,
    _xattr,
    _config,
    _show,
]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    target = TARGETS[data[0] % len(TARGETS)]
    try:
        target(data[1:])
    except ValueError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
