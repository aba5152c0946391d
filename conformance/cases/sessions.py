"""Section 8: identifiers, the handshake, finding a frame's session, sequence numbers."""

from __future__ import annotations

import itertools

import trio

from conformance.context import HANDSHAKE_WITHIN, Context
from conformance.model import Category
from conformance.registry import case
from hbproto.frame import FrameType, State


@case(
    "8.3/handshake",
    "A HEARTBEAT with Sta DOWN and Your Identifier 0 opens a session that comes UP",
    requires=("HB-SM-1", "HB-SM-2", "HB-HB-2", "HB-FRAME-8"),
    category=Category.VALID,
)
async def handshake(ctx: Context) -> None:
    peer = await ctx.peer()
    await peer.heartbeat(state=State.DOWN, your_id=0)
    got = await peer.expect(
        "a frame for our identifier with Sta INIT",
        lambda f: f.your_id == peer.my_id,
        HANDSHAKE_WITHIN,
    )
    ctx.check(
        got.frame.state is State.INIT,
        "Sta INIT in the first answer to a DOWN HEARTBEAT",
        f"Sta {got.frame.state.name}",
    )
    ctx.check(got.frame.my_id != 0, "a non-zero My Identifier", "My Identifier 0")
    peer.your_id, peer.state = got.frame.my_id, State.UP
    await peer.heartbeat()
    up = await peer.expect(
        "a frame with Sta UP", lambda f: f.your_id == peer.my_id, HANDSHAKE_WITHIN
    )
    ctx.check(up.frame.state is State.UP, "Sta UP once we sent UP", f"Sta {up.frame.state.name}")
    ctx.check(
        up.frame.my_id == got.frame.my_id,
        f"the same My Identifier {got.frame.my_id:08x} throughout the session",
        f"{up.frame.my_id:08x}",
    )


@case(
    "8.2/unknown-session",
    "A frame for a session the target does not have is discarded, unanswered",
    requires=("HB-SES-1", "HB-RX-9"),
    category=Category.INOPPORTUNE,
)
async def unknown_session(ctx: Context) -> None:
    peer = await ctx.peer()
    peer.state = State.UP
    stranger = ctx.rng.randrange(1, 1 << 32)
    await peer.heartbeat(your_id=stranger)
    await peer.expect_nothing(
        "answer to a HEARTBEAT for an unknown session",
        lambda f: f.your_id == peer.my_id,
        1.0,
    )


@case(
    "8.5/replay",
    "A HEARTBEAT repeating an accepted sequence number is discarded, unanswered",
    requires=("HB-SEQ-3", "HB-RX-12"),
    category=Category.INOPPORTUNE,
)
async def replay(ctx: Context) -> None:
    peer = await ctx.session()
    first = await peer.heartbeat()
    await peer.expect(
        "an ACK for our HEARTBEAT",
        lambda f: f.type is FrameType.ACK and f.seq == first.seq,
        1.0,
    )
    await peer.wait_until(trio.current_time() + peer.interval)  # not premature either
    await peer.send(first, note="replayed")
    await peer.expect_nothing(
        "ACK to the replayed HEARTBEAT",
        lambda f: f.type is FrameType.ACK and f.seq == first.seq,
        0.5,
    )


@case(
    "8.5/send-counter",
    "The target's HEARTBEATs carry increasing sequence numbers",
    requires=("HB-SEQ-1", "HB-FRAME-9"),
    category=Category.VALID,
)
async def send_counter(ctx: Context) -> None:
    peer = await ctx.session()
    seqs: list[int] = []
    while len(seqs) < 4:
        got = await peer.expect(
            "the target's periodic HEARTBEATs",
            lambda f: f.type is FrameType.HEARTBEAT and f.your_id == peer.my_id,
            3.0,
        )
        seqs.append(got.frame.seq)
    steps = [(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(seqs)]
    ctx.check(
        all(0 < step < 1 << 31 for step in steps),
        "each HEARTBEAT's sequence number after the last one (serial arithmetic)",
        f"sequence numbers {seqs}",
    )
