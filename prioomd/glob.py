"""Cgroup path globs of the ``[[cgroup]]`` rules, and their specificity.

Paths are relative to the cgroup root and start with "/". ``*`` matches within one
path component, ``?`` one character, ``[...]`` one character of a class (``[!...]``
or ``[^...]`` negates; none ever matches "/"), and a component that is exactly ``**``
matches any number of components, zero included: ``/a/**`` matches ``/a``, ``/a/b``
and ``/a/b/c``. There is no backslash escape: write ``[*]`` for a literal ``*``.
"""

from __future__ import annotations

import re

_WILDCARDS = frozenset("*?[")  # what ends the literal prefix


def compile_glob(glob: str) -> re.Pattern[str]:
    """Compile a glob (syntax above) once; ``fullmatch`` it against cgroup paths.

    Raises ValueError saying what is wrong with the glob.
    """
    if not glob.startswith("/"):
        raise ValueError('must start with "/" (paths are relative to the cgroup root)')
    if glob == "/":
        return re.compile("/")
    if glob.endswith("/"):
        raise ValueError('must not end with "/"')
    out = []
    for comp in glob[1:].split("/"):
        if comp == "":
            raise ValueError('has an empty path component ("//")')
        if comp == "**":
            out.append("(?:/[^/]+)*")
        elif "**" in comp:
            raise ValueError('"**" must be a whole path component, as in "/a/**/b"')
        else:
            out.append("/" + _translate_component(comp))
    try:
        return re.compile("".join(out))
    except re.error as exc:  # e.g. a reversed range [z-a]
        raise ValueError(f"is not a valid glob ({exc})") from None


def _translate_component(comp: str) -> str:
    out, i = [], 0
    while i < len(comp):
        c = comp[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            i = _translate_class(comp, i, out)
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


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
