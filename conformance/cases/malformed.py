"""Sections 5 and 7 inside a live session: TLVs a receiver must ignore or reject, and invalid
frames that carry the session's own identifiers.

The test vectors of section 7's cases name sessions the target does not have, so they would be
dropped at V-9 even if a check were missing. Here every defective frame carries the suite's
and the target's identifiers and a fresh sequence number, and most carry Sta DOWN (a CLOSE
closes, a DATA frame with Sta DOWN reports DOWN): were the defect overlooked, the frame would
be answered or would take the session down. So each group must draw no answer and leave the
session UP ([HB-RX-14]).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from conformance.context import Context
from conformance.model import Category, Failed
from conformance.peer import ScriptedPeer
from conformance.registry import BOTH, case
from conformance.wire import WireClosed
from hbproto import encode
from hbproto.frame import FrameType, State, Tlv, TlvType

from ._common import (
    answered_or_changed,
    craft,
    is_ack_for,
    still_up,
    stream_closed_for_protocol_error,
    tlv,
)

UDP = frozenset({"udp"})
_AUTH = tlv(TlvType.AUTH, bytes([1]) + bytes(range(16)))  # well formed, but auth is not in use


def _v1(peer: ScriptedPeer) -> list[tuple[str, bytes]]:
    return [
        ("an empty datagram", b""),
        ("version 2", craft(peer.frame(FrameType.HEARTBEAT, state=State.DOWN), version=2)),
        ("version 0", craft(peer.frame(FrameType.HEARTBEAT, state=State.DOWN), version=0)),
        ("version 15", craft(peer.frame(FrameType.HEARTBEAT, state=State.DOWN), version=15)),
    ]


def _v2(peer: ScriptedPeer) -> list[tuple[str, bytes]]:
    return [
        ("27 bytes", encode(peer.frame(FrameType.HEARTBEAT, state=State.DOWN))[:27]),
        ("24 bytes", encode(peer.frame(FrameType.HEARTBEAT, state=State.DOWN))[:24]),
        ("1 byte", b"\x11"),
    ]


def _v4(peer: ScriptedPeer) -> list[tuple[str, bytes]]:
    hb = peer.frame
    return [
        ("Length 29 in 28 bytes", craft(hb(FrameType.HEARTBEAT, state=State.DOWN), length=29)),
        ("Length 27 in 28 bytes", craft(hb(FrameType.HEARTBEAT, state=State.DOWN), length=27)),
        (
            "a byte after the frame",
            encode(hb(FrameType.HEARTBEAT, state=State.DOWN)) + b"\x00",
        ),
    ]


def _v5(peer: ScriptedPeer) -> list[tuple[str, bytes]]:
    zeroed = encode(peer.frame(FrameType.HEARTBEAT, state=State.DOWN))[:-4] + bytes(4)
    return [
        (
            "one CRC bit flipped",
            craft(peer.frame(FrameType.HEARTBEAT, state=State.DOWN), flip_crc=True),
        ),
        ("CRC zero", zeroed),
        ("a CLOSE with a bad CRC", craft(peer.close_frame(), flip_crc=True)),
    ]


def _v6(peer: ScriptedPeer) -> list[tuple[str, bytes]]:
    return [
        (f"type {t}", craft(peer.frame(FrameType.HEARTBEAT, state=State.DOWN), ftype=t))
        for t in (0, 5, 15)
    ]


def _v7(peer: ScriptedPeer) -> list[tuple[str, bytes]]:
    f = peer.frame
    hb = FrameType.HEARTBEAT
    return [
        ("Mult 0", craft(f(hb, state=State.DOWN), mult=0)),
        ("Sta CLOSED in a HEARTBEAT", craft(f(hb), state=State.CLOSED)),
        ("F in a HEARTBEAT", craft(f(hb, state=State.DOWN), final=True)),
        ("My Identifier 0", craft(dataclasses.replace(f(hb, state=State.DOWN), my_id=0))),
        (
            "Your Identifier 0 with Sta UP",
            craft(dataclasses.replace(f(hb, state=State.UP), your_id=0)),
        ),
        ("Desired TX 0x0000", craft(f(hb, state=State.DOWN), tx_code=0x0000)),
        ("Desired TX 0x8000 (N = 0)", craft(f(hb, state=State.DOWN), tx_code=0x8000)),
        ("DATA with Sta DOWN", craft(peer.data_frame(b"x"), state=State.DOWN)),
        ("P in a DATA frame", craft(peer.data_frame(b"x"), poll=True)),
        ("a CLOSE with Sta UP", craft(peer.close_frame(), state=State.UP)),
        ("a CLOSE with Mult 0", craft(peer.close_frame(), mult=0)),
    ]


def _v8(peer: ScriptedPeer) -> list[tuple[str, bytes]]:
    f = peer.frame
    hb = FrameType.HEARTBEAT
    payload = tlv(TlvType.PAYLOAD, b"x")
    text = tlv(TlvType.CLOSE_TEXT, b"bye")
    return [
        ("unknown critical TLV 0x81", craft(f(hb, state=State.DOWN), tlvs=tlv(0x81, b""))),
        ("private critical TLV 0xF0", craft(f(hb, state=State.DOWN), tlvs=tlv(0xF0, b"x"))),
        ("two PAYLOADs", craft(f(hb, state=State.DOWN), tlvs=payload + payload)),
        ("PAYLOAD of 129 bytes", craft(f(hb, state=State.DOWN), tlvs=tlv(1, bytes(129)))),
        ("CLOSE_TEXT in a HEARTBEAT", craft(f(hb, state=State.DOWN), tlvs=text)),
        ("a TLV longer than its area", craft(f(hb, state=State.DOWN), tlvs=b"\x03\x00\x0axy")),
        ("two stray bytes", craft(f(hb, state=State.DOWN), tlvs=b"\x03\x00")),
        ("AUTH of 16 bytes", craft(f(hb, state=State.DOWN), tlvs=tlv(0x80, bytes(16)))),
        ("AUTH before a PAYLOAD", craft(f(hb, state=State.DOWN), tlvs=_AUTH + payload)),
        ("DATA without PAYLOAD", craft(peer.data_frame(b"x"), tlvs=b"")),
        ("a CLOSE with a PAYLOAD", craft(peer.close_frame(), tlvs=payload)),
        ("CLOSE_TEXT not UTF-8", craft(peer.close_frame(), tlvs=tlv(2, b"\xff\xfe"))),
        ("CLOSE_TEXT of 124 bytes", craft(peer.close_frame(), tlvs=tlv(2, b"a" * 124))),
        ("two CLOSE_TEXTs", craft(peer.close_frame(), tlvs=text + text)),
    ]


def _v11(peer: ScriptedPeer) -> list[tuple[str, bytes]]:
    return [
        (
            "a HEARTBEAT with AUTH",
            craft(peer.frame(FrameType.HEARTBEAT, state=State.DOWN), tlvs=_AUTH),
        ),
        ("a CLOSE with AUTH", craft(peer.close_frame(), tlvs=_AUTH)),
        ("DATA with AUTH", craft(peer.data_frame(b"x"), state=State.UP, tlvs=tlv(1, b"x") + _AUTH)),
    ]


_GROUPS: list[
    tuple[str, str, str, Callable[[ScriptedPeer], list[tuple[str, bytes]]], frozenset[str]]
] = [
    ("V-1", "bad_version", "HB-RX-1", _v1, UDP),
    ("V-2", "truncated", "HB-RX-2", _v2, UDP),
    ("V-4", "bad_length", "HB-RX-4", _v4, UDP),
    ("V-5", "bad_checksum", "HB-RX-5", _v5, BOTH),
    ("V-6", "unknown_type", "HB-RX-6", _v6, BOTH),
    ("V-7", "bad_field", "HB-RX-7", _v7, BOTH),
    ("V-8", "bad_tlv", "HB-RX-8", _v8, BOTH),
    ("V-11", "auth_unexpected", "HB-RX-11", _v11, BOTH),
]


# What else each group checks: the rule a defect breaks, beside the check that catches it.
_ALSO = {
    "V-5": ("HB-FRAME-16",),
    "V-6": ("HB-FRAME-3",),
    "V-7": ("HB-FRAME-5",),
    "V-8": ("HB-TLV-1", "HB-TLV-3", "HB-TLV-6", "HB-TLV-7"),
    "V-11": ("HB-AUTH-5",),
}


def _register(
    check: str,
    error: str,
    requirement: str,
    build: Callable[[ScriptedPeer], list[tuple[str, bytes]]],
    transports: frozenset[str],
) -> None:
    extra = _ALSO.get(check, ()) + (("HB-TCP-5",) if "tcp" in transports else ())

    @case(
        f"7/{check}-in-session",
        f"Frames of the session that fail {check} ({error}) get no answer and change nothing",
        requires=(requirement, "HB-RX-14", *extra),
        category=Category.MALFORMED,
        transports=transports,
    )
    async def run(ctx: Context) -> None:
        peer = await ctx.session()
        bad = build(peer)
        seqs = {int.from_bytes(raw[12:16], "big") for _, raw in bad if len(raw) >= 16}
        try:
            for what, raw in bad:
                await peer.send(raw, note=what)
            await peer.expect_nothing(
                "answer to an invalid frame, nor a change of state",
                answered_or_changed(peer, seqs),
                0.2,
            )
            await still_up(ctx, peer, f"{len(bad)} invalid frames")
        except (WireClosed, Failed):
            if stream_closed_for_protocol_error(ctx, peer):
                return  # [HB-TCP-5]: a receiver MAY close after repeated invalid frames
            raise


for _check, _error, _requirement, _build, _transports in _GROUPS:
    _register(_check, _error, _requirement, _build, _transports)


@case(
    "5.1/unknown-noncritical-tlv",
    "A HEARTBEAT with unknown non-critical TLVs is processed as if they were absent",
    requires=("HB-TLV-2", "HB-REG-1", "HB-HB-1", "HB-ACK-2"),
    category=Category.VALID,
)
async def unknown_noncritical_tlv(ctx: Context) -> None:
    peer = await ctx.session()
    # Unassigned (0x03, twice: only known types must not repeat) and private (0x70-0x7f).
    unknown = (Tlv(0x03, b"abc"), Tlv(0x03, b""), Tlv(0x70, b""), Tlv(0x7F, bytes(10)))
    hb = await peer.heartbeat(tlvs=unknown)
    got = await peer.expect("an ACK to the HEARTBEAT", is_ack_for(hb), 1.0)
    ctx.check(got.frame.state is State.UP, "Sta UP", got.frame.state.name)
    sent, answered = len(peer.encoded(hb)), len(got.raw)
    ctx.check(answered <= sent, f"an ACK of at most {sent} bytes", f"{answered} bytes")


@case(
    "5.2/piggyback-processed",
    "A HEARTBEAT carrying a 128-byte PAYLOAD is answered by an ACK no larger than it",
    requires=("HB-TLV-8", "HB-TLV-4", "HB-HB-1", "HB-ACK-2"),
    category=Category.VALID,
)
async def piggyback_processed(ctx: Context) -> None:
    peer = await ctx.session()
    hb = await peer.heartbeat(tlvs=(Tlv(TlvType.PAYLOAD, bytes(range(128))),))
    got = await peer.expect("an ACK to the HEARTBEAT with a payload", is_ack_for(hb), 1.0)
    ctx.check(got.frame.state is State.UP, "Sta UP", got.frame.state.name)
    sent, answered = len(peer.encoded(hb)), len(got.raw)
    ctx.check(answered <= sent, f"an ACK of at most {sent} bytes", f"{answered} bytes")
