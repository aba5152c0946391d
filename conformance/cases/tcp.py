"""Section 11.2 (with 9.3): the faults only a byte stream has.

A frame that never finishes, trickled byte by byte, is no proof of life; a connection whose
session never comes UP is closed, whether the suite sent half a handshake or nothing at all;
and the largest frame a TCP receiver must accept brings a session UP.
"""

from __future__ import annotations

import contextlib

import trio

from conformance.context import Context
from conformance.model import Category, Level
from conformance.registry import case
from conformance.wire import TcpWire, WireClosed
from hbproto.frame import MAX_FRAME, FrameType, State, Tlv, TlvType

from ._common import (
    TIMER_SLACK,
    detection_time,
    expected_remote,
    is_ack_for,
    open_to_init,
    pace,
    silence,
    target_of,
)
from .exchange import data_brings_up

TCP = frozenset({"tcp"})
# How long the suite waits when nothing but HANDSHAKE_TIMEOUT bounds the target (SPEC 8.2's
# default, 10 s: a local setting the suite cannot read from the wire).
HANDSHAKE_TIMEOUT = 10.0


async def _closed_at(ctx: Context, wire: TcpWire, until: float) -> float | None:
    """When the target ended the connection (a CLOSE or the end of the stream), reading and
    discarding everything until then; ``None`` if it is still open at ``until``."""
    try:
        while (raw := await wire.receive(until)) is not None:
            if raw[:1] == b"\x14":  # a CLOSE: the connection ends after it [HB-TCP-12]
                return trio.current_time()
    except WireClosed:
        return trio.current_time()
    return None


@case(
    "11.2/partial-frame",
    "A frame trickled a byte at a time and never finished does not keep the suite alive",
    requires=("HB-TCP-4", "HB-DET-1", "HB-DET-2", "HB-DET-3"),
    category=Category.MALFORMED,
    transports=TCP,
)
async def partial_frame(ctx: Context) -> None:
    peer = await ctx.session()
    wire = peer.wire
    assert isinstance(wire, TcpWire)
    target = target_of(peer)
    detection = detection_time(peer, target)
    expected = expected_remote(peer, target)
    assert expected is not None
    hb = await peer.heartbeat()
    await peer.expect("an ACK to our HEARTBEAT", is_ack_for(hb), 1.0)
    await silence(peer)
    silent_from = peer.last_sent
    raw = peer.encoded(peer.frame(FrameType.HEARTBEAT))
    step = expected / 4

    async def trickle() -> None:
        """All but the last byte, spread over longer than DetectionTime."""
        with contextlib.suppress(WireClosed):
            await wire.send_slowly(raw[:-1], gap=step, note="a byte at a time, all but the last")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle)
        at = await _closed_at(ctx, wire, silent_from + detection + expected + 3)
        nursery.cancel_scope.cancel()
    if at is None:
        ctx.fail("the connection ended by the detection timer", "still open")
    ctx.within_bound(
        f"connection ended after (DetectionTime {detection:.3f} s)",
        at - silent_from,
        detection,
        detection + expected,
    )


@case(
    "11.2/handshake-deadline",
    "A connection whose session stays INIT is closed within DetectionTime with the slow-start "
    "interval of its opening",
    requires=("HB-TCP-11", "HB-DET-8"),
    category=Category.TIMERS,
    transports=TCP,
)
async def handshake_deadline(ctx: Context) -> None:
    opened = trio.current_time()
    peer = await ctx.peer(mult=1)  # DetectionTime 1 x max(ExpectedRemote, 1 s)
    wire = peer.wire
    assert isinstance(wire, TcpWire)
    await open_to_init(peer)
    await silence(peer)
    limit = detection_time(peer, target_of(peer), slow_start=True)
    at = await _closed_at(ctx, wire, opened + limit + 3)
    if at is None:
        ctx.fail(f"the connection closed within {limit:.3f} s of opening", "still open")
    ctx.within_bound(
        f"closed after (DetectionTime with the slow-start interval {limit:.3f} s)",
        at - opened,
        0.0,
        limit + TIMER_SLACK,
    )


@case(
    "11.2/half-open",
    "A connection on which nothing is ever sent is closed within HANDSHAKE_TIMEOUT "
    "(the default, 10 s, assumed)",
    requires=("HB-TCP-11",),
    category=Category.TIMERS,
    transports=TCP,
)
async def half_open(ctx: Context) -> None:
    opened = trio.current_time()
    wire = await ctx.wire()
    assert isinstance(wire, TcpWire)
    at = await _closed_at(ctx, wire, opened + HANDSHAKE_TIMEOUT + 3)
    if at is None:
        ctx.fail(f"the connection closed within {HANDSHAKE_TIMEOUT:g} s", "still open")
    ctx.within_bound(
        "closed after (HANDSHAKE_TIMEOUT)", at - opened, 0.0, HANDSHAKE_TIMEOUT + TIMER_SLACK
    )


@case(
    "11.2/largest-frame",
    "A 65535-byte DATA frame is accepted: it brings a session in INIT UP",
    requires=("HB-TCP-3", "HB-RX-3", "HB-DATA-2"),
    category=Category.VALID,
    transports=TCP,
)
async def largest_frame(ctx: Context) -> None:
    await data_brings_up(ctx, await ctx.peer(), MAX_FRAME)


async def _target_closes(ctx: Context) -> tuple[bool, list[str], str]:
    """Make the target end the connection (the suite reports DOWN, [HB-TCP-6]) with frames of
    the suite's still in flight; then end the suite's side once the CLOSE is read. Whether a
    CLOSE came, the frames after it, and how the stream ended ("eof" or "reset")."""
    peer = await ctx.session()
    wire = peer.wire
    assert isinstance(wire, TcpWire)
    peer.keep_alive(None)
    await pace(peer)
    await silence(peer)
    peer.state = State.DOWN
    await peer.heartbeat(paced=False)
    peer.state = State.UP
    for _ in range(3):  # already on their way when the target decides to close
        await peer.send(peer.frame(FrameType.DATA, tlvs=(Tlv(TlvType.PAYLOAD, b"late"),)))
    after: list[str] = []
    closed = False
    try:
        while True:
            got = await peer.next(trio.current_time() + 3.0)
            if got is None:
                ctx.fail("the connection ended after the CLOSE", "still open 3 s on")
            if closed:
                after.append(got.frame.type.name)
            elif got.frame.type is FrameType.CLOSE:
                closed = True
                await wire.stream.send_eof()  # our end, as [HB-TCP-12] asks of a receiver
    except WireClosed as end:
        return closed, after, end.how


@case(
    "11.2/close-is-last",
    "The target's CLOSE is the last frame it writes on the stream",
    requires=("HB-TCP-12", "HB-TCP-6"),
    category=Category.INOPPORTUNE,
    transports=TCP,
)
async def close_is_last(ctx: Context) -> None:
    closed, after, _ = await _target_closes(ctx)
    ctx.check(closed, "a CLOSE before the end of the connection [HB-TCP-6]", "no CLOSE")
    ctx.check(not after, "nothing after the CLOSE", ", ".join(after))


@case(
    "11.2/close-no-reset",
    "Frames in flight when the target closes do not make it reset the connection",
    requires=("HB-TCP-12",),
    level=Level.SHOULD,  # shut down, then read until the end of stream: a FIN, not a reset
    category=Category.INOPPORTUNE,
    transports=TCP,
)
async def close_no_reset(ctx: Context) -> None:
    _, _, how = await _target_closes(ctx)
    ctx.check(how == "eof", "the end of the stream (a FIN) after the CLOSE", f"a {how}")
