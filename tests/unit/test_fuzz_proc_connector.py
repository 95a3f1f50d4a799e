"""Fuzzing the netlink connector datagrams: any bytes give a list of events (a
truncated or foreign message is skipped), never an exception; messages built
from the kernel's structs (include/uapi/linux/cn_proc.h, connector.h,
netlink.h), packed here independently of the module, come back."""

from __future__ import annotations

import struct

from hypothesis import example, given
from hypothesis import strategies as st

from prioomd import proc_connector as pc
from tests.fuzzing import fuzz

U32 = st.integers(0, 2**32 - 1)


def nlmsg(body: bytes, nl_type: int = pc.NLMSG_DONE) -> bytes:
    """struct nlmsghdr + body, padded to NLMSG_ALIGN (4)."""
    msg = struct.pack("=IHHII", 16 + len(body), nl_type, 0, 0, 0) + body
    return msg + b"\0" * (-len(msg) % 4)


def cn_event(what: int, data: bytes, seq: int = 0, ack: int = 0,
             idx: int = pc.CN_IDX_PROC, val: int = pc.CN_VAL_PROC) -> bytes:
    """struct cn_msg + struct proc_event (what, cpu, timestamp_ns, event_data)."""
    event = struct.pack("=IIQ", what, 0, 123456789) + data
    return struct.pack("=IIIIHH", idx, val, seq, ack, len(event), 0) + event


@st.composite
def events(draw: st.DrawFn) -> tuple[bytes, pc.ProcEvent | None]:
    kind = draw(st.sampled_from(["fork", "exit", "exit_short", "ack", "other", "foreign"]))
    seq, ack = draw(U32), draw(U32)
    a, b, c, d, e, f = (draw(U32) for _ in range(6))
    if kind == "fork":
        body = cn_event(pc.PROC_EVENT_FORK, struct.pack("=IIII", a, b, c, d), seq, ack)
        return body, pc.ProcEvent("fork", c, d, parent_tgid=b, seq=seq, ack=ack)
    if kind == "exit":  # with parent_pid/parent_tgid (kernels >= 4.18)
        body = cn_event(pc.PROC_EVENT_EXIT, struct.pack("=IIIIII", a, b, c, d, e, f), seq, ack)
        return body, pc.ProcEvent("exit", a, b, parent_tgid=f, status=c, seq=seq, ack=ack)
    if kind == "exit_short":
        body = cn_event(pc.PROC_EVENT_EXIT, struct.pack("=IIII", a, b, c, d), seq, ack)
        return body, pc.ProcEvent("exit", a, b, status=c, seq=seq, ack=ack)
    if kind == "ack":
        body = cn_event(pc.PROC_EVENT_NONE, struct.pack("=I", a), seq, ack)
        return body, pc.ProcEvent("ack", status=a, seq=seq, ack=ack)
    if kind == "other":
        what = draw(st.sampled_from([0x2, 0x4, 0x40, 0x200, 0x80000001]))  # exec, uid, comm...
        body = cn_event(what, draw(st.binary(max_size=40)), seq, ack)
        return body, pc.ProcEvent("other", seq=seq, ack=ack)
    body = cn_event(pc.PROC_EVENT_FORK, struct.pack("=IIII", a, b, c, d), seq, ack, idx=a | 2)
    return body, None


@fuzz
@given(st.binary(max_size=512))
@example(struct.pack("=IHHII", 2**32 - 1, 3, 0, 0, 0) + b"\0" * 60)  # a length past the end
@example(struct.pack("=IHHII", 16, 3, 0, 0, 0) * 4)  # empty bodies
def test_arbitrary_bytes(data: bytes) -> None:
    out = pc.parse_datagram(data)
    assert isinstance(out, list)
    for ev in out:
        assert ev.kind in ("fork", "exit", "ack", "other")


@fuzz
@given(st.lists(events(), max_size=6), st.sampled_from([pc.NLMSG_DONE, 0x10]))
def test_round_trip(msgs: list[tuple[bytes, pc.ProcEvent | None]], nl_type: int) -> None:
    """A datagram of several messages: every proc event comes back, in order."""
    data = b"".join(nlmsg(body, nl_type) for body, _ in msgs)
    assert pc.parse_datagram(data) == [ev for _, ev in msgs if ev is not None]


@fuzz
@given(st.lists(events(), min_size=1, max_size=4), st.data())
def test_truncated_datagram_keeps_the_whole_messages(msgs: list[tuple[bytes, pc.ProcEvent | None]],
                                                    data: st.DataObject) -> None:
    wire = [nlmsg(body) for body, _ in msgs]
    cut = data.draw(st.integers(0, len(wire[-1]) - 1))
    got = pc.parse_datagram(b"".join(wire[:-1]) + wire[-1][:cut])
    whole = msgs if cut >= 16 + len(msgs[-1][0]) else msgs[:-1]  # a cut in the padding
    assert got == [ev for _, ev in whole if ev is not None]


@fuzz
@given(st.sampled_from([pc.PROC_CN_MCAST_LISTEN, pc.PROC_CN_MCAST_IGNORE]),
       st.one_of(st.none(), U32), U32, U32)
def test_control_message_layout(op: int, mask: int | None, seq: int, ack: int) -> None:
    """The subscription request: nlmsghdr (length right), cn_msg for cn_proc, the op."""
    msg = pc.control_message(op, mask, seq, ack)
    nl_len, nl_type = struct.unpack_from("=IH", msg)
    assert nl_len == len(msg) and nl_type == pc.NLMSG_DONE
    idx, val, cseq, cack, cn_len = struct.unpack_from("=IIIIH", msg, 16)
    assert (idx, val, cseq, cack) == (pc.CN_IDX_PROC, pc.CN_VAL_PROC, seq, ack)
    assert cn_len == len(msg) - 36 == (4 if mask is None else 8)
    assert struct.unpack_from("=I", msg, 36)[0] == op
