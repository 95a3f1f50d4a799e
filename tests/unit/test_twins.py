"""twins: a C module where it was built, its Python twin always."""

from __future__ import annotations

from prioomd import _idle_py, _select_py, twins


def test_the_twin_serves_when_the_c_module_is_missing() -> None:
    assert twins.backends(_select_py, "prioomd._not_built") == {"python": _select_py}


def test_a_built_c_module_is_offered_beside_its_twin() -> None:
    found = twins.backends(_idle_py, "prioomd._idle")
    assert found["python"] is _idle_py
    assert found["c"].__name__ == "prioomd._idle"  # tests/setup.sh builds it (C required)
