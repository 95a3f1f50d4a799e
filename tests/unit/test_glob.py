"""glob.py: the path globs of [[cgroup]] rules."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from prioomd.glob import compile_glob, is_exact, literal_prefix


def matches(glob: str, path: str) -> bool:
    return compile_glob(glob).matches(path)


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


# --- linear time (issue 7 item 6) --------------------------------------------------


def _reference_regex(glob: str) -> re.Pattern[str]:
    """The regex translation the matcher replaced (it backtracks): the reference of
    what a glob means, compared with the matcher on small random inputs."""
    if glob == "/":
        return re.compile("/")
    out = []
    for comp in glob[1:].split("/"):
        if comp == "**":
            out.append("(?:/[^/]+)*")
            continue
        part, i = [], 0
        while i < len(comp):
            c = comp[i]
            if c == "*":
                part.append("[^/]*")
            elif c == "?":
                part.append("[^/]")
            elif c == "[":
                j = comp.index("]", i + 2 if comp[i + 1:i + 2] in ("!", "^") else i + 1)
                negate = comp[i + 1] in "!^"
                body = comp[i + 1 + negate:j]
                part.append(f"[^/{re.escape(body)}]" if negate else f"(?!/)[{re.escape(body)}]")
                i = j
            else:
                part.append(re.escape(c))
            i += 1
        out.append("/" + "".join(part))
    return re.compile("".join(out))


_glob_comp = st.one_of(
    st.just("**"),
    st.lists(st.sampled_from(["a", "b", "-", "*", "?", "[ab]", "[!a]"]), min_size=1,
             max_size=6).map("".join).filter(lambda c: "**" not in c),
)
_path_comp = st.text(st.sampled_from("ab-"), max_size=4)


@settings(max_examples=1000)
@given(st.lists(_glob_comp, min_size=1, max_size=4),
       st.lists(_path_comp, min_size=0, max_size=5))
@example(["a*a"], ["a"])  # the head and the tail of a component must not overlap
@example(["a*a"], ["aa"])
@example(["*-*-*"], ["--"])
@example(["*"], [])  # "/": a "*" component matches the empty name
@example(["**"], [])  # but "**" spans only non-empty components
@example(["a", "**"], ["a"])
@example(["**", "b", "**"], ["a", "b", "b"])
@example(["a", "**"], ["a", "b"])
@example(["a*", "**"], ["a"])
def test_matcher_agrees_with_the_reference_regex(gparts: list[str], pparts: list[str]) -> None:
    glob = "/" + "/".join(gparts)
    path = "/" + "/".join(pparts)
    want = _reference_regex(glob).fullmatch(path) is not None
    assert matches(glob, path) is want, (glob, path)
    assert compile_glob(glob).matches_by_component(path) is want, (glob, path)


def test_adversarial_names_match_in_linear_time() -> None:
    """Tenant-made names against globs with many stars. The backtracking regex took
    0.3 s per 255-character name for the first glob and 10.9 s for one 240-character
    name for the second (28.8 s on a loaded machine); the matcher takes microseconds.
    The bound is for the whole batch and far above that, for slow machines."""
    long_dash = "-" * 255
    cases = [
        ("/**/*-*-*-*.scope", "/" + long_dash),
        ("/**/*-*-*-*.scope", "/x" * 100 + "/" + long_dash),
        ("/u/*-*-*-*-*.scope", "/u/" + "-" * 240),
        ("/u/*-*-*-*-*.scope", "/u/" + "a-" * 127 + "a"),
        ("/**/a*a*a*a*a*b", "/" + "a" * 255),
        ("/**/a/**/a/**/b", "/a" * 2000),
        ("/*?*?*?*?*?*x", "/" + "y" * 255),
        ("/[!x]*[!x]*[!x]*[!x]*z", "/" + "y" * 255),
        ("/*-x/*-*.scope", "/" + "-" * 255 + "/" + "-" * 255),  # one regex
        ("/a*-/b*-/c*-/d*x", "/a" + "-" * 254 + "/b" + "-" * 254 + "/c-/d" + "-" * 254),
    ]
    for glob, path in cases * 5:
        compiled = compile_glob(glob)
        t0 = time.perf_counter()
        assert compiled.matches(path) is False
        assert time.perf_counter() - t0 < 0.5, (glob, len(path))
