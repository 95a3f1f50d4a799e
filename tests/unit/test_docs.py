"""The README's command reference and `prioomd --help` stay in sync."""

from __future__ import annotations

import argparse
from pathlib import Path

from prioomd import cli

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_command_and_option_is_in_the_readme():
    for name, sub in _subparsers(cli.build_parser()).items():
        assert f"prioomd {name}" in README, name
        for action in sub._actions:
            if action.help == argparse.SUPPRESS:
                continue
            for opt in action.option_strings:
                if opt.startswith("--") and opt != "--help":
                    assert opt in README, f"{name} {opt}"


def test_readme_starts_with_the_two_commands():
    first = [line.strip() for line in README.splitlines()[1:5] if line.strip()]
    assert first[0].startswith("bash tests/setup.sh") and "prioomd" in first[0]
    assert first[1] == "bash tests/setup.sh && bash tests/run.sh"
