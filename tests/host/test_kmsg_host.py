"""kmsg on this host's real /dev/kmsg: a line written from userspace never counts."""

from __future__ import annotations

import os

import pytest

from prioomd import kmsg


def test_the_real_device_ignores_a_line_written_from_userspace():
    """A root process (or a tenant given /dev/kmsg) writes the kernel's words: the
    kernel files them under facility 1, so they never count."""
    k = kmsg.OomKills()
    if k.unavailable:  # a container build without CAP_SYSLOG, say
        pytest.skip(k.unavailable)
    raw = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.lseek(raw, 0, os.SEEK_END)
        with open("/dev/kmsg", "wb", buffering=0) as f:
            f.write(b"<6>oom-kill:constraint=CONSTRAINT_MEMCG,prioomd-test-forged\n")
        seen = os.read(raw, 8192)
    finally:
        os.close(raw)
    assert b"prioomd-test-forged" in seen and seen.startswith(b"14,")  # it is there...
    assert k.read() == (0, 0)  # ...and not counted
    k.close()
