"""prioomd's command line: run | check-config | tree | audit | explain | set.

Exit codes: 0 success; 1 a runtime failure (cgroup missing, permission);
2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from prioomd import (
    __version__,
    cgroupfs,
    config,
    domains,
    procfs,
    render,
    select,
    snapshot,
    table,
)
from prioomd.errors import ConfigError, PrioomdError, Vanished
from prioomd.model import Decision, Snapshot
from prioomd.textsafe import EscapingFormatter, show

log = logging.getLogger("prioomd")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


class UsageError(ValueError):
    """A bad command-line argument: exit 2."""


def _print(line: str, file: TextIO | None = None) -> None:
    """Print one line, escaped (textsafe): what the CLI prints names tenants'
    cgroups and processes. JSON output is ASCII already: left as it is."""
    print(show(line), file=file)


@dataclass(frozen=True)
class Context:
    cfg: config.Config
    config_note: str
    table: table.PriorityTable
    sources: snapshot.Sources


def load_settings(args: argparse.Namespace) -> tuple[config.Config, str]:
    """The validated config and a note saying where it came from."""
    path = args.config
    if path is None and not os.path.exists(config.DEFAULT_CONFIG_PATH):
        return config.Config(), (f"no {config.DEFAULT_CONFIG_PATH}: built-in defaults "
                                 "(root use_priority_oom off, as in the kernel)")
    path = path or config.DEFAULT_CONFIG_PATH
    return config.load_config(path), f"config {path}"


def load_context(args: argparse.Namespace) -> Context:
    """Config → table → sources; ConfigError on a bad file."""
    cfg, note = load_settings(args)
    root = args.cgroup_root or cfg.daemon.cgroup_root or cgroupfs.default_cgroup_root()
    sources = snapshot.Sources(cgroup_root=os.path.abspath(root),
                               proc_root=getattr(args, "proc_root", None) or "/proc")
    return Context(cfg, note, table.PriorityTable(cfg), sources)


def enabled_domains(ctx: Context, whole: Snapshot
                    ) -> tuple[list[Decision], list[tuple[str, str]]]:
    """The decision each OOM domain would take now, and (path, why) of each cgroup
    with use_priority_oom on that is no domain. A domain is what the daemon watches
    (``domains.why_not_a_domain``): the root, or a cgroup with a memory.max."""
    page_size = procfs.page_size()
    meminfo = procfs.read_meminfo(ctx.sources.proc_root)
    swap_total = meminfo.get("SwapTotal", 0)
    decisions = []
    not_domains = []
    for i, node in enumerate(whole.nodes):
        why_not = domains.why_not_a_domain(node.path, bool(node.use_priority_oom.value),
                                           node.memory_max_bytes)
        if why_not is not None:
            if node.use_priority_oom.value:
                not_domains.append((node.path, why_not))
            continue
        if i == 0:
            sub = whole
        else:
            swap_max = cgroupfs.read_swap_max(snapshot.abs_dir(ctx.sources, node.path))
            pages = snapshot.domain_total_pages(node, swap_max, whole.total_pages, swap_total,
                                                page_size)
            sub = snapshot.restrict(whole, i, pages, page_size)
        decisions.append(select.select_victims(
            sub, kernel_compat=ctx.cfg.daemon.kernel_compat,
            max_candidates=ctx.cfg.daemon.max_candidates))
    return decisions, not_domains


def _take_whole(ctx: Context) -> Snapshot:
    whole, warnings = snapshot.take("/", ctx.table, ctx.sources)
    for w in warnings:
        log.warning("%s", w)
    return whole


def _header(ctx: Context) -> dict[str, object]:
    try:
        controllers = sorted(cgroupfs.read_controllers(ctx.sources.cgroup_root))
    except (OSError, Vanished):
        controllers = []
    return {"cgroup_root": ctx.sources.cgroup_root, "controllers": controllers,
            "memory_controller": "memory" in controllers, "config": ctx.config_note,
            "walk_backend": select.DEFAULT_BACKEND}


def cmd_run(args: argparse.Namespace) -> int:
    # Imported here: the one-shot commands need none of the daemon's machinery
    # (the daemon itself imports everything before it starts watching).
    from prioomd.daemon import Daemon
    from prioomd.guard import default_runtime_dir

    ctx = load_context(args)
    cfg = ctx.cfg
    if args.audit_file is not None:
        cfg = dataclasses.replace(cfg, audit=dataclasses.replace(cfg.audit, file=args.audit_file))
    config_path = args.config or (config.DEFAULT_CONFIG_PATH
                                  if os.path.exists(config.DEFAULT_CONFIG_PATH) else None)
    log.info("%s; cgroup root %s", ctx.config_note, ctx.sources.cgroup_root)
    runtime_dir = args.runtime_dir if args.runtime_dir is not None else default_runtime_dir()
    return Daemon(cfg, config_path, ctx.sources, dry_run=args.dry_run,
                  exit_after_s=args.exit_after, runtime_dir=runtime_dir or None).run()


def cmd_check_config(args: argparse.Namespace) -> int:
    if args.file:
        args.config = args.file
    cfg, note = load_settings(args)
    _print(f"{note}: valid ({len(cfg.rules)} cgroup rules, root "
           f"use_priority_oom {'on' if cfg.root.use_priority_oom else 'off'})")
    return EXIT_OK


def cmd_tree(args: argparse.Namespace) -> int:
    ctx = load_context(args)
    whole = _take_whole(ctx)
    decisions, not_domains = enabled_domains(ctx, whole)
    header = {**_header(ctx),
              "not_domains": [{"path": p, "reason": why} for p, why in not_domains]}
    if args.json:
        _print(json.dumps(render.tree_json(whole, decisions, header)))
        return EXIT_OK
    mem = ("memory controller present" if header["memory_controller"] else
           "no memory controller here: usage counts as 0, priorities still decide")
    lines = [f"cgroup root {ctx.sources.cgroup_root} ({mem}); {ctx.config_note}; "
             f"{select.backend_description()}"]
    print(render.tree_text(whole, decisions, lines))  # escaped line by line by render
    for path, why in not_domains:
        _print(f"{path}: {why}")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    if not args.once:
        _print("prioomd audit: only --once is available here; for continuous auditing run "
               "`prioomd run --dry-run`", file=sys.stderr)
        return EXIT_CONFIG
    ctx = load_context(args)
    decisions, not_domains = enabled_domains(ctx, _take_whole(ctx))
    for path, why in not_domains:  # on stderr with --json: stdout has only decisions
        _print(f"{path}: {why}", file=sys.stderr if args.json else sys.stdout)
    for d in decisions:
        if args.json:
            _print(json.dumps(render.decision_record(d)))
        else:
            _print(f"domain {d.domain}: {d.outcome}: {d.reason}")
            for rank, c in enumerate(d.candidates[1:], start=2):
                _print(f"  then #{rank}: {c.victim_cgroup} pid {c.pid} ({c.comm})")
    if not decisions and not args.json:
        _print("no OOM domain has use_priority_oom on: nothing to audit")
    return EXIT_OK


def _existing_cgroup(ctx: Context, arg: str, command: str) -> tuple[str, str] | None:
    """(path, directory) of the CGROUP argument, or None after saying it is missing."""
    path = _norm(arg)
    cgdir = snapshot.abs_dir(ctx.sources, path)
    if os.path.isdir(cgdir):
        return path, cgdir
    _print(f"prioomd {command}: no cgroup {path} under {ctx.sources.cgroup_root}",
           file=sys.stderr)
    return None


def cmd_explain(args: argparse.Namespace) -> int:
    ctx = load_context(args)
    found = _existing_cgroup(ctx, args.cgroup, "explain")
    if found is None:
        return EXIT_FAILURE
    path, cgdir = found
    parent = os.path.dirname(cgdir) if path != "/" else None
    xattrs = cgroupfs.read_xattrs(cgdir, table.ALL_XATTRS)
    lines = ctx.table.explain(path, xattrs, cgroupfs.owner_uid(cgdir),
                              cgroupfs.owner_uid(parent) if parent else None)
    _print(f"{path}:")
    for line in lines:
        _print(f"  {line}")
    decisions, not_domains = enabled_domains(ctx, _take_whole(ctx))
    for other, why in not_domains:
        if other == path:
            _print(f"{path}: {why}")
    for d in decisions:
        if not (path == d.domain or path.startswith(d.domain.rstrip("/") + "/")):
            continue
        on_walk = path in d.walk
        _print(f"domain {d.domain}: {d.outcome}; the walk "
               f"{'passes through' if on_walk else 'does not reach'} {path}: {d.reason}")
    return EXIT_OK


def cmd_set(args: argparse.Namespace) -> int:
    ctx = load_context(args)
    found = _existing_cgroup(ctx, args.cgroup, "set")
    if found is None:
        return EXIT_FAILURE
    path, cgdir = found
    writes: list[tuple[str, bytes]] = []
    try:
        if args.priority is not None:
            if path == "/":
                raise ValueError("the root cgroup has no priority (spec §1.4)")
            writes.append((table.XATTR_PRIORITY,
                           table.validate_xattr_value(table.XATTR_PRIORITY, args.priority)))
        if args.use_priority_oom is not None:
            flag = "1" if args.use_priority_oom == "on" else "0"
            writes.append((table.XATTR_USE_PRIORITY_OOM,
                           table.validate_xattr_value(table.XATTR_USE_PRIORITY_OOM, flag)))
        if args.kill is not None:
            if path == "/":
                raise ValueError("the root cgroup is never killed whole")
            writes.append((table.XATTR_KILL,
                           table.validate_xattr_value(table.XATTR_KILL, args.kill)))
    except ValueError as exc:
        _print(f"prioomd set: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not writes:
        _print("prioomd set: nothing to set (give --priority, --use-priority-oom and/or --kill)",
               file=sys.stderr)
        return EXIT_CONFIG
    for name, value in writes:
        try:
            cgroupfs.write_xattr(cgdir, name, value)
        except OSError as exc:
            _print(f"prioomd set: cannot write {name} on {cgdir}: {exc.strerror}",
                   file=sys.stderr)
            return EXIT_FAILURE
        _print(f"{path}: {name} = {value.decode()}")
    return EXIT_OK


def _norm(path: str) -> str:
    """The canonical cgroup path of a CGROUP argument: "a//b/" and "/a/./b" are "/a/b"."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UsageError(f"cgroup path {path!r} must not contain '..'")
    return "/" + "/".join(parts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prioomd",
        description="Priority OOM for cgroup v2: Alibaba's memcg priority OOM semantics "
                    "(memory.priority 0..12, memory.use_priority_oom), from userspace.")
    p.add_argument("--version", action="version",
                   version=f"prioomd {__version__}; {select.backend_description()}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE",
                        help=f"config file (default {config.DEFAULT_CONFIG_PATH}; "
                             "built-in defaults when that is absent)")
    common.add_argument("--cgroup-root", metavar="DIR",
                        help="cgroup v2 mount (default: [daemon] cgroup_root, else "
                             "/sys/fs/cgroup if cgroup2, else the cgroup2 mount found)")
    common.add_argument("--proc-root", metavar="DIR", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("run", parents=[common],
                       help="the daemon: watch every enabled OOM domain and kill by priority")
    s.add_argument("--dry-run", action="store_true",
                   help="decide and audit every kill, but kill nothing (audit mode)")
    s.add_argument("--audit-file", metavar="FILE",
                   help="JSON lines audit file (default: [audit] file; '' for none)")
    s.add_argument("--exit-after", type=float, metavar="SECONDS",
                   help="stop after this long (smoke tests, demos)")
    s.add_argument("--runtime-dir", metavar="DIR",
                   help="where guard mode keeps the administrator's memory.high across a "
                   "crash (default: $RUNTIME_DIRECTORY, else /run/prioomd; '' for none)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("check-config", parents=[common],
                       help="validate the config with every check run and reload make; "
                            "exit 0 or 2")
    s.add_argument("file", nargs="?", help="the config file (same as --config)")
    s.set_defaults(func=cmd_check_config)
    s = sub.add_parser("tree", parents=[common],
                       help="the hierarchy with priorities and each domain's would-be victim")
    s.add_argument("--json", action="store_true", help="one JSON object")
    s.set_defaults(func=cmd_tree)
    s = sub.add_parser("audit", parents=[common],
                       help="the decision each enabled domain would take now (kills nothing)")
    s.add_argument("--once", action="store_true", help="decide once and exit")
    s.add_argument("--json", action="store_true", help="one JSON object per line per domain")
    s.set_defaults(func=cmd_audit)
    s = sub.add_parser("explain", parents=[common],
                       help="where a cgroup's priority comes from and where the walk goes")
    s.add_argument("cgroup", help="cgroup path relative to the root, e.g. /system.slice")
    s.set_defaults(func=cmd_explain)
    s = sub.add_parser("set", parents=[common],
                       help="write trusted.prioomd.* xattrs on a cgroup (validated first)")
    s.add_argument("cgroup")
    s.add_argument("--priority", metavar="N", help="0..12, higher = more important")
    s.add_argument("--use-priority-oom", choices=("on", "off"))
    s.add_argument("--kill", choices=config.KILL_MODES,
                   help="kill granularity when the walk stops here: the worst process "
                        "or the whole cgroup")
    s.set_defaults(func=cmd_set)
    return p


def _tolerant_output() -> None:
    """Never die of an unencodable character: a cgroup name is bytes (non-UTF-8
    names arrive surrogate-escaped) and stdout may be strict UTF-8 or ASCII."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    _tolerant_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter("prioomd: %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        handlers=[handler])
    try:
        return int(args.func(args))
    except UsageError as exc:
        _print(f"prioomd {args.command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ConfigError as exc:
        first, *more = str(exc).split("\n")  # one problem per line (config.py)
        for line in [f"prioomd: config error: {first}", *more]:
            _print(line, file=sys.stderr)
        return EXIT_CONFIG
    except (PrioomdError, OSError) as exc:
        _print(f"prioomd: {exc}", file=sys.stderr)
        return EXIT_FAILURE
