"""inotify.py: the three calls on a real kernel, and the event parser on crafted bytes."""

from __future__ import annotations

import errno
import os
import struct

import pytest

from prioomd import inotify

F = inotify.flags


def _raw(wd, mask, cookie, name=b"", pad=0):
    body = name + b"\0" * pad
    return struct.pack("iIII", wd, mask, cookie, len(body)) + body


def test_parse_reads_names_and_drops_a_truncated_tail():
    data = _raw(1, F.CREATE | F.ISDIR, 0, b"a", 15) + _raw(2, F.IGNORED, 0) \
        + _raw(3, F.MODIFY, 0, b"long-name", 7)[:-3]
    assert inotify.parse_events(data) == [inotify.Event(1, F.CREATE | F.ISDIR, 0, "a"),
                                          inotify.Event(2, F.IGNORED, 0, "")]
    assert inotify.parse_events(b"\x01\x00") == []


def test_hostile_names_decode_without_error():
    (ev,) = inotify.parse_events(_raw(1, F.CREATE, 0, b"\xff\n\x1b[2J", 4))
    assert ev.name == os.fsdecode(b"\xff\n\x1b[2J")


def test_watch_read_and_remove_on_a_real_directory(tmp_path):
    ino = inotify.INotify()
    try:
        wd = ino.add_watch(str(tmp_path), F.CREATE | F.DELETE | F.ATTRIB | F.ONLYDIR)
        assert ino.read() == []  # non-blocking: nothing yet
        (tmp_path / "d").mkdir()
        os.chmod(tmp_path / "d", 0o700)
        (tmp_path / "d").rmdir()
        got = [(e.wd, e.mask & ~F.ISDIR, e.name) for e in ino.read()]
        assert got == [(wd, F.CREATE, "d"), (wd, F.ATTRIB, "d"), (wd, F.DELETE, "d")]
        ino.rm_watch(wd)
        assert [e.mask for e in ino.read()] == [F.IGNORED]
        with pytest.raises(OSError) as exc:
            ino.add_watch(str(tmp_path / "absent"), F.CREATE)
        assert exc.value.errno == errno.ENOENT
        with pytest.raises(ValueError):
            ino.read(timeout=1)
    finally:
        ino.close()
    assert ino.closed
    ino.close()  # idempotent
