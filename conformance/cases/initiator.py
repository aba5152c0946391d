"""The initiator role: how the target opens a session, paces it, brings it up and backs off.

These cases run only against a launched initiator (``--client-cmd``): the suite is the
responder, and decides what to answer to the target's opening HEARTBEAT. Cases of other modules
that need nothing but a session that is UP run in this role too (listed at the end).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from conformance.context import HANDSHAKE_WITHIN, SLOW_START, Context
from conformance.model import Category, Failed, Role, Unsupported
from conformance.peer import Received, ScriptedPeer, is_opening
from conformance.registry import INITIATOR, also_in_role, case
from hbproto.frame import CloseCode, Frame, FrameType, State

# The modules whose cases are shared below, registered first whatever the import order.
from . import ack, close, sessions, stream, timers, validation  # noqa: F401

_US = 1_000_000
DEFAULT_INTERVAL = 1.0  # [HB-NEG-5]: "no preference" is read as this
AT_ONCE = 0.25  # "at once": well under the shortest wait of the slow-start timer (0.75 s)
RETRY_WITHIN = 2 * SLOW_START * 1.25 + 5.0  # the first refusal's back-off, its jitter, slack
CLOSE_TEXT = "conformance"
TCP_ONLY = frozenset({"tcp"})


async def _opening(ctx: Context) -> tuple[ScriptedPeer, Received]:
    """The target's first frame, which has to open a session (8.3/initiator-opening judges
    how it is built; here it only has to be an opening)."""
    peer, first = await ctx.accept()
    ctx.timings["first frame after the launch"] = first.time - _launched(ctx)
    ctx.check(
        is_opening(first.frame),
        "a first frame that opens a session: HEARTBEAT, Sta DOWN, Your Identifier 0",
        _fields(first.frame),
    )
    return peer, first


def _launched(ctx: Context) -> float:
    assert ctx.client is not None
    return ctx.client.started


def _fields(frame: Frame) -> str:
    return f"{frame.type.name} Sta {frame.state.name} my={frame.my_id:08x} your={frame.your_id:08x}"


def _of(opening: Frame) -> Callable[[Frame], bool]:
    """Matches the HEARTBEATs of the session ``opening`` opened."""
    return lambda f: f.type is FrameType.HEARTBEAT and f.my_id == opening.my_id


@case(
    "8.3/initiator-opening",
    "The initiator's first frame is a HEARTBEAT with Sta DOWN and Your Identifier 0",
    requires=("HB-SM-1", "HB-SES-5", "HB-FRAME-8"),
    category=Category.VALID,
    roles=INITIATOR,
)
async def initiator_opening(ctx: Context) -> None:
    peer, first = await ctx.accept()
    ctx.timings["first frame after the launch"] = first.time - _launched(ctx)
    ctx.check(
        not peer.invalid,
        "a valid first frame",
        f"invalid frames first: {', '.join(reason for _, reason in peer.invalid)}",
    )
    frame = first.frame
    ctx.check(frame.type is FrameType.HEARTBEAT, "a HEARTBEAT", frame.type.name)
    ctx.check(frame.state is State.DOWN, "Sta DOWN: a new session starts DOWN", frame.state.name)
    ctx.check(
        frame.your_id == 0,
        "Your Identifier 0: the session knows no remote identifier yet",
        f"{frame.your_id:08x}",
    )


@case(
    "9.2/initiator-first-at-once",
    "The initiator sends its first HEARTBEAT as soon as the connection is open",
    requires=("HB-TX-5",),
    category=Category.TIMERS,
    roles=INITIATOR,
    transports=TCP_ONLY,  # on UDP the suite cannot see the session open, only the launch
)
async def initiator_first_at_once(ctx: Context) -> None:
    peer, first = await ctx.accept()
    ctx.within_bound(
        "first frame after the connection opened", first.time - peer.wire.opened, 0.0, AT_ONCE
    )


@case(
    "9.2/initiator-slow-start",
    "Unanswered, the initiator repeats its opening J x max(TxInterval, 1 s) apart",
    requires=("HB-TX-2", "HB-TX-1", "HB-TX-4"),
    category=Category.TIMERS,
    roles=INITIATOR,
)
async def initiator_slow_start(ctx: Context) -> None:
    peer, first = await _opening(ctx)
    opening = first.frame
    # TxInterval is max(local D, remote R), and the suite has sent nothing: no remote R.
    tx = (opening.desired_tx or 0) / _US or DEFAULT_INTERVAL
    period = max(tx, SLOW_START)
    high = 0.9 * period if opening.mult == 1 else period
    times = [first.time]
    while len(times) < 4:
        got = await peer.expect(
            "the opening HEARTBEAT again, unanswered", _of(opening), 2 * period + 1
        )
        ctx.check(
            is_opening(got.frame),
            "Sta DOWN and Your Identifier 0 while nothing answers",
            _fields(got.frame),
        )
        times.append(got.time)
    for i in range(1, len(times)):
        ctx.within_bound(
            f"gap {i} (slow start, T {period:.3f} s)", times[i] - times[i - 1], 0.75 * period, high
        )


@case(
    "8.3/initiator-handshake",
    "Answered with Sta INIT, the initiator says UP at once, to the suite's identifier",
    requires=("HB-SM-2", "HB-HB-2", "HB-SES-5", "HB-ID-2"),
    category=Category.VALID,
    roles=INITIATOR,
)
async def initiator_handshake(ctx: Context) -> None:
    peer, first = await _opening(ctx)
    opening = first.frame
    peer.your_id, peer.state = opening.my_id, State.INIT
    await peer.send(peer.ack_for(opening))
    answered = peer.last_sent
    got = await peer.expect("the target's next HEARTBEAT", _of(opening), HANDSHAKE_WITHIN)
    up = got.frame
    ctx.check(up.state is State.UP, "Sta UP once it has our Sta INIT", f"Sta {up.state.name}")
    ctx.check(
        up.your_id == peer.my_id,
        f"Your Identifier {peer.my_id:08x}, learned from our ACK",
        f"{up.your_id:08x}",
    )
    ctx.within_bound("UP after our ACK (a triggered HEARTBEAT)", got.time - answered, 0.0, AT_ONCE)
    peer.state = State.UP
    await peer.send(peer.ack_for(up))
    peer.auto_ack = True
    peer.keep_alive((peer.desired_tx or 100_000) / _US)
    later = await peer.expect("a later HEARTBEAT of the session", _of(opening), 3.0)
    ctx.check(
        later.frame.state is State.UP,
        "Sta UP: the session stays UP",
        f"Sta {later.frame.state.name}",
    )


@case(
    "8.3/initiator-init-from-down",
    "Answered with Sta DOWN, the initiator goes to INIT, not UP, and comes UP on the next step",
    requires=("HB-SM-2", "HB-SM-1", "HB-HB-2"),
    category=Category.INOPPORTUNE,
    roles=INITIATOR,
)
async def initiator_init_from_down(ctx: Context) -> None:
    peer, first = await _opening(ctx)
    opening = first.frame
    peer.your_id = opening.my_id  # the suite stays DOWN: an answer that only says "heard"
    await peer.send(peer.ack_for(opening), note="Sta DOWN")
    answered = peer.last_sent
    got = await peer.expect("the target's next HEARTBEAT", _of(opening), HANDSHAKE_WITHIN)
    ctx.check(
        got.frame.state is State.INIT,
        "Sta INIT: a DOWN session that hears Sta DOWN moves to INIT, never to UP",
        f"Sta {got.frame.state.name}",
    )
    ctx.within_bound(
        "INIT after our ACK (a triggered HEARTBEAT)", got.time - answered, 0.0, AT_ONCE
    )
    peer.state = State.UP  # the suite hears the target's INIT: DOWN to UP
    await peer.send(peer.ack_for(got.frame))
    peer.auto_ack = True
    up = await peer.expect(
        "a HEARTBEAT with Sta UP once we answered with Sta UP",
        lambda f: _of(opening)(f) and f.state is State.UP,
        HANDSHAKE_WITHIN,
    )
    ctx.check(up.frame.your_id == peer.my_id, "our identifier", f"{up.frame.your_id:08x}")


@case(
    "6.4/refusal-back-off",
    "Refused, the initiator opens no new session for 2 s (reconnecting initiators only)",
    requires=("HB-CLOSE-6", "HB-CLOSE-3"),
    category=Category.TIMERS,
    roles=INITIATOR,
)
async def refusal_back_off(ctx: Context) -> None:
    """Needs an initiator that opens a new session after a refusal (the reference:
    ``connect --reconnect``); one that gives up instead is UNSUPPORTED here."""
    peer, first = await _opening(ctx)
    opening = first.frame
    await peer.send(peer.refusal_for(opening), note="refused")
    refused_at = peer.last_sent
    if ctx.transport == "tcp":
        await peer.wire.aclose()  # the refused connection is over for the suite too
    wait = SLOW_START * 2  # after the first refusal: min(SLOW_START_INTERVAL x 2^1, 60 s)
    try:
        _, got = await ctx.accept(within=RETRY_WITHIN)
    except Failed as failure:
        raise Unsupported(
            f"no new session within {RETRY_WITHIN:g} s of the refusal ({failure.actual}): "
            "the case needs an initiator that opens a new session after a refusal; give "
            "the command the option for that (the reference: connect --reconnect)"
        ) from None
    ctx.check(
        got.frame.my_id != opening.my_id,
        "nothing more from the refused session",
        _fields(got.frame),
    )
    ctx.check(is_opening(got.frame), "a new session's opening HEARTBEAT", _fields(got.frame))
    ctx.within_bound(
        f"new session after the refusal (back-off {wait:g} s + up to 25 %)",
        got.time - refused_at,
        wait,
        math.inf,
    )


@case(
    "9.3/initiator-reports-down",
    "A silent peer is reported down, by the detection timer, detected locally (event log)",
    requires=("HB-SM-3", "HB-CONF-1"),
    category=Category.TIMERS,
    roles=INITIATOR,
)
async def initiator_reports_down(ctx: Context) -> None:
    peer = await ctx.session()
    target_rx = max((r.frame.required_rx or 0) for r in peer.received) / _US
    expected_remote = max((peer.desired_tx or 0) / _US, target_rx)
    detection = peer.mult * expected_remote
    peer.keep_alive(None)
    peer.auto_ack = False
    await peer.expect(
        "the target declaring us down: Sta DOWN, or a CLOSE",
        lambda f: f.state is State.DOWN or f.type is FrameType.CLOSE,
        detection + expected_remote + 3,
    )
    record = await ctx.event("a PeerDown record", lambda r: r["event"] == "PeerDown", 2.0)
    ctx.check(
        record.get("reason") == "detection_timeout",
        "reason detection_timeout",
        f"reason {record.get('reason')!r}",
    )
    if "detected_by" in record:
        ctx.check(
            record["detected_by"] == "local",
            "detected_by local",
            f"detected_by {record['detected_by']!r}",
        )


@case(
    "6.4/initiator-reports-close",
    "A CLOSE from the suite is reported with its reason code and text (event log)",
    requires=("HB-CLOSE-3", "HB-CONF-1"),
    category=Category.VALID,
    roles=INITIATOR,
)
async def initiator_reports_close(ctx: Context) -> None:
    peer = await ctx.session()
    peer.keep_alive(None)
    peer.auto_ack = False
    await peer.send(peer.close_frame(CloseCode.SHUTDOWN, CLOSE_TEXT))
    record = await ctx.event("a SessionClosed record", lambda r: r["event"] == "SessionClosed", 3.0)
    ctx.check(
        record.get("code") in (int(CloseCode.SHUTDOWN), "shutdown"),
        f"code {int(CloseCode.SHUTDOWN)} (shutdown)",
        f"code {record.get('code')!r}",
    )
    ctx.check(record.get("text") == CLOSE_TEXT, repr(CLOSE_TEXT), repr(record.get("text")))
    if "by_peer" in record:
        ctx.check(record["by_peer"] is True, "by_peer true", f"by_peer {record['by_peer']!r}")


# Cases that need no more than a session that is UP: they judge an initiator just as well.
also_in_role(
    Role.INITIATOR,
    "6.2/ack-unanswered",
    "6.2/echo",
    "6.2/final",
    "6.2/not-larger",
    "6.2/one-ack",
    "6.4/close-ends-the-session",
    "6.4/unknown-reason",
    "7/V-2-truncated",
    "7/V-1-bad-version",
    "7/V-4-bad-length",
    "7/V-5-bad-checksum",
    "7/V-6-unknown-type",
    "7/V-7-bad-field",
    "7/V-8-bad-tlv",
    "8.5/replay",
    "8.5/send-counter",
    "9.1/slower-for-the-peer",
    "9.2/interval-and-jitter",
    "9.3/detection",
    "11.2/frames-in-one-segment",
    "11.2/unframeable-stream",
)
