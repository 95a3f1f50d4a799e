"""Host tier fixtures: a private child of this machine's real cgroup v2 tree.

Only a cgroup2 mount is ever written, never a v1 hierarchy (this machine's
memory controller is bound to one that is not ours). Every test gets its own
``prioomd-test-<pid>-<n>`` directory; teardown kills only the processes the test
spawned (by pid), waits for them, and removes the directories bottom-up.
"""

from __future__ import annotations

import errno
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from prioomd import cgparse, cgroupfs

_counter = itertools.count()


@pytest.fixture(scope="session")
def host_cgroup_root() -> str:
    """The real cgroup2 root (``/sys/fs/cgroup/unified`` on hybrid hosts); skips
    with a reason when there is none or it is not writable."""
    try:
        root = cgroupfs.default_cgroup_root()
    except cgroupfs.NoCgroup2Mount as exc:
        pytest.skip(f"host tier: {exc}")
    with open("/proc/self/mounts", encoding="utf-8") as f:
        if root not in cgparse.cgroup2_mounts(f.read()):  # never write a v1 hierarchy
            pytest.skip(f"host tier: {root} is not a cgroup2 mount")
    probe = os.path.join(root, f"prioomd-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
    except OSError as exc:
        pytest.skip(f"host tier: cannot create a cgroup under {root}: {exc.strerror}")
    os.rmdir(probe)
    return root


def _rmdir_tree(path: str) -> None:
    """Remove a cgroup subtree bottom-up; retries EBUSY while exited tasks drain."""
    for dirpath, dirnames, _files in os.walk(path, topdown=False):
        for name in dirnames:
            _rmdir_retry(os.path.join(dirpath, name))
    _rmdir_retry(path)


def _rmdir_retry(path: str) -> None:
    deadline = time.monotonic() + 5.0
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@pytest.fixture
def host_cgroup(host_cgroup_root: str) -> Iterator[str]:
    """A fresh private cgroup directly under the real cgroup2 root."""
    path = os.path.join(host_cgroup_root, f"prioomd-test-{os.getpid()}-{next(_counter)}")
    os.mkdir(path)
    try:
        yield path
    finally:
        _rmdir_tree(path)


@pytest.fixture
def spawn(host_cgroup: str) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """``spawn(cgdir)`` starts a ``sleep`` and moves it into ``cgdir``. Teardown
    SIGKILLs and reaps exactly the processes it started; depending on
    ``host_cgroup`` makes that happen before the directories are removed."""
    started: list[subprocess.Popen[bytes]] = []

    def start(cgdir: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["sleep", "300"])
        started.append(proc)
        with open(os.path.join(cgdir, "cgroup.procs"), "w") as f:
            f.write(str(proc.pid))
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
