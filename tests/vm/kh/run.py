#!/usr/bin/env python3
"""Run one command in a fresh qemu guest with a real Debian kernel (the tests/vm tier).

    python3 tests/vm/kh/run.py [-m 1G] [-c 2] [-t TIMEOUT_S] [--rw DIR]... [--systemd]
                               [--append KARGS] [--env NAME[=VALUE]]... [--keep-job]
                               -- CMD ARGS...

The guest sees the host's / read-only under a tmpfs overlay (its writes are discarded),
a fresh tmpfs on /tmp, cgroup2 with every controller on /sys/fs/cgroup, and runs CMD as
root with cwd = the host's cwd.  Directories given with --rw are shared read-write at
their host paths; so is, automatically, the top directory below /tmp of the cwd, of
$VIRTUAL_ENV and of any argument naming an existing path (the guest's /tmp is a fresh
tmpfs, so a checkout or venv there would be missing).  CMD's stdout and stderr stream to
ours.  --systemd boots systemd as PID 1 and runs CMD from kernel-command-line.service,
with units a test needs none of masked (KH_SYSTEMD_FULL=1 keeps them).

Exit status: CMD's own; 124 on timeout; 125 when the guest died without one.  The guest
console is printed on failure (always with KH_CONSOLE=1); KH_VERBOSE=1 prints the qemu
command line and timings.  The job directory (console.log, dmesg, journal, ...) is kept
on failure or with --keep-job.

Environment passed to CMD: every PRIOOMD_* variable of ours, each --env, and
KH_GUEST=1, KH_JOB=<job dir>, PYTHONUNBUFFERED=1.

Needs `bash tests/vm/kh/setup.sh` first (kernel + base initramfs in $KH_CACHE, default
/var/tmp/prioomd-kh; KH_KVER picks another cached kernel).  Standard library only, so a
host-side test or script can `import run` (see `run_vm`) from this directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = Path("/var/tmp/prioomd-kh")
PASS_PREFIXES = ("PRIOOMD_",)
EXIT_TIMEOUT = 124
EXIT_NO_STATUS = 125

# Kernel arguments of the systemd mode; each answers a pitfall in harness-notes.md §4.
SYSTEMD_ARGS = (
    "khinit=systemd",
    # The generator's default.target loses against the host's graphical default.target.
    "systemd.unit=kernel-command-line.target",
    "systemd.run=/kh/job",
    # kernel-command-line.service alone has no D-Bus: systemd-run/systemctl would fail.
    "systemd.wants=basic.target",
    "systemd.run_success_action=poweroff",
    "systemd.run_failure_action=poweroff",
    "systemd.show_status=0",
)
# Units a test guest does without (KH_SYSTEMD_FULL=1 keeps them): under TCG each start
# costs 0.1-0.8 s (an exec of mount or modprobe, a module's signature check).  udev
# coldplug alone loads dozens of modules (~2 s).  Nothing here touches cgroups,
# journald, D-Bus or unit management.
SYSTEMD_MASKS = (
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "kmod-static-nodes.service",
    "systemd-modules-load.service",
    "modprobe@configfs.service",
    "modprobe@dm_mod.service",
    "modprobe@drm.service",
    "modprobe@efi_pstore.service",
    "modprobe@fuse.service",
    "modprobe@loop.service",
    "dev-hugepages.mount",
    "dev-mqueue.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-binfmt.service",
    "systemd-random-seed.service",
    "systemd-timesyncd.service",
    "systemd-update-utmp.service",
    "systemd-journal-flush.service",
)


class HarnessError(RuntimeError):
    """The harness cannot start a guest (no kernel in the cache, no qemu)."""


@dataclasses.dataclass(frozen=True)
class Kernel:
    kver: str
    vmlinuz: Path
    base_initrd: Path
    modules: Path  # the unpacked lib/modules, shared with the guest


@dataclasses.dataclass
class Result:
    returncode: int
    job_dir: Path | None  # None once removed
    console: str
    wall_s: float  # qemu start to exit, host clock
    boot_s: float | None  # guest uptime when the command started
    cmd_s: float | None  # the command's own run time (guest clock)
    timed_out: bool = False


def cache_dir() -> Path:
    return Path(os.environ.get("KH_CACHE") or DEFAULT_CACHE)


def find_kernel(cache: Path | None = None, kver: str | None = None) -> Kernel:
    cache = cache or cache_dir()
    kver = kver or os.environ.get("KH_KVER")
    if not kver:
        try:
            kver = (cache / "current").read_text().strip()
        except FileNotFoundError:
            raise HarnessError(
                f"no kernel in {cache}: run `bash {HERE}/setup.sh` first (as root)"
            ) from None
    kdir = cache / kver
    # setup.sh extracts an ELF vmlinux that qemu enters through PVH, skipping the
    # bzImage's own decompression (5-6 s under TCG); the bzImage is the fallback.
    vmlinux = kdir / "vmlinux"
    k = Kernel(
        kver=kver,
        vmlinuz=vmlinux if vmlinux.exists() else kdir / "root" / "boot" / f"vmlinuz-{kver}",
        base_initrd=kdir / "initramfs-base.cpio.gz",
        modules=(kdir / "root" / "lib" / "modules").resolve(),
    )
    for p in (k.vmlinuz, k.base_initrd, k.modules):
        if not p.exists():
            raise HarnessError(f"{p} is missing: run `bash {HERE}/setup.sh` (as root)")
    return k


# --- initramfs layer -------------------------------------------------------------------


def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> bytes:
    """One entry of a newc cpio archive (the format the kernel unpacks)."""
    bname = name.encode() + b"\0"
    fields = (0, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(bname), 0)
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + bname
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def build_initrd(kernel: Kernel, dest: Path, scripts_dir: Path = HERE) -> None:
    """Base image (busybox + modules, from setup.sh) + this checkout's init scripts.

    The kernel unpacks concatenated archives in order, so the scripts travel with the
    tree they belong to and editing them needs no new setup.
    """
    layer = b"".join(
        [
            _cpio_entry("dev", 0o040755),
            _cpio_entry("dev/console", 0o020600, rdev=(5, 1)),
            _cpio_entry("kh", 0o040755),
            _cpio_entry("init", 0o100755, (scripts_dir / "init").read_bytes()),
            _cpio_entry("kh/stage2", 0o100755, (scripts_dir / "stage2").read_bytes()),
            _cpio_entry("kh/job", 0o100755, (scripts_dir / "job").read_bytes()),
            _cpio_entry("TRAILER!!!", 0),
        ]
    )
    base = kernel.base_initrd.read_bytes()
    with open(dest, "wb") as f:
        f.write(base)
        f.write(b"\0" * (-len(base) % 4))  # a following archive starts 4-aligned
        f.write(gzip.compress(layer, compresslevel=1))


# --- shares --------------------------------------------------------------------------


def _under_tmp(p: str) -> str | None:
    parts = Path(p).parts
    if len(parts) >= 2 and parts[0] == "/" and parts[1] == "tmp":
        return "/tmp" if len(parts) == 2 else f"/tmp/{parts[2]}"
    return None


def tmp_shares(cwd: Path, cmd: Sequence[str], env: Mapping[str, str]) -> list[Path]:
    """Host dirs under /tmp the command needs: the guest's /tmp is a fresh tmpfs.

    Shares the top dir below /tmp of the cwd, of any argument that names an existing
    path (the venv's python, test paths) and of $VIRTUAL_ENV, resolved and not.
    """
    cands: list[str] = [str(cwd)]
    for a in [*cmd, env.get("VIRTUAL_ENV", "")]:
        if not a or a.startswith("-"):
            continue
        p = Path(a) if os.path.isabs(a) else cwd / a
        if os.path.lexists(p):
            cands.append(os.path.abspath(p))
    out: list[Path] = []
    for c in cands:
        for variant in (c, os.path.realpath(c)):
            t = _under_tmp(variant)
            if not t or Path(t) in out:
                continue
            if not os.path.isdir(t):
                print(
                    f"run.py: warning: {t} lies directly in /tmp, which the guest replaces;"
                    " move it into a directory or pass --rw /tmp",
                    file=sys.stderr,
                )
                continue
            out.append(Path(t))
    return out


def _normalize_shares(dirs: Iterable[Path]) -> list[Path]:
    """Absolute, deduplicated; a dir inside another shared dir needs no share of its own."""
    uniq = sorted({Path(os.path.abspath(d)) for d in dirs}, key=lambda p: len(p.parts))
    keep: list[Path] = []
    for d in uniq:
        if not any(d == k or k in d.parents for k in keep):
            keep.append(d)
    return keep


def _virtfs(path: Path, tag: str, readonly: bool = False) -> list[str]:
    opt = f"local,path={str(path).replace(',', ',,')},mount_tag={tag},security_model=none"
    opt += ",multidevs=remap"
    if readonly:
        opt += ",readonly=on"
    return ["-virtfs", opt]


# --- the run ---------------------------------------------------------------------------


def _guest_env(extra: Mapping[str, str] | None, job: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith(PASS_PREFIXES)}
    env.update({"KH_GUEST": "1", "KH_JOB": str(job), "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def _write_cmd(job: Path, cwd: Path, cmd: Sequence[str], env: Mapping[str, str]) -> None:
    q = shlex.quote
    lines = [
        f"cd -- {q(str(cwd))} || exit 126",
        *(f"export {k}={q(v)}" for k, v in sorted(env.items())),
        "exec " + " ".join(q(c) for c in cmd),
    ]
    (job / "cmd.sh").write_text("\n".join(lines) + "\n")


class _Tail:
    """Copies what the guest appends to a job file to a host stream."""

    def __init__(self, path: Path, out: BinaryIO | None):
        self.path, self.out, self.f = path, out, None

    def pump(self) -> None:
        if self.f is None:
            try:
                self.f = open(self.path, "rb")  # closed in close()
            except FileNotFoundError:
                return
        data = self.f.read()
        if data and self.out is not None:
            self.out.write(data)
            self.out.flush()

    def close(self) -> None:
        self.pump()
        if self.f is not None:
            self.f.close()


def _read_float(p: Path) -> float | None:
    try:
        return float(p.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def run_vm(
    cmd: Sequence[str],
    *,
    mem: str = "1G",
    cpus: int = 2,
    timeout: float = 600.0,
    rw: Iterable[str | Path] = (),
    systemd: bool = False,
    append: str = "",
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stdout: BinaryIO | None = None,
    stderr: BinaryIO | None = None,
    keep_job: bool = False,
    show_console: bool | None = None,
    verbose: bool | None = None,
) -> Result:
    """Boot a guest, run `cmd` in it, return its exit status and timings.

    stdout/stderr: binary streams for the command's output (default: ours; pass
    io.BytesIO() to capture).  show_console: print the guest console to stderr
    (default: on failure, or always with KH_CONSOLE=1).
    """
    if not cmd:
        raise ValueError("no command")
    out = stdout if stdout is not None else sys.stdout.buffer
    err = stderr if stderr is not None else sys.stderr.buffer
    verbose = bool(os.environ.get("KH_VERBOSE")) if verbose is None else verbose
    cwd = Path(os.path.abspath(cwd or os.getcwd()))
    kernel = find_kernel()
    qemu = os.environ.get("KH_QEMU", "qemu-system-x86_64")

    jobs = cache_dir() / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    _prune_jobs(jobs)
    job = Path(tempfile.mkdtemp(prefix="job.", dir=jobs))
    if any(c.isspace() for c in str(job)):
        raise HarnessError(f"job dir {job} must not contain white space (kernel argument)")
    genv = _guest_env(env, job)
    _write_cmd(job, cwd, cmd, genv)
    build_initrd(kernel, job / "initrd.img")

    rw_dirs = []
    for d in rw:
        p = Path(d) if os.path.isabs(d) else cwd / d
        p.mkdir(parents=True, exist_ok=True)
        rw_dirs.append(p)
    shares = _normalize_shares([*rw_dirs, *tmp_shares(cwd, cmd, genv)])
    virtfs: list[str] = []
    with open(job / "mounts", "w") as f:
        for i, d in enumerate(shares):
            virtfs += _virtfs(d, f"khrw{i}")
            f.write(f"khrw{i} {d}\n")

    kargs = [
        "console=ttyS0",
        "loglevel=3",
        "panic=-1",
        "rdinit=/init",
        # TCG keeps the vCPUs' TSCs in step; without this the kernel falls back to hpet
        # and every clock_gettime() becomes an emulated MMIO read.
        "tsc=reliable",
        # Debian zeroes every allocation by default; under TCG that memset is costly
        # (9p allocates msize-sized buffers per request).  Tests never rely on it.
        "init_on_alloc=0",
        # The crypto self-tests cost ~0.5 s of every boot under TCG.
        "cryptomgr.notests",
        f"khjob={job}",
        f"khmods={kernel.modules}",
    ]
    if systemd:
        kargs += SYSTEMD_ARGS
        if not os.environ.get("KH_SYSTEMD_FULL"):
            kargs += [f"systemd.mask={u}" for u in SYSTEMD_MASKS]
    if append:
        kargs += shlex.split(append)
    qcmd = [
        qemu,
        "-nodefaults",
        "-no-reboot",
        "-display",
        "none",
        "-serial",
        f"file:{job / 'console.log'}",
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
        "-smp",
        str(cpus),
        "-m",
        mem,
        "-kernel",
        str(kernel.vmlinuz),
        "-initrd",
        str(job / "initrd.img"),
        *_virtfs(Path("/"), "hostroot", readonly=True),
        *_virtfs(job, "khjob"),
        *virtfs,
        "-append",
        " ".join(kargs),
    ]
    if verbose:
        err.write(f"kh: kernel {kernel.kver}, job {job}\nkh: {shlex.join(qcmd)}\n".encode())
        err.flush()

    tails = [_Tail(job / "stdout", out), _Tail(job / "stderr", err)]
    timed_out = False
    t0 = time.monotonic()
    with open(job / "qemu.log", "wb") as qlog:
        proc = subprocess.Popen(qcmd, stdin=subprocess.DEVNULL, stdout=qlog, stderr=qlog)
    seen: dict[str, float] = {}  # host time when the guest wrote these job files
    try:
        while proc.poll() is None:
            for t in tails:
                t.pump()
            for name in ("uptime-start", "exitcode"):
                if name not in seen and (job / name).exists():
                    seen[name] = time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                timed_out = True
                break
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for t in tails:
            t.close()
    wall = time.monotonic() - t0

    rc_text = (job / "exitcode").read_text().strip() if (job / "exitcode").exists() else ""
    if timed_out:
        rc = EXIT_TIMEOUT
    elif rc_text.lstrip("-").isdigit():
        rc = int(rc_text)
    else:
        rc = EXIT_NO_STATUS
    console = (
        (job / "console.log").read_text(errors="replace") if (job / "console.log").exists() else ""
    )
    qlog_text = (job / "qemu.log").read_text(errors="replace")
    start, end = _read_float(job / "uptime-start"), _read_float(job / "uptime-end")
    result = Result(
        returncode=rc,
        job_dir=job,
        console=console,
        wall_s=wall,
        boot_s=start,
        cmd_s=(end - start) if start is not None and end is not None else None,
        timed_out=timed_out,
    )

    if show_console is None:
        show_console = rc != 0 or bool(os.environ.get("KH_CONSOLE"))
    if show_console:
        why = "timeout" if timed_out else f"exit {rc}"
        msg = f"\n===== kh: guest console ({why}) =====\n{console}"
        if qlog_text.strip():
            msg += f"===== kh: qemu =====\n{qlog_text}"
        msg += f"===== kh: more in {job} (dmesg, journal, stdout, stderr) =====\n"
        err.write(msg.encode())
        err.flush()
    if verbose:
        boot = f"{start:.1f}" if start is not None else "?"
        cmd_s = f"{result.cmd_s:.1f}" if result.cmd_s is not None else "?"
        host = ", ".join(f"{k} at {v:.1f} s" for k, v in seen.items())
        err.write(
            f"kh: wall {wall:.1f} s, guest uptime at command start {boot} s, "
            f"command {cmd_s} s, exit {rc} (host clock: {host or 'no job files'})\n".encode()
        )
        err.flush()
    if rc == 0 and not keep_job:
        _rmtree(job)
        result.job_dir = None
    return result


def _rmtree(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True)


def _prune_jobs(jobs: Path, max_age_s: float = 2 * 86400) -> None:
    """Job dirs kept for failures (console, dmesg, journal) go after two days."""
    now = time.time()
    for d in jobs.glob("job.*"):
        try:
            if now - d.stat().st_mtime > max_age_s:
                _rmtree(d)
        except OSError:
            pass


def _parse_env(items: Iterable[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq:
            if name not in os.environ:
                raise SystemExit(f"run.py: --env {name}: not set here")
            value = os.environ[name]
        env[name] = value
    return env


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="run.py",
        description="Run CMD in a fresh qemu guest (real kernel, cgroup2 + memory).",
    )
    ap.add_argument("-m", "--mem", default="1G", help="guest RAM (qemu -m), default 1G")
    ap.add_argument("-c", "--cpus", type=int, default=2, help="vCPUs, default 2")
    ap.add_argument("-t", "--timeout", type=float, default=600, help="seconds, default 600")
    ap.add_argument(
        "--rw",
        action="append",
        default=[],
        metavar="DIR",
        help="share DIR read-write at the same path (created if missing)",
    )
    ap.add_argument("--systemd", action="store_true", help="boot systemd as PID 1")
    ap.add_argument("--append", default="", metavar="KARGS", help="extra kernel arguments")
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="set NAME in the command's environment (VALUE defaults to ours)",
    )
    ap.add_argument("--keep-job", action="store_true", help="keep the job dir on success")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS")
    a = ap.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("no command (put it after --)")
    # A terminal's ^C or a CI cancel: let the finally in run_vm stop qemu.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        r = run_vm(
            cmd,
            mem=a.mem,
            cpus=a.cpus,
            timeout=a.timeout,
            rw=a.rw,
            systemd=a.systemd,
            append=a.append,
            env=_parse_env(a.env),
            keep_job=a.keep_job,
        )
    except HarnessError as e:
        print(f"run.py: {e}", file=sys.stderr)
        return EXIT_NO_STATUS
    except KeyboardInterrupt:
        return 130
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
