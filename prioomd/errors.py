"""prioomd's exceptions and the one place where errno is translated.

Races are outcomes, not exceptions (STYLE §6): a cgroup or process that
disappears while we read or kill it is ``Vanished``; callers log it at debug
level and move on. Only bad configuration and bugs are fatal.
"""

from __future__ import annotations

import errno

# ENOENT: the cgroup directory or /proc/PID is gone; ESRCH: the process is
# gone; ENODEV: a kernfs file of a removed cgroup still open.
GONE_ERRNOS = frozenset({errno.ENOENT, errno.ESRCH, errno.ENODEV})


class PrioomdError(Exception):
    """Base class of prioomd's own errors."""


class ConfigError(PrioomdError):
    """Invalid configuration: the message names the file, the key and the value."""


class Vanished(PrioomdError):
    """The cgroup or process went away while we looked at it."""


def is_gone(exc: BaseException) -> bool:
    """True when an OSError means 'the object no longer exists'."""
    return isinstance(exc, OSError) and exc.errno in GONE_ERRNOS
