"""Waiting for victims to exit, without waking on anyone else's exit.

A victim's exit comes from its pidfd (Linux >= 5.3). Only where a pidfd cannot
be had is the process-events connector subscribed, and only while such a
victim is awaited: subscribed, it wakes the daemon on every exit on the host
(5-6 s of CPU while 10,000 unrelated short processes ran, for nothing).
"""

from __future__ import annotations

import logging

from prioomd.events import PROC_KEY, Event, EventLoop

log = logging.getLogger(__name__)


class Victims:
    """The pids of signalled victims not yet seen gone, by watch key."""

    def __init__(self) -> None:
        self.pending: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self.pending)

    def watch(self, loop: EventLoop, pid: int) -> None:
        key = f"victim:{pid}"
        self.pending[key] = pid
        try:
            loop.watch_pid(key, pid)
        except OSError as exc:
            log.debug("pidfd for %d: %s; awaiting its exit on the connector", pid, exc)
            loop.enable_proc_events()

    def exited(self, loop: EventLoop, ev: Event) -> int | None:
        """The victim's pid if the ``proc-exit`` event ``ev`` is one of ours."""
        key = f"victim:{ev.detail.get('pid')}" if ev.key == PROC_KEY else ev.key
        pid = self.pending.pop(key, None)
        if pid is None:
            return None
        loop.remove(key)
        if not self.pending:
            loop.disable_proc_events()
        return pid
