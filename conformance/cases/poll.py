"""Section 9.4: the suite changes its parameters during a session.

The suite raises its Required Min RX above the target's TxInterval, once with a poll (P set)
and once without. Either way the target must take the new value at once ([HB-POLL-3],
[HB-POLL-6]), so that its periodic HEARTBEATs follow the new TxInterval; a poll is answered
with F. The target's own polls follow its application, which the wire cannot
command, so they are not tested here.
"""

from __future__ import annotations

import itertools

from conformance.context import Context
from conformance.model import Category
from conformance.peer import ScriptedPeer
from conformance.registry import case
from hbproto.frame import FrameType

from ._common import is_ack_for, pace, target_of, tx_interval

_US = 1_000_000


async def _slow_down(ctx: Context, peer: ScriptedPeer, *, poll: bool) -> None:
    """Raise the suite's R to twice the target's TxInterval and judge the target's HEARTBEATs
    from then on against the new TxInterval."""
    before = tx_interval(peer, target_of(peer))
    assert before is not None
    await pace(peer)  # at the pace the target holds the suite to until the change arrives
    peer.required_rx = round(2 * before * _US)
    after = tx_interval(peer, target_of(peer))
    assert after is not None
    # The suite's D goes up as well, to the new pace: the suite then falls silent but for its
    # ACKs, which keep it alive (DetectionTime is 3 x the new pace), so that a target in
    # idle-only mode [HB-TX-3] has no ACK of its own to send and shows its periodic pace too.
    peer.desired_tx = peer.required_rx
    hb = await peer.heartbeat(poll=poll, paced=False)
    got = await peer.expect("an ACK to the HEARTBEAT with the new R", is_ack_for(hb), 1.0)
    if poll:
        ctx.check(got.frame.final, "F set in the ACK to our poll [HB-POLL-3]", "F clear")
    peer.keep_alive(None)
    times: list[float] = []
    while len(times) < 3:  # from the first one on, each is J x the new TxInterval after the last
        beat = await peer.expect(
            "the target's periodic HEARTBEATs at the new pace",
            lambda f: f.type is FrameType.HEARTBEAT and f.your_id == peer.my_id,
            after + 1.0,
        )
        times.append(beat.time)
    for i, gap in enumerate(b - a for a, b in itertools.pairwise(times)):
        ctx.within_bound(
            f"gap {i + 1} (TxInterval {before:.3f} s -> {after:.3f} s)",
            gap,
            0.75 * after,
            after,
        )


@case(
    "9.4/poll-applied",
    "A poll raising the suite's R is answered with F and slows the target at once",
    requires=("HB-POLL-3", "HB-ACK-1", "HB-NEG-1", "HB-TX-4"),
    category=Category.TIMERS,
)
async def poll_applied(ctx: Context) -> None:
    await _slow_down(ctx, await ctx.session(), poll=True)


@case(
    "9.4/change-without-poll",
    "A change of R sent without P is still applied at once",
    requires=("HB-POLL-6", "HB-NEG-1", "HB-TX-4"),
    category=Category.TIMERS,
)
async def change_without_poll(ctx: Context) -> None:
    await _slow_down(ctx, await ctx.session(), poll=False)
