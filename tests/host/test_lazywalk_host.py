"""lazywalk.decide on this machine's real cgroup v2 tree: the same decision as the
full snapshot, with the kernel's own ``cgroup.events`` and ``cgroup.procs``.

The private test directory is the OOM domain, so only processes this test
started are looked at. No memory controller here: every cgroup is a node and
the priorities, then the creation order, decide.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from prioomd import config, lazywalk, select, snapshot, table

TABLE = table.PriorityTable(config.Config())
PRIO = "trusted.prioomd.priority"


def _decide(root: str, domain: str, **kw: object):
    src = snapshot.Sources(cgroup_root=root)
    snap, _ = snapshot.take(domain, TABLE, src)
    full = select.select_victims(snap, **kw)
    lazy, _, _ = lazywalk.decide(domain, TABLE, src, **kw)
    return full, lazy


def _mkdir(path: str, prio: int) -> str:
    os.mkdir(path)
    os.setxattr(path, PRIO, str(prio).encode())
    return path


def test_worked_example_on_the_real_tree(host_cgroup_root, host_cgroup, spawn):
    dirs = {}
    for rel, prio in {"A": 10, "A/C": 5, "A/D": 6, "B": 8, "B/E": 7, "B/F": 8}.items():
        dirs[rel] = _mkdir(os.path.join(host_cgroup, rel), prio)
    pids = {leaf: spawn(dirs[leaf]).pid for leaf in ("A/C", "A/D", "B/E", "B/F")}
    domain = "/" + os.path.basename(host_cgroup)
    full, lazy = _decide(host_cgroup_root, domain)
    assert [c.pid for c in lazy.candidates] == [c.pid for c in full.candidates] == [
        pids["B/E"], pids["B/F"], pids["A/C"], pids["A/D"]]
    assert lazy.walk == full.walk == (domain, f"{domain}/B", f"{domain}/B/E")


def test_a_cgroup_populated_by_a_thread_alone_is_passed_over(host_cgroup_root, host_cgroup,
                                                             spawn):
    """A threaded child holding one thread of a process listed in its parent: the
    kernel says populated 1 and refuses its cgroup.procs. It has the lowest
    priority under dom, so once the walk reaches dom it tries it first, finds no
    process and moves on: the same victims as the full walk, whose count for it
    is 0."""
    dom = _mkdir(os.path.join(host_cgroup, "dom"), 5)
    other = _mkdir(os.path.join(host_cgroup, "other"), 3)
    threaded = _mkdir(os.path.join(dom, "t"), 0)
    with open(os.path.join(threaded, "cgroup.type"), "w") as f:
        f.write("threaded")
    proc = subprocess.Popen([sys.executable, "-c",
                             "import threading, time\n"
                             "threading.Thread(target=time.sleep, args=(300,)).start()\n"
                             "time.sleep(300)\n"])
    try:
        with open(os.path.join(dom, "cgroup.procs"), "w") as f:
            f.write(str(proc.pid))
        tids: list[str] = []
        deadline = time.monotonic() + 10
        while len(tids) < 2 and time.monotonic() < deadline:
            tids = os.listdir(f"/proc/{proc.pid}/task")
            time.sleep(0.01)
        thread = next(t for t in tids if t != str(proc.pid))
        with open(os.path.join(threaded, "cgroup.threads"), "w") as f:
            f.write(thread)
        with open(os.path.join(threaded, "cgroup.events")) as f:
            assert "populated 1" in f.read()
        sleeper = spawn(other).pid
        domain = "/" + os.path.basename(host_cgroup)
        for compat in (False, True):
            full, lazy = _decide(host_cgroup_root, domain, kernel_compat=compat)
            assert [c.pid for c in lazy.candidates] == [c.pid for c in full.candidates]
            # other (3) is below dom (5): its sleeper first, then dom's process,
            # found in dom itself (its threaded child holds no process of its own).
            assert [(c.victim_cgroup, c.pid) for c in lazy.candidates] == [
                (f"{domain}/other", sleeper), (f"{domain}/dom", proc.pid)]
    finally:
        proc.kill()
        proc.wait(timeout=10)
