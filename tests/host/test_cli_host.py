"""End to end on this machine's real cgroup v2 tree: `prioomd set`, `tree` and
`audit --once --json` as an operator runs them, on spec §3.5's worked example.

The tree is a private subtree used as the cgroup root, so only processes this
test started are ever looked at. There is no memory controller here: usage
counts as 0 and the priorities (then the creation order) decide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

LAYOUT = {"A": 10, "A/C": 5, "A/D": 6, "B": 8, "B/E": 7, "B/F": 8}


def prioomd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prioomd", *args], capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.fixture
def example(host_cgroup, spawn, tmp_path):
    conf = tmp_path / "prioomd.toml"
    conf.write_text("[root]\nuse_priority_oom = true\n")
    common = ["--cgroup-root", host_cgroup, "--config", str(conf)]
    pids = {}
    for rel, prio in LAYOUT.items():
        os.mkdir(os.path.join(host_cgroup, rel))
        r = prioomd("set", "/" + rel, "--priority", str(prio), *common)
        assert r.returncode == 0, r.stderr
    for leaf in ("A/C", "A/D", "B/E", "B/F"):
        pids[leaf] = spawn(os.path.join(host_cgroup, leaf)).pid
    return common, pids


def audit(common):
    r = prioomd("audit", "--once", "--json", *common)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_worked_example_victim_is_e(example):
    common, pids = example
    (rec,) = audit(common)
    assert rec["domain"] == "/"
    assert rec["victim_cgroup"] == "/B/E"
    assert rec["victim_pids"] == [pids["B/E"]]
    assert rec["kill_cgroup"] is None and rec["dry_run"] is True
    assert [c["victim_cgroup"] for c in rec["candidates"]] == ["/B/E", "/B/F", "/A/C", "/A/D"]


def test_equal_priority_goes_to_the_older_sibling(example, host_cgroup):
    common, pids = example
    r = prioomd("set", "/B/F", "--priority", "7", *common)
    assert r.returncode == 0, r.stderr
    (rec,) = audit(common)
    assert rec["victim_cgroup"] == "/B/E"  # E was created before F


def test_priority_change_moves_the_victim(example):
    common, pids = example
    assert prioomd("set", "/A", "--priority", "1", *common).returncode == 0
    (rec,) = audit(common)
    assert rec["victim_cgroup"] == "/A/C" and rec["victim_pids"] == [pids["A/C"]]


def test_tree_json_marks_victim_and_sources(example):
    common, _ = example
    # No memory controller here, so no memory.oom.group: that is for the
    # real-kernel tier.
    r = prioomd("tree", "--json", *common)
    assert r.returncode == 0, r.stderr
    nodes = {n["path"]: n for n in json.loads(r.stdout)["nodes"]}
    assert nodes["/B/E"]["victim_of"] == ["/"]
    assert nodes["/B/E"]["priority_source"] == "xattr trusted.prioomd.priority"
    assert all(not n["oom_group"] for n in nodes.values())


def test_tree_text_says_which_root_and_controllers(example, host_cgroup):
    common, _ = example
    r = prioomd("tree", *common)
    assert r.returncode == 0, r.stderr
    assert host_cgroup in r.stdout.splitlines()[0]
    assert "no memory controller" in r.stdout.splitlines()[0]


# ---------------------------------------------------------------- hostile names
# The kernel refuses a newline in a cgroup name (cgroup_mkdir: EINVAL) but takes
# ESC, BEL, bidi overrides and bytes that are not UTF-8; a process name takes
# anything but NUL, newline included.

EVIL_NAME = b"evil\x1b[2J\x1b]0;pwned\x07\xe2\x80\xae\xff"
EVIL_SHOWN = "evil\\x1b[2J\\x1b]0;pwned\\a\\u202e\\xff"
EVIL_COMM = b"a\nKilled pid 1)"  # 15 bytes: all of TASK_COMM_LEN but the NUL
EVIL_COMM_SHOWN = "a\\nKilled pid 1)"


def prioomd_bytes(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "prioomd", *args], capture_output=True,
                          timeout=60, check=False)


@pytest.fixture
def hostile(host_cgroup, tmp_path):
    """A cgroup with a hostile name holding a process whose comm is hostile too."""
    conf = tmp_path / "prioomd.toml"
    conf.write_text("[root]\nuse_priority_oom = true\n")
    cgdir = os.path.join(os.fsencode(host_cgroup), EVIL_NAME)
    os.mkdir(cgdir)
    code = ("import ctypes, sys, time\n"
            f"ctypes.CDLL(None).prctl(15, {EVIL_COMM!r}, 0, 0, 0)\n"  # PR_SET_NAME
            "sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(300)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        with open(os.path.join(cgdir, b"cgroup.procs"), "w") as f:
            f.write(str(child.pid))
        with open(f"/proc/{child.pid}/comm", "rb") as f:
            assert f.read() == EVIL_COMM + b"\n"
        yield ["--cgroup-root", host_cgroup, "--config", str(conf)], child.pid
    finally:
        child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()


def _lines(out: bytes) -> list[str]:
    text = out.decode("utf-8")  # strict: no raw byte that is not UTF-8 got through
    lines = text.splitlines()
    assert all(line.isprintable() for line in lines), text
    return lines


def test_tree_and_audit_text_escape_hostile_names(hostile):
    common, pid = hostile
    r = prioomd_bytes("tree", *common)
    assert r.returncode == 0, r.stderr
    lines = _lines(r.stdout)
    assert len(lines) == 5  # header, column titles, root, the cgroup, the domain line
    assert lines[3].startswith(f"  {EVIL_SHOWN}  ") and f"victim of /: pid {pid}" in lines[3]
    r = prioomd_bytes("audit", "--once", *common)
    assert r.returncode == 0, r.stderr
    (line,) = _lines(r.stdout)
    assert f"/{EVIL_SHOWN}" in line and f"pid {pid} ({EVIL_COMM_SHOWN})" in line


def test_audit_json_keeps_the_raw_names(hostile):
    common, pid = hostile
    r = prioomd_bytes("audit", "--once", "--json", *common)
    assert r.returncode == 0, r.stderr
    (rec,) = map(json.loads, r.stdout.splitlines())
    assert rec["victim_cgroup"].encode("utf-8", "surrogateescape") == b"/" + EVIL_NAME
    assert rec["candidates"][0]["comm"].encode() == EVIL_COMM
    assert rec["victim_pids"] == [pid]


def test_daemon_log_escapes_hostile_names(hostile):
    """The daemon's stderr (the journal stream under systemd, without
    systemd-python) gets one line per record: its self-test names the victim."""
    common, pid = hostile
    r = prioomd_bytes("run", "--dry-run", "--exit-after", "1", "--audit-file", "", *common)
    assert r.returncode == 0, r.stderr
    lines = _lines(r.stderr)
    assert all(line.startswith("prioomd: ") for line in lines), lines
    (self_test,) = [x for x in lines if "self-test" in x]
    assert self_test.endswith(f"victim would be /{EVIL_SHOWN} pid {pid} ({EVIL_COMM_SHOWN})")
