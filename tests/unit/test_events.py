"""events.py without kernel facilities: window rounding, fallbacks, files, timers."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from prioomd.events import Event, EventLoop


@pytest.mark.parametrize(
    ("kind", "stall", "window"),
    [("avg", 1, 2_000_000), ("some", 0, 2_000_000), ("some", 3_000_000, 2_000_000),
     ("some", 1000, 400_000), ("full", 1000, 12_000_000)],
)
def test_invalid_trigger_requests(tmp_path: Path, kind: str, stall: int, window: int) -> None:
    with EventLoop(signals=False) as loop, pytest.raises(ValueError):
        loop.add_psi_trigger("k", str(tmp_path / "memory"), kind, stall, window)


def test_missing_psi_file_falls_back_to_polling(tmp_path: Path) -> None:
    """/proc/pressure absent (psi=0): poll instead, with the reason."""
    with EventLoop(signals=False) as loop:
        info = loop.add_psi_trigger("root", str(tmp_path / "pressure" / "memory"), "some",
                                    150_000, 2_000_000)
        assert info.mode == "polling" and "cannot open" in info.warning
        assert loop.polling_keys() == {"root"}
        loop.remove("root")
        assert loop.polling_keys() == set()


def test_duplicate_key_rejected(tmp_path: Path) -> None:
    with EventLoop(signals=False) as loop:
        loop.add_psi_trigger("k", str(tmp_path / "x"), "some", 150_000, 2_000_000)
        with pytest.raises(ValueError):
            loop.add_psi_trigger("k", str(tmp_path / "x"), "some", 150_000, 2_000_000)


def test_timeout_and_timer() -> None:
    calls: list[int] = []

    def timer() -> float:
        calls.append(1)
        return 0.01

    with EventLoop(signals=False, timer=timer) as loop:
        assert loop.wait(0.01) == [Event("timeout")]
        assert loop.wait() == [Event("timeout")]
    assert calls == [1]


def test_tick_comes_amid_an_event_storm() -> None:
    """Other events every call must not starve the periodic tick."""
    now = [0.0]

    def clock() -> float:
        now[0] += 0.3
        return now[0]

    ticks = 0
    with EventLoop(signals=False, clock=clock) as loop:
        for i in range(10):
            loop.watch_pid(f"p{i}", 2**22 + 1)  # above pid_max's ceiling: already gone
            events = loop.wait(1.0)
            assert ("proc-exit", f"p{i}") in [(e.kind, e.key) for e in events]
            ticks += sum(e.kind == "timeout" for e in events)
    assert 2 <= ticks <= 5


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.rename(tmp, path)


def test_config_watch_sees_in_place_and_atomic_writes(tmp_path: Path) -> None:
    cfg = tmp_path / "prioomd.toml"
    cfg.write_text("a = 1\n")
    with EventLoop(signals=False) as loop:
        loop.watch_config("config", str(cfg))
        (tmp_path / "unrelated").write_text("x")
        assert loop.wait(0.05) == [Event("timeout")]
        cfg.write_text("a = 2\n")
        assert [e.kind for e in loop.wait(5.0)] == ["file-changed"]
        write_atomically(cfg, "a = 3\n")
        events = loop.wait(5.0)
        assert [(e.kind, e.key) for e in events] == [("file-changed", "config")]
        assert events[0].detail["path"] == str(cfg)
        loop.remove("config")
        cfg.write_text("a = 4\n")
        assert loop.wait(0.05) == [Event("timeout")]


def test_config_directory_removed_is_reported_gone(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "prioomd.toml").write_text("a = 1\n")
    with EventLoop(signals=False) as loop:
        loop.watch_config("config", str(conf_dir / "prioomd.toml"))
        shutil.rmtree(conf_dir)
        events = loop.wait(5.0)
        assert ("gone", "config") in [(e.kind, e.key) for e in events]
        conf_dir.mkdir()  # back again: a new watch sees writes again
        loop.watch_config("config", str(conf_dir / "prioomd.toml"))
        (conf_dir / "prioomd.toml").write_text("a = 2\n")
        assert [(e.kind, e.key) for e in loop.wait(5.0)] == [("file-changed", "config")]


def test_close_restores_signal_handlers() -> None:
    before = signal.getsignal(signal.SIGHUP)
    wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup)
    loop = EventLoop()
    assert signal.getsignal(signal.SIGHUP) is not before
    loop.close()
    loop.close()  # idempotent
    assert signal.getsignal(signal.SIGHUP) is before
    assert signal.set_wakeup_fd(wakeup) == wakeup


def _swap_link(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` by rename, as Kubernetes swaps its ..data link."""
    tmp = link.with_name(link.name + "_tmp")
    tmp.symlink_to(target)
    os.rename(tmp, link)


def test_config_behind_a_symlink_target_edited_in_its_own_directory(tmp_path: Path) -> None:
    """/etc/prioomd/prioomd.toml -> /srv/cfg/prioomd.toml, the target replaced by
    rename or rewritten in place (configuration management)."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "srv").mkdir()
    target = tmp_path / "srv" / "prioomd.toml"
    target.write_text("a = 1\n")
    link = tmp_path / "etc" / "prioomd.toml"
    link.symlink_to(target)
    with EventLoop(signals=False) as loop:
        loop.watch_config("config", str(link))
        write_atomically(target, "a = 2\n")
        assert [(e.kind, e.key) for e in loop.wait(5.0)] == [("file-changed", "config")]
        target.write_text("a = 3\n")
        assert [(e.kind, e.key) for e in loop.wait(5.0)] == [("file-changed", "config")]
        (tmp_path / "srv" / "other.toml").write_text("x")
        assert loop.wait(0.05) == [Event("timeout")]


def test_config_behind_a_kubernetes_style_data_link_swap(tmp_path: Path) -> None:
    """A ConfigMap volume: prioomd.toml -> ..data/prioomd.toml, ..data -> ..v1; an
    update writes ..v2 and renames a new ..data link over the old one."""
    vol = tmp_path / "cfg"
    for version in ("..v1", "..v2", "..v3"):
        (vol / version).mkdir(parents=True)
        (vol / version / "prioomd.toml").write_text(f"# {version}\n")
    (vol / "..data").symlink_to("..v1")
    (vol / "prioomd.toml").symlink_to("..data/prioomd.toml")
    with EventLoop(signals=False) as loop:
        loop.watch_config("config", str(vol / "prioomd.toml"))
        _swap_link(vol / "..data", "..v2")
        assert [(e.kind, e.key) for e in loop.wait(5.0)] == [("file-changed", "config")]
        loop.remove("config")  # what the daemon does on reload: follow the new links
        loop.watch_config("config", str(vol / "prioomd.toml"))
        (vol / "..v1" / "prioomd.toml").write_text("# no longer the config\n")
        assert loop.wait(0.05) == [Event("timeout")]
        _swap_link(vol / "..data", "..v3")
        assert [(e.kind, e.key) for e in loop.wait(5.0)] == [("file-changed", "config")]


def test_config_watch_raises_when_nothing_on_the_way_exists(tmp_path: Path) -> None:
    """The daemon then keeps trying (see daemon._watch_config); a link whose target's
    directory is missing mid-swap is still watched where the link lives."""
    with EventLoop(signals=False) as loop:
        with pytest.raises(OSError):
            loop.watch_config("config", str(tmp_path / "absent" / "prioomd.toml"))
        link = tmp_path / "prioomd.toml"
        link.symlink_to(tmp_path / "absent" / "prioomd.toml")
        loop.watch_config("config", str(link))  # dangling: the link's directory is watched
        _swap_link(link, str(tmp_path / "other.toml"))
        assert [(e.kind, e.key) for e in loop.wait(5.0)] == [("file-changed", "config")]
