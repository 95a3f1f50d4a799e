"""textsafe: tenants' text shown on one line, with nothing a terminal obeys."""

from __future__ import annotations

import io
import logging
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prioomd.textsafe import EscapingFormatter, show


@pytest.mark.parametrize(("raw", "shown"), [
    ("system.slice", "system.slice"),
    ("", ""),
    ("café ünïcode 日本", "café ünïcode 日本"),
    ("evil\x1b[31mred\x07", "evil\\x1b[31mred\\a"),
    ("a\nKilled pid 1", "a\\nKilled pid 1"),
    ("tab\there\rcr\x0bvt\x0cff\x08bs", "tab\\there\\rcr\\vvt\\fff\\bbs"),
    ("nul\x00del\x7f", "nul\\x00del\\x7f"),
    ("c1\x85\x9b", "c1\\u0085\\u009b"),  # NEL and CSI as code points
    ("bad\udcff\udc80", "bad\\xff\\x80"),  # bytes 0xff 0x80 read with surrogateescape
    ("lone\ud800", "lone\\ud800"),  # a surrogate no byte decodes to
    ("abc\u202edef", "abc\\u202edef"),  # RIGHT-TO-LEFT OVERRIDE
    ("\u2066iso\u2069 \u200bzw\ufeff", "\\u2066iso\\u2069 \\u200bzw\\ufeff"),
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("nb\u00a0sp", "nb\\u00a0sp"),  # looks like a space, is not one
    ("tag\U000e0001", "tag\\U000e0001"),  # LANGUAGE TAG, a format character
    ("system-systemd\\x2dfsck.slice", "system-systemd\\x2dfsck.slice"),  # systemd's escape
])
def test_show(raw: str, shown: str) -> None:
    assert show(raw) == shown


@settings(max_examples=300)
@given(st.text(alphabet=st.characters(codec=None)))
def test_show_is_one_printable_line_encodable_and_idempotent(text: str) -> None:
    shown = show(text)
    assert shown.isprintable()  # no control, format, separator or surrogate left
    assert "\n" not in shown and "\r" not in shown
    shown.encode("utf-8")  # no lone surrogate left
    assert show(shown) == shown
    if text.isprintable():
        assert shown == text


@settings(max_examples=200)
@given(st.binary())
def test_show_of_kernel_bytes(raw: bytes) -> None:
    """A name read as bytes and decoded with surrogateescape: every byte that is
    not UTF-8 shows as \\xNN, the rest as text."""
    shown = show(raw.decode("utf-8", errors="surrogateescape"))
    assert shown.isprintable()
    if raw.isascii() and raw.decode().isprintable():
        assert shown == raw.decode()


def _log_through_formatter(msg: str, *args: object) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(EscapingFormatter("prioomd: %(levelname)s: %(message)s"))
    logger = logging.getLogger("prioomd.test_textsafe")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning(msg, *args)
    finally:
        logger.removeHandler(handler)
    return out.getvalue()


def test_formatter_keeps_one_record_on_one_line() -> None:
    text = _log_through_formatter("Killed process %d (%s) in %s", 4242,
                                  "a\nKilled pid 1) x", "/evil\x1b]0;pwned\x07")
    assert text == ("prioomd: WARNING: Killed process 4242 (a\\nKilled pid 1) x) in "
                    "/evil\\x1b]0;pwned\\a\n")


def test_formatter_escapes_a_message_without_arguments() -> None:
    assert _log_through_formatter("x\udcffy\u202e") == "prioomd: WARNING: x\\xffy\\u202e\n"


def test_formatter_escapes_each_traceback_line() -> None:
    formatter = EscapingFormatter("%(message)s")
    try:
        raise ValueError("bad \x1b[2J name")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None,
                                   exc_info=sys.exc_info())
    text = formatter.format(record)
    assert "\x1b" not in text and "bad \\x1b[2J name" in text
    assert text.startswith("failed\nTraceback")
