"""contain: a bug in one unit of work is logged, counted and survived."""

from __future__ import annotations

import logging

import pytest

from prioomd.contain import Containment


def _bug() -> None:
    raise KeyError("victim:42")


def test_contained_bugs_are_counted_and_their_traceback_logged_once(caplog):
    now = [0.0]
    contain = Containment(lambda: now[0], repeat_s=30.0)
    with caplog.at_level(logging.ERROR):
        assert contain("a proc-exit event", lambda: None) is True
        for t in (0.0, 1.0, 29.0, 30.0):
            now[0] = t
            assert contain("a proc-exit event", _bug) is False
        contain("the check of /", _bug)  # another place: its own first traceback
    assert contain.count == 5
    with_tb = [r for r in caplog.records if r.exc_info]
    assert len(with_tb) == 2
    assert len(caplog.records) == 3  # at 0 s (traceback), at 30 s (repeat), the other place
    assert "again" in caplog.records[1].getMessage()


def test_base_exceptions_are_not_contained():
    contain = Containment(lambda: 0.0)

    def stop() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        contain("x", stop)
    assert contain.count == 0
