"""Arming one PSI trigger: the kernel's rules, the 2 s rounding and the fallback.

A trigger is a PSI file opened O_RDWR|O_NONBLOCK with ``"<some|full> <stall_us>
<window_us>\\0"`` written into it; the fd then polls POLLPRI when the stall in
any window exceeds the threshold, and POLLERR once the cgroup is removed.

Kernel rules (kernel/sched/psi.c, psi_trigger_create): 0 < stall <= window and
0.5 s <= window <= 10 s; a writer without CAP_SYS_RESOURCE may only use
windows that are multiples of 2 s (its trigger rides the 2 s averaging work,
so it also fires with up to ~2 s latency). Measured on this project's host
(kernel 6.18, root without CAP_SYS_RESOURCE): 2, 4, 6, 8 and 10 s accepted;
0.5, 1, 3 s and anything not a multiple of 2 s give EINVAL; 12 s EINVAL.

``arm`` asks for the requested trigger; on EINVAL it rounds the window up to
the next multiple of 2 s, scales the stall to keep its share of the window,
and tries once more; if that fails too (or the file is missing or refuses
writes: psi=0, old kernels, EPERM) it reports "polling" with the reason.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass

from prioomd.errors import Vanished, is_gone

log = logging.getLogger(__name__)

WINDOW_MIN_US = 500_000  # kernel/sched/psi.c, psi_trigger_create()
WINDOW_MAX_US = 10_000_000
UNPRIVILEGED_WINDOW_US = 2_000_000  # without CAP_SYS_RESOURCE: multiples of 2 s (PSI_FREQ)


@dataclass(frozen=True)
class TriggerInfo:
    """What arming achieved: ``mode`` "trigger" (the kernel wakes us) or
    "polling" (read avg10 on every tick); the stall and window in effect;
    ``warning``: why the request was changed or refused ("" if it was not)."""

    mode: str
    kind: str
    stall_us: int
    window_us: int
    warning: str = ""


def rounded_window_us(window_us: int) -> int:
    """The next window an unprivileged writer may use: a multiple of 2 s, <= 10 s."""
    step = UNPRIVILEGED_WINDOW_US
    return min(-(-window_us // step) * step, WINDOW_MAX_US)


def trigger_spec(kind: str, stall_us: int, window_us: int) -> bytes:
    """What to write into a PSI file: ``b"some 150000 2000000\\0"``."""
    return f"{kind} {stall_us} {window_us}".encode() + b"\0"


def validate(kind: str, stall_us: int, window_us: int) -> None:
    """Raise ``ValueError`` for a request that no kernel accepts."""
    if kind not in ("some", "full"):
        raise ValueError(f"PSI trigger kind must be 'some' or 'full', got {kind!r}")
    if not WINDOW_MIN_US <= window_us <= WINDOW_MAX_US or not 0 < stall_us <= window_us:
        raise ValueError(f"PSI trigger needs 0 < stall_us <= window_us and a window of "
                         f"0.5..10 s, got {stall_us} us / {window_us} us")


def _check_gone(exc: OSError, path: str) -> None:
    """A cgroup PSI file (``*.pressure``) whose directory is gone means the cgroup
    is gone; a missing /proc/pressure means PSI is off (psi=0): that falls back."""
    if is_gone(exc) and path.endswith(".pressure") and not os.path.isdir(
            os.path.dirname(path)):
        raise Vanished(path) from exc


def _polling(kind: str, stall_us: int, window_us: int, why: str) -> tuple[None, TriggerInfo]:
    warning = f"{why}; falling back to polling avg10"
    log.warning("%s", warning)
    return None, TriggerInfo("polling", kind, stall_us, window_us, warning)


def arm(path: str, kind: str, stall_us: int, window_us: int) -> tuple[int | None, TriggerInfo]:
    """Open ``path`` and write the trigger. Returns the fd to poll for POLLPRI
    (None in polling mode) and what was achieved. Raises ``Vanished`` when the
    cgroup is gone and ``ValueError`` for an impossible request."""
    validate(kind, stall_us, window_us)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        _check_gone(exc, path)
        return _polling(kind, stall_us, window_us, f"cannot open {path}: {exc}")
    if os.fstat(fd).st_size > 0:
        # procfs and kernfs files report size 0; anything else (a fake tree, a
        # misconfigured path) would have the trigger written into its content.
        os.close(fd)
        return _polling(kind, stall_us, window_us, f"{path} is not a kernel PSI file")
    attempts = [(stall_us, window_us)]
    if window_us % UNPRIVILEGED_WINDOW_US:
        window = rounded_window_us(window_us)
        attempts.append((min(window, -(-stall_us * window // window_us)), window))
    refused: OSError | None = None
    for stall, window in attempts:
        try:
            os.write(fd, trigger_spec(kind, stall, window))
        except OSError as exc:
            refused = exc
            if exc.errno == errno.EINVAL:
                continue  # try the rounded window, if there is one
            break
        if (stall, window) == (stall_us, window_us):
            return fd, TriggerInfo("trigger", kind, stall, window)
        note = (f"PSI trigger '{kind} {stall_us} {window_us}' on {path} refused (EINVAL: "
                f"without CAP_SYS_RESOURCE windows must be multiples of 2 s); "
                f"using '{kind} {stall} {window}'")
        log.info("%s", note)
        return fd, TriggerInfo("trigger", kind, stall, window, note)
    os.close(fd)
    if refused is not None:
        _check_gone(refused, path)
    return _polling(kind, stall_us, window_us, f"PSI trigger on {path} refused: {refused}")
