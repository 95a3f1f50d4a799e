"""proc_connector.py: the cn_proc wire format, on crafted and hostile datagrams."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prioomd.proc_connector import (
    CN_IDX_PROC,
    CN_VAL_PROC,
    NLMSG_DONE,
    PROC_CN_MCAST_LISTEN,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    PROC_EVENT_NONE,
    ProcEvent,
    control_message,
    parse_datagram,
)


def datagram(what: int, data: bytes, *, idx: int = CN_IDX_PROC, seq: int = 7,
             ack: int = 0) -> bytes:
    body = struct.pack("=IIQ", what, 0, 123) + data
    cn = struct.pack("=IIIIHH", idx, CN_VAL_PROC, seq, ack, len(body), 0)
    return struct.pack("=IHHII", 16 + len(cn) + len(body), NLMSG_DONE, 0, seq, 0) + cn + body


# captured on the development host (kernel 6.18): `true` exiting with status 1 (256)
CAPTURED_EXIT = bytes.fromhex(
    "4c00000003000000ff100000000000000100000001000000ff100000000000002800000000000080"
    "01000000f53d25957c000000e0220000e022000000010000110000005b0c00005b0c0000")


def test_captured_exit() -> None:
    assert parse_datagram(CAPTURED_EXIT) == [
        ProcEvent("exit", 8928, 8928, parent_tgid=3163, status=256, seq=4351)]


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (datagram(PROC_EVENT_FORK, struct.pack("=IIII", 10, 10, 11, 11)),
         [ProcEvent("fork", 11, 11, parent_tgid=10, seq=7)]),
        (datagram(PROC_EVENT_EXIT, struct.pack("=IIIIII", 12, 11, 9, 17, 10, 10)),
         [ProcEvent("exit", 12, 11, parent_tgid=10, status=9, seq=7)]),
        (datagram(PROC_EVENT_EXIT, struct.pack("=IIII", 12, 12, 0, 17)),  # pre-4.18: no parent
         [ProcEvent("exit", 12, 12, seq=7)]),
        (datagram(PROC_EVENT_NONE, struct.pack("=I", 1), ack=43),
         [ProcEvent("ack", status=1, seq=7, ack=43)]),
        (datagram(0x2, struct.pack("=II", 5, 5)), [ProcEvent("other", seq=7)]),  # exec
        (datagram(PROC_EVENT_FORK, struct.pack("=II", 1, 2)), [ProcEvent("other", seq=7)]),
        (datagram(PROC_EVENT_FORK, b"", idx=3), []),  # another connector
        (b"", []),
        (b"\x00" * 15, []),
        (struct.pack("=IHHII", 4, 3, 0, 0, 0), []),  # nlmsg_len shorter than its header
        (struct.pack("=IHHII", 9999, 3, 0, 0, 0), []),  # longer than the datagram
        (datagram(PROC_EVENT_FORK, struct.pack("=IIII", 1, 1, 2, 2))[:-4], []),  # truncated
    ],
)
def test_parse_datagram(raw: bytes, want: list[ProcEvent]) -> None:
    assert parse_datagram(raw) == want


def test_two_messages_in_one_datagram() -> None:
    one = datagram(PROC_EVENT_EXIT, struct.pack("=IIII", 3, 3, 0, 0))
    assert [e.pid for e in parse_datagram(one + one)] == [3, 3]


@given(st.binary(max_size=300))
def test_parse_never_raises(raw: bytes) -> None:
    parse_datagram(raw)


def test_control_message_layout() -> None:
    legacy = control_message(PROC_CN_MCAST_LISTEN, None, 5, 9)
    filtered = control_message(PROC_CN_MCAST_LISTEN, PROC_EVENT_EXIT, 5, 9)
    assert len(legacy) == 40 and len(filtered) == 44
    assert struct.unpack_from("=I", legacy, 0)[0] == 40
    assert struct.unpack_from("=IIIIHH", filtered, 16) == (CN_IDX_PROC, CN_VAL_PROC, 5, 9, 8, 0)
    assert struct.unpack_from("=II", filtered, 36) == (PROC_CN_MCAST_LISTEN, PROC_EVENT_EXIT)
