"""Section 11.2: frames on a TCP byte stream."""

from __future__ import annotations

import contextlib

import trio

from conformance.context import HANDSHAKE_WITHIN, Context
from conformance.model import Category
from conformance.registry import case
from conformance.wire import TcpWire, WireClosed
from hbproto import encode
from hbproto.frame import FrameType, State

TCP = frozenset({"tcp"})


@case(
    "11.2/byte-at-a-time",
    "A handshake delivered one byte per segment still brings the session UP",
    requires=("HB-TCP-1", "HB-TCP-3"),
    category=Category.VALID,
    transports=TCP,
)
async def byte_at_a_time(ctx: Context) -> None:
    peer = await ctx.peer()
    wire = peer.wire
    assert isinstance(wire, TcpWire)
    opening = peer.frame(FrameType.HEARTBEAT, state=State.DOWN, your_id=0)
    await wire.send_slowly(peer.encoded(opening), gap=0.005)
    got = await peer.expect(
        "Sta INIT answering a HEARTBEAT sent byte by byte",
        lambda f: f.your_id == peer.my_id and f.state is State.INIT,
        HANDSHAKE_WITHIN,
    )
    peer.your_id, peer.state = got.frame.my_id, State.UP
    up = peer.frame(FrameType.HEARTBEAT)
    await wire.send_slowly(peer.encoded(up), gap=0.005)
    await peer.expect(
        "Sta UP", lambda f: f.your_id == peer.my_id and f.state is State.UP, HANDSHAKE_WITHIN
    )


@case(
    "11.2/frames-in-one-segment",
    "Two frames in one write are each processed: a HEARTBEAT is answered, a CLOSE closes",
    requires=("HB-TCP-1", "HB-HB-1", "HB-CLOSE-3"),
    category=Category.VALID,
    transports=TCP,
)
async def frames_in_one_segment(ctx: Context) -> None:
    peer = await ctx.session()
    await peer.wait_until(trio.current_time() + peer.interval)  # not premature
    peer.keep_alive(None)
    heartbeat = peer.frame(FrameType.HEARTBEAT)
    close = peer.close_frame()
    await peer.send(
        peer.encoded(heartbeat) + peer.encoded(close), note="a HEARTBEAT and a CLOSE in one write"
    )
    await peer.expect(
        "an ACK for the HEARTBEAT",
        lambda f: f.type is FrameType.ACK and f.seq == heartbeat.seq,
        1.0,
    )
    peer.auto_ack = False
    with contextlib.suppress(WireClosed):  # the target may end the connection, as it should
        await peer.expect_nothing(
            "HEARTBEAT after the CLOSE", lambda f: f.type is FrameType.HEARTBEAT, 2.0
        )


@case(
    "11.2/unframeable-stream",
    "A stream whose next frame has a bad version is closed",
    requires=("HB-TCP-3",),
    category=Category.MALFORMED,
    transports=TCP,
)
async def unframeable_stream(ctx: Context) -> None:
    peer = await ctx.session()
    peer.keep_alive(None)
    bad = bytearray(encode(peer.frame(FrameType.HEARTBEAT)))
    bad[0] = 0x21  # version 2: the stream cannot be framed any further
    await peer.send(bytes(bad), note="version 2")
    deadline = trio.current_time() + 3.0
    try:
        while await peer.next(deadline) is not None:
            pass
    except WireClosed:
        return
    ctx.fail("the connection closed within 3 s", "still open")
