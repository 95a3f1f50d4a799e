"""The command line on fake trees: exit codes, JSON fields, messages."""

from __future__ import annotations

import io
import json
import os
import sys

import pytest

from prioomd import cli, domains
from tests import fakefs, trees

SHIPPED = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "prioomd.toml")


@pytest.fixture
def env(fake_root, tmp_path):
    cg, procs = trees.worked_example()
    root = fakefs.make_cgroupfs(fake_root, cg)
    proc = fakefs.make_procfs(fake_root, procs)
    conf = tmp_path / "prioomd.toml"
    conf.write_text("[root]\nuse_priority_oom = true\n")
    return ["--config", str(conf), "--cgroup-root", root, "--proc-root", proc], root


def run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_check_config_shipped_file_is_valid(capsys):
    rc, out, _ = run(capsys, "check-config", "--config", SHIPPED)
    assert rc == 0 and "valid" in out


def test_check_config_bad_value_exits_2_naming_file_key_value(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[cgroup]]\npath = "/a"\npriority = 13\n')
    rc, _, err = run(capsys, "check-config", "--config", str(bad))
    assert rc == 2
    assert str(bad) in err and "priority" in err and "13" in err


def test_audit_once_json_fields(capsys, env):
    args, _ = env
    rc, out, _ = run(capsys, "audit", "--once", "--json", *args)
    assert rc == 0
    lines = out.splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["domain"] == "/"
    assert rec["victim_cgroup"] == "/B/E"
    assert rec["victim_pids"] == [301]
    assert rec["kill_cgroup"] is None
    assert rec["dry_run"] is True
    assert "/B/E" in rec["reason"]


def _limit(root, rel, max_bytes=1 << 30):
    with open(os.path.join(root, rel, "memory.max"), "w") as f:
        f.write(str(max_bytes))


def test_audit_reports_every_enabled_domain(capsys, env):
    args, root = env
    os.setxattr(os.path.join(root, "A"), trees.UPO, b"1")
    _limit(root, "A")
    rc, out, _ = run(capsys, "audit", "--once", "--json", *args)
    recs = {r["domain"]: r for r in map(json.loads, out.splitlines())}
    assert rc == 0 and set(recs) == {"/", "/A"}
    assert recs["/A"]["victim_cgroup"] == "/A/C"


def test_audit_without_once_is_a_usage_error(capsys, env):
    args, _ = env
    rc, _, err = run(capsys, "audit", *args)
    assert rc == 2 and "--once" in err


def test_tree_text_marks_the_victim(capsys, env):
    args, _ = env
    rc, out, _ = run(capsys, "tree", *args)
    assert rc == 0
    line = next(x for x in out.splitlines() if x.strip().startswith("E "))
    assert "victim of /" in line and "pid 301" in line


def test_tree_json(capsys, env):
    args, _ = env
    rc, out, _ = run(capsys, "tree", "--json", *args)
    doc = json.loads(out)
    nodes = {n["path"]: n for n in doc["nodes"]}
    assert rc == 0 and nodes["/B/E"]["victim_of"] == ["/"]
    assert nodes["/A"]["priority"] == 10 and nodes["/"]["priority"] is None
    assert nodes["/B/F"]["procs"] == 1 and nodes["/B/F"]["killable"] == 1


def test_explain(capsys, env):
    args, _ = env
    rc, out, _ = run(capsys, "explain", "/B/E", *args)
    assert rc == 0 and "trusted.prioomd.priority" in out and "passes through /B/E" in out


def test_explain_missing_cgroup(capsys, env):
    args, _ = env
    rc, _, err = run(capsys, "explain", "/nope", *args)
    assert rc == 1 and "no cgroup /nope" in err


def test_set_writes_validated_xattrs(capsys, env):
    args, root = env
    rc, out, _ = run(capsys, "set", "/A/D", "--priority", "3", "--use-priority-oom", "on", *args)
    assert rc == 0
    assert os.getxattr(os.path.join(root, "A", "D"), trees.PRIO) == b"3"
    assert os.getxattr(os.path.join(root, "A", "D"), trees.UPO) == b"1"


@pytest.mark.parametrize("value", ["13", "-1", "abc", "5.0"])
def test_set_rejects_bad_priority(capsys, env, value):
    args, root = env
    rc, _, err = run(capsys, "set", "/A/D", "--priority", value, *args)
    assert rc == 2 and value in err
    assert os.getxattr(os.path.join(root, "A", "D"), trees.PRIO) == b"6"


def test_set_refuses_priority_on_root(capsys, env):
    args, _ = env
    rc, _, err = run(capsys, "set", "/", "--priority", "3", *args)
    assert rc == 2 and "root" in err


def test_set_kill_granularity_shows_in_tree(capsys, env):
    args, root = env
    rc, _, _ = run(capsys, "set", "/B/E", "--kill", "cgroup", *args)
    assert rc == 0
    assert os.getxattr(os.path.join(root, "B", "E"), "trusted.prioomd.kill") == b"cgroup"
    rc, out, _ = run(capsys, "tree", "--json", *args)
    doc = json.loads(out)
    nodes = {n["path"]: n for n in doc["nodes"]}
    assert nodes["/B/E"]["kill"] == "cgroup" and nodes["/A"]["kill"] == "process"
    rc, out, _ = run(capsys, "tree", *args)
    assert "victim of /: kill cgroup /B/E" in out


def test_set_refuses_kill_cgroup_on_root(capsys, env):
    args, _ = env
    rc, _, err = run(capsys, "set", "/", "--kill", "cgroup", *args)
    assert rc == 2 and "root" in err


def test_version_names_the_walk(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and "walk:" in capsys.readouterr().out


def test_check_config_takes_the_file_as_argument_too(capsys):
    rc, out, _ = run(capsys, "check-config", SHIPPED)
    assert rc == 0 and "valid" in out


# --- one definition of a domain, paths, output (issue 7 item 5) ------------------------


def test_use_priority_oom_without_memory_max_is_no_domain_and_says_why(capsys, env):
    args, root = env
    os.setxattr(os.path.join(root, "A"), trees.UPO, b"1")  # no memory.max of its own
    rc, out, err = run(capsys, "audit", "--once", "--json", *args)
    assert rc == 0 and [json.loads(x)["domain"] for x in out.splitlines()] == ["/"]
    assert "/A: use_priority_oom is on but it has no memory.max" in err
    rc, out, _ = run(capsys, "audit", "--once", *args)
    assert "domain /A" not in out and "/A: use_priority_oom is on but" in out
    rc, out, _ = run(capsys, "tree", *args)
    assert "victim of /A" not in out and "/A: use_priority_oom is on but" in out
    rc, out, _ = run(capsys, "tree", "--json", *args)
    doc = json.loads(out)
    assert [d["domain"] for d in doc["domains"]] == ["/"]
    assert doc["not_domains"][0]["path"] == "/A" and "memory.max" in doc["not_domains"][0][
        "reason"]
    rc, out, _ = run(capsys, "explain", "/A", *args)
    assert "/A: use_priority_oom is on but it has no memory.max" in out


def test_the_cli_audits_exactly_the_domains_the_daemon_watches(capsys, env):
    args, root = env
    for rel in ("A", "B", "B/E"):
        os.setxattr(os.path.join(root, rel), trees.UPO, b"1")
    _limit(root, "B")
    _limit(root, "B/E", 64 << 20)
    rc, out, _ = run(capsys, "audit", "--once", "--json", *args)
    audited = [json.loads(x)["domain"] for x in out.splitlines()]
    ctx = cli.load_context(cli.build_parser().parse_args(["audit", *args]))
    watched, _ = domains.discover(ctx.table, ctx.sources)
    assert audited == [d.path for d in watched] == ["/", "/B", "/B/E"]


@pytest.mark.parametrize("arg", ["B//E", "/B/E/", "//B/./E", "B/E"])
def test_cgroup_arguments_are_normalised(capsys, env, arg):
    args, root = env
    rc, out, err = run(capsys, "explain", arg, *args)
    assert rc == 0 and out.startswith("/B/E:"), err
    rc, out, err = run(capsys, "set", arg, "--priority", "2", *args)
    assert rc == 0 and os.getxattr(os.path.join(root, "B", "E"), trees.PRIO) == b"2"


def test_dot_dot_is_a_usage_error(capsys, env):
    args, _ = env
    rc, _, err = run(capsys, "explain", "B/../A", *args)
    assert rc == 2 and "'..'" in err and "Traceback" not in err


@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])
def test_a_non_utf8_cgroup_name_never_crashes_a_strict_stdout(fake_root, tmp_path, monkeypatch,
                                                              encoding):
    cg, procs = trees.worked_example()
    cg["children"]["G\udcff"] = {"xattrs": trees.prio(3)}  # the byte 0xff, as os.listdir
    root = fakefs.make_cgroupfs(fake_root, cg)
    args = ["--cgroup-root", root, "--proc-root", fakefs.make_procfs(fake_root, procs),
            "--config", str(tmp_path / "p.toml")]
    (tmp_path / "p.toml").write_text("[root]\nuse_priority_oom = true\n")
    out = io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors="strict")
    monkeypatch.setattr(sys, "stdout", out)
    assert cli.main(["tree", *args]) == 0
    out.flush()
    text = out.buffer.getvalue().decode(encoding)
    assert "G\\xff" in text  # escaped, visibly (textsafe shows the byte 0xff as \xff)


# ---------------------------------------------------------------- hostile names

EVIL = "E\x1b[2J\x07\nforged\u202e"  # the victim leaf of the worked example, renamed
EVIL_SHOWN = "E\\x1b[2J\\a\\nforged\\u202e"
EVIL_COMM = "e\nKilled pid 1"


@pytest.fixture
def hostile(fake_root, tmp_path):
    cg, procs = trees.worked_example()
    cg["children"]["B"]["children"][EVIL] = cg["children"]["B"]["children"].pop("E")
    procs[301].update(comm=EVIL_COMM, cgroup=f"/B/{EVIL}")
    procs[302]["rss_kb"] = 1  # F ranks second: its comm shows in `audit --once`
    procs[302]["comm"] = "f\x1b]0;title\x07"
    root = fakefs.make_cgroupfs(fake_root, cg)
    proc = fakefs.make_procfs(fake_root, procs)
    conf = tmp_path / "prioomd.toml"
    conf.write_text("[root]\nuse_priority_oom = true\n")
    return ["--config", str(conf), "--cgroup-root", root, "--proc-root", proc]


def test_tree_text_escapes_names_one_line_per_cgroup(capsys, hostile):
    rc, out, _ = run(capsys, "tree", *hostile)
    lines = out.splitlines()
    assert rc == 0 and all(line.isprintable() for line in lines), out
    # header, column titles, 7 cgroups, one domain line
    assert len(lines) == 10
    (leaf,) = [x for x in lines if x.strip().startswith("E\\x1b")]
    assert leaf.strip().startswith(EVIL_SHOWN) and "victim of /" in leaf
    assert lines[-1].startswith("domain /: kill: ") and f"/B/{EVIL_SHOWN}" in lines[-1]


def test_tree_json_keeps_raw_names(capsys, hostile):
    rc, out, _ = run(capsys, "tree", "--json", *hostile)
    assert rc == 0 and len(out.splitlines()) == 1
    assert f"/B/{EVIL}" in {n["path"] for n in json.loads(out)["nodes"]}


def test_audit_once_text_escapes_names(capsys, hostile):
    rc, out, _ = run(capsys, "audit", "--once", *hostile)
    lines = out.splitlines()
    assert rc == 0 and all(line.isprintable() for line in lines), out
    assert len(lines) == 5  # the decision, then #2..#5
    assert f"/B/{EVIL_SHOWN}" in lines[0] and "(e\\nKilled pid 1)" in lines[0]
    assert lines[1] == "  then #2: /B/F pid 302 (f\\x1b]0;title\\a)"


def test_audit_once_json_keeps_raw_names(capsys, hostile):
    rc, out, _ = run(capsys, "audit", "--once", "--json", *hostile)
    (rec,) = map(json.loads, out.splitlines())
    assert rc == 0 and rec["victim_cgroup"] == f"/B/{EVIL}"
    assert rec["candidates"][0]["comm"] == EVIL_COMM


def test_explain_escapes_names(capsys, hostile):
    rc, out, _ = run(capsys, "explain", f"/B/{EVIL}", *hostile)
    lines = out.splitlines()
    assert rc == 0 and all(line.isprintable() for line in lines), out
    assert lines[0] == f"/B/{EVIL_SHOWN}:"
    assert any("passes through" in line for line in lines)


def test_config_errors_are_escaped_one_problem_per_line(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('"\\u001b[2Jevil\\nkey" = 1\n[daemon]\n"x\\u202e" = 2\n')
    rc, _, err = run(capsys, "check-config", "--config", str(bad))
    lines = err.splitlines()
    assert rc == 2 and len(lines) == 2 and all(line.isprintable() for line in lines), err
    assert lines[0].startswith(f"prioomd: config error: {bad}: \\x1b[2Jevil\\nkey = 1: ")
    assert "x\\u202e" in lines[1]
