"""Untrusted text made safe to show: the one escape of every human-readable output.

Cgroup names, process names (``comm``), xattr values and the paths built from them
are chosen by tenants. Printed raw, an ESC or BEL drives the operator's terminal, a
newline splits a log line in two (and, where stderr is the journal stream, forges a
journal entry), U+202E reverses the text that follows. ``show`` escapes, as
systemd's ``cescape`` and ``ps`` do, every character that is not printable:

* ``\\a \\b \\t \\n \\v \\f \\r`` as those short escapes, the other C0 controls and
  DEL as ``\\xNN``;
* a byte that was not UTF-8 (read with ``surrogateescape``: a lone surrogate
  U+DC80..U+DCFF) as ``\\xNN``, the raw byte;
* every other non-printable code point as ``\\uNNNN`` or ``\\UNNNNNNNN``: C1
  controls, format characters (bidi overrides and isolates such as U+202E,
  zero-width characters, U+FEFF), line and paragraph separators, spaces other than
  the ASCII one (U+00A0 looks like a space and is not), other lone surrogates,
  private-use and unassigned code points (``str.isprintable``'s rule).

Printable text, backslashes included, is left alone: names stay readable and
systemd's own escapes in unit names (``system-systemd\\x2dfsck.slice``) read as
``systemctl`` shows them. The escape is therefore not reversible, and need not be:
the JSON outputs and the journal's ``PRIOOMD_*`` fields carry the raw value. It is
idempotent (its output has nothing left to escape), so a sink may escape again
what a caller already escaped.
"""

from __future__ import annotations

import logging
from typing import Any

_SHORT = {"\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f",
          "\r": "\\r"}
_SURROGATE_ESCAPE = range(0xDC80, 0xDD00)  # what surrogateescape makes of bytes 0x80..0xff


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _SHORT:
        return _SHORT[ch]
    if code < 0x80:
        return f"\\x{code:02x}"
    if code in _SURROGATE_ESCAPE:
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def show(text: str) -> str:
    """``text`` with every non-printable character escaped (see the module doc):
    one line, nothing a terminal obeys, always encodable as UTF-8."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


class EscapingFormatter(logging.Formatter):
    """A log formatter whose every record is one line: the message, with its
    arguments already substituted, goes through ``show``. So does each line of a
    traceback or stack, should one be logged (prioomd logs none): those keep their
    own line breaks."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return show(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return "\n".join(show(line) for line in super().formatException(ei).split("\n"))

    def formatStack(self, stack_info: str) -> str:
        return "\n".join(show(line) for line in super().formatStack(stack_info).split("\n"))
