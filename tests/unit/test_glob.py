"""glob.py: the path globs of [[cgroup]] rules."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prioomd.glob import compile_glob, is_exact, literal_prefix


def matches(glob: str, path: str) -> bool:
    return compile_glob(glob).fullmatch(path) is not None


@pytest.mark.parametrize(
    ("glob", "path", "expected"),
    [
        # exact
        ("/a/b", "/a/b", True),
        ("/a/b", "/a/bc", False),
        ("/a/b", "/a/b/c", False),
        ("/a.b", "/axb", False),  # "." is literal
        # * stays within one component
        ("/a/*", "/a/b", True),
        ("/a/*", "/a/b/c", False),
        ("/a/*", "/a", False),
        ("/*.service", "/x.service", True),
        ("/system.slice/*", "/system.slice/sshd.service", True),
        ("/system.slice/*", "/system.slice/a/b", False),
        ("/a*/c", "/abc/c", True),
        ("/a*/c", "/a/b/c", False),
        # ** spans any number of components, zero included
        ("/a/**", "/a", True),
        ("/a/**", "/a/b", True),
        ("/a/**", "/a/b/c/d", True),
        ("/a/**", "/ab", False),
        ("/a/**/z", "/a/z", True),
        ("/a/**/z", "/a/b/c/z", True),
        ("/a/**/z", "/a/b/c/zz", False),
        ("/**/sshd.service", "/system.slice/sshd.service", True),
        ("/**/sshd.service", "/sshd.service", True),
        ("/**", "/anything/at/all", True),
        # ? is one character, never "/"
        ("/a/?", "/a/b", True),
        ("/a/?", "/a/bc", False),
        ("/a?b", "/a/b", False),
        # classes
        ("/a/[bc]", "/a/b", True),
        ("/a/[bc]", "/a/d", False),
        ("/a/[a-c]x", "/a/bx", True),
        ("/a/[!a-c]x", "/a/dx", True),
        ("/a/[!a-c]x", "/a/bx", False),
        ("/a/[^a-c]x", "/a/dx", True),
        ("/a[!b]c", "/a/c", False),  # a negated class never matches "/"
        ("/a[!-0]c", "/a/c", False),  # nor a range spanning "/"
        ("/a/[]]", "/a/]", True),  # a leading "]" is literal
        ("/a/[*]", "/a/*", True),  # the way to write a literal "*"
        ("/a/[*]", "/a/b", False),
        ("/a/[[]", "/a/[", True),
        ("/a/[.-]", "/a/-", True),
        ("/user-[0-9]*.slice", "/user-1000.slice", True),
        # regex metacharacters are literal
        ("/a+b(c)", "/a+b(c)", True),
        ("/a+b", "/aab", False),
        ("/a\\b", "/a\\b", True),
    ],
)
def test_matching(glob: str, path: str, expected: bool) -> None:
    assert matches(glob, path) is expected


@pytest.mark.parametrize(
    ("glob", "why"),
    [
        ("a", 'start with "/"'),
        ("/a/", 'end with "/"'),
        ("/a//b", "empty path component"),
        ("/a**", "whole path component"),
        ("/a/**b", "whole path component"),
        ("/a/[b", 'unclosed "["'),
        ("/a/[!]", 'unclosed "["'),
        ("/a/[z-a]", "reversed range"),
    ],
)
def test_invalid(glob: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        compile_glob(glob)


def test_literal_prefix_and_exact() -> None:
    assert literal_prefix("/system.slice/*") == "/system.slice/"
    assert literal_prefix("/a/b?c") == "/a/b"
    assert literal_prefix("/a/[bc]") == "/a/"
    assert literal_prefix("/**") == "/"
    assert literal_prefix("/a/b") == "/a/b"
    assert is_exact("/a/b") and not is_exact("/a/*") and not is_exact("/a/[b]")


_component = st.text(st.characters(codec="ascii", exclude_characters="/\x00"), min_size=1,
                     max_size=8)


@given(st.lists(_component, min_size=1, max_size=5))
def test_exact_globs_match_only_themselves(parts: list[str]) -> None:
    path = "/" + "/".join(parts)
    if is_exact(path):
        assert matches(path, path)
        assert not matches(path, path + "x")
        assert not matches(path, path + "/x")


@given(st.text(max_size=30))
def test_compile_never_raises_anything_but_value_error(glob: str) -> None:
    try:
        compile_glob(glob)
    except ValueError:
        pass
