"""prioomd's C modules and their pure-Python twins (STYLE §9): same contract, and
the twin serves where the C module was not built (no compiler at install time)."""

from __future__ import annotations

import importlib
from types import ModuleType


def backends(python_twin: ModuleType, c_module: str) -> dict[str, ModuleType]:
    """{"python": twin, "c": the C module when it imports}."""
    found = {"python": python_twin}
    try:
        found["c"] = importlib.import_module(c_module)
    except ImportError:
        pass
    return found
