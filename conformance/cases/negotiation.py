"""Sections 9.1 and 9.3: what the suite advertises sets what the target sends and how long
it waits before declaring the suite down.

The suite asks for no periodic HEARTBEATs (R = 0), states no preference, changes its Mult
mid-session, keeps the target on the slow-start floor by bringing it UP without ever showing it
Sta UP, and sends only frames that must not count as proof of life. Each expectation is
computed from the values on the wire, by the SPEC's formulas; detection is judged in the window
[DetectionTime, DetectionTime + ExpectedRemote] after the suite's last valid frame.
"""

from __future__ import annotations

import trio

from conformance.context import SLOW_START, Context
from conformance.model import Category, Level
from conformance.peer import ScriptedPeer
from conformance.registry import case
from conformance.wire import WireClosed
from hbproto.frame import CloseCode, FrameType, State

from ._common import (
    craft,
    detection_time,
    down_or_close,
    expected_remote,
    is_ack_for,
    open_to_init,
    seconds,
    silence,
    still_up,
    stream_closed_for_protocol_error,
    target_of,
)


async def _declared_down(
    ctx: Context, peer: ScriptedPeer, detection: float, expected: float, name: str
) -> None:
    """The suite has just fallen silent: the target must declare it down in
    ``[DetectionTime, DetectionTime + ExpectedRemote]`` [HB-DET-2], [HB-DET-3]."""
    silent_from = peer.last_sent
    at, _ = await down_or_close(ctx, peer, detection + expected + 3)
    ctx.within_bound(
        f"declared down after ({name} {detection:.3f} s)",
        at - silent_from,
        detection,
        detection + expected,
    )


@case(
    "9.1/r-zero",
    "When the suite asks for Required Min RX 0, the target sends no periodic HEARTBEATs once UP",
    requires=("HB-NEG-1", "HB-HB-1"),
    category=Category.TIMERS,
)
async def r_zero(ctx: Context) -> None:
    peer = await ctx.session(required_rx=0)
    target = target_of(peer)
    await trio.sleep(0.05)  # a triggered HEARTBEAT for the handshake may still be in flight
    # Long enough for the slow-start pace too: an UP repeated for want of ours would show.
    watch = max(SLOW_START + 0.1, 3 * seconds(target.desired_tx))
    await peer.expect_nothing(
        "periodic HEARTBEAT towards a peer whose Required Min RX is 0",
        lambda f: f.type is FrameType.HEARTBEAT and f.your_id == peer.my_id and not f.poll,
        watch,
    )
    await still_up(ctx, peer, f"{watch:.1f} s without the target's HEARTBEATs")


@case(
    "9.1/no-preference",
    "With the suite's D and R 'no preference', the target expects the default 1 s interval",
    requires=("HB-NEG-5", "HB-NEG-2", "HB-DET-8", "HB-DET-2", "HB-DET-3"),
    category=Category.TIMERS,
)
async def no_preference(ctx: Context) -> None:
    # Mult 1 keeps the case short: DetectionTime is then one ExpectedRemote.
    peer = await ctx.session(keep_alive=False, desired_tx=None, required_rx=None, mult=1)
    target = target_of(peer)
    await silence(peer)
    expected = expected_remote(peer, target)
    assert expected is not None
    await _declared_down(ctx, peer, detection_time(peer, target), expected, "DetectionTime")


@case(
    "9.3/detection-promptly",
    "A silent peer is declared down within DetectionTime + min(10 ms, ExpectedRemote)",
    requires=("HB-DET-3",),
    level=Level.SHOULD,  # the MUST bound is 9.3/detection's
    category=Category.TIMERS,
)
async def detection_promptly(ctx: Context) -> None:
    peer = await ctx.session()
    target = target_of(peer)
    hb = await peer.heartbeat()
    await peer.expect("an ACK to our HEARTBEAT", is_ack_for(hb), 1.0)
    await silence(peer)
    silent_from = peer.last_sent
    detection = detection_time(peer, target)
    expected = expected_remote(peer, target)
    assert expected is not None
    at, _ = await down_or_close(ctx, peer, detection + expected + 3)
    ctx.within_bound(
        f"declared down after (DetectionTime {detection:.3f} s)",
        at - silent_from,
        detection,
        detection + min(0.010, expected),
    )


@case(
    "9.3/slow-start-floor",
    "Brought UP without seeing the suite's Sta UP, the target keeps the 1 s slow-start floor",
    requires=("HB-DET-8", "HB-DET-2", "HB-DET-3", "HB-SM-1", "HB-SM-2"),
    category=Category.TIMERS,
)
async def slow_start_floor(ctx: Context) -> None:
    peer = await ctx.peer(mult=1)
    await open_to_init(peer)
    # Table 8: INIT + INIT -> UP. The target is UP, but has not seen our Sta UP.
    peer.state = State.INIT
    hb = await peer.heartbeat(paced=False)  # the session is not UP: nothing to pace for
    got = await peer.expect("an ACK to our Sta INIT", is_ack_for(hb), 1.0)
    ctx.check(got.frame.state is State.UP, "Sta UP (Table 8: INIT + INIT)", got.frame.state.name)
    await silence(peer)
    target = target_of(peer)
    floor = detection_time(peer, target, slow_start=True)
    expected = max(expected_remote(peer, target) or SLOW_START, SLOW_START)
    await _declared_down(ctx, peer, floor, expected, "DetectionTime with the slow-start floor")


@case(
    "9.3/mult-change",
    "A new Mult from the suite, sent without a poll, sets the target's DetectionTime at once",
    requires=("HB-POLL-5", "HB-DET-5", "HB-DET-2", "HB-DET-3"),
    category=Category.TIMERS,
)
async def mult_change(ctx: Context) -> None:
    peer = await ctx.session()
    peer.mult = 6
    hb = await peer.heartbeat()
    await peer.expect("an ACK to our HEARTBEAT with Mult 6", is_ack_for(hb), 1.0)
    await silence(peer)
    target = target_of(peer)
    expected = expected_remote(peer, target)
    assert expected is not None
    await _declared_down(ctx, peer, detection_time(peer, target), expected, "DetectionTime")


@case(
    "9.3/only-valid-frames-count",
    "Invalid, replayed and other sessions' frames do not keep the suite alive",
    requires=("HB-DET-1", "HB-RX-14", "HB-DET-2", "HB-DET-3"),
    category=Category.TIMERS,
)
async def only_valid_frames_count(ctx: Context) -> None:
    peer = await ctx.session()
    target = target_of(peer)
    detection = detection_time(peer, target)
    expected = expected_remote(peer, target)
    assert expected is not None
    replayed = await peer.heartbeat()
    await peer.expect("an ACK to our HEARTBEAT", is_ack_for(replayed), 1.0)
    await silence(peer)
    silent_from = peer.last_sent
    deadline = silent_from + detection + expected + 3
    stranger = (peer.your_id ^ 0x0F0F_0F0F) or 1
    due = trio.current_time()
    while True:
        if trio.current_time() >= due:
            # A bad CRC, a replay and a frame for another session, every third of an interval;
            # sent past the peer's bookkeeping, so that last_sent stays the last valid frame.
            for raw, note in (
                (craft(peer.frame(FrameType.HEARTBEAT), flip_crc=True), "bad CRC"),
                (peer.encoded(replayed), "replayed"),
                (
                    peer.encoded(peer.frame(FrameType.HEARTBEAT, your_id=stranger)),
                    "another session",
                ),
            ):
                await peer.wire.send(raw, note=note)
            due += expected / 3
        try:
            got = await peer.next(min(deadline, due))
        except WireClosed:
            if stream_closed_for_protocol_error(ctx, peer):
                return  # [HB-TCP-5]: a receiver MAY close after repeated invalid frames
            raise
        if got is None:
            if trio.current_time() >= deadline:
                ctx.fail("the suite declared down", "nothing")
            continue
        frame = got.frame
        if frame.type is FrameType.CLOSE or (ctx.transport == "udp" and frame.state is State.DOWN):
            if frame.close_code == CloseCode.PROTOCOL_ERROR and ctx.transport == "tcp":
                return  # [HB-TCP-5], as above
            ctx.within_bound(
                f"declared down after (DetectionTime {detection:.3f} s)",
                got.time - silent_from,
                detection,
                detection + expected,
            )
            return
