"""Section 4 (with 6.2 and 8.5): every frame the target sends in a session is well formed.

One session goes through the handshake, steady state, a poll, a DATA frame and a piggybacked
payload from the suite; then every frame the target sent is checked field by field from its
raw bytes, including what the codec forgives in a received frame (non-canonical interval
codes).
"""

from __future__ import annotations

import itertools

from conformance.context import Context
from conformance.model import Category
from conformance.registry import case
from hbproto import FrameError, decode, decode_interval, encode_interval
from hbproto.frame import UDP_MAX_FRAME, Frame, FrameType, Tlv, TlvType

from ._common import (
    craft,
    detection_time,
    down_or_close,
    expected_remote,
    is_ack_for,
    pace,
    silence,
    target_of,
)


def _canonical(code: int) -> bool:
    """[HB-FRAME-14]: the code a sender must use for the interval the code stands for."""
    return code == 0xFFFF or encode_interval(decode_interval(code)) == code


@case(
    "4/target-frames-well-formed",
    "Every frame the target sends is well formed: version, length, CRC, fields, canonical codes",
    requires=(
        "HB-FRAME-1",
        "HB-FRAME-2",
        "HB-FRAME-4",
        "HB-FRAME-6",
        "HB-FRAME-7",
        "HB-FRAME-8",
        "HB-FRAME-11",
        "HB-FRAME-12",
        "HB-FRAME-14",
        "HB-ID-2",
        "HB-SEQ-1",
        "HB-ACK-1",
        "HB-ACK-2",
        "HB-UDP-1",
        "HB-UDP-2",
    ),
    category=Category.VALID,
)
async def target_frames_well_formed(ctx: Context) -> None:
    peer = await ctx.session()
    await peer.expect(
        "a periodic HEARTBEAT from the target",
        lambda f: f.type is FrameType.HEARTBEAT and f.your_id == peer.my_id,
        3.0,
    )
    polled = await peer.heartbeat(poll=True)
    await peer.expect("an ACK to our poll", is_ack_for(polled), 1.0)
    await peer.send(peer.data_frame(b"conformance"))
    piggy = await peer.heartbeat(tlvs=(Tlv(TlvType.PAYLOAD, b"load=0.5"),))
    await peer.expect("an ACK to a HEARTBEAT with a payload", is_ack_for(piggy), 1.0)
    beats = sum(g.frame.type is FrameType.HEARTBEAT for g in peer.received)
    while beats < 4:
        await peer.expect(
            "periodic HEARTBEATs from the target",
            lambda f: f.type is FrameType.HEARTBEAT and f.your_id == peer.my_id,
            3.0,
        )
        beats += 1

    ours: dict[int, tuple[bool, int]] = {}  # our HEARTBEATs: seq -> (P, size)
    theirs: list[Frame] = []
    limit = UDP_MAX_FRAME if ctx.transport == "udp" else 0xFFFF
    for record in ctx.frames:
        if record.direction == "out":
            if record.raw[0] == 0x11 and len(record.raw) >= 28:
                seq = int.from_bytes(record.raw[12:16], "big")
                ours[seq] = (bool(record.raw[1] & 0x20), len(record.raw))
            continue
        raw = record.raw
        try:
            frame = decode(raw, limit)
        except FrameError as exc:
            ctx.fail(
                "only valid frames from the target (section 7's checks V-1 to V-8)",
                f"{exc.reason} at {record.time:.3f} s: {raw[:28].hex()}",
            )
        codes = (int.from_bytes(raw[20:22], "big"), int.from_bytes(raw[22:24], "big"))
        ctx.check(
            all(_canonical(c) for c in codes),
            "canonical interval codes [HB-FRAME-14]",
            f"Desired TX {codes[0]:#06x}, Required Min RX {codes[1]:#06x} in {record.summary}",
        )
        theirs.append(frame)
        if frame.type is FrameType.ACK and frame.seq in ours:
            poll, size = ours[frame.seq]
            ctx.check(frame.final == poll, "F set exactly when P was", record.summary)
            ctx.check(len(raw) <= size, f"an ACK of at most {size} bytes", f"{len(raw)} bytes")

    ids = {f.my_id for f in theirs}
    ctx.check(len(ids) == 1, "one My Identifier throughout the session", f"{len(ids)} of them")
    ctx.check(
        all(f.your_id == peer.my_id for f in theirs),
        "Your Identifier naming the suite's session",
        ", ".join(sorted({f"{f.your_id:08x}" for f in theirs})),
    )
    counted = [f.seq for f in theirs if f.type is not FrameType.ACK]
    steps = [(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(counted)]
    ok = all(s == 1 for s in steps) if ctx.transport == "tcp" else all(0 < s < 64 for s in steps)
    ctx.check(
        ok,
        "the send counter advancing by one per HEARTBEAT, DATA or CLOSE [HB-SEQ-1]",
        f"sequence numbers {counted[:12]}",
    )


@case(
    "4/non-canonical-codes",
    "Interval codes in a non-canonical unit are decoded for what they say",
    requires=("HB-FRAME-13", "HB-POLL-3", "HB-DET-2", "HB-DET-3"),
    category=Category.TIMERS,
)
async def non_canonical_codes(ctx: Context) -> None:
    peer = await ctx.session()
    await pace(peer)  # at the pace the target holds the suite to until the change arrives
    # D 200 ms as 2 x 100 ms (canonical: 0x40C8), R 100 ms as 100 x 1 ms (canonical: 0x2710).
    peer.desired_tx, peer.required_rx, peer.mult = 200_000, 100_000, 2
    poll = peer.frame(FrameType.HEARTBEAT, poll=True)
    await peer.send(craft(poll, tx_code=0x8002, rx_code=0x4064), note="D 0x8002, R 0x4064")
    await peer.expect("an ACK to our poll", is_ack_for(poll), 1.0)
    await silence(peer)
    silent_from = peer.last_sent
    target = target_of(peer)
    detection = detection_time(peer, target)
    expected = expected_remote(peer, target)
    assert expected is not None
    at, _ = await down_or_close(ctx, peer, detection + expected + 3)
    ctx.within_bound(
        f"declared down after (DetectionTime {detection:.3f} s, from D = 200 ms)",
        at - silent_from,
        detection,
        detection + expected,
    )
