"""sd_notify: READY, STATUS, WATCHDOG and STOPPING for a Type=notify unit.

systemd-python's ``systemd.daemon.notify`` when it is installed; otherwise the
datagram protocol itself (a few lines: one AF_UNIX datagram to $NOTIFY_SOCKET).
Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def _raw_sender(environ: Mapping[str, str]) -> Callable[[str], bool] | None:
    path = environ.get("NOTIFY_SOCKET")
    if not path:
        return None
    address = "\0" + path[1:] if path.startswith("@") else path

    def send(state: str) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto(state.encode(), address)
            except OSError as exc:
                log.debug("sd_notify failed: %s", exc)
                return False
        return True

    return send


def _library_sender(environ: Mapping[str, str]) -> Callable[[str], bool] | None:
    if not environ.get("NOTIFY_SOCKET"):
        return None
    try:  # by name: the repo's systemd/ directory would shadow it for mypy
        sd_daemon = importlib.import_module("systemd.daemon")
    except ImportError:
        return None
    return lambda state: bool(sd_daemon.notify(state))


class Notifier:
    """Talks to the service manager; ``watchdog_interval_s`` is how often to ping."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._send = _library_sender(env) or _raw_sender(env)
        self.watchdog_interval_s: float | None = None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        if usec and usec.isdigit() and (not pid or pid == str(os.getpid())):
            # Ping at a third of the timeout: two missed wake-ups still pass.
            self.watchdog_interval_s = int(usec) / 1e6 / 3

    @property
    def active(self) -> bool:
        return self._send is not None

    def _notify(self, state: str) -> None:
        if self._send is not None:
            self._send(state)

    def ready(self, status: str) -> None:
        self._notify(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self._notify(f"STATUS={status}")

    def watchdog(self) -> None:
        if self.watchdog_interval_s is not None:
            self._notify("WATCHDOG=1")

    def reloading(self) -> None:
        self._notify("RELOADING=1")

    def stopping(self) -> None:
        self._notify("STOPPING=1")
