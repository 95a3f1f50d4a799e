"""Cgroup path globs of the ``[[cgroup]]`` rules, and their specificity.

Paths are relative to the cgroup root and start with "/". ``*`` matches within one
path component, ``?`` one character, ``[...]`` one character of a class (``[!...]``
or ``[^...]`` negates; none ever matches "/"), and a component that is exactly ``**``
matches any number of components, zero included: ``/a/**`` matches ``/a``, ``/a/b``
and ``/a/b/c``. There is no backslash escape: write ``[*]`` for a literal ``*``.

Matching takes O(len(path) x len(glob)) at worst, whatever the glob: cgroup names
are chosen by tenants, and a backtracking regex took seconds on one 240-character
name against ``/u/*-*-*-*-*.scope``. A component's glob is split at its ``*`` into
fixed-length segments (one regex each, without quantifiers): the first must match at
the start, the last at the end, and each one between is found leftmost after the
previous one (with fixed-length segments, leftmost is never worse). ``**`` is a set
of positions in the glob's components, advanced once per path component. Globs
without ``**`` and with at most one ``*`` per component (most rules) use one regex:
its single star per component cannot cross a "/", so it backtracks linearly too, and
it is about 25 times faster than the component matcher (bench/glob_match.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WILDCARDS = frozenset("*?[")  # what ends the literal prefix


@dataclass(frozen=True)
class _Component:
    """One component's glob: ``segments`` between its stars (compiled, each of fixed
    length ``lengths[i]``); a single segment means no star at all. ``source``: the
    component as one regex (for ``Glob.regex``)."""

    segments: tuple[re.Pattern[str], ...]
    lengths: tuple[int, ...]
    source: str

    def matches(self, name: str) -> bool:
        segs, lens = self.segments, self.lengths
        if len(segs) == 1:
            return len(name) == lens[0] and segs[0].match(name) is not None
        end = len(name) - lens[-1]
        if end < lens[0] or segs[0].match(name) is None or segs[-1].match(name, end) is None:
            return False
        pos = lens[0]
        for seg in segs[1:-1]:
            found = seg.search(name, pos, end)
            if found is None:
                return False
            pos = found.end()
        return True


_ANY_COMPONENTS = None  # "**" in Glob.components


@dataclass(frozen=True)
class Glob:
    """A compiled glob; ``matches(path)`` says whether it matches the whole path."""

    text: str
    components: tuple[_Component | None, ...]  # None: "**"
    regex: re.Pattern[str] | None  # set when one regex is linear (see the module doc)
    prefix: str  # the literal prefix: a cheap first test

    def matches(self, path: str) -> bool:
        if self.regex is not None:
            return self.regex.fullmatch(path) is not None
        return self.matches_by_component(path)

    def matches_by_component(self, path: str) -> bool:
        """The general matcher, linear for any glob."""
        if self.text == "/" or not path.startswith("/") or not path.startswith(self.prefix):
            return path == self.text
        comps = self.components
        states = self._skip_any({0})
        for name in path[1:].split("/"):
            after = set()
            for i in states:
                if i == len(comps):
                    continue
                comp = comps[i]
                if comp is _ANY_COMPONENTS:
                    if name:  # "**" spans non-empty components
                        after.add(i)
                elif comp.matches(name):
                    after.add(i + 1)
            if not after:
                return False
            states = self._skip_any(after)
        return len(comps) in states

    def _skip_any(self, states: set[int]) -> set[int]:
        """Add the positions reached by letting each "**" match zero components."""
        out, todo = set(states), list(states)
        while todo:
            i = todo.pop()
            if i < len(self.components) and self.components[i] is _ANY_COMPONENTS \
                    and i + 1 not in out:
                out.add(i + 1)
                todo.append(i + 1)
        return out


def compile_glob(glob: str) -> Glob:
    """Compile a glob (syntax above) once; ``matches`` it against cgroup paths.

    Raises ValueError saying what is wrong with the glob.
    """
    if not glob.startswith("/"):
        raise ValueError('must start with "/" (paths are relative to the cgroup root)')
    if glob == "/":
        return Glob(glob, (), re.compile("/"), "/")
    if glob.endswith("/"):
        raise ValueError('must not end with "/"')
    out: list[_Component | None] = []
    for comp in glob[1:].split("/"):
        if comp == "":
            raise ValueError('has an empty path component ("//")')
        if comp == "**":
            out.append(_ANY_COMPONENTS)
        elif "**" in comp:
            raise ValueError('"**" must be a whole path component, as in "/a/**/b"')
        else:
            out.append(_compile_component(comp))
    simple = all(c is not _ANY_COMPONENTS and len(c.segments) <= 2 for c in out)
    regex = re.compile("".join("/" + c.source for c in out if c is not None)) if simple \
        else None
    prefix = literal_prefix(glob)
    if glob[len(prefix):].startswith("**"):  # "/a/**" matches "/a" too
        prefix = prefix[:-1]
    return Glob(glob, tuple(out), regex, prefix)


def _compile_component(comp: str) -> _Component:
    segments: list[list[str]] = [[]]  # regex sources of one character each
    i = 0
    while i < len(comp):
        c = comp[i]
        if c == "*":
            segments.append([])
        elif c == "?":
            segments[-1].append("[^/]")
        elif c == "[":
            i = _translate_class(comp, i, segments[-1])
        else:
            segments[-1].append(re.escape(c))
        i += 1
    sources = ["".join(seg) for seg in segments]
    try:
        compiled = tuple(re.compile(src) for src in sources)
    except re.error as exc:  # e.g. a class the re module refuses
        raise ValueError(f"is not a valid glob ({exc})") from None
    return _Component(compiled, tuple(len(seg) for seg in segments), "[^/]*".join(sources))


def _translate_class(comp: str, start: int, out: list[str]) -> int:
    """Translate the class opening at comp[start]; return the index of its "]"."""
    i = start + 1
    negate = i < len(comp) and comp[i] in "!^"
    i += negate
    body_start = i
    if i < len(comp) and comp[i] == "]":  # a leading "]" is literal
        i += 1
    end = comp.find("]", i)
    if end < 0:
        raise ValueError(f'has an unclosed "[" in {comp!r} (write "[[]" for a literal "[")')
    body, parts, j = comp[body_start:end], [], 0
    while j < len(body):
        if j + 2 < len(body) and body[j + 1] == "-":
            if body[j] > body[j + 2]:
                raise ValueError(f"has a reversed range {body[j:j + 3]!r} in {comp!r}")
            parts.append(f"{re.escape(body[j])}-{re.escape(body[j + 2])}")
            j += 3
        else:
            parts.append(re.escape(body[j]))
            j += 1
    # "/" never matches: a range such as [!-0] would otherwise include it.
    out.append(f"[^/{''.join(parts)}]" if negate else f"(?!/)[{''.join(parts)}]")
    return end


def literal_prefix(glob: str) -> str:
    """The characters of a glob before its first wildcard (all of it when exact)."""
    for i, c in enumerate(glob):
        if c in _WILDCARDS:
            return glob[:i]
    return glob


def is_exact(glob: str) -> bool:
    """True when the glob has no wildcard: it names one path."""
    return not _WILDCARDS.intersection(glob)
