"""Section 11.1 (with 8.2's restart rule): UDP, where the source address is only a hint.

The suite sends from a second socket of its own to play a peer whose NAT binding changed: the
target answers where each frame came from, probes the new address before moving its traffic
there, and moves only when the probe is answered with its random Timestamp. A second session
from the same address is a restart when the first has gone silent, and is not when the first
is still alive. The largest datagram a receiver must accept brings a session UP.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from conformance.context import HANDSHAKE_WITHIN, Context
from conformance.model import Category, Failed, Level, Unsupported
from conformance.peer import ScriptedPeer
from conformance.registry import case
from hbproto.frame import AUTH_TLV_SIZE, UDP_MAX_FRAME, FrameType, State

from ._common import (
    Heard,
    expected_remote,
    listen,
    pace,
    run_together,
    silence,
    target_of,
    tx_interval,
)
from .exchange import data_brings_up

UDP = frozenset({"udp"})
_US = 1_000_000


def _heartbeats(heard: list[Heard], wire: int, peer: ScriptedPeer) -> list[Heard]:
    return [
        h
        for h in heard
        if h.wire == wire
        and h.frame is not None
        and h.frame.type is FrameType.HEARTBEAT
        and h.frame.your_id == peer.my_id
    ]


@case(
    "11.1/ack-to-source",
    "A HEARTBEAT of the session from another address is answered at that address",
    requires=("HB-UDP-4", "HB-UDP-3", "HB-SES-1"),
    category=Category.VALID,
    transports=UDP,
)
async def ack_to_source(ctx: Context) -> None:
    peer = await ctx.session(mult=15)  # the listening below sends only ACKs: keep a margin
    other = await ctx.wire()
    await pace(peer)
    hb = peer.frame(FrameType.HEARTBEAT)
    await other.send(peer.encoded(hb), note="from a second address")
    heard = await listen([peer.wire, other], trio.current_time() + 0.3, answer={0: peer})
    acks = [
        h
        for h in heard
        if h.frame is not None and h.frame.type is FrameType.ACK and h.frame.seq == hb.seq
    ]
    ctx.check(
        [h.wire for h in acks] == [1],
        "one ACK, at the address the HEARTBEAT came from",
        f"{len(acks)} ACKs, at {['first' if h.wire == 0 else 'second' for h in acks]} address",
    )


@case(
    "11.1/rebinding",
    "A frame from a new address draws one probe there; traffic moves only when the probe's "
    "ACK echoes its Timestamp",
    requires=("HB-UDP-8", "HB-UDP-9", "HB-UDP-5", "HB-UDP-10", "HB-UDP-4"),
    category=Category.VALID,
    transports=UDP,
)
async def rebinding(ctx: Context) -> None:
    peer = await ctx.session(mult=15)
    period = tx_interval(peer, target_of(peer)) or 1.0
    grace = 0.02 + 2 * ctx.tolerance  # frames already in flight when something changed
    second, third = await ctx.wire(), await ctx.wire()
    wires = [peer.wire, second, third]
    await pace(peer)
    hb = peer.frame(FrameType.HEARTBEAT)
    await second.send(peer.encoded(hb), note="from a second address")
    # Another current frame from a third address, within the probe period: no probe for it
    # [HB-UDP-10]. DATA, so that it cannot be a premature HEARTBEAT.
    await third.send(peer.encoded(peer.data_frame(b"moving")), note="from a third address")
    heard = await listen(wires, trio.current_time() + max(0.3, 3 * period), answer={0: peer})
    probes = _heartbeats(heard, 1, peer)
    ctx.check(
        len(probes) == 1, "one probe HEARTBEAT at the new address [HB-UDP-8]", f"{len(probes)}"
    )
    probe = probes[0]
    assert probe.frame is not None
    bare = 28 if ctx.auth is None else 28 + AUTH_TLV_SIZE  # no TLV but AUTH
    ctx.check(
        len(probe.raw) == bare and probe.frame.state is State.UP,
        "a bare HEARTBEAT with Sta UP [HB-UDP-9]",
        f"{len(probe.raw)} bytes, Sta {probe.frame.state.name}",
    )
    ctx.check(
        not _heartbeats(heard, 2, peer),
        "no probe at a third address within the probe period [HB-UDP-10]",
        f"{len(_heartbeats(heard, 2, peer))}",
    )
    ctx.check(
        bool(_heartbeats([h for h in heard if h.time > probe.time], 0, peer)),
        "periodic HEARTBEATs still at the verified address after the probe",
        "none there",
    )
    # An ACK echoing the probe's sequence number but not its Timestamp verifies nothing.
    forged = peer.frame(
        FrameType.ACK,
        seq=probe.frame.seq,
        timestamp=probe.frame.timestamp ^ 0xFFFF_FFFF,
        your_id=probe.frame.my_id,
    )
    await second.send(peer.encoded(forged), note="ACK for the probe, wrong Timestamp")
    heard = await listen(wires, trio.current_time() + max(0.25, 2 * period), answer={0: peer})
    stray = _heartbeats(heard, 1, peer) + _heartbeats(heard, 2, peer)
    ctx.check(
        not stray,
        "no HEARTBEAT away from the verified address after an ACK with the wrong Timestamp "
        "[HB-UDP-9]",
        f"{len(stray)}",
    )
    await second.send(peer.encoded(peer.ack_for(probe.frame)), note="ACK for the probe")
    answered = trio.current_time()
    heard = await listen(wires, answered + max(0.4, 3 * period), answer={1: peer})
    late = [h for h in _heartbeats(heard, 0, peer) if h.time > answered + grace]
    moved = _heartbeats(heard, 1, peer)
    ctx.check(
        bool(moved) and not late and not _heartbeats(heard, 2, peer),
        "HEARTBEATs at the probed address only, once the probe was answered [HB-UDP-5]",
        f"{len(moved)} at the probed address, {len(late)} at the old one",
    )


@case(
    "11.1/largest-datagram",
    "A 1200-byte DATA frame is accepted: it brings a session in INIT UP",
    requires=("HB-UDP-2", "HB-RX-3", "HB-DATA-2"),
    category=Category.VALID,
    transports=UDP,
)
async def largest_datagram(ctx: Context) -> None:
    await data_brings_up(ctx, await ctx.peer(), UDP_MAX_FRAME)


@case(
    "8.2/restart",
    "A new session from the address of a silent one ends the old one, without a CLOSE",
    requires=("HB-SM-6", "HB-SES-8"),
    level=Level.SHOULD,
    category=Category.INOPPORTUNE,
    transports=UDP,
)
async def restart(ctx: Context) -> None:
    old = await ctx.session(mult=15)  # silent, it stays UP at the target for 15 intervals
    await silence(old)
    expected = expected_remote(old, target_of(old)) or 1.0
    period = tx_interval(old, target_of(old)) or 1.0
    await trio.sleep(1.5 * expected)  # silent for more than its ExpectedRemote
    new = ScriptedPeer(old.wire, ctx.rng, auth=ctx.auth)  # the same address: a restarted peer
    await new.handshake(HANDSHAKE_WITHIN)
    up = new.received[-1].time
    new.keep_alive(new.interval)
    deadline = trio.current_time() + max(0.6, 3 * period)
    grace = 0.02 + 2 * ctx.tolerance
    while (got := await new.next(deadline)) is not None:
        frame = got.frame
        if frame.your_id == old.my_id and (got.time > up + grace or frame.type is FrameType.CLOSE):
            ctx.fail(
                "the old session deleted without a CLOSE once the new one was UP",
                f"{frame.type.name} Sta {frame.state.name} for it {got.time - up:.3f} s later",
            )


@case(
    "8.2/no-restart-while-alive",
    "Two live sessions from one address both stay UP",
    requires=("HB-SM-6", "HB-UDP-3"),
    category=Category.INOPPORTUNE,
    transports=UDP,
    feature="multi-session",
)
async def no_restart_while_alive(ctx: Context) -> None:
    first = await ctx.session(mult=15)
    # More often than ExpectedRemote (so that it never looks silent, [HB-SM-6]), but not
    # premature (at least half a judged interval apart, [HB-FREQ-6]).
    # Towards a target whose R is 0 the ACKs alone do that, and HEARTBEATs would be premature.
    target = target_of(first)
    first.keep_alive(
        None if target.required_rx == 0 else 0.65 * (expected_remote(first, target) or 1.0)
    )
    second = ScriptedPeer(first.wire, ctx.rng, auth=ctx.auth)

    def answered(state: State) -> Callable[[], bool]:
        return lambda: any(
            g.frame.your_id == second.my_id and g.frame.state is state for g in second.received
        )

    try:
        for state in (State.INIT, State.UP):  # the handshake, with the first session alive
            await second.heartbeat(paced=False)
            await run_together(
                [first, second], trio.current_time() + HANDSHAKE_WITHIN, answered(state)
            )
            if not answered(state)():
                raise Failed(f"Sta {state.name}", "no answer")
            second.your_id = second.received[-1].frame.my_id
            second.state = State.UP
    except Failed as failure:
        raise Unsupported(
            f"no second session from one address ({failure.actual}): multi-session"
        ) from None
    up = trio.current_time()
    second.keep_alive(second.interval)
    period = tx_interval(first, target_of(first)) or 1.0
    await run_together([first, second], up + max(0.6, 2.5 * period))
    for peer, name in ((first, "first"), (second, "second")):
        # ACKs count: an idle-only target [HB-TX-3] sends no HEARTBEAT while it answers ours.
        frames = [g for g in peer.received if g.time > up and g.frame.your_id == peer.my_id]
        ctx.check(
            bool(frames) and all(g.frame.state is State.UP for g in frames),
            f"the target's frames with Sta UP in the {name} session",
            f"{len(frames)}: {sorted({g.frame.state.name for g in frames})}",
        )
