"""What the hypothesis fuzz tests (tests/unit/test_fuzz_*.py) share.

Every parser of untrusted input gets arbitrary input and near-valid input, and
must give its documented result or raise its documented exception, never
another one. ``PRIOOMD_FUZZ_EXAMPLES`` sets the examples per test (default 200,
which keeps the unit tier fast); a long run:

    PRIOOMD_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/unit -k fuzz -p no:cacheprovider
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("PRIOOMD_FUZZ_EXAMPLES", "200"))

fuzz = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

T = TypeVar("T")

# Words a kernel file is made of, and words that break parsers that trust it.
WORDS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["0", "-0", "+1", "max", "kB", "MB", "1_000", "0x10", "1e3", "nan", "inf",
                     "١٢", "½", "some", "full", "avg10=1.00", "total=", "=", "::", ":", "0::/",
                     "(", ")", "\x00", "\t", " ", "\n", "\r\n", "9" * 5000, "\udcff", "\u202e"]),
    st.text(max_size=12),
)


def lines_of(words: st.SearchStrategy[str] = WORDS, *, max_lines: int = 8,
             separators: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[str]:
    """Text of lines made of the given words: near-valid kernel file contents."""
    sep = st.sampled_from([" ", "  ", "\t", ": ", ":", "="]) if separators is None else separators

    @st.composite
    def build(draw: st.DrawFn) -> str:
        out = []
        for _ in range(draw(st.integers(0, max_lines))):
            parts = draw(st.lists(words, max_size=6))
            out.append("".join(p + draw(sep) for p in parts).rstrip(" "))
        end = draw(st.sampled_from(["", "\n"]))
        return draw(st.sampled_from(["\n", "\n", "\r\n"])).join(out) + end

    return build()


def ok_or(exc: type[BaseException] | tuple[type[BaseException], ...],
          fn: Callable[[T], object], arg: T) -> object:
    """fn(arg), or None when it raised ``exc``; any other exception fails the test."""
    try:
        return fn(arg)
    except exc:
        return None
