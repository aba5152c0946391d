"""Sections 6.2, 8.2 and 8.5: valid frames at the wrong moment or from the wrong sender, and
sequence numbers at the edges of serial arithmetic.

Duplicated, stale and unsolicited ACKs; HEARTBEATs reordered within the replay window or older
than it; a copy of the opening HEARTBEAT once the session is established; frames naming the
right session but coming from another peer. Each carries Sta DOWN (or is a CLOSE) wherever that
makes the fault visible: applying such a frame would take the session down.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from conformance.context import Context
from conformance.model import Category
from conformance.peer import ScriptedPeer
from conformance.registry import case
from hbproto.frame import CloseCode, Frame, FrameType, State

from ._common import acks_for, answered_or_changed, is_ack_for, listen, pace, still_up

UDP = frozenset({"udp"})
_MASK32 = 0xFFFFFFFF


def _stays_up(peer: ScriptedPeer) -> Callable[[Frame], bool]:
    """Matches what a target that wrongly applied a frame would send: anything not UP."""
    return lambda f: f.your_id == peer.my_id and f.state is not State.UP


async def _target_heartbeat(peer: ScriptedPeer) -> Frame:
    got = await peer.expect(
        "a periodic HEARTBEAT from the target",
        lambda f: f.type is FrameType.HEARTBEAT and f.your_id == peer.my_id,
        3.0,
    )
    return got.frame


@case(
    "6.2/duplicate-ack",
    "A second ACK for an answered HEARTBEAT, and an ACK for one never sent, change nothing",
    requires=("HB-ACK-5", "HB-RX-13", "HB-RX-14", "HB-ACK-4"),
    category=Category.INOPPORTUNE,
)
async def duplicate_ack(ctx: Context) -> None:
    peer = await ctx.session()
    peer.auto_ack = False
    hb = await _target_heartbeat(peer)
    await peer.send(peer.ack_for(hb))
    again = peer.frame(
        FrameType.ACK, state=State.DOWN, seq=hb.seq, timestamp=hb.timestamp, your_id=hb.my_id
    )
    await peer.send(again, note="duplicate ACK with Sta DOWN")
    never = peer.frame(
        FrameType.ACK,
        state=State.DOWN,
        seq=(hb.seq + 0x4000_0000) & _MASK32,
        timestamp=hb.timestamp,
        your_id=hb.my_id,
    )
    await peer.send(never, note="ACK for a HEARTBEAT never sent, Sta DOWN")
    peer.auto_ack = True
    await peer.expect_nothing(
        "change of state, or an answer to an ACK",
        answered_or_changed(peer, (hb.seq, never.seq)),
        0.3,
    )
    await still_up(ctx, peer, "a duplicate and an unsolicited ACK with Sta DOWN")


@case(
    "6.2/stale-ack",
    "An ACK for an older HEARTBEAT arriving after a newer one's is accepted but not applied",
    requires=("HB-SM-1", "HB-SM-9", "HB-SM-10", "HB-ACK-5"),
    category=Category.INOPPORTUNE,
)
async def stale_ack(ctx: Context) -> None:
    peer = await ctx.session()
    peer.auto_ack = False
    first = await _target_heartbeat(peer)
    second = await _target_heartbeat(peer)
    await peer.send(peer.ack_for(second))
    stale = peer.frame(
        FrameType.ACK,
        state=State.DOWN,
        seq=first.seq,
        timestamp=first.timestamp,
        your_id=first.my_id,
    )
    await peer.send(stale, note="ACK for the older HEARTBEAT, Sta DOWN, after the newer one's")
    peer.auto_ack = True
    await peer.expect_nothing("change of state on a stale ACK", _stays_up(peer), 0.3)
    await still_up(ctx, peer, "a stale ACK with Sta DOWN")


@case(
    "8.5/reordered",
    "HEARTBEATs reordered within the window are both answered; the older one changes nothing",
    requires=("HB-SEQ-3", "HB-SM-9", "HB-SM-1", "HB-HB-1", "HB-ACK-1"),
    category=Category.INOPPORTUNE,
)
async def reordered(ctx: Context) -> None:
    peer = await ctx.session()
    peer.keep_alive(None)
    older = peer.frame(FrameType.HEARTBEAT, state=State.DOWN)
    newer = peer.frame(FrameType.HEARTBEAT)
    await pace(peer)
    await peer.send(newer, note="sent first")
    await peer.send(older, note="reordered: one older, Sta DOWN")
    acks = await acks_for(peer, [newer, older], 1.0)
    for hb, what in ((newer, "newer"), (older, "older")):
        state = acks[hb.seq].frame.state
        ctx.check(
            state is State.UP,
            f"Sta UP in the ACK to the {what} HEARTBEAT (a stale Sta DOWN is not applied)",
            f"Sta {state.name}",
        )
    peer.keep_alive(peer.interval)
    await still_up(ctx, peer, "a reordered HEARTBEAT with Sta DOWN")


@case(
    "8.5/window-edge",
    "A HEARTBEAT 63 behind the newest is accepted; 64 behind, 2^31 away or repeated, it is "
    "discarded",
    requires=("HB-SEQ-3", "HB-SEQ-2", "HB-RX-12", "HB-RX-14"),
    category=Category.INOPPORTUNE,
)
async def window_edge(ctx: Context) -> None:
    peer = await ctx.session()
    newest = peer.frame(FrameType.HEARTBEAT, seq=(peer.seq + 100) & _MASK32)
    peer.seq = newest.seq
    await pace(peer)
    await peer.send(newest, note="100 ahead")
    await peer.expect("an ACK to the HEARTBEAT 100 ahead", is_ack_for(newest), 1.0)
    # The suite's keep-alive HEARTBEATs go on; none is sent between these three, so the
    # newest the target has accepted is the last one the suite sent.
    top = peer.seq
    outside = peer.frame(FrameType.HEARTBEAT, state=State.DOWN, seq=(top - 64) & _MASK32)
    inside = peer.frame(FrameType.HEARTBEAT, seq=(top - 63) & _MASK32)
    await peer.send(outside, note="64 behind the newest, never sent before, Sta DOWN")
    await peer.send(newest, note="repeated")
    await peer.send(inside, note="63 behind the newest, never sent before")
    await peer.expect_nothing(
        "ACK to a HEARTBEAT 64 behind or repeated, nor a change of state",
        answered_or_changed(peer, (outside.seq, newest.seq)),
        0.3,
    )
    await acks_for(peer, [inside], 0.1)  # 63 behind: still in the window
    await still_up(ctx, peer, "HEARTBEATs outside the window")


@case(
    "8.5/wraparound",
    "The suite's sequence numbers wrapping past 2^32 - 1 to 0 are still newer",
    requires=("HB-SEQ-2", "HB-SEQ-3", "HB-HB-1"),
    category=Category.VALID,
)
async def wraparound(ctx: Context) -> None:
    peer = await ctx.peer()
    peer.seq = 0xFFFF_FFFD  # the handshake uses ...FE and ...FF; then 0, 1, 2
    await peer.handshake(3.0)
    peer.keep_alive(None)
    beats = [await peer.heartbeat() for _ in range(3)]
    acks = await acks_for(peer, beats, 1.0)
    ctx.check(
        all(a.frame.state is State.UP for a in acks.values()),
        "Sta UP in every ACK after the wrap",
        ", ".join(a.frame.state.name for a in acks.values()),
    )


@case(
    "8.2/wrong-peer",
    "Frames for the session from another My Identifier are discarded, a CLOSE included",
    requires=("HB-SES-5", "HB-RX-10", "HB-RX-14"),
    category=Category.INOPPORTUNE,
)
async def wrong_peer(ctx: Context) -> None:
    peer = await ctx.session()
    other = (peer.my_id ^ 0x5A5A_5A5A) or 1
    hb = peer.frame(FrameType.HEARTBEAT, state=State.DOWN, my_id=other)
    await pace(peer)
    await peer.send(hb, note="another My Identifier, Sta DOWN")
    close = peer.frame(
        FrameType.CLOSE, state=State.CLOSED, timestamp=CloseCode.SHUTDOWN, my_id=other
    )
    await peer.send(close, note="a CLOSE from another My Identifier")
    await peer.expect_nothing(
        "answer to another peer's frames, nor a change of state",
        lambda f: f.your_id == other or (f.your_id == peer.my_id and f.state is not State.UP),
        0.3,
    )
    await still_up(ctx, peer, "frames from another My Identifier")


@case(
    "8.2/opening-copy",
    "A copy of the opening HEARTBEAT after the session is established is not answered",
    requires=("HB-SES-7", "HB-RX-12", "HB-SEQ-3"),
    category=Category.INOPPORTUNE,
)
async def opening_copy(ctx: Context) -> None:
    peer = await ctx.session()
    opening = peer.wire.log[0].raw  # the handshake's first frame: Sta DOWN, Your Identifier 0
    await pace(peer)
    await peer.send(opening, note="the opening HEARTBEAT again")
    await peer.expect_nothing(
        "answer to a copy of the opening HEARTBEAT",
        lambda f: (
            f.your_id == peer.my_id
            and (f.state is not State.UP or f.seq == int.from_bytes(opening[12:16], "big"))
        ),
        0.3,
    )
    await still_up(ctx, peer, "a copy of the opening HEARTBEAT")


@case(
    "8.2/late-opening",
    "A new HEARTBEAT with Your Identifier 0 from an established session's peer is discarded",
    requires=("HB-SES-7", "HB-SES-2", "HB-RX-12", "HB-TCP-2"),
    category=Category.INOPPORTUNE,
)
async def late_opening(ctx: Context) -> None:
    peer = await ctx.session()
    late = peer.frame(FrameType.HEARTBEAT, state=State.DOWN, your_id=0)
    await pace(peer)
    await peer.send(late, note="Your Identifier 0, a new sequence number")
    await peer.expect_nothing(
        "answer to it (a new session, or this one going DOWN)",
        lambda f: f.your_id == peer.my_id and (f.state is not State.UP or f.seq == late.seq),
        0.3,
    )
    await still_up(ctx, peer, "a late HEARTBEAT with Your Identifier 0")


@case(
    "8.2/opening-repeated",
    "An opening HEARTBEAT repeated because its answer was lost finds the same session",
    requires=("HB-SES-2", "HB-SM-1", "HB-HB-1"),
    category=Category.INOPPORTUNE,
)
async def opening_repeated(ctx: Context) -> None:
    peer = await ctx.peer()
    peer.state = State.DOWN
    first = await peer.heartbeat(your_id=0)
    lost = await peer.expect("an answer to our opening HEARTBEAT", is_ack_for(first), 3.0)
    # As if that answer had been dropped: the same opening again, with the next number.
    again = await peer.heartbeat(your_id=0)
    got = await peer.expect("an answer to the repeated opening", is_ack_for(again), 3.0)
    ctx.check(
        got.frame.my_id == lost.frame.my_id and got.frame.state is State.INIT,
        f"Sta INIT from the same session ({lost.frame.my_id:08x})",
        f"Sta {got.frame.state.name} from {got.frame.my_id:08x}",
    )
    peer.your_id, peer.state = got.frame.my_id, State.UP
    up = await peer.heartbeat()
    got = await peer.expect("an ACK to our Sta UP", is_ack_for(up), 3.0)
    ctx.check(got.frame.state is State.UP, "Sta UP", f"Sta {got.frame.state.name}")


@case(
    "8.2/reflected-opening",
    "An opening HEARTBEAT whose My Identifier is the target's own identifier opens nothing",
    requires=("HB-SES-10", "HB-RX-9"),
    category=Category.INOPPORTUNE,
    transports=UDP,
)
async def reflected_opening(ctx: Context) -> None:
    peer = await ctx.session()
    other = await ctx.wire()  # as if the target's own opening came back from elsewhere
    mirror = peer.frame(FrameType.HEARTBEAT, state=State.DOWN, your_id=0, my_id=peer.your_id)
    await other.send(peer.encoded(mirror), note="My Identifier: the target's own")
    heard = await listen([other, peer.wire], trio.current_time() + 0.5, answer={1: peer})
    there = [h for h in heard if h.wire == 0]
    ctx.check(not there, "no answer to the target's own identifier", f"{len(there)} frames")
    await still_up(ctx, peer, "an opening HEARTBEAT carrying the target's identifier")
