"""Section 6.2: the ACK, the target's answer to each of the suite's HEARTBEATs."""

from __future__ import annotations

from conformance.context import Context
from conformance.model import Category
from conformance.registry import case
from hbproto.frame import FrameType, State

from ._common import is_ack_for


@case(
    "6.2/echo",
    "An ACK echoes the HEARTBEAT's sequence number and timestamp and names its sender",
    requires=("HB-HB-1", "HB-ACK-1"),
    category=Category.VALID,
)
async def echo(ctx: Context) -> None:
    peer = await ctx.session()
    hb = await peer.heartbeat()
    got = await peer.expect(
        "an ACK answering our HEARTBEAT",
        lambda f: f.type is FrameType.ACK and f.your_id == peer.my_id and f.seq == hb.seq,
        1.0,
    )
    ack = got.frame
    ctx.check(
        (ack.seq, ack.timestamp) == (hb.seq, hb.timestamp),
        f"seq {hb.seq} and timestamp {hb.timestamp:08x} echoed",
        f"seq {ack.seq} and timestamp {ack.timestamp:08x}",
    )
    ctx.check(ack.my_id == peer.your_id, "the target's own identifier", f"{ack.my_id:08x}")
    ctx.check(ack.state is State.UP, "Sta UP in a session that is UP", ack.state.name)


@case(
    "6.2/timestamp-opaque",
    "HEARTBEATs whose Timestamps run backwards, wrap and repeat are each answered, echoed exactly",
    requires=("HB-FRAME-10", "HB-ACK-1", "HB-HB-1"),
    category=Category.VALID,
)
async def timestamp_opaque(ctx: Context) -> None:
    peer = await ctx.session()
    for timestamp in (0xFFFF_FFFF, 0, 0x8000_0000, 0x8000_0000, 1):
        hb = await peer.heartbeat(timestamp=timestamp)
        got = await peer.expect(
            f"an ACK to the HEARTBEAT with Timestamp {timestamp:08x}", is_ack_for(hb), 1.0
        )
        ctx.check(
            got.frame.timestamp == timestamp and got.frame.state is State.UP,
            f"Timestamp {timestamp:08x} echoed, Sta UP [HB-FRAME-10]",
            f"Timestamp {got.frame.timestamp:08x}, Sta {got.frame.state.name}",
        )


@case(
    "6.2/final",
    "An ACK answering a HEARTBEAT with P set has F set",
    requires=("HB-ACK-1",),
    category=Category.VALID,
)
async def final(ctx: Context) -> None:
    peer = await ctx.session()
    hb = await peer.heartbeat(poll=True)
    got = await peer.expect(
        "an ACK answering our poll",
        lambda f: f.type is FrameType.ACK and f.seq == hb.seq,
        1.0,
    )
    ctx.check(got.frame.final, "F set in the ACK to a poll", "F clear")


@case(
    "6.2/not-larger",
    "An ACK is never larger than the HEARTBEAT it answers",
    requires=("HB-ACK-2", "HB-UDP-6"),
    category=Category.VALID,
)
async def not_larger(ctx: Context) -> None:
    peer = await ctx.session()
    hb = await peer.heartbeat()
    got = await peer.expect(
        "an ACK answering our HEARTBEAT",
        lambda f: f.type is FrameType.ACK and f.seq == hb.seq,
        1.0,
    )
    sent, answered = len(peer.encoded(hb)), len(got.raw)
    ctx.check(answered <= sent, f"an ACK of at most {sent} bytes", f"{answered} bytes")


@case(
    "6.2/one-ack",
    "Each HEARTBEAT gets exactly one ACK",
    requires=("HB-HB-1",),
    category=Category.VALID,
)
async def one_ack(ctx: Context) -> None:
    peer = await ctx.session()
    hb = await peer.heartbeat()
    await peer.expect(
        "an ACK answering our HEARTBEAT",
        lambda f: f.type is FrameType.ACK and f.seq == hb.seq,
        1.0,
    )
    await peer.expect_nothing(
        "second ACK for the same HEARTBEAT",
        lambda f: f.type is FrameType.ACK and f.seq == hb.seq,
        0.5,
    )


@case(
    "6.2/ack-unanswered",
    "An ACK the target did not ask for gets no answer and changes nothing",
    requires=("HB-ACK-4", "HB-RX-13"),
    category=Category.INOPPORTUNE,
)
async def ack_unanswered(ctx: Context) -> None:
    peer = await ctx.session()
    bogus = peer.frame(FrameType.ACK, seq=ctx.rng.randrange(1 << 32), timestamp=0x5EED)
    await peer.send(bogus, note="unsolicited ACK")
    await peer.expect_nothing(
        "ACK answering an ACK",
        lambda f: f.type is FrameType.ACK and f.seq == bogus.seq,
        0.5,
    )
    hb = await peer.heartbeat()
    got = await peer.expect(
        "the session still UP: an ACK for a probe HEARTBEAT",
        lambda f: f.type is FrameType.ACK and f.seq == hb.seq,
        1.0,
    )
    ctx.check(got.frame.state is State.UP, "Sta UP", got.frame.state.name)
