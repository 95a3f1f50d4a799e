"""Contain a bug to the unit of work it broke: log it, count it, carry on.

The daemon runs each event, each domain's check and the wait itself through a
``Containment``: no bookkeeping error may end the loop that stands between the
machine and its OOM killer. The traceback is logged the first time a kind of
failure (where, which exception) is met; repeats at most every ``repeat_s``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("prioomd.daemon")

REPEAT_S = 30.0  # a repeating failure is reported at most this often


class Containment:
    """``contain(what, fn, *args)``: True when ``fn(*args)`` returned, False when it
    raised (logged and counted in ``count``)."""

    def __init__(self, clock: Callable[[], float], repeat_s: float = REPEAT_S) -> None:
        self.count = 0
        self._clock = clock
        self._repeat_s = repeat_s
        self._quiet_until: dict[tuple[str, str], float] = {}

    def __call__(self, what: str, fn: Callable[..., object], *args: object) -> bool:
        try:
            fn(*args)
            return True
        except Exception as exc:  # the point: contain, log, count, carry on
            self.count += 1
            kind, now = (what, type(exc).__name__), self._clock()
            if kind not in self._quiet_until:
                log.exception("internal error in %s (carrying on; %d so far)", what,
                              self.count)
            elif now >= self._quiet_until[kind]:
                log.error("internal error in %s again: %r (carrying on; %d so far)", what,
                          exc, self.count)
            else:
                return False
            self._quiet_until[kind] = now + self._repeat_s
            return False
