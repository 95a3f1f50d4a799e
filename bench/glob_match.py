"""Glob matching: the linear matcher against the backtracking regex it replaced.

    .venv/bin/python bench/glob_match.py [--repeat 5]

Typical: the shipped file's kinds of rules against typical systemd cgroup paths;
each time is the best of --repeat runs over all pairs, side by side in one run,
reported as a ratio. Adversarial: 255-character names against many-star globs,
timed once per matcher (the regex is skipped where it would take seconds).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prioomd.glob import compile_glob  # noqa: E402

GLOBS = ["/system.slice/sshd.service", "/system.slice/*", "/user.slice/**",
         "/**/*.scope", "/kubepods.slice/**/cri-containerd-*.scope",
         "/user.slice/user-[0-9]*.slice/**", "/machine.slice/*"]
PATHS = ["/system.slice/sshd.service", "/system.slice/systemd-journald.service",
         "/user.slice/user-1000.slice/session-4.scope",
         "/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-1234.scope",
         "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/"
         "cri-containerd-0123456789abcdef.scope", "/init.scope", "/machine.slice"]


def regex_of(glob: str) -> re.Pattern[str]:
    """The former translation (backtracking); only * ? and ** occur in GLOBS here
    besides one simple class."""
    out = []
    for comp in glob[1:].split("/"):
        if comp == "**":
            out.append("(?:/[^/]+)*")
        else:
            out.append("/" + re.escape(comp).replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
                       .replace(r"\[0\-9\]", "[0-9]"))
    return re.compile("".join(out))


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    pairs = [(compile_glob(g), regex_of(g), p) for g in GLOBS for p in PATHS]
    for g, r, p in pairs:
        assert g.matches(p) == (r.fullmatch(p) is not None), (g.text, p)
    loops = 200
    new = best(lambda: [g.matches(p) for _ in range(loops) for g, _r, p in pairs], args.repeat)
    old = best(lambda: [r.fullmatch(p) for _ in range(loops) for _g, r, p in pairs],
               args.repeat)
    n = loops * len(pairs)
    print(f"typical: {len(pairs)} glob/path pairs x {loops}: matcher {new / n * 1e6:.2f} us, "
          f"regex {old / n * 1e6:.2f} us per match; ratio {new / old:.1f}")
    for glob, path, regex_ok in [("/**/*-*-*-*.scope", "/" + "-" * 254, True),
                                 ("/u/*-*-*-*-*.scope", "/u/" + "-" * 237, False)]:
        g = compile_glob(glob)
        t_new = best(lambda g=g, path=path: g.matches(path), args.repeat)
        line = f"adversarial {glob} on {len(path)} chars: matcher {t_new * 1e6:.0f} us"
        if regex_ok:
            r = re.compile(regex_of(glob).pattern)
            t_old = best(lambda r=r, path=path: r.fullmatch(path), 1)
            line += f", regex {t_old * 1e3:.0f} ms; ratio {t_old / t_new:.0f}"
        else:
            line += ", regex skipped (measured 10.9 s to 28.8 s)"
        print(line)


if __name__ == "__main__":
    main()
