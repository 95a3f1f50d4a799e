"""Shared fixtures of the unit tests.

``walk`` runs a selection test once per backend of the walk: the pure-Python
reference (``prioomd._select_py``) and the C core (``prioomd._select``). A C
core that cannot be imported skips its half with the reason, except in CI
(env ``CI`` set) or with ``PRIOOMD_REQUIRE_C=1``, where it is an error: there
a missing build must not pass as a green run of the Python half alone.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

from prioomd import _select_py

WALK_BACKENDS = ("python", "c")


def _c_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("PRIOOMD_REQUIRE_C") == "1"


def _c_backend() -> ModuleType:
    """prioomd._select, or skip (fail where the C core is required)."""
    try:
        return importlib.import_module("prioomd._select")
    except ImportError as exc:
        reason = (f"C walk prioomd._select not importable ({exc}); build it with "
                  "`pip install -e .` or `python setup.py build_ext --inplace`")
        if _c_required():
            pytest.fail(f"{reason} [required: CI or PRIOOMD_REQUIRE_C=1 is set]",
                        pytrace=False)
        pytest.skip(reason)


@pytest.fixture(params=WALK_BACKENDS)
def walk(request: pytest.FixtureRequest) -> ModuleType:
    """A module with the walk's ``select`` and its constants, once per backend."""
    if request.param == "python":
        return _select_py
    return _c_backend()


@pytest.fixture(scope="session")
def c_walk() -> ModuleType:
    """The C walk alone (skip/fail rule as for ``walk``); session-scoped, so
    hypothesis tests may use it."""
    return _c_backend()
