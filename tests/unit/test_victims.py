"""victims.py: the connector only while a victim without a pidfd is awaited."""

from __future__ import annotations

import errno

from prioomd.events import PROC_KEY, Event
from prioomd.victims import Victims


class _Loop:
    def __init__(self, pidfds: bool):
        self.pidfds, self.watched, self.removed, self.connector = pidfds, [], [], False

    def watch_pid(self, key, pid):
        if not self.pidfds:
            raise OSError(errno.ENOSYS, "Function not implemented")
        self.watched.append(key)

    def enable_proc_events(self):
        self.connector = True

    def disable_proc_events(self):
        self.connector = False

    def remove(self, key):
        self.removed.append(key)


def test_victims_are_awaited_on_their_pidfds_without_the_connector():
    loop, v = _Loop(pidfds=True), Victims()
    v.watch(loop, 42)
    assert loop.watched == ["victim:42"] and not loop.connector and v
    assert v.exited(loop, Event("proc-exit", PROC_KEY, {"pid": 7})) is None  # a stranger
    assert v.exited(loop, Event("proc-exit", "victim:42", {"pid": 42})) == 42
    assert not v and loop.removed == ["victim:42"]


def test_without_pidfds_the_connector_is_on_only_while_a_victim_is_awaited():
    loop, v = _Loop(pidfds=False), Victims()
    v.watch(loop, 42)
    v.watch(loop, 43)
    assert loop.connector
    assert v.exited(loop, Event("proc-exit", PROC_KEY, {"pid": 42})) == 42
    assert loop.connector  # 43 is still awaited
    assert v.exited(loop, Event("proc-exit", PROC_KEY, {"pid": 43})) == 43
    assert not loop.connector
    assert v.exited(loop, Event("proc-exit", PROC_KEY, {"pid": 43})) is None  # once only
