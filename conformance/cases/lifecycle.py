"""Sections 8.3 and 8.4 (with 6.4 and 9.2): a session going DOWN and coming back.

The suite reports DOWN and the target follows (Table 8): on UDP it keeps the session, sends
HEARTBEATs at the slow-start pace, and comes back UP through a new handshake with the same
identifiers and the same replay window; on TCP it ends the connection with a CLOSE. A session
the suite closed does not linger.
"""

from __future__ import annotations

import trio

from conformance.context import HANDSHAKE_WITHIN, SLOW_START, Context
from conformance.model import Category
from conformance.registry import case
from conformance.wire import WireClosed
from hbproto import encode
from hbproto.frame import CloseCode, FrameType, State

from ._common import (
    TIMER_SLACK,
    answered_or_changed,
    detection_time,
    is_ack_for,
    open_to_init,
    pace,
    still_up,
    target_of,
    tx_interval,
)

UDP = frozenset({"udp"})


@case(
    "8.3/peer-reports-down",
    "A HEARTBEAT with Sta DOWN takes the session DOWN: the ACK says so (TCP: then a CLOSE)",
    requires=("HB-SM-1", "HB-ACK-1", "HB-HB-1", "HB-TCP-6"),
    category=Category.VALID,
)
async def peer_reports_down(ctx: Context) -> None:
    peer = await ctx.session()
    peer.keep_alive(None)
    await pace(peer)
    peer.auto_ack = False
    peer.state = State.DOWN
    down = await peer.heartbeat(paced=False)
    got = await peer.expect("an ACK to our Sta DOWN", is_ack_for(down), 1.0)
    ctx.check(
        got.frame.state is State.DOWN,
        "Sta DOWN in the ACK: the state after processing the HEARTBEAT (Table 8)",
        f"Sta {got.frame.state.name}",
    )
    if ctx.transport != "tcp":
        return
    try:
        close = await peer.expect("a CLOSE [HB-TCP-6]", lambda f: f.type is FrameType.CLOSE, 1.0)
    except WireClosed:
        ctx.fail("a CLOSE before the end of the connection [HB-TCP-6]", "no CLOSE")
    ctx.check(
        close.frame.close_code == CloseCode.UNSPECIFIED,
        "reason unspecified (0): the peer reported DOWN",
        f"reason {close.frame.close_code}",
    )


@case(
    "8.4/resume",
    "After the suite reported DOWN, a new handshake brings back the same session and window",
    requires=("HB-SM-1", "HB-SM-2", "HB-SEQ-4", "HB-ID-2", "HB-SES-5", "HB-ACK-1"),
    category=Category.VALID,
    transports=UDP,
)
async def resume(ctx: Context) -> None:
    peer = await ctx.session()
    target_id = peer.your_id
    peer.keep_alive(None)
    await pace(peer)
    peer.auto_ack = False  # our ACKs carry our Sta too: only the frames below may move it
    peer.state = State.DOWN
    down = await peer.heartbeat(paced=False)
    await peer.expect("an ACK with Sta DOWN", is_ack_for(down), 1.0)
    # Table 8: DOWN + UP stays DOWN; only Sta INIT brings a DOWN session UP [HB-SM-2].
    peer.state = State.UP
    early = await peer.heartbeat(paced=False)  # not UP at the target: not judged
    got = await peer.expect("an ACK to our Sta UP", is_ack_for(early), 1.0)
    ctx.check(
        got.frame.state is State.DOWN,
        "Sta DOWN still (Table 8: DOWN + UP -> DOWN)",
        f"Sta {got.frame.state.name}",
    )
    # Both ends DOWN: the handshake again, with the identifiers both already know.
    peer.state = State.DOWN
    again = await peer.heartbeat(paced=False)
    init = await peer.expect(
        "Sta INIT answering our Sta DOWN (Table 8: DOWN + DOWN)",
        lambda f: f.your_id == peer.my_id and f.state is not State.DOWN,
        HANDSHAKE_WITHIN,
    )
    ctx.check(init.frame.state is State.INIT, "Sta INIT", f"Sta {init.frame.state.name}")
    peer.state = State.UP
    await peer.heartbeat(paced=False)
    up = await peer.expect(
        "Sta UP once we sent UP",
        lambda f: f.your_id == peer.my_id and f.state is State.UP,
        HANDSHAKE_WITHIN,
    )
    ctx.check(
        up.frame.my_id == target_id,
        f"the same My Identifier {target_id:08x} [HB-ID-2]",
        f"{up.frame.my_id:08x}",
    )
    peer.keep_alive(peer.interval)
    peer.auto_ack = True
    # [HB-SEQ-4]: the window survived DOWN, so frames from before are still replays.
    await pace(peer)
    await peer.send(down, note="replayed from before the DOWN")
    await peer.send(encode(again), note="replayed from the new handshake")
    await peer.expect_nothing(
        "answer to a replayed HEARTBEAT, nor a change of state",
        answered_or_changed(peer, (down.seq, again.seq)),
        0.3,
    )
    await still_up(ctx, peer, "replays of HEARTBEATs from before and during the resumption")


@case(
    "9.2/slow-start-pace",
    "While DOWN the target's HEARTBEATs come at the slow-start pace, J x max(TxInterval, 1 s)",
    requires=("HB-TX-2", "HB-TX-1", "HB-TX-6"),
    category=Category.TIMERS,
    transports=UDP,
)
async def slow_start_pace(ctx: Context) -> None:
    peer = await ctx.session()
    await peer.expect(
        "a periodic HEARTBEAT from the target",
        lambda f: f.type is FrameType.HEARTBEAT and f.your_id == peer.my_id,
        3.0,
    )
    peer.keep_alive(None)
    period = max(tx_interval(peer, target_of(peer)) or 0, SLOW_START)
    await pace(peer)
    peer.auto_ack = False  # an ACK from us (DOWN) would move the target on to INIT
    peer.state = State.DOWN
    down = await peer.heartbeat(paced=False)
    ack = await peer.expect("an ACK with Sta DOWN", is_ack_for(down), 1.0)
    # The first periodic HEARTBEAT with Sta DOWN: J x the slow-start interval after the one
    # before it [HB-TX-6], [HB-TX-1]. A triggered one at once, if any, is not it.
    got = await peer.expect(
        "the target's first periodic HEARTBEAT with Sta DOWN",
        lambda f: (
            f.type is FrameType.HEARTBEAT
            and f.state is State.DOWN
            and trio.current_time() > ack.time + 0.1
        ),
        period + 1.0,
    )
    before = max(
        g.time for g in peer.received if g.frame.type is FrameType.HEARTBEAT and g is not got
    )
    ctx.within_bound(
        f"gap (slow-start interval {period:.3f} s)", got.time - before, 0.75 * period, period
    )


@case(
    "6.4/no-linger-after-received-close",
    "After the suite's CLOSE, frames for the old session draw no answer at all",
    requires=("HB-CLOSE-3", "HB-RX-9"),
    category=Category.INOPPORTUNE,
    transports=UDP,
)
async def no_linger_after_received_close(ctx: Context) -> None:
    peer = await ctx.session()
    peer.keep_alive(None)
    peer.auto_ack = False
    await peer.send(peer.close_frame(CloseCode.SHUTDOWN))
    await trio.sleep(0.1)
    hb = peer.frame(FrameType.HEARTBEAT)
    await peer.send(hb, note="HEARTBEAT for the closed session")
    await peer.send(peer.data_frame(b"late"), note="DATA for the closed session")
    await peer.expect_nothing(
        "answer for a session closed by our CLOSE (an ACK, or a lingering CLOSE)",
        lambda f: f.your_id == peer.my_id and f.type in (FrameType.ACK, FrameType.CLOSE),
        0.3,
    )


@case(
    "6.4/close-text",
    "A CLOSE with the longest CLOSE_TEXT (multi-byte, control and bidi characters) closes",
    requires=("HB-TLV-5", "HB-CLOSE-3"),
    category=Category.VALID,
)
async def close_text(ctx: Context) -> None:
    peer = await ctx.session()
    peer.keep_alive(None)
    peer.auto_ack = False
    text = "bye \x1b[31m\u202e\u00e9\u2603\U0001f600"  # escape, bidi override, 2-4 byte forms
    raw = text.encode()
    text = (raw + b"." * (123 - len(raw))).decode()  # exactly 123 bytes of UTF-8
    await peer.send(peer.close_frame(CloseCode.SHUTDOWN, text), note="CLOSE_TEXT of 123 bytes")
    await trio.sleep(0.1)
    try:
        await pace(peer)
        hb = await peer.heartbeat(paced=False)
        await peer.expect_nothing(
            "ACK: the CLOSE should have closed the session", is_ack_for(hb), 0.4
        )
    except WireClosed:
        if ctx.transport != "tcp":
            raise
        # On TCP the target ends the connection: closed, as it should be.


@case(
    "8.2/half-open-deleted",
    "A session the suite opened but never verified is deleted, silently, within "
    "DetectionTime with the slow-start interval",
    requires=("HB-SES-4", "HB-HB-4", "HB-DET-8"),
    category=Category.TIMERS,
    transports=UDP,
)
async def half_open_deleted(ctx: Context) -> None:
    peer = await ctx.peer(mult=1)  # min(DetectionTime, HANDSHAKE_TIMEOUT) is then about 1 s
    opened = trio.current_time()
    await open_to_init(peer)
    peer.auto_ack = False
    limit = detection_time(peer, target_of(peer), slow_start=True)
    await peer.expect_nothing(
        "frame from a session whose address is not verified",
        lambda f: f.type is not FrameType.ACK,
        max(0.0, opened + limit + TIMER_SLACK - trio.current_time()),
    )
    # The session is gone: an UP that would have brought it UP now finds nothing (V-9).
    peer.state = State.UP
    hb = await peer.heartbeat(paced=False)
    await peer.expect_nothing(
        f"answer from a session not UP {limit:.3f} s after it was opened",
        lambda f: f.your_id == peer.my_id,
        0.3,
    )
    ctx.timings["sent UP after"] = peer.last_sent - opened
    del hb
