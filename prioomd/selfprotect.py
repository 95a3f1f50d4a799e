"""Keep the daemon alive under the pressure it exists to relieve.

``protect_self()`` runs once at start, after every import (so the locked image
already holds all the code the kill path needs): ``mlockall`` so our pages are
never reclaimed or swapped out from under the kill path, and oom_score_adj
-1000 so the kernel's OOM killer never picks us. Neither is fatal: each failure
is returned as a warning for the caller to log, and the daemon carries on.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from prioomd.syscalls import MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT, mlockall

OOM_SCORE_ADJ_MIN = -1000  # include/uapi/linux/oom.h


def lock_memory(lock: Callable[[int], None] = mlockall) -> str | None:
    """mlockall(MCL_CURRENT|MCL_FUTURE|MCL_ONFAULT); kernels before 4.4 reject
    MCL_ONFAULT with EINVAL, so retry without it. A warning or None."""
    flags = MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT
    try:
        lock(flags)
        return None
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            return f"mlockall failed ({exc.strerror}): memory pressure may page out prioomd"
    try:
        lock(flags & ~MCL_ONFAULT)
        return None
    except OSError as exc:
        return f"mlockall failed ({exc.strerror}): memory pressure may page out prioomd"


def set_oom_score_adj(proc_root: str = "/proc", value: int = OOM_SCORE_ADJ_MIN,
                      pid: int | str = "self") -> str | None:
    """Write ``value`` to /proc/PID/oom_score_adj (ours by default). Lowering it needs
    CAP_SYS_RESOURCE (EACCES without it). A warning or None."""
    path = f"{proc_root}/{pid}/oom_score_adj"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)
    except OSError as exc:
        hint = " (needs CAP_SYS_RESOURCE)" if exc.errno in (errno.EACCES, errno.EPERM) else ""
        who = "prioomd" if pid == "self" else f"pid {pid}"
        return (f"cannot set oom_score_adj {value} on {who}: {exc.strerror}{hint}; "
                f"the kernel's OOM killer may pick {who}")
    return None


def protect_self(
    proc_root: str = "/proc", *, lock: Callable[[int], None] = mlockall
) -> list[str]:
    """Lock our memory and opt out of the kernel's OOM killer; the warnings
    of whatever did not work (empty when both did)."""
    return [w for w in (lock_memory(lock), set_oom_score_adj(proc_root)) if w]
