"""Section 6: what each frame type makes the target do, with well-formed, well-timed input.

HEARTBEATs are answered promptly, a session says nothing but ACKs until its address is
verified, a state change that no ACK reports goes out in one triggered HEARTBEAT, and DATA
frames are proof of life that carry their Sta like any other frame but are never answered.
"""

from __future__ import annotations

import statistics

import trio

from conformance.context import Context
from conformance.model import Category, Failed, Inconclusive
from conformance.peer import ScriptedPeer
from conformance.registry import case
from conformance.wire import WireClosed
from hbproto.frame import AUTH_TLV_SIZE, CloseCode, FrameType, State, Tlv, TlvType

from ._common import (
    detection_time,
    expected_remote,
    is_ack_for,
    open_to_init,
    still_up,
    target_of,
)

UDP = frozenset({"udp"})


@case(
    "6.1/silent-until-verified",
    "A session the suite opened sends only ACKs until the suite echoes its identifier",
    requires=("HB-HB-4", "HB-TX-2"),
    category=Category.VALID,
    transports=UDP,
)
async def silent_until_verified(ctx: Context) -> None:
    peer = await ctx.peer()
    await open_to_init(peer)
    peer.auto_ack = False
    # Slow start would send a periodic HEARTBEAT within 1 s; an unverified session sends none.
    await peer.expect_nothing(
        "frame other than an ACK before the address is verified",
        lambda f: f.type is not FrameType.ACK,
        1.15,
    )


@case(
    "6.1/triggered-on-ack",
    "An ACK reporting Sta DOWN brings the target DOWN with one triggered HEARTBEAT (a CLOSE "
    "on TCP), and is not itself answered",
    requires=("HB-HB-2", "HB-HB-3", "HB-ACK-4", "HB-SM-1", "HB-TCP-6"),
    category=Category.VALID,
)
async def triggered_on_ack(ctx: Context) -> None:
    peer = await ctx.session()
    peer.auto_ack = False
    got = await peer.expect(
        "a periodic HEARTBEAT from the target",
        lambda f: f.type is FrameType.HEARTBEAT and f.your_id == peer.my_id,
        3.0,
    )
    peer.keep_alive(None)
    hb = got.frame
    down = peer.frame(
        FrameType.ACK, state=State.DOWN, seq=hb.seq, timestamp=hb.timestamp, your_id=hb.my_id
    )
    await peer.send(down, note="ACK with Sta DOWN")
    peer.state = State.DOWN
    sent = trio.current_time()
    if ctx.transport == "tcp":
        try:
            close = await peer.expect(
                "a CLOSE in place of the triggered HEARTBEAT [HB-TCP-6]",
                lambda f: (
                    f.type is FrameType.CLOSE
                    or (f.type is FrameType.HEARTBEAT and f.state is not State.UP)
                ),
                0.5,
            )
        except WireClosed:
            ctx.fail("a CLOSE before the end of the connection [HB-TCP-6]", "no CLOSE")
        ctx.check(
            close.frame.type is FrameType.CLOSE,
            "a CLOSE, not a HEARTBEAT with Sta DOWN",
            close.frame.type.name,
        )
        ctx.check(
            close.frame.close_code == CloseCode.UNSPECIFIED,
            "reason unspecified (0): the peer reported DOWN",
            f"reason {close.frame.close_code}",
        )
        return
    first = await peer.expect(
        "a triggered HEARTBEAT with Sta DOWN",
        lambda f: f.type is FrameType.HEARTBEAT and f.state is State.DOWN,
        0.5,
    )
    ctx.timings["triggered after"] = first.time - sent
    # The next periodic HEARTBEAT is at least 0.75 s away (slow start, [HB-TX-1], [HB-TX-2]).
    await peer.expect_nothing(
        "second HEARTBEAT with Sta DOWN, nor an ACK to our ACK",
        lambda f: (
            (f.type is FrameType.HEARTBEAT and f.state is State.DOWN) or f.type is FrameType.ACK
        ),
        0.6,
    )


@case(
    "6.2/ack-promptly",
    "ACKs come as soon as the HEARTBEAT is processed, not on a timer",
    requires=("HB-ACK-3",),
    category=Category.TIMERS,
)
async def ack_promptly(ctx: Context) -> None:
    peer = await ctx.session()
    latencies: list[float] = []
    for _ in range(6):
        hb = await peer.heartbeat()
        sent = peer.last_sent
        got = await peer.expect("an ACK to our HEARTBEAT", is_ack_for(hb), 1.0)
        latencies.append(got.time - sent)
    fastest = min(latencies)
    slack = max(0.01, 3 * ctx.tolerance)
    ctx.timings["fastest ACK"] = fastest
    ctx.timings["slowest ACK"] = max(latencies)
    if max(latencies) <= fastest + slack:
        return
    shown = ", ".join(f"{x * 1000:.1f}" for x in latencies)
    if statistics.median(latencies) <= fastest + slack:
        raise Inconclusive(f"one slow ACK among fast ones ({shown} ms): network or machine noise")
    raise Failed(f"ACK latencies within {slack * 1000:.0f} ms of the fastest", f"{shown} ms")


@case(
    "6.3/data-is-proof-of-life",
    "DATA frames alone keep the session UP, and none is answered",
    requires=("HB-DET-1", "HB-CONF-3", "HB-DATA-2", "HB-DATA-3"),
    category=Category.VALID,
)
async def data_is_proof_of_life(ctx: Context) -> None:
    peer = await ctx.session()
    peer.keep_alive(None)
    peer.auto_ack = False  # ACKs are proof of life too: only DATA may keep the session alive
    target = target_of(peer)
    gap = (expected_remote(peer, target) or 1.0) / 2
    until = trio.current_time() + 2.5 * detection_time(peer, target)
    data_seqs: set[int] = set()
    while trio.current_time() < until:
        frame = peer.data_frame(b"message %d" % len(data_seqs))
        data_seqs.add(frame.seq)
        await peer.send(frame)
        await peer.expect_nothing(
            "DOWN, CLOSE or ACK while DATA frames arrive",
            lambda f: f.state is not State.UP or (f.type is FrameType.ACK and f.seq in data_seqs),
            gap,
        )
    peer.auto_ack = True
    await still_up(ctx, peer, f"{len(data_seqs)} DATA frames and no HEARTBEAT")


async def data_brings_up(ctx: Context, peer: ScriptedPeer, size: int) -> None:
    """Open to INIT, then send a DATA frame of ``size`` bytes: its Sta UP brings the target UP
    (Table 8), which it must say at once in a triggered HEARTBEAT, as no ACK answers DATA."""
    await open_to_init(peer)
    peer.state = State.UP
    unsigned = size if peer.auth is None else size - AUTH_TLV_SIZE  # signed: ``size`` in all
    payload = bytes(i & 0xFF for i in range(unsigned - 31))
    data = peer.frame(FrameType.DATA, state=State.UP, tlvs=(Tlv(TlvType.PAYLOAD, payload),))
    await peer.send(data, note=f"DATA of {size} bytes")
    got = await peer.expect(
        "a frame with Sta UP at once (a triggered HEARTBEAT) [HB-HB-2]",
        lambda f: f.your_id == peer.my_id and f.state is not State.INIT,
        0.5,
    )
    ctx.check(
        got.frame.state is State.UP and got.frame.type is FrameType.HEARTBEAT,
        "a HEARTBEAT with Sta UP",
        f"{got.frame.type.name} with Sta {got.frame.state.name}",
    )
    peer.keep_alive(peer.interval)
    await still_up(ctx, peer, "a DATA frame brought the session UP")


@case(
    "6.3/data-brings-up",
    "A DATA frame (Sta UP) in INIT brings the session UP, reported in a triggered HEARTBEAT",
    requires=("HB-DATA-2", "HB-SM-1", "HB-SM-2", "HB-HB-2"),
    category=Category.VALID,
)
async def data_brings_up_small(ctx: Context) -> None:
    await data_brings_up(ctx, await ctx.peer(), 40)
