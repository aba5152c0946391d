"""Section 9: transmission intervals and jitter, negotiation, and detection bounds.

Every expectation is computed from what the target itself advertises on the wire (its Desired
TX and Required Min RX) and what the suite advertises, by the SPEC's formulas, and judged with
the timing tolerance measured on this machine.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from conformance.context import Context
from conformance.model import Category
from conformance.peer import ScriptedPeer
from conformance.registry import case
from hbproto.frame import CloseCode, Frame, FrameType, State

from ._common import is_ack_for, pace, target_of

_US = 1_000_000


async def _steady(ctx: Context, peer: ScriptedPeer) -> Frame:
    """Wait until the target's slow start is over (its heartbeats follow the negotiated
    interval); return its latest HEARTBEAT."""
    last: Frame | None = None
    for _ in range(3):  # slow start ends with a poll the suite answers; give it a few beats
        got = await peer.expect(
            "the target's periodic HEARTBEATs",
            lambda f: f.type is FrameType.HEARTBEAT and f.your_id == peer.my_id,
            3.0,
        )
        last = got.frame
    assert last is not None
    return last


async def _only_acks(peer: ScriptedPeer) -> None:
    """From now on send no HEARTBEATs, only ACKs to the target's. The ACKs keep the session UP,
    and they do not restart the interval of a target in idle-only mode as ACKs of its own
    would ([HB-TX-3]). So that an ACK every TxInterval is enough for the target's detection,
    the suite first raises its own Desired TX to the target's TxInterval, with a poll."""
    target = target_of(peer)
    tx = max(target.desired_tx or 1_000_000, peer.required_rx or 0)  # [HB-NEG-1]
    if (peer.desired_tx or 0) < tx:
        await pace(peer)  # at the old pace: the new one applies once the poll is answered
        peer.desired_tx = tx
        poll = await peer.heartbeat(poll=True, paced=False)  # [HB-POLL-3]
        await peer.expect("an ACK with F to our poll", is_ack_for(poll), 1.0)
    peer.keep_alive(None)
    peer.auto_ack = True


async def _gaps(ctx: Context, peer: ScriptedPeer, count: int, within: float) -> list[float]:
    times: list[float] = []
    while len(times) < count + 1:
        got = await peer.expect(
            "the target's periodic HEARTBEATs",
            lambda f: f.type is FrameType.HEARTBEAT and f.your_id == peer.my_id and not f.poll,
            within,
        )
        times.append(got.time)
    return [b - a for a, b in itertools.pairwise(times)]


@case(
    "9.2/interval-and-jitter",
    "Periodic HEARTBEATs come J x TxInterval apart, J within [0.75, 1.0]",
    requires=("HB-TX-1", "HB-TX-4", "HB-NEG-1"),
    category=Category.TIMERS,
)
async def interval_and_jitter(ctx: Context) -> None:
    # R = 200 ms makes T 200 ms or more: jitter (a quarter of T) well above timing noise.
    peer = await ctx.session(required_rx=200_000)
    await _only_acks(peer)
    last = await _steady(ctx, peer)
    tx = max(last.desired_tx or 0, peer.required_rx or 0) / _US  # [HB-NEG-1]
    if not tx:
        ctx.fail("a target that sends periodic HEARTBEATs", "Desired TX 0 or no preference")
    high = 0.9 * tx if last.mult == 1 else tx
    gaps = await _gaps(ctx, peer, 10, 2 * tx + 1)
    for i, gap in enumerate(gaps):
        ctx.within_bound(f"gap {i + 1} (TxInterval {tx:.3f} s)", gap, 0.75 * tx, high)
    # Ten draws from [0.75, 1.0] x T (from [0.75, 0.9] at Mult 1) all within 0.05 T of each
    # other: a chance below 1 in 2,500 (Mult 1) or 1 in 200,000. Timing noise only widens the
    # spread, so it cannot hide jitter, only fake some.
    ctx.check(
        max(gaps) - min(gaps) >= 0.05 * tx,
        "intervals that vary (jitter drawn afresh for each one)",
        f"gaps {[round(g, 4) for g in gaps]}",
    )


@case(
    "9.1/slower-for-the-peer",
    "A target sends no faster than the suite's Required Min RX",
    requires=("HB-NEG-1", "HB-TX-4"),
    category=Category.TIMERS,
)
async def slower_for_the_peer(ctx: Context) -> None:
    peer = await ctx.session(required_rx=1_200_000)
    await _only_acks(peer)
    last = await _steady(ctx, peer)
    tx = max(last.desired_tx or 0, peer.required_rx or 0) / _US
    gaps = await _gaps(ctx, peer, 2, 2 * tx + 1)
    for i, gap in enumerate(gaps):
        ctx.within_bound(f"gap {i + 1} (TxInterval {tx:.3f} s)", gap, 0.75 * tx, tx)


@case(
    "9.3/misses-not-accumulated",
    "HEARTBEATs 0.8 DetectionTime apart, and nothing else, keep the suite UP",
    requires=("HB-DET-4", "HB-DET-1", "HB-DET-2"),
    category=Category.TIMERS,
)
async def misses_not_accumulated(ctx: Context) -> None:
    peer = await ctx.session()
    last = await _steady(ctx, peer)
    expected_remote = max(peer.desired_tx or 0, last.required_rx or 0) / _US  # [HB-NEG-2]
    gap = 0.8 * peer.mult * expected_remote  # each gap misses Mult - 1 intervals, or nearly
    peer.keep_alive(None)
    peer.auto_ack = False  # only the suite's HEARTBEATs refresh the target's timer
    for beat in range(4):
        await peer.wait_until(peer.last_sent + gap)
        answer = is_ack_for(await peer.heartbeat(paced=False))

        def acked_or_down(f: Frame, answer: Callable[[Frame], bool] = answer) -> bool:
            return answer(f) or (f.your_id == peer.my_id and f.state is not State.UP)

        got = await peer.expect(
            f"an ACK with Sta UP to HEARTBEAT {beat + 1}, sent {gap:.3f} s after the last frame",
            acked_or_down,
            1.0,
        )
        ctx.check(
            got.frame.type is FrameType.ACK and got.frame.state is State.UP,
            f"the session still UP after {beat + 1} gaps of 0.8 DetectionTime [HB-DET-4]",
            f"{got.frame.type.name} with Sta {got.frame.state.name}",
        )


@case(
    "9.3/detection",
    "A silent peer is declared down no earlier than DetectionTime and not much later",
    requires=("HB-DET-2", "HB-DET-3", "HB-DET-8", "HB-HB-2", "HB-TCP-6"),
    category=Category.TIMERS,
)
async def detection(ctx: Context) -> None:
    peer = await ctx.session()
    last = await _steady(ctx, peer)
    expected_remote = max(peer.desired_tx or 0, last.required_rx or 0) / _US  # [HB-NEG-2]
    detection_time = peer.mult * expected_remote  # [HB-DET-8], as the target computes it
    peer.keep_alive(None)  # silence: no HEARTBEATs, and no ACKs either (any frame is life)
    peer.auto_ack = False
    silent_from = peer.last_sent
    if ctx.transport == "tcp":
        got = await peer.expect(
            "a CLOSE with reason timeout [HB-TCP-6]",
            lambda f: f.type is FrameType.CLOSE,
            detection_time + expected_remote + 3,
        )
        ctx.check(
            got.frame.close_code == CloseCode.TIMEOUT,
            f"reason timeout ({CloseCode.TIMEOUT:d})",
            f"reason {got.frame.close_code}",
        )
    else:
        got = await peer.expect(
            "a frame with Sta DOWN [HB-HB-2]",
            lambda f: f.your_id == peer.my_id and f.state is State.DOWN,
            detection_time + expected_remote + 3,
        )
    ctx.within_bound(
        f"declared down after (DetectionTime {detection_time:.3f} s)",
        got.time - silent_from,
        detection_time,
        detection_time + expected_remote,
    )
