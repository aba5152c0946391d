"""Section 9.5 (with 6.4's linger): a receiver's defence against a peer that sends too often.

Enforcing the limit is optional (feature ``enforce-rate``); when a target does enforce it, its
CLOSE must come only after at least two strikes, carry reason ``too_frequent`` and its R, and
(on UDP) the closed session lingers, answering stragglers with the same reason. Whether or not
it enforces, a peer that keeps the rules (periodic HEARTBEATs at least half a judged interval
apart, at most two exempt ones per judged interval, bursts counted once) is never closed.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from conformance.context import Context
from conformance.model import Category, Level, Unsupported
from conformance.peer import Received, ScriptedPeer
from conformance.registry import case
from conformance.wire import WireClosed
from hbproto.frame import CloseCode, Frame, FrameType, State

from ._common import (
    closed_by,
    is_ack_for,
    judged_interval,
    listen,
    pace,
    still_up,
    target_of,
)

UDP = frozenset({"udp"})


def _closes(peer: ScriptedPeer) -> Callable[[Frame], bool]:
    return lambda f: f.type is FrameType.CLOSE and f.your_id == peer.my_id


async def _not_closed(ctx: Context, peer: ScriptedPeer, within: float) -> None:
    """No CLOSE, and the connection not ended, for ``within`` seconds."""
    try:
        await peer.expect_nothing("CLOSE for a peer that keeps the rules", _closes(peer), within)
    except WireClosed:
        ctx.fail("the session open, for a peer that keeps the rules", _ended(peer))


async def _answer_or_close(ctx: Context, peer: ScriptedPeer, hb: Frame) -> Frame:
    """The ACK to ``hb``; a failure if the target closes the session instead."""
    try:
        got = await peer.expect(
            "an ACK to a paced HEARTBEAT",
            lambda f: is_ack_for(hb)(f) or _closes(peer)(f),
            1.0,
        )
    except WireClosed:
        ctx.fail("the session open, for a peer that keeps the rules", _ended(peer))
    if got.frame.type is FrameType.CLOSE:
        ctx.fail("the session open, for a peer that keeps the rules", _ended(peer))
    return got.frame


def _ended(peer: ScriptedPeer) -> str:
    code = closed_by(peer)
    return "the connection ended" if code is None else f"a CLOSE with reason {code}"


async def _flood(ctx: Context, peer: ScriptedPeer) -> tuple[Received, float, float]:
    """Send HEARTBEATs ten times per judged interval until the target closes the session;
    the CLOSE, when the first premature HEARTBEAT went out, and the judged interval.
    :class:`Unsupported` if the target does not enforce its limit."""
    target = target_of(peer)
    judged = judged_interval(peer, target)
    peer.keep_alive(None)
    await pace(peer)
    await peer.heartbeat(paced=False)  # not premature: the gaps are measured from here
    first = trio.current_time() + judged / 10
    # MAX_STRIKES is the target's to choose; at one strike per half interval [HB-FREQ-7], this
    # allows about 24.
    deadline = first + 12 * judged + 1.0
    due = first
    while trio.current_time() < deadline:
        if trio.current_time() >= due:
            await peer.heartbeat(paced=False)
            due += judged / 10
        got = await peer.next(min(due, deadline))
        if (
            got is not None
            and got.frame.type is FrameType.CLOSE
            and got.frame.your_id == peer.my_id
        ):
            return got, first, judged
    # Not closed, as far as the suite can see. A session that still answers is simply not
    # enforced; one that answers nothing any more was ended without its CLOSE.
    await pace(peer)
    probe = await peer.heartbeat()
    answer = await peer.next(trio.current_time() + 2.0)
    while answer is not None and not is_ack_for(probe)(answer.frame):
        answer = await peer.next(trio.current_time() + 2.0)
    if answer is None:
        ctx.fail(
            "a CLOSE with reason too_frequent when the session ends [HB-CLOSE-1], or an ACK",
            "no CLOSE, and no answer to a paced HEARTBEAT after the flood",
        )
    raise Unsupported(
        "the target did not close a session flooded with premature HEARTBEATs: it does not "
        "claim enforce-rate (or its MAX_STRIKES is above 20)"
    )


async def _closed_too_frequent(ctx: Context, peer: ScriptedPeer) -> Received:
    target = target_of(peer)
    got, first, judged = await _flood(ctx, peer)
    close = got.frame
    ctx.check(
        close.close_code == CloseCode.TOO_FREQUENT,
        f"reason too_frequent ({CloseCode.TOO_FREQUENT:d})",
        f"reason {close.close_code}",
    )
    ctx.check(
        close.required_rx == target.required_rx,
        f"the target's current R ({target.required_rx} us) in the CLOSE",
        f"{close.required_rx} us",
    )
    # At least two strikes [HB-FREQ-1], at most one per half judged interval [HB-FREQ-7].
    ctx.within_bound(
        "CLOSE after the first premature HEARTBEAT (at least two strikes)",
        got.time - first,
        judged / 2,
        float("inf"),
    )
    return got


@case(
    "9.5/too-frequent",
    "A peer flooding HEARTBEATs is closed with reason too_frequent, after two strikes or more",
    requires=("HB-FREQ-1", "HB-FREQ-7", "HB-FREQ-6", "HB-CLOSE-1"),
    category=Category.TIMERS,
    feature="enforce-rate",
)
async def too_frequent(ctx: Context) -> None:
    await _closed_too_frequent(ctx, await ctx.session())


@case(
    "6.4/linger-answers",
    "A session the target closed answers a HEARTBEAT or DATA frame with one CLOSE, same reason",
    requires=("HB-CLOSE-2", "HB-UDP-4"),
    level=Level.SHOULD,  # lingering is a SHOULD; where the answers go is then a MUST
    category=Category.INOPPORTUNE,
    transports=UDP,
    feature="enforce-rate",
)
async def linger_answers(ctx: Context) -> None:
    peer = await ctx.session()
    await _closed_too_frequent(ctx, peer)
    peer.auto_ack = False
    other = await ctx.wire()
    hb = peer.frame(FrameType.HEARTBEAT)
    data = peer.data_frame(b"late")
    await peer.send(hb, note="HEARTBEAT for the closed session")
    await other.send(peer.encoded(data), note="DATA for the closed session, from another address")
    sizes = (len(peer.encoded(hb)), len(peer.encoded(data)))
    heard = listen([peer.wire, other], trio.current_time() + 0.3)
    closes = [h for h in await heard if h.frame is not None and h.frame.your_id == peer.my_id]
    for index, what in enumerate(("HEARTBEAT", "DATA frame")):
        mine = [h for h in closes if h.wire == index]
        ctx.check(
            len(mine) == 1,
            f"one CLOSE answering the {what}, sent where it came from",
            f"{len(mine)} frames there",
        )
        frame = mine[0].frame
        assert frame is not None
        ctx.check(
            frame.type is FrameType.CLOSE and frame.close_code == CloseCode.TOO_FREQUENT,
            "a CLOSE with the original reason, too_frequent",
            f"{frame.type.name} {frame.close_code}",
        )
        ctx.check(
            len(mine[0].raw) <= sizes[index],
            f"no larger than the {what} ({sizes[index]} bytes)",
            f"{len(mine[0].raw)} bytes",
        )


@case(
    "6.4/linger-ignores-close-and-ack",
    "A session the target closed does not answer a CLOSE or an ACK",
    requires=("HB-CLOSE-2", "HB-RX-17"),
    category=Category.INOPPORTUNE,
    transports=UDP,
    feature="enforce-rate",
)
async def linger_ignores_close_and_ack(ctx: Context) -> None:
    peer = await ctx.session()
    await _closed_too_frequent(ctx, peer)
    peer.auto_ack = False
    beats = [g.frame for g in peer.received if g.frame.type is FrameType.HEARTBEAT]
    if beats:
        await peer.send(peer.ack_for(beats[-1]), note="ACK to the lingering session")
    await peer.send(peer.close_frame(CloseCode.SHUTDOWN), note="CLOSE to the lingering session")
    await peer.expect_nothing("answer to an ACK or a CLOSE", lambda f: f.your_id == peer.my_id, 0.3)


@case(
    "9.5/conforming-not-struck",
    "Periodic HEARTBEATs at 0.8 of the judged interval, each followed by one that changes "
    "Mult, are all answered and never closed",
    requires=("HB-FREQ-2", "HB-FREQ-6", "HB-FREQ-1", "HB-HB-1", "HB-FREQ-8"),
    category=Category.TIMERS,
)
async def conforming_not_struck(ctx: Context) -> None:
    peer = await ctx.session()
    judged = judged_interval(peer, target_of(peer))
    peer.keep_alive(None)
    await pace(peer)
    sent = []
    for cycle in range(6):
        start = trio.current_time()
        sent.append(await peer.heartbeat(paced=False))
        peer.mult = 4 if cycle % 2 == 0 else 3  # a change: exempt, at most two per interval
        sent.append(await peer.heartbeat(paced=False))
        await _not_closed(ctx, peer, start + 0.8 * judged - trio.current_time())
    acked = {g.frame.seq for g in peer.received if g.frame.type is FrameType.ACK}
    missing = [hb.seq for hb in sent if hb.seq not in acked]
    ctx.check(not missing, "an ACK to every HEARTBEAT (none was premature)", f"none for {missing}")
    peer.keep_alive(peer.interval)
    await still_up(ctx, peer, "HEARTBEATs at the limit of the rules")


@case(
    "9.5/burst-one-strike",
    "Bursts of HEARTBEATs separated by paced ones count one strike each and never close",
    requires=("HB-FREQ-7", "HB-FREQ-1", "HB-FREQ-3"),
    category=Category.TIMERS,
)
async def burst_one_strike(ctx: Context) -> None:
    peer = await ctx.session()
    peer.keep_alive(None)
    for _ in range(3):
        await pace(peer)
        for _ in range(4):  # as if they had waited together in a buffer
            await peer.heartbeat(paced=False)
        await pace(peer)
        hb = await peer.heartbeat(paced=False)  # not premature: the count goes back to 0
        got = await _answer_or_close(ctx, peer, hb)
        ctx.check(got.state is State.UP, "Sta UP", got.state.name)
    await _not_closed(ctx, peer, 0.2)
    peer.keep_alive(peer.interval)
    await still_up(ctx, peer, "three bursts of HEARTBEATs")
