"""The per-session rules of the SPEC, one test (or parametrized group) per rule.

Everything that concerns a session is driven through a real Endpoint with bytes from a
scripted peer (tests/peer.py); the pure timer functions are checked against tables computed by
hand from SPEC section 9. Each test names the requirement it checks.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hbproto import Config, Connection, Endpoint, Limits
from hbproto.errors import LocalProtocolError
from hbproto.events import (
    DetectedBy,
    DownReason,
    Event,
    LivenessInactive,
    LocalStall,
    MessageReceived,
    Negotiated,
    ParametersChanged,
    PeerDown,
    PeerRestarted,
    PeerUp,
    PiggybackReceived,
    RttSample,
    SessionClosed,
)
from hbproto.frame import (
    MIN_FRAME,
    CloseCode,
    Frame,
    FrameType,
    State,
    Tlv,
    TlvType,
    decode,
    decode_interval,
    encode,
    encode_interval,
    pack,
    pack_tlv,
    schema_encode,
)
from hbproto.timers import (
    detection_time_us,
    expected_remote_us,
    interarrival_seed,
    is_premature,
    jitter_factor,
    phi,
    rtt_update,
    tx_interval_us,
)
from tests.peer import DROP_COUNTERS, Peer, collect, deliver, drain, handshake

HB, ACK, DATA, CLOSE = FrameType.HEARTBEAT, FrameType.ACK, FrameType.DATA, FrameType.CLOSE
CLOSED, DOWN, INIT, UP = State.CLOSED, State.DOWN, State.INIT, State.UP
MASK32 = 0xFFFFFFFF
MS = 1_000
S = 1_000_000

# Both sides advertise D = R = 100 ms and Mult 3: once UP, TxInterval = ExpectedRemote =
# 100 ms and DetectionTime = 300 ms; a HEARTBEAT less than 50 ms after the previous one is
# premature.
CONFIG = Config(interval=0.1, min_rx=0.1, multiplier=3)
DT = 0.3
EXPECTED = 0.1
OTHER_ADDR = ("203.0.113.66", 666)
VECTORS = Path(__file__).resolve().parent.parent / "conformance" / "vectors.json"


def _ids(seed: int) -> Callable[[], int]:
    rng = random.Random(seed)
    return lambda: rng.getrandbits(32)


def _responder(config: Config = CONFIG, limits: Limits | None = None) -> Endpoint:
    return Endpoint(config, accept=True, limits=limits, rng=random.Random(3), id_source=_ids(4))


def _established(config: Config = CONFIG, peer: Peer | None = None) -> tuple[Endpoint, Peer, int]:
    """A responder with one session that came UP at t = 0."""
    ep = _responder(config)
    peer = peer or Peer()
    sid = handshake(ep, peer, 0.0)
    drain(ep)
    return ep, peer, sid


def _run(ep: Endpoint, until: float, *peers: Peer) -> list[tuple[float, Frame]]:
    """Run the core's timers up to ``until``, as an event loop would; frames with send times."""
    out: list[tuple[float, Frame]] = []
    while (at := ep.get_timer()) is not None and at <= until:
        out.extend((at, f) for f in collect(ep, at, *peers))
    return out


def _drops(ep: Endpoint) -> Counter[str]:
    return Counter({name: ep.counters[name] for name in DROP_COUNTERS if ep.counters[name]})


def _run_until_down(ep: Endpoint, peer: Peer, limit: float) -> tuple[float, PeerDown, list[Frame]]:
    """Run timers until the core reports PeerDown; return when, the event and what was sent."""
    sent: list[Frame] = []
    while True:
        at = ep.get_timer()
        assert at is not None
        assert at <= limit, f"no PeerDown by {limit}"
        for raw, addr in ep.datagrams_to_send(at):
            assert addr == peer.addr  # [HB-UDP-5]: nothing moved the session's address
            sent.append(decode(raw))
        for event in drain(ep):
            if isinstance(event, PeerDown):
                return at, event, sent


# --- Validation: checks V-9 to V-14 through an Endpoint; half-open sessions -----------------------


@dataclass
class Scene:
    """An UP session whose last valid frame (an ACK of the core's first HEARTBEAT) is at 0.1 s."""

    ep: Endpoint
    peer: Peer
    sid: int
    acked: Frame  # a HEARTBEAT of the core, acknowledged once
    data: Frame  # a DATA frame of the core
    last_valid: float = 0.1


def _scene() -> Scene:
    ep, peer, sid = _established()
    ep.send(sid, b"x", 0.05)
    (data,) = collect(ep, 0.05, peer)
    assert data.type is DATA
    _run(ep, 0.1, peer)
    acked = peer.heartbeats()[0]
    assert deliver(ep, peer, peer.ack(acked), 0.1) == []
    assert [type(e) for e in drain(ep)] == [RttSample]
    return Scene(ep, peer, sid, acked, data)


BadFrame = Callable[[Scene], bytes]

AUTH_TLV = Tlv(TlvType.AUTH, bytes(17))
INVALID_IN_SESSION: list[tuple[str, BadFrame, str]] = [
    # [HB-RX-9]: Your Identifier names no session of this endpoint.
    (
        "unknown-your-id",
        lambda s: s.peer.heartbeat(your_id=s.sid ^ 0x5A5A, state=DOWN),
        "unknown_session",
    ),
    # [HB-RX-10], [HB-SES-5]: right session, but My Identifier is not the peer's.
    ("wrong-peer", lambda s: s.peer.heartbeat(my_id=s.peer.my_id ^ 1, state=DOWN), "wrong_peer"),
    ("wrong-peer-close", lambda s: encode(replace(decode(s.peer.close()), my_id=7)), "wrong_peer"),
    # [HB-RX-11], [HB-AUTH-5]: AUTH in a session without authentication.
    (
        "auth-unexpected",
        lambda s: s.peer.heartbeat(state=DOWN, tlvs=(AUTH_TLV,)),
        "auth_unexpected",
    ),
    # [HB-RX-12], [HB-SEQ-3]: duplicate and older than the 64-number window.
    ("replay-duplicate", lambda s: s.peer.heartbeat(state=DOWN, seq=s.peer.seq - 1), "replay"),
    ("replay-old", lambda s: s.peer.heartbeat(state=DOWN, seq=s.peer.seq - 65), "replay"),
    ("replay-data", lambda s: s.peer.data(b"again", seq=s.peer.seq - 1), "replay"),
    ("replay-close", lambda s: _close_with_seq(s.peer, s.peer.seq - 1), "replay"),
    # [HB-RX-13], [HB-ACK-5]: ACKs that answer no outstanding HEARTBEAT.
    ("unsolicited-ack", lambda s: _ack_seq(s, s.acked.seq + 1000), "unsolicited_ack"),
    ("duplicate-ack", lambda s: s.peer.ack(s.acked, state=DOWN), "unsolicited_ack"),
    ("ack-of-data", lambda s: _ack_seq(s, s.data.seq), "unsolicited_ack"),
]


def _close_with_seq(peer: Peer, seq: int) -> bytes:
    return encode(replace(decode(peer.close()), seq=seq & MASK32))


def _ack_seq(scene: Scene, seq: int) -> bytes:
    fake = replace(scene.acked, seq=seq & MASK32)
    return scene.peer.ack(fake, state=DOWN)


@pytest.mark.parametrize(
    ("make", "counter"),
    [pytest.param(make, counter, id=name) for name, make, counter in INVALID_IN_SESSION],
)
def test_invalid_frame_has_no_effect(make: BadFrame, counter: str) -> None:
    """[HB-RX-9]..[HB-RX-13], [HB-RX-14], [HB-DET-1], [HB-UDP-5], [HB-SM-7]: a frame that fails
    a session check is counted under its SPEC name and does nothing else: no reply, no event,
    no state change, no new address, and the detection timer keeps running from the last
    valid frame (PeerDown within [last + DT, last + DT + ExpectedRemote])."""
    scene = _scene()
    ep = scene.ep
    _run(ep, 0.3, scene.peer)
    before = _drops(ep)
    # Sent from another address: a valid frame would move the session there [HB-UDP-5].
    ep.receive_datagram(make(scene), OTHER_ADDR, 0.3)
    assert ep.datagrams_to_send(0.3) == []
    assert _drops(ep) - before == Counter({counter: 1})
    assert drain(ep) == []
    info = ep.snapshot(scene.sid, 0.3)
    assert (info.state, info.last_rx, info.remote_id) == (UP, 0.1, scene.peer.my_id)
    at, down, sent = _run_until_down(ep, scene.peer, 1.0)
    assert down.reason is DownReason.DETECTION_TIMEOUT
    assert scene.last_valid + DT <= at <= scene.last_valid + DT + EXPECTED
    assert all(f.state is UP for f in sent[:-1])


def test_your_id_zero_when_not_accepting() -> None:
    """[HB-RX-9], [HB-SES-2]: an endpoint that does not accept sessions discards an opening
    HEARTBEAT (Your Identifier 0) as unknown_session, creates nothing and answers nothing."""
    ep = Endpoint(CONFIG, accept=False, rng=random.Random(1), id_source=_ids(2))
    peer = Peer()
    assert deliver(ep, peer, peer.heartbeat(state=DOWN), 0.0) == []
    assert _drops(ep) == Counter(unknown_session=1)
    assert ep.sessions == {}
    assert drain(ep) == []
    assert ep.get_timer() is None


def test_unknown_your_id_without_sessions() -> None:
    """[HB-RX-9], [HB-SES-1]: a non-zero Your Identifier that names no session is dropped even
    by an accepting endpoint; it never creates a session."""
    ep = _responder()
    peer = Peer(your_id=0x12345678)
    for sta in (DOWN, INIT, UP):
        assert deliver(ep, peer, peer.heartbeat(state=sta), 0.0) == []
    assert deliver(ep, peer, peer.data(b"m"), 0.0) == []
    assert _drops(ep) == Counter(unknown_session=4)
    assert ep.sessions == {}


def test_unverified_session_sends_only_acks() -> None:
    """[HB-HB-4], [HB-TX-2], [HB-CLOSE-1]: a session that an opening HEARTBEAT created sends
    nothing but ACKs (one per valid HEARTBEAT) until a frame echoes its identifier; not even
    a CLOSE when the application closes it."""
    ep = _responder()
    peer = Peer()
    sent: list[Frame] = []
    for k in range(3):  # an initiator that never hears our ACKs repeats its opener
        sent += deliver(ep, peer, peer.heartbeat(state=DOWN, your_id=0), 0.9 * k)
        sent += [f for _, f in _run(ep, 0.9 * k + 0.89, peer)]
    assert [(f.type, f.state, f.your_id) for f in sent] == [(ACK, INIT, peer.my_id)] * 3
    sid = sent[0].my_id
    ep.close(sid, 2.0)
    assert collect(ep, 2.0, peer) == []


def test_replayed_opener_makes_only_a_silent_half_open_session() -> None:
    """[HB-SES-2], [HB-HB-4], [HB-SES-4], SPEC 10: a replayed opening HEARTBEAT of an
    established session does not match it (its address is verified); the half-open session it
    may create answers with one ACK, sends nothing else, and is gone within DetectionTime.
    The established session is untouched."""
    ep = _responder()
    peer = Peer()
    opener = peer.heartbeat(state=DOWN)
    deliver(ep, peer, opener, 0.0)
    peer.state = UP
    deliver(ep, peer, peer.heartbeat(), 0.0)
    sid = peer.your_id
    drain(ep)
    out = deliver(ep, peer, opener, 0.05)
    replies = [f for f in out if f.type is ACK]
    assert len(replies) <= 1
    assert all(f.my_id != sid for f in replies)
    ghosts = set(ep.sessions) - {sid}
    t = 0.05
    while t < 3.2:  # the genuine peer keeps its session alive
        t = round(t + 0.1, 6)
        for f in [f for _, f in _run(ep, t, peer)] + deliver(ep, peer, peer.heartbeat(), t):
            assert f.my_id == sid, "the half-open session sent something"
    assert not ghosts & set(ep.sessions)
    assert ep.snapshot(sid, t).state is UP
    assert not any(isinstance(e, PeerDown) for e in drain(ep))


def test_half_open_lifetime_capped_by_handshake_timeout() -> None:
    """[HB-SES-4]: a half-open session dies within min(DetectionTime, HANDSHAKE_TIMEOUT), so a
    peer advertising a huge DetectionTime (15 x 60 s) cannot keep it for long."""
    ep = _responder(replace(CONFIG, handshake_timeout=10.0))
    peer = Peer(mult=15, desired_tx=60 * S)
    assert _open(ep, peer, 0.0)
    _run(ep, 9.99, peer)
    assert peer.your_id in ep.sessions
    _run(ep, 10.0, peer)
    assert peer.your_id not in ep.sessions


def test_replay_window_and_wraparound() -> None:
    """[HB-SEQ-2], [HB-SEQ-3], [HB-RX-12]: serial-number comparison across 2**32; numbers
    inside the 64-wide window are accepted once, out of order; 64 or more behind, or seen
    before, are replays. Accepted HEARTBEATs are answered; replays are not."""
    ep = _responder(replace(CONFIG, max_strikes=None))
    peer = Peer(seq=2**32 - 3)
    handshake(ep, peer, 0.0)  # accepts 2**32 - 3 and 2**32 - 2
    steps = [
        (2**32 - 1, True),
        (0, True),  # newer across the wrap
        (5, True),  # the newest is now 5
        (2**32 - 1, False),  # seen before
        (3, True),  # never seen, inside the window, out of order
        (3, False),
        ((5 - 64) & MASK32, False),  # 64 behind: out of the window even if never seen
        ((5 - 63) & MASK32, True),  # 63 behind: the oldest number still in the window
        ((5 - 63) & MASK32, False),
        (5 + 2**31 - 1, True),  # the farthest number that is still newer
        (5, False),  # now 2**31 - 1 behind
    ]
    t = 0.0
    for seq, accepted in steps:
        t += 0.01
        replays = ep.counters["replay"]
        out = deliver(ep, peer, peer.heartbeat(seq=seq, state=UP), t)
        acks = [f for f in out if f.type is ACK]
        assert (len(acks) == 1) is accepted, seq
        assert ep.counters["replay"] == replays + (not accepted), seq
        if accepted:
            assert acks[0].seq == seq


def test_ack_window_reaches_1024_sequence_numbers() -> None:
    """[HB-ACK-5], [HB-RX-13]: an ACK is accepted once for any HEARTBEAT among the 1024 most
    recent Sequence Numbers the endpoint used (DATA uses numbers too), so the 17th most recent
    HEARTBEAT can still be acknowledged; a second ACK for the same one is unsolicited."""
    ep, peer, sid = _established()
    t = 0.0
    while len(peer.heartbeats()) < 20:
        t = round(t + 0.1, 6)
        _run(ep, t, peer)
        deliver(ep, peer, peer.heartbeat(state=UP), t)  # keep the session alive
    drain(ep)
    heartbeats = peer.heartbeats()
    assert deliver(ep, peer, peer.ack(heartbeats[-17]), t) == []
    assert [type(e) for e in drain(ep)] == [RttSample]
    assert deliver(ep, peer, peer.ack(heartbeats[-17]), t) == []
    assert ep.counters["unsolicited_ack"] == 1
    # Use up numbers with DATA until the last HEARTBEAT is the oldest of the 1024 most recent.
    newest = heartbeats[-1]
    for _ in range(1023 - (len(heartbeats) - 1 - heartbeats.index(newest))):
        ep.send(sid, b"", t)
    sent = collect(ep, t, peer)
    assert all(f.type is DATA for f in sent)
    assert (sent[-1].seq - newest.seq) & MASK32 == 1023
    assert deliver(ep, peer, peer.ack(newest), t) == []
    assert [type(e) for e in drain(ep)] == [RttSample]
    assert ep.counters["unsolicited_ack"] == 1


def _lingering() -> tuple[Endpoint, Peer, int]:
    ep, peer, sid = _established()
    ep.close(sid, 0.1, CloseCode.SHUTDOWN, "maintenance window starts now, back in an hour")
    (close,) = collect(ep, 0.1, peer)
    assert close.type is CLOSE
    assert close.size > MIN_FRAME  # the local CLOSE carries its text
    drain(ep)
    return ep, peer, sid


@pytest.mark.parametrize("piggyback", [0, 1, 128])
def test_lingering_session_answers_with_a_small_close(piggyback: int) -> None:
    """[HB-CLOSE-2], [HB-RX-14], [HB-UDP-4], [HB-UDP-6]: a frame for a session closed
    locally (lingering) is counted as closed_session and answered with exactly one CLOSE, no
    larger than the frame, to the frame's source address; nothing else happens."""
    ep, peer, sid = _lingering()
    tlvs = (Tlv(TlvType.PAYLOAD, bytes(piggyback)),) if piggyback else ()
    hb = peer.heartbeat(state=UP, tlvs=tlvs)
    ep.receive_datagram(hb, OTHER_ADDR, 0.2)
    out = ep.datagrams_to_send(0.2)
    assert len(out) == 1
    raw, addr = out[0]
    assert addr == OTHER_ADDR
    assert len(raw) <= len(hb)
    close = decode(raw)
    assert (close.type, close.state, close.close_code) == (CLOSE, CLOSED, CloseCode.SHUTDOWN)
    assert (close.my_id, close.your_id) == (sid, peer.my_id)
    assert _drops(ep) == Counter(closed_session=1)
    assert drain(ep) == []
    assert ep.snapshot(sid, 0.2).state is CLOSED


def test_lingering_session_does_not_answer_a_close() -> None:
    """[HB-CLOSE-3], [HB-CLOSE-2]: a CLOSE that reaches a lingering session is not answered."""
    ep, peer, _ = _lingering()
    assert deliver(ep, peer, peer.close(), 0.2) == []
    assert _drops(ep) == Counter(closed_session=1)
    assert drain(ep) == []


def test_lingering_lasts_one_detection_time() -> None:
    """[HB-CLOSE-2]: identifiers are kept for one DetectionTime after the close, then the
    session is gone and frames for it are unknown_session (and unanswered)."""
    ep, peer, sid = _lingering()
    assert len(deliver(ep, peer, peer.heartbeat(state=UP), 0.1 + DT - 0.01)) == 1
    _run(ep, 0.1 + DT + EXPECTED, peer)
    assert sid not in ep.sessions
    assert deliver(ep, peer, peer.heartbeat(state=UP), 0.1 + DT + EXPECTED) == []
    assert ep.counters["unknown_session"] == 1


def test_lingering_session_does_not_answer_an_ack() -> None:
    """[HB-CLOSE-2], [HB-ACK-4]: a lingering session never answers an ACK."""
    ep, peer, _ = _established()
    at, hb = _next_heartbeat(ep, peer, 0.0)
    ep.close(peer.your_id, at)
    collect(ep, at, peer)
    assert deliver(ep, peer, peer.ack(hb), at + 0.01) == []
    assert _drops(ep) == Counter(closed_session=1)


def test_session_closed_by_peer_does_not_linger() -> None:
    """[HB-CLOSE-3], [HB-RX-9]: after a received CLOSE the session is gone: later frames fail
    V-9 and are not answered."""
    ep, peer, sid = _established()
    assert deliver(ep, peer, peer.close(), 0.05) == []
    assert deliver(ep, peer, peer.heartbeat(state=UP), 0.06) == []
    assert deliver(ep, peer, peer.data(b"late"), 0.06) == []
    assert _drops(ep) == Counter(unknown_session=2)
    assert sid not in ep.sessions


def test_session_closed_by_peer_does_not_linger_within_a_batch() -> None:
    """[HB-CLOSE-3], [HB-RX-9]: the same when the application reads several datagrams before
    it asks for output (a recvmmsg batch): the frame after the CLOSE is not answered."""
    ep, peer, _ = _established()
    ep.receive_datagram(peer.close(), peer.addr, 0.05)
    ep.receive_datagram(peer.heartbeat(state=UP), peer.addr, 0.05)
    assert ep.datagrams_to_send(0.05) == []
    assert _drops(ep) == Counter(unknown_session=1)


@pytest.mark.parametrize(
    ("make", "counter"),
    [
        pytest.param(lambda p: p.heartbeat(my_id=p.my_id ^ 1, state=UP), "wrong_peer", id="V-10"),
        pytest.param(lambda p: p.heartbeat(state=UP, seq=p.seq - 1), "replay", id="V-12"),
    ],
)
def test_lingering_session_checks_in_order(make: Callable[[Peer], bytes], counter: str) -> None:
    """[HB-RX-10], [HB-RX-12], [HB-RX-14], [HB-RX-15]: V-10 to V-13 come before V-14; a frame
    that fails one of them is discarded silently even when the session is lingering."""
    ep, peer, _ = _lingering()
    assert deliver(ep, peer, make(peer), 0.2) == []
    assert _drops(ep) == Counter({counter: 1})


# --- Replacement after a long outage [HB-SM-8] ----------------------------------------------------


def test_replacement_at_the_session_limit() -> None:
    """[HB-SM-8], [HB-SES-3]: an initiator's session that stays DOWN for a slow-start
    DetectionTime is replaced; driving the timers never raises, even when the endpoint holds
    its maximum number of sessions (the replacement takes the old session's place)."""
    ep = Endpoint(CONFIG, limits=Limits(max_sessions=1), rng=random.Random(1), id_source=_ids(2))
    peer = Peer()
    sid = ep.connect(peer.addr, 0.0)
    (hello,) = collect(ep, 0.0, peer)
    peer.your_id = sid
    deliver(ep, peer, peer.ack(hello, state=INIT), 0.0)
    peer.state = UP
    deliver(ep, peer, peer.heartbeat(), 0.0)
    _run(ep, 10.0, peer)  # silent peer: DOWN at 0.3, replaced at 3.3
    assert sid not in ep.sessions
    assert len(ep.sessions) == 1


# --- NAT rebinding [HB-UDP-5], [HB-UDP-8], [HB-UDP-6] -------------------------------------------

NEW_ADDR = ("198.51.100.7", 9)


def test_rebinding_moves_traffic_only_after_verification() -> None:
    """[HB-UDP-8], [HB-UDP-5], [HB-UDP-4]: a current frame from a new address is answered
    there and draws one probe HEARTBEAT there; periodic traffic stays on the verified address
    until an ACK from the new address answers the probe."""
    ep, peer, sid = _established()
    old_addr = peer.addr
    peer.addr = NEW_ADDR
    ep.receive_datagram(peer.heartbeat(state=UP), NEW_ADDR, 0.06)
    out = [(decode(raw), addr) for raw, addr in ep.datagrams_to_send(0.06)]
    assert {addr for _, addr in out} == {NEW_ADDR}
    probes = [f for f, _ in out if f.type is HB]
    assert len(probes) == 1
    assert [f.type for f, _ in out].count(ACK) == 1
    # Periodic HEARTBEATs still go to the old address.
    t = ep.get_timer()
    assert t is not None
    ((raw, addr),) = ep.datagrams_to_send(t)
    assert (decode(raw).type, addr) == (HB, old_addr)
    # The peer answers the probe from the new address: traffic moves.
    ep.receive_datagram(peer.ack(probes[0]), NEW_ADDR, t)
    ep.send(sid, b"after", t)
    ((raw, addr),) = ep.datagrams_to_send(t)
    assert (decode(raw).payload, addr) == (b"after", NEW_ADDR)


def test_invalid_frame_from_new_address_draws_no_probe() -> None:
    """[HB-RX-14], [HB-UDP-8]: only a current valid frame starts a rebinding."""
    ep, peer, _ = _established()
    stale = peer.heartbeat(state=UP, seq=peer.seq - 1)  # a replay
    ep.receive_datagram(stale, NEW_ADDR, 0.06)
    assert ep.datagrams_to_send(0.06) == []


def test_nothing_larger_than_the_frame_goes_to_an_unverified_address() -> None:
    """[HB-UDP-6], SPEC 12.1: no frame larger than the frame it answers goes to an address
    that is not verified, whatever the application piggybacks."""
    ep, peer, sid = _established()
    ep.set_piggyback(sid, bytes(128))
    hb = peer.heartbeat(state=UP)
    ep.receive_datagram(hb, NEW_ADDR, 0.06)
    sizes = [len(raw) for raw, addr in ep.datagrams_to_send(0.06) if addr == NEW_ADDR]
    assert sizes
    assert max(sizes) <= len(hb)


# --- Codec-level invalid datagrams ------------------------------------------------------------


def _invalid_vectors() -> list[dict[str, Any]]:
    data = json.loads(VECTORS.read_text(encoding="utf-8"))
    return [t for g in data["testGroups"] for t in g["tests"] if t["result"] == "invalid"]


def _handful() -> list[Any]:
    chosen: list[Any] = []
    per_error: Counter[str] = Counter()
    for vector in _invalid_vectors():
        if per_error[vector["error"]] < 2:
            per_error[vector["error"]] += 1
            chosen.append(pytest.param(vector, id=f"tc{vector['tcId']}-{vector['error']}"))
    return chosen


@pytest.mark.parametrize("vector", _handful())
def test_invalid_vector_is_dropped_and_counted(vector: dict[str, Any]) -> None:
    """[HB-RX-1]..[HB-RX-8], [HB-RX-16]: a datagram the codec rejects is dropped and counted
    under the vector's error name; nothing is created, sent or reported, nothing raises."""
    ep = _responder(limits=Limits(max_frame=vector.get("maxSize", 65535)))
    peer = Peer()
    assert deliver(ep, peer, bytes.fromhex(vector["hex"]), 0.0) == []
    assert _drops(ep) == Counter({vector["error"]: 1})
    assert ep.sessions == {}
    assert drain(ep) == []


def test_every_invalid_vector_is_dropped_by_an_established_endpoint() -> None:
    """[HB-RX-1]..[HB-RX-8], [HB-RX-14]: all invalid vectors, fed to an endpoint with an UP
    session, are counted exactly and change nothing."""
    ep, peer, sid = _established()
    expected: Counter[str] = Counter()
    for vector in _invalid_vectors():
        ep.limits = Limits(max_frame=vector.get("maxSize", 65535))
        ep.receive_datagram(bytes.fromhex(vector["hex"]), peer.addr, 0.01)
        expected[vector["error"]] += 1
    assert _drops(ep) == expected
    assert ep.datagrams_to_send(0.01) == []
    assert drain(ep) == []
    assert ep.snapshot(sid, 0.01).last_rx == 0.0


# --- ACKs [HB-ACK-1], [HB-ACK-2], [HB-ACK-4] ----------------------------------------------------


@pytest.mark.parametrize("poll", [False, True])
def test_ack_contents(poll: bool) -> None:
    """[HB-ACK-1], [HB-POLL-3]: the ACK echoes Sequence Number and Timestamp, is addressed to
    the HEARTBEAT's My Identifier, carries the sender's own identifier, state and parameters,
    and has F set if and only if the HEARTBEAT had P set."""
    ep, peer, sid = _established()
    seq = (peer.seq + 0x7FFF0000) & MASK32  # far ahead, still newer [HB-SEQ-2]
    hb = peer.heartbeat(state=UP, poll=poll, seq=seq, timestamp=0xDEADBEEF)
    (ack,) = deliver(ep, peer, hb, 0.06)
    assert ack.type is ACK
    assert (ack.seq, ack.timestamp) == (seq, 0xDEADBEEF)
    assert (ack.my_id, ack.your_id) == (sid, peer.my_id)
    assert (ack.state, ack.mult) == (UP, CONFIG.multiplier)
    assert (ack.desired_tx, ack.required_rx) == (CONFIG.desired_tx_us, CONFIG.required_rx_us)
    assert (ack.final, ack.poll) == (poll, False)


@pytest.mark.parametrize("core_piggyback", [None, b"", bytes(128)])
@pytest.mark.parametrize("peer_piggyback", [None, b"", bytes(1), bytes(128)])
def test_ack_never_larger_than_heartbeat(
    core_piggyback: bytes | None, peer_piggyback: bytes | None
) -> None:
    """[HB-ACK-2], [HB-UDP-6]: an ACK is never larger than the HEARTBEAT it answers, whatever
    either side piggybacks; the peer's piggyback is delivered as such [HB-TLV-8]."""
    ep, peer, sid = _established()
    ep.set_piggyback(sid, core_piggyback)
    tlvs = () if peer_piggyback is None else (Tlv(TlvType.PAYLOAD, peer_piggyback),)
    hb = peer.heartbeat(state=UP, tlvs=tlvs)
    ep.receive_datagram(hb, peer.addr, 0.06)
    ((raw, _),) = ep.datagrams_to_send(0.06)
    assert decode(raw).type is ACK
    assert len(raw) <= len(hb)
    events = drain(ep)
    if peer_piggyback is None:
        assert events == []
    else:
        assert events == [PiggybackReceived(sid, peer_piggyback)]


def test_core_heartbeat_carries_piggyback() -> None:
    """[HB-TLV-8]: what the application piggybacks travels in the core's HEARTBEATs."""
    ep, peer, sid = _established()
    ep.set_piggyback(sid, b"load=0.3")
    _run(ep, 0.1, peer)
    assert peer.heartbeats()[-1].payload == b"load=0.3"
    with pytest.raises(LocalProtocolError, match="at most 128"):
        ep.set_piggyback(sid, bytes(129))


def test_acks_are_never_answered() -> None:
    """[HB-ACK-4]: no ACK, valid or not, with or without F, draws any frame in reply."""
    scene = _scene()
    ep, peer = scene.ep, scene.peer
    _run(ep, 0.2, peer)
    heartbeats = peer.heartbeats()
    candidates = [
        peer.ack(heartbeats[-1]),  # valid
        peer.ack(heartbeats[-1]),  # duplicate
        peer.ack(replace(heartbeats[-1], seq=123, poll=True)),  # unsolicited, with F
        peer.ack(scene.acked),  # acknowledged before
    ]
    for raw in candidates:
        ep.receive_datagram(raw, peer.addr, 0.2)
        assert ep.datagrams_to_send(0.2) == []


# --- DATA [HB-DATA-1], [HB-DATA-2], [HB-DATA-4], [HB-CONF-2] ------------------------------------


def test_send_before_up_raises() -> None:
    """[HB-DATA-1]: an endpoint MUST NOT send DATA unless its session is UP."""
    ep = _responder()
    peer = Peer()
    deliver(ep, peer, peer.heartbeat(state=DOWN), 0.0)  # the session is INIT
    with pytest.raises(LocalProtocolError, match="not UP"):
        ep.send(peer.your_id, b"early", 0.0)
    initiator = Endpoint(CONFIG, rng=random.Random(1), id_source=_ids(2))
    sid = initiator.connect(peer.addr, 0.0)
    with pytest.raises(LocalProtocolError, match="DOWN"):
        initiator.send(sid, b"early", 0.0)
    with pytest.raises(LocalProtocolError, match="no session"):
        initiator.send(sid ^ 1, b"x", 0.0)


def test_data_while_init_brings_session_up_and_is_delivered() -> None:
    """[HB-DATA-2], [HB-SM-1], [HB-HB-2]: DATA (Sta UP) received in INIT moves the session to
    UP first, then its message is delivered; the new state goes out in a triggered HEARTBEAT."""
    ep = _responder()
    peer = Peer()
    deliver(ep, peer, peer.heartbeat(state=DOWN), 0.0)
    out = deliver(ep, peer, peer.data(b"hello"), 0.01)
    events = drain(ep)
    assert [type(e) for e in events] == [PeerUp, MessageReceived]
    assert events[1] == MessageReceived(peer.your_id, b"hello")
    assert [(f.type, f.state) for f in out] == [(HB, UP)]


def test_data_while_down_is_not_delivered() -> None:
    """[HB-DATA-2]: DATA that leaves the session DOWN is discarded and counted data_not_up,
    but it was valid: the peer's identifier is learned from it."""
    ep = Endpoint(CONFIG, rng=random.Random(1), id_source=_ids(2))
    peer = Peer()
    sid = ep.connect(peer.addr, 0.0)
    collect(ep, 0.0, peer)
    peer.your_id = sid
    assert deliver(ep, peer, peer.data(b"early"), 0.01) == []
    assert drain(ep) == []
    assert ep.counters["data_not_up"] == 1
    assert ep.snapshot(sid, 0.01).remote_id == peer.my_id


def test_data_roundtrip_and_duplicates() -> None:
    """[HB-CONF-2], [HB-DATA-3], [HB-RX-12]: each message is delivered once; a duplicated
    datagram is a replay. DATA frames from the core are well formed and use the send counter."""
    ep, peer, sid = _established()
    first = peer.data(b"one")
    deliver(ep, peer, first, 0.01)
    deliver(ep, peer, first, 0.02)
    deliver(ep, peer, peer.data(b"two"), 0.03)
    assert drain(ep) == [MessageReceived(sid, b"one"), MessageReceived(sid, b"two")]
    assert ep.counters["replay"] == 1
    ep.send(sid, b"a", 0.04)
    ep.send(sid, b"b", 0.04)
    a, b = collect(ep, 0.04, peer)
    assert (a.type, a.state, a.payload, b.payload) == (DATA, UP, b"a", b"b")
    assert (a.my_id, a.your_id) == (sid, peer.my_id)
    assert b.seq == (a.seq + 1) & MASK32  # [HB-SEQ-1]


@pytest.mark.parametrize("max_frame", [1200, 400])
def test_oversized_message_is_refused(max_frame: int) -> None:
    """[HB-DATA-4], [HB-UDP-2]: a message that does not fit in one frame of the transport's
    largest size is refused with a message that says so; the largest that fits is sent."""
    ep = _responder(limits=Limits(max_frame=max_frame))
    peer = Peer()
    sid = handshake(ep, peer, 0.0)
    fits = max_frame - MIN_FRAME - 3
    ep.send(sid, bytes(fits), 0.01)
    ((raw, _),) = ep.datagrams_to_send(0.01)
    assert len(raw) == max_frame
    with pytest.raises(LocalProtocolError, match=rf"{fits + 1} bytes.*at most {max_frame}"):
        ep.send(sid, bytes(fits + 1), 0.01)
    assert ep.datagrams_to_send(0.01) == []


# --- Identifiers [HB-ID-1], [HB-SES-5] ----------------------------------------------------------


def test_identifiers_never_zero_never_colliding() -> None:
    """[HB-ID-1]: a new session's identifier is non-zero and differs from every session held,
    lingering ones included, whatever the source proposes first."""
    proposals = iter([0, 5, 0, 5, 0xFFFFFFFF, 5, 0x1_0000_0000, 9, 5, 11])
    ep = Endpoint(CONFIG, rng=random.Random(1), id_source=lambda: next(proposals))
    first = ep.connect(("192.0.2.1", 1), 0.0)
    second = ep.connect(("192.0.2.2", 1), 0.0)
    assert (first, second) == (5, 0xFFFFFFFF)
    ep.close(first, 0.0)  # 5 lingers: still taken
    # 0x1_0000_0000 masks to 0; 9 is fresh.
    assert ep.connect(("192.0.2.3", 1), 0.0) == 9
    assert ep.connect(("192.0.2.4", 1), 0.0) == 11


def test_identifier_source_exhaustion_is_an_error() -> None:
    """[HB-ID-1]: a source that only yields identifiers in use is refused, not looped on."""
    ep = Endpoint(CONFIG, rng=random.Random(1), id_source=lambda: 7)
    ep.connect(("192.0.2.1", 1), 0.0)
    with pytest.raises(LocalProtocolError, match="identifier"):
        ep.connect(("192.0.2.2", 1), 0.0)


def test_responder_identifiers_are_fresh() -> None:
    """[HB-ID-1]: sessions the network creates also get distinct non-zero identifiers."""
    proposals = iter([0, 3, 3, 0, 4, 3, 4, 5])
    ep = Endpoint(CONFIG, accept=True, rng=random.Random(1), id_source=lambda: next(proposals))
    got = []
    for n in range(3):
        peer = Peer(my_id=100 + n, addr=("192.0.2.1", 1000 + n))
        deliver(ep, peer, peer.heartbeat(state=DOWN), 0.0)
        got.append(peer.your_id)
    assert got == [3, 4, 5]


def test_remote_identifier_never_changes() -> None:
    """[HB-SES-5], [HB-SM-3]: once learned, the remote identifier stays for the session's
    life, through DOWN and back; frames from another identifier are wrong_peer, and a new
    opening HEARTBEAT from another identifier makes a separate session."""
    ep, peer, sid = _established()
    (ack,) = deliver(ep, peer, peer.heartbeat(state=DOWN), 0.05)  # UP -> DOWN
    assert (ack.state, ack.your_id) == (DOWN, peer.my_id)
    impostor = Peer(my_id=peer.my_id + 1, addr=peer.addr, your_id=sid, seq=peer.seq + 10)
    assert deliver(ep, impostor, impostor.heartbeat(state=INIT), 0.06) == []
    assert ep.counters["wrong_peer"] == 1
    assert ep.snapshot(sid, 0.06).remote_id == peer.my_id
    newcomer = Peer(my_id=peer.my_id + 2, addr=peer.addr)
    (ack2,) = deliver(ep, newcomer, newcomer.heartbeat(state=DOWN), 0.07)
    assert ack2.my_id != sid
    assert ep.snapshot(sid, 0.07).remote_id == peer.my_id
    # The original peer brings its session back UP, under the same identifiers (well after
    # its DOWN, so that the HEARTBEAT cannot be premature).
    peer.state = INIT
    (ack3,) = deliver(ep, peer, peer.heartbeat(), 0.3)
    assert (ack3.state, ack3.my_id, ack3.your_id) == (UP, sid, peer.my_id)
    up = [e for e in drain(ep) if isinstance(e, PeerUp)]
    assert up[-1].session == sid
    assert up[-1].again  # [HB-SM-5]


def test_initiator_keeps_remote_identifier_when_down() -> None:
    """[HB-SM-3], [HB-SES-5]: after a detection timeout the initiator keeps addressing the
    same remote identifier (Sta DOWN)."""
    ep = Endpoint(CONFIG, rng=random.Random(1), id_source=_ids(2))
    peer = Peer(my_id=0x0B0B0B0B)
    sid = ep.connect(peer.addr, 0.0)
    (hello,) = collect(ep, 0.0, peer)
    peer.your_id = sid
    deliver(ep, peer, peer.ack(hello, state=INIT), 0.01)
    at, down, sent = _run_until_down(ep, peer, 4.0)
    # Never heard Sta UP from the peer: the slow-start floor still applies [HB-DET-8].
    assert at == pytest.approx(0.01 + 3.0)
    assert down.session == sid
    assert sent[-1].state is DOWN
    assert sent[-1].your_id == peer.my_id


# --- Negotiation and slow start [HB-NEG-1..6], [HB-TX-2], [HB-TX-7], [HB-DET-8] -----------------

NP = None  # "no preference"

TX_CASES = [
    # (local D, remote R, TxInterval): max(local D, remote R); remote R 0 -> no periodic frames.
    (100 * MS, 300 * MS, 300 * MS),  # SPEC 9.1 worked example, initiator
    (NP, 50 * MS, 50 * MS),  # worked example, responder
    (NP, NP, 1 * S),  # both no preference: DEFAULT_INTERVAL
    (100 * MS, NP, 100 * MS),
    (2 * S, 50 * MS, 2 * S),
    (100 * MS, 0, None),  # [HB-NEG-1]
    (NP, 0, None),
    (10, 10, 10),
]
EXPECTED_CASES = [
    # (remote D, local R, local TxInterval, ExpectedRemote)
    (NP, 50 * MS, 300 * MS, 50 * MS),  # worked example, initiator
    (100 * MS, 300 * MS, 50 * MS, 300 * MS),  # worked example, responder
    (NP, NP, 100 * MS, 1 * S),  # both no preference: DEFAULT_INTERVAL
    (250 * MS, NP, 100 * MS, 250 * MS),
    (100 * MS, 0, 300 * MS, 375 * MS),  # [HB-NEG-2]: local R 0 -> 1.25 x local TxInterval
    (NP, 0, 1 * S, 1_250 * MS),
    (100 * MS, 0, None, None),  # [HB-NEG-3]: both R 0, nobody can detect
]
DETECTION_CASES = [
    # (remote Mult, ExpectedRemote, slow-start floor in force, DetectionTime)
    (5, 50 * MS, False, 250 * MS),  # worked example, initiator
    (3, 300 * MS, False, 900 * MS),  # worked example, responder
    (3, 300 * MS, True, 3 * S),  # [HB-DET-8]: ExpectedRemote at least 1 s under slow start
    (3, 2 * S, True, 6 * S),
    (1, 10, False, 10),
    (15, 163_820 * S, False, 15 * 163_820 * S),  # [HB-FRAME-15]: needs more than 32 bits
    (3, None, False, None),  # [HB-NEG-3]: nobody can detect
    (3, None, True, None),
]


@pytest.mark.parametrize(("local_d", "remote_r", "want"), TX_CASES)
def test_tx_interval(local_d: int | None, remote_r: int | None, want: int | None) -> None:
    """[HB-NEG-1]: TxInterval = max(local D, remote R); remote R 0: no periodic HEARTBEATs."""
    assert tx_interval_us(local_d, remote_r) == want


@pytest.mark.parametrize(("remote_d", "local_r", "local_tx", "want"), EXPECTED_CASES)
def test_expected_remote(
    remote_d: int | None, local_r: int | None, local_tx: int | None, want: int | None
) -> None:
    """[HB-NEG-2], [HB-NEG-3]: ExpectedRemote = max(remote D, local R), or the local
    TxInterval when the local R is 0."""
    assert expected_remote_us(remote_d, local_r, local_tx) == want


@pytest.mark.parametrize(("mult", "expected", "slow", "want"), DETECTION_CASES)
def test_detection_time(mult: int, expected: int | None, slow: bool, want: int | None) -> None:
    """[HB-DET-8], [HB-NEG-3]: DetectionTime = remote Mult x ExpectedRemote, with
    ExpectedRemote at least SLOW_START_INTERVAL while the slow-start floor holds."""
    assert detection_time_us(mult, expected, slow) == want


def test_worked_example_through_endpoints() -> None:
    """[HB-NEG-1], [HB-NEG-2], [HB-NEG-4], SPEC 9.1: the worked example, from both sides,
    as reported in PeerUp."""
    responder = _responder(Config(interval=None, min_rx=0.3, multiplier=5))
    initiator_peer = Peer(desired_tx=100 * MS, required_rx=50 * MS, mult=3)
    sid = handshake(responder, initiator_peer, 0.0)
    (up,) = drain(responder)
    assert isinstance(up, PeerUp)
    assert up.negotiated == Negotiated(0.05, 0.3, 0.9, 5, 3)
    assert responder.snapshot(sid, 0.0).negotiated == up.negotiated

    initiator = Endpoint(Config(interval=0.1, min_rx=0.05, multiplier=3), rng=random.Random(5))
    responder_peer = Peer(desired_tx=NP, required_rx=300 * MS, mult=5)
    sid = initiator.connect(responder_peer.addr, 0.0)
    (hello,) = collect(initiator, 0.0, responder_peer)
    responder_peer.your_id = sid
    deliver(initiator, responder_peer, responder_peer.ack(hello, state=INIT), 0.01)
    ups = [e for e in drain(initiator) if isinstance(e, PeerUp)]
    # UP on the responder's INIT; the slow-start floor stays until its Sta UP [HB-DET-8].
    assert ups[0].negotiated == Negotiated(0.3, 0.05, 5.0, 3, 5)
    responder_peer.state = UP
    deliver(initiator, responder_peer, responder_peer.heartbeat(), 0.02)
    changed = [e for e in drain(initiator) if isinstance(e, ParametersChanged)]
    assert changed[-1].negotiated == Negotiated(0.3, 0.05, 0.25, 3, 5)


def test_slow_start_before_up() -> None:
    """[HB-TX-2], [HB-TX-1]: while not UP, periodic HEARTBEATs are at least 1 s x J apart even
    though the negotiated TxInterval is 50 ms; triggered frames and ACKs are not delayed."""
    ep = _responder(Config(interval=0.05, min_rx=0.05, multiplier=3))
    peer = Peer(desired_tx=50 * MS, required_rx=50 * MS)
    (ack,) = deliver(ep, peer, peer.heartbeat(state=DOWN), 0.0)
    assert ack.state is INIT
    (ack,) = deliver(ep, peer, peer.heartbeat(state=DOWN), 0.0)  # verifies the address
    times = [at for at, f in _run(ep, 2.9, peer) if f.type is HB]
    assert len(times) >= 2
    assert all(f.state is INIT for f in peer.heartbeats())
    gaps = [b - a for a, b in pairwise([0.0, *times])]
    assert all(0.75 - 1e-9 <= g <= 1.0 + 1e-9 for g in gaps), gaps


def test_initial_remote_values() -> None:
    """[HB-NEG-6]: before any valid frame the remote D and R are "no preference" and the remote
    Mult 3: an initiator's first values follow from its own alone (with slow start)."""
    ep = Endpoint(CONFIG, rng=random.Random(1), id_source=_ids(2))
    sid = ep.connect(("192.0.2.1", 1), 0.0)
    assert ep.snapshot(sid, 0.0).negotiated == Negotiated(0.1, 0.1, 3.0, 3, 3)


def test_remote_r_zero_means_no_periodic_heartbeats_once_up() -> None:
    """[HB-NEG-1]: a peer that advertises R = 0 gets no periodic HEARTBEATs once UP, only
    ACKs; its own HEARTBEATs keep the session alive."""
    ep, peer, _ = _established(peer=Peer(required_rx=0))
    t = 0.0
    sent: list[Frame] = []
    for _ in range(50):
        t = round(t + 0.1, 6)
        sent += [f for _, f in _run(ep, t, peer)]
        sent += deliver(ep, peer, peer.heartbeat(state=UP), t)
    assert {f.type for f in sent} == {ACK}
    assert not any(isinstance(e, PeerDown) for e in drain(ep))


def test_both_r_zero_means_no_detection() -> None:
    """[HB-NEG-3]: both sides advertise R = 0: liveness detection is reported inactive, the
    detection timer never runs and nothing periodic is sent."""
    ep = _responder(Config(interval=0.1, min_rx=0))
    peer = Peer(required_rx=0)
    sid = handshake(ep, peer, 0.0)
    events = drain(ep)
    assert [type(e) for e in events] == [PeerUp, LivenessInactive]
    assert _run(ep, 1000.0, peer) == []
    assert drain(ep) == []
    assert ep.snapshot(sid, 1000.0).state is UP


def test_local_r_zero_detects_through_acks() -> None:
    """[HB-NEG-2]: with local R = 0 ExpectedRemote is 1.25 x the local TxInterval, and the
    peer's ACKs alone keep the session alive; when they stop, PeerDown within the window."""
    ep, peer, _ = _established(Config(interval=0.2, min_rx=0, multiplier=3))
    expected, dt = 0.25, 0.75
    last = 0.0
    while last < 3.0:
        at, hb = _next_heartbeat(ep, peer, last)
        last = at + 0.005
        deliver(ep, peer, peer.ack(hb), last)
    assert not any(isinstance(e, PeerDown) for e in drain(ep))
    at, down, _ = _run_until_down(ep, peer, last + 5.0)
    assert last + dt <= at <= last + dt + expected
    assert down.detection_time == pytest.approx(dt)


def test_local_r_zero_judges_peer_heartbeats_by_the_slow_start_pace() -> None:
    """[HB-FREQ-6], [HB-FREQ-1], [HB-FREQ-7]: while UP with local R = 0 the judged interval is
    max(peer D, SLOW_START_INTERVAL) = 1 s: unchanged HEARTBEATs 0.3 s apart are premature,
    one strike per 0.5 s (at 0.3, 0.9 and 1.5 s), and the third closes the session."""
    ep, peer, _ = _established(Config(interval=0.2, min_rx=0, multiplier=3))
    events: list[Event] = []
    for k in range(5):
        deliver(ep, peer, peer.heartbeat(state=UP), round(0.3 * (k + 1), 6))
        events += drain(ep)
        closed = [e.code for e in events if isinstance(e, SessionClosed)]
        assert closed == ([CloseCode.TOO_FREQUENT] if k == 4 else []), k


def test_initiator_reports_silence_and_backs_off() -> None:
    """[HB-TX-7], [HB-TX-2], [HB-TX-5], [HB-TX-6]: an initiator that hears nothing sends at
    once, then at the slow-start pace; after HANDSHAKE_TIMEOUT it reports the silence, once,
    and doubles the interval after each further HANDSHAKE_TIMEOUT, up to 60 s."""
    ep = Endpoint(replace(CONFIG, handshake_timeout=10.0), rng=random.Random(1))
    peer = Peer()
    ep.connect(peer.addr, 0.0)
    times: list[float] = []
    reports: list[tuple[float, Event]] = []
    while (at := ep.get_timer()) is not None and at < 600.0:
        times += [at for f in collect(ep, at, peer) if f.type is HB]
        reports += [(at, e) for e in drain(ep)]
    assert times[0] == 0.0
    ((when, report),) = reports
    assert when == pytest.approx(10.0)
    assert isinstance(report, PeerDown)
    assert (report.reason, report.detected_by) == (DownReason.HANDSHAKE_TIMEOUT, DetectedBy.LOCAL)
    gaps = list(pairwise(times))
    assert all(0.75 - 1e-9 <= b - a <= 1.0 + 1e-9 for a, b in gaps if b <= 10.0)
    late = [b - a for a, b in gaps if a > 300.0]
    assert late
    assert all(45.0 - 1e-6 <= g <= 60.0 + 1e-6 for g in late)
    assert max(b - a for a, b in gaps) <= 60.0 + 1e-6


def test_slow_start_floor_until_peer_shows_up() -> None:
    """[HB-DET-8]: an initiator UP on the responder's INIT keeps the slow-start floor in its
    DetectionTime until a frame with Sta UP arrives; then DetectionTime drops to M x ER."""
    ep = Endpoint(CONFIG, rng=random.Random(1), id_source=_ids(2))
    peer = Peer(my_id=0x0B0B0B0B)
    sid = ep.connect(peer.addr, 0.0)
    (hello,) = collect(ep, 0.0, peer)
    peer.your_id = sid
    deliver(ep, peer, peer.ack(hello, state=INIT), 0.0)
    assert ep.snapshot(sid, 0.0).negotiated.detection_time == pytest.approx(3.0)
    peer.state = UP
    deliver(ep, peer, peer.heartbeat(), 0.1)
    assert ep.snapshot(sid, 0.1).negotiated.detection_time == pytest.approx(DT)
    at, _, _ = _run_until_down(ep, peer, 1.0)
    assert at == pytest.approx(0.1 + DT)


# --- Jitter, premature, RTT, phi ----------------------------------------------------------------


@pytest.mark.parametrize(("mult", "upper"), [(1, 0.9), (2, 1.0), (3, 1.0), (15, 1.0)])
def test_jitter_bounds(mult: int, upper: float) -> None:
    """[HB-TX-1]: J uniform in [0.75, 1.0], or [0.75, 0.9] when the sender's Mult is 1;
    many draws stay inside and fill the range."""
    rng = random.Random(mult)
    draws = [jitter_factor(rng, mult) for _ in range(20_000)]
    assert 0.75 <= min(draws) < 0.755
    assert upper - 0.005 < max(draws) <= upper
    mean = sum(draws) / len(draws)
    assert abs(mean - (0.75 + upper) / 2) < 0.005


@pytest.mark.parametrize(("mult", "upper"), [(1, 0.9), (3, 1.0)])
def test_periodic_gaps_on_the_wire(mult: int, upper: float) -> None:
    """[HB-TX-1], [HB-TX-4]: once UP, successive HEARTBEATs are J x TxInterval apart."""
    ep, peer, _ = _established(replace(CONFIG, multiplier=mult))
    times: list[float] = []
    t = 0.0
    while t < 5.0:
        t = round(t + 0.1, 6)
        times += [at for at, f in _run(ep, t, peer) if f.type is HB]
        deliver(ep, peer, peer.heartbeat(state=UP), t)
    gaps = [b - a for a, b in pairwise(times)]
    assert len(gaps) > 40
    assert all(0.075 - 1e-9 <= g <= 0.1 * upper + 1e-9 for g in gaps), gaps


@pytest.mark.parametrize(
    ("gap", "expected", "want"),
    [
        (49_999, 100_000, True),
        (50_000, 100_000, False),  # half of ExpectedRemote is not premature
        (0, 100_000, True),
        (10**9, 100_000, False),
        (10**9, None, True),  # we asked for no periodic HEARTBEATs at all
    ],
)
def test_is_premature(gap: int, expected: int | None, want: bool) -> None:
    """SPEC 9.5: premature means less than half of ExpectedRemote after the previous one."""
    assert is_premature(gap, expected) is want


def test_rtt_smoothing() -> None:
    """[HB-RTT-2]: RFC 6298: first sample SRTT = R, RTTVAR = R/2; later RTTVAR is updated with
    the old SRTT before SRTT moves."""
    srtt, rttvar = rtt_update(None, 0.0, 0.100)
    assert (srtt, rttvar) == pytest.approx((0.100, 0.050))
    srtt2, rttvar2 = rtt_update(srtt, rttvar, 0.200)
    assert rttvar2 == pytest.approx(0.75 * 0.050 + 0.25 * abs(0.100 - 0.200))
    assert srtt2 == pytest.approx(0.875 * 0.100 + 0.125 * 0.200)
    srtt3, rttvar3 = rtt_update(srtt2, rttvar2, 0.0125)
    assert rttvar3 == pytest.approx(0.75 * 0.0625 + 0.25 * abs(0.1125 - 0.0125))
    assert srtt3 == pytest.approx(0.875 * 0.1125 + 0.125 * 0.0125)


def _next_heartbeat(ep: Endpoint, peer: Peer, after: float) -> tuple[float, Frame]:
    """Run timers from ``after`` until the core sends a HEARTBEAT; when, and the frame."""
    while True:
        at = ep.get_timer()
        assert at is not None
        at = max(at, after)
        for frame in collect(ep, at, peer):
            if frame.type is HB:
                return at, frame


def test_rtt_samples_from_acks() -> None:
    """[HB-RTT-1], [HB-RTT-2]: an ACK's echoed Timestamp gives the round trip, smoothed."""
    ep, peer, sid = _established()
    samples: list[RttSample] = []
    t = 0.0
    for rtt in (0.020, 0.040, 0.010):
        at, hb = _next_heartbeat(ep, peer, t)
        t = at + rtt
        deliver(ep, peer, peer.ack(hb), t)
        deliver(ep, peer, peer.heartbeat(state=UP), t)  # keep the session alive
        samples += [e for e in drain(ep) if isinstance(e, RttSample)]
    assert [s.rtt for s in samples] == pytest.approx([0.020, 0.040, 0.010], abs=2e-6)
    srtt, rttvar = rtt_update(None, 0.0, samples[0].rtt)
    for sample in samples[1:]:
        srtt, rttvar = rtt_update(srtt, rttvar, sample.rtt)
    assert (samples[-1].srtt, samples[-1].rttvar) == pytest.approx((srtt, rttvar))
    info = ep.snapshot(sid, t)
    assert (info.srtt, info.rttvar) == pytest.approx((srtt, rttvar))


def test_phi_monotonic_and_calibrated() -> None:
    """[HB-DET-7]: suspicion rises with silence and is about 0.3 (log10 2) at the mean."""
    mean, var = interarrival_seed(1.0)
    values = [phi(mean, var, k / 100) for k in range(0, 2000)]
    assert all(b >= a for a, b in pairwise(values))
    assert values[-1] > values[0]
    assert phi(mean, var, mean) == pytest.approx(math.log10(2), abs=0.01)
    assert math.isfinite(phi(mean, var, 1e6))


# --- Detection [HB-DET-2], [HB-DET-3], [HB-DET-4], [HB-STALL-1], [HB-STALL-2] --------------------


@pytest.mark.parametrize(
    ("peer_mult", "peer_d", "dt", "expected"),
    [(3, 100 * MS, 0.3, 0.1), (1, 100 * MS, 0.1, 0.1), (5, 200 * MS, 1.0, 0.2)],
)
def test_detection_window(peer_mult: int, peer_d: int, dt: float, expected: float) -> None:
    """[HB-DET-2], [HB-DET-3], [HB-DET-4]: with the last valid frame at t0 and silence after,
    PeerDown comes in [t0 + DT, t0 + DT + ExpectedRemote] however often the timer is driven,
    and never before; misses count whole ExpectedRemotes of silence."""
    ep, peer, sid = _established(peer=Peer(mult=peer_mult, desired_tx=peer_d))
    t0 = 0.0
    while t0 < 0.5:  # keep it alive for a while (never premature), so t0 is not the handshake
        t0 = round(t0 + 0.6 * dt, 6)
        _run(ep, t0, peer)
        deliver(ep, peer, peer.heartbeat(state=UP), t0)
    drain(ep)
    step = 0.001
    t = t0
    while t + step < t0 + dt:
        t += step
        ep.handle_timer(t)
        ep.datagrams_to_send(t)
        assert not any(isinstance(e, PeerDown) for e in drain(ep)), t
    assert ep.snapshot(sid, t0 + 1.5 * expected).misses == 1
    while True:
        t += step
        assert t <= t0 + dt + expected + step, "PeerDown is late"
        ep.handle_timer(t)
        downs = [e for e in drain(ep) if isinstance(e, PeerDown)]
        if downs:
            break
    assert t0 + dt <= t
    assert downs[0].reason is DownReason.DETECTION_TIMEOUT
    assert downs[0].detection_time == pytest.approx(dt)
    assert downs[0].silent_for == pytest.approx(t - t0)


def test_detection_exact_when_driven_by_get_timer() -> None:
    """[HB-DET-3]: an event loop that wakes at get_timer() sees PeerDown at exactly t0 + DT."""
    ep, peer, _ = _established()
    at, down, _ = _run_until_down(ep, peer, 1.0)
    assert at == pytest.approx(DT)
    assert down.silent_for == pytest.approx(DT)


def test_stall_spares_the_peer_then_detects() -> None:
    """[HB-STALL-1], [HB-STALL-2]: driven 10 x DT late, the endpoint reports its own stall,
    not the peer down; if the peer is still silent one ExpectedRemote later, PeerDown."""
    ep, _, sid = _established()
    late = 10 * DT
    ep.handle_timer(late)
    ep.datagrams_to_send(late)
    events = drain(ep)
    assert not any(isinstance(e, PeerDown) for e in events)
    (stall,) = [e for e in events if isinstance(e, LocalStall)]
    assert stall.late_by == pytest.approx(late - DT)
    assert stall.sessions_spared == 1
    assert ep.snapshot(sid, late).state is UP
    just_before = late + EXPECTED - 0.001
    ep.handle_timer(just_before)
    assert not any(isinstance(e, PeerDown) for e in drain(ep))
    timer = ep.get_timer()
    assert timer is not None
    assert timer <= late + EXPECTED
    ep.handle_timer(late + EXPECTED)
    downs = [e for e in drain(ep) if isinstance(e, PeerDown)]
    assert [d.reason for d in downs] == [DownReason.DETECTION_TIMEOUT]


def test_stall_then_frame_keeps_session_up() -> None:
    """[HB-STALL-1]: after a stall, frames that waited in the socket count once processed:
    the peer is not declared down, whether they are read before or after the timers run."""
    for read_first in (True, False):
        ep, peer, sid = _established()
        late = 10 * DT
        if read_first:
            deliver(ep, peer, peer.heartbeat(state=UP), late)
        ep.handle_timer(late)
        if not read_first:
            deliver(ep, peer, peer.heartbeat(state=UP), late)
        ep.handle_timer(late + EXPECTED)
        ep.handle_timer(late + DT - 0.001)
        assert not any(isinstance(e, PeerDown) for e in drain(ep))
        assert ep.snapshot(sid, late + DT - 0.001).state is UP


# --- Too-frequent protection [HB-FREQ-1..3], [HB-FREQ-6] -----------------------------------------


def _premature_burst(
    ep: Endpoint, peer: Peer, start: float, count: int, gap: float = 0.03
) -> float:
    """``count`` unchanged HEARTBEATs ``gap`` apart after ``start``. At 30 ms they are
    premature (under half of the 100 ms judged interval), and at most every other one can be
    a strike [HB-FREQ-7]: strikes land 60 ms apart, clear of the 50 ms limit either way."""
    t = start
    for _ in range(count):
        t = round(t + gap, 6)
        deliver(ep, peer, peer.heartbeat(state=UP), t)
    return t


def _closes(ep: Endpoint) -> list[SessionClosed]:
    return [e for e in drain(ep) if isinstance(e, SessionClosed)]


def _fresh(config: Config = CONFIG) -> tuple[Endpoint, Peer, int]:
    """An UP session whose peer sent a HEARTBEAT at 0.2 s, long after the handshake's."""
    ep, peer, sid = _established(config)
    deliver(ep, peer, peer.heartbeat(state=UP), 0.2)
    return ep, peer, sid


@pytest.mark.parametrize("max_strikes", [2, 3, 5])
def test_strikes_close_with_too_frequent(max_strikes: int) -> None:
    """[HB-FREQ-1], [HB-FREQ-3], [HB-FREQ-7]: MAX_STRIKES strikes (premature HEARTBEATs, at
    most one per half judged interval) close the session with reason too_frequent, and the
    CLOSE carries the receiver's R. Premature HEARTBEATs 30 ms apart: strikes on the 1st, 3rd,
    5th..., so the (2 x MAX_STRIKES - 1)-th closes, not one before."""
    ep, peer, sid = _fresh(replace(CONFIG, max_strikes=max_strikes))
    t = _premature_burst(ep, peer, 0.2, 2 * max_strikes - 2)
    assert _closes(ep) == []
    assert ep.snapshot(sid, t).strikes == max_strikes - 1
    t = round(t + 0.03, 6)
    out = deliver(ep, peer, peer.heartbeat(state=UP), t)
    (close,) = [f for f in out if f.type is CLOSE]
    assert close.close_code == CloseCode.TOO_FREQUENT
    assert close.required_rx == CONFIG.required_rx_us
    (closed,) = _closes(ep)
    assert (closed.code, closed.by_peer) == (CloseCode.TOO_FREQUENT, False)


def test_at_most_one_strike_per_half_interval() -> None:
    """[HB-FREQ-7]: a burst read at once (say, after a stall) is one offence, not many."""
    ep, peer, sid = _fresh()
    t = _premature_burst(ep, peer, 0.2, 20, gap=0.001)  # 20 HEARTBEATs within 20 ms
    assert _closes(ep) == []
    assert ep.snapshot(sid, t).strikes == 1


def test_non_premature_heartbeat_resets_strikes() -> None:
    """[HB-FREQ-1]: a HEARTBEAT that is not premature resets the count to 0."""
    ep, peer, sid = _fresh()
    t = _premature_burst(ep, peer, 0.2, 3)  # strikes 1 and 2
    t = round(t + 0.06, 6)
    deliver(ep, peer, peer.heartbeat(state=UP), t)  # 60 ms later: not premature
    assert ep.snapshot(sid, t).strikes == 0
    t = _premature_burst(ep, peer, t, 3)
    assert _closes(ep) == []
    assert ep.snapshot(sid, t).strikes == 2
    _premature_burst(ep, peer, t, 2)
    assert [c.code for c in _closes(ep)] == [CloseCode.TOO_FREQUENT]


def _changed_burst(ep: Endpoint, peer: Peer, times: list[float]) -> list[Event]:
    """HEARTBEATs at ``times``, each with a new Mult (a change needs no poll [HB-POLL-5])."""
    events: list[Event] = []
    for t in times:
        peer.mult = peer.mult % 15 + 1
        deliver(ep, peer, peer.heartbeat(state=UP), t)
        events += drain(ep)
    return events


def test_exempt_heartbeats_never_count() -> None:
    """[HB-FREQ-2], [HB-FREQ-6]: changed HEARTBEATs (at most two per ExpectedRemote) are
    exempt however close they come, and ACK and DATA frames never count either."""
    ep, peer, sid = _fresh(replace(CONFIG, max_strikes=2))
    t = 0.3
    for _ in range(10):  # two changed HEARTBEATs 5 ms apart, every 100 ms
        events = _changed_burst(ep, peer, [t, t + 0.005])
        assert not any(isinstance(e, SessionClosed) for e in events)
        t = round(t + 0.1, 6)
    for _ in range(30):
        t = round(t + 0.001, 6)
        deliver(ep, peer, peer.data(b"d"), t)
    assert _closes(ep) == []
    assert ep.snapshot(sid, t).state is UP


def test_exempt_heartbeat_resets_strikes() -> None:
    """[HB-FREQ-1], [HB-FREQ-2]: an exempt HEARTBEAT is not premature and resets the count:
    strikes at 0.23 and 0.29, exempt at 0.32, strike at 0.35: one strike, no close."""
    ep, peer, sid = _fresh()
    t = _premature_burst(ep, peer, 0.2, 3)
    assert ep.snapshot(sid, t).strikes == 2
    _changed_burst(ep, peer, [0.32])
    assert ep.snapshot(sid, 0.32).strikes == 0
    t = _premature_burst(ep, peer, 0.32, 1)
    assert _closes(ep) == []
    assert ep.snapshot(sid, t).strikes == 1


def test_more_than_two_changes_per_expected_remote_are_premature() -> None:
    """[HB-FREQ-6]: no more than two HEARTBEATs in any ExpectedRemote are exempt: changing a
    parameter in every HEARTBEAT does not evade the strikes. Changes every 10 ms from 0.21:
    0.21 and 0.22 exempt, 0.23 a strike, the next strike 60 ms later closes (MAX_STRIKES 2)."""
    ep, peer, _ = _fresh(replace(CONFIG, max_strikes=2))
    times = [round(0.21 + 0.01 * k, 6) for k in range(9)]  # 0.21 .. 0.29
    events = _changed_burst(ep, peer, times[:7])  # up to 0.27: one strike
    assert not any(isinstance(e, SessionClosed) for e in events)
    events = _changed_burst(ep, peer, times[7:])  # 0.28 (50 ms: either way), 0.29
    assert [e.code for e in events if isinstance(e, SessionClosed)] == [CloseCode.TOO_FREQUENT]


def test_exempt_cap_holds_in_any_window() -> None:
    """[HB-FREQ-6]: 'no more than two HEARTBEATs in any ExpectedRemote are exempt'. Changes at
    0.195, 0.28, 0.30 are exempt (0.195 is out of (0.20, 0.30]); 0.31 is the third in
    (0.21, 0.31]: premature, a strike; 0.32 is premature but too soon for a strike; 0.365 is
    premature (third in (0.265, 0.365]) and 55 ms after the strike: the second, closing with
    MAX_STRIKES 2. A window that restarts at 0.30 instead exempts 0.31 and never gets there."""
    ep, peer, _ = _established(replace(CONFIG, max_strikes=2))
    events = _changed_burst(ep, peer, [0.195, 0.28, 0.30, 0.31, 0.32, 0.365])
    assert [e.code for e in events if isinstance(e, SessionClosed)] == [CloseCode.TOO_FREQUENT]


def test_state_change_is_announced_even_by_a_premature_heartbeat() -> None:
    """[HB-HB-2], [HB-HB-1], [HB-FREQ-3]: a premature HEARTBEAT MAY go unanswered, but when it
    changes the state the new state MUST go out at once (its ACK or a triggered HEARTBEAT).
    Peer: UP at 0, DOWN at 0.05, INIT at 0.08 (third change within one ExpectedRemote, 30 ms
    after the previous: premature); the session goes DOWN -> UP at 0.08."""
    ep, peer, sid = _established()
    deliver(ep, peer, peer.heartbeat(state=DOWN), 0.05)
    out = deliver(ep, peer, peer.heartbeat(state=INIT), 0.08)
    assert ep.snapshot(sid, 0.08).state is UP
    assert any(f.state is UP for f in out)


def test_max_strikes_none_never_closes_and_premature_is_proof_of_life() -> None:
    """[HB-FREQ-1], [HB-FREQ-3], [HB-FREQ-5]: without enforcement nothing closes; premature
    HEARTBEATs are still valid frames that keep the peer alive."""
    ep, peer, sid = _established(replace(CONFIG, max_strikes=None))
    t = _premature_burst(ep, peer, 0.0, 200, gap=0.01)  # 2 s of HEARTBEATs every 10 ms
    _run(ep, t, peer)
    events = drain(ep)
    assert not any(isinstance(e, SessionClosed | PeerDown) for e in events)
    assert ep.snapshot(sid, t).state is UP


# --- Acceptance limits [HB-SES-3], [HB-SES-4], [HB-SEC-3] ----------------------------------------


def _open(ep: Endpoint, peer: Peer, now: float) -> bool:
    """Send an opening HEARTBEAT; True if a session was created (the core answered)."""
    peer.your_id, peer.state = 0, DOWN
    return bool(deliver(ep, peer, peer.heartbeat(), now))


def test_max_per_source() -> None:
    """[HB-SES-3], [HB-SEC-3]: sessions per source host are bounded; refusals are counted and
    unanswered; other hosts are unaffected."""
    ep = _responder(limits=Limits(max_per_source=2))
    same_host = [Peer(my_id=10 + i, addr=("192.0.2.7", 5000 + i)) for i in range(3)]
    assert [_open(ep, p, 0.0) for p in same_host] == [True, True, False]
    assert (ep.counters["refused"], ep.counters["unknown_session"]) == (1, 1)
    assert _open(ep, Peer(my_id=20, addr=("192.0.2.8", 5000)), 0.0)
    assert len(ep.sessions) == 3


def test_max_half_open() -> None:
    """[HB-SES-3]: sessions not yet UP are bounded; a slot frees when one comes UP."""
    ep = _responder(limits=Limits(max_half_open=2))
    peers = [Peer(my_id=10 + i, addr=(f"192.0.2.{i}", 1)) for i in range(4)]
    assert [_open(ep, p, 0.0) for p in peers[:3]] == [True, True, False]
    assert ep.counters["refused"] == 1
    peers[0].state = UP
    deliver(ep, peers[0], peers[0].heartbeat(), 0.01)
    assert _open(ep, peers[3], 0.02)
    assert len(ep.sessions) == 3


def test_max_sessions() -> None:
    """[HB-SES-3]: the total is bounded for sessions the network creates and for connect()."""
    ep = _responder(limits=Limits(max_sessions=2))
    peers = [Peer(my_id=10 + i, addr=(f"192.0.2.{i}", 1)) for i in range(3)]
    for p in peers[:2]:
        handshake(ep, p, 0.0)
    assert not _open(ep, peers[2], 0.0)
    assert ep.counters["refused"] == 1
    with pytest.raises(LocalProtocolError, match="2 sessions"):
        ep.connect(("198.51.100.1", 1), 0.0)


def test_half_open_sessions_expire() -> None:
    """[HB-SES-4]: a session the network created and that never came UP is deleted after its
    slow-start DetectionTime (3 x 1 s here), not before; its slot is free again."""
    ep = _responder(limits=Limits(max_half_open=1))
    peer = Peer()
    assert _open(ep, peer, 0.0)
    sid = peer.your_id
    _run(ep, 2.99, peer)
    assert sid in ep.sessions
    _run(ep, 4.0, peer)
    assert sid not in ep.sessions
    assert ep.counters["expired"] == 1
    assert _open(ep, Peer(my_id=99, addr=("192.0.2.99", 1)), 4.0)


def test_flood_of_new_identifiers_stays_bounded() -> None:
    """[HB-SES-3], [HB-SES-4], [HB-SEC-4]: a flood of opening HEARTBEATs with fresh
    identifiers from many sources creates at most max_half_open sessions at a time, and the
    endpoint's bookkeeping (sessions, timer heap, per-source and pending tables) stays bounded."""
    limits = Limits(max_half_open=50, max_per_source=5, max_sessions=100)
    ep = _responder(limits=limits)
    rng = random.Random(9)
    biggest = 0
    for n in range(20_000):
        now = n * 0.005  # 100 s of flood at 200 frames/s
        peer = Peer(my_id=rng.getrandbits(32) | 1, addr=(f"10.0.{n % 97}.1", n % 6000))
        ep.receive_datagram(peer.heartbeat(state=DOWN), peer.addr, now)
        ep.datagrams_to_send(now)
        if n % 100 == 0:
            ep.handle_timer(now)
            drain(ep)
        biggest = max(biggest, len(ep.sessions))
        # Internal tables, looked at directly: they are what a flood could grow.
        assert len(ep._heap) <= 4 * limits.max_half_open + 16
        assert len(ep._pending_by_remote) <= limits.max_half_open
        assert len(ep.source_counts()) <= limits.max_half_open
    assert biggest == limits.max_half_open
    assert ep.counters["refused"] > 10_000
    assert ep.counters["expired"] > 100


def test_half_open_slot_released_after_address_change() -> None:
    """[HB-SES-3], [HB-UDP-3], [HB-UDP-5]: a peer whose address changes (NAT rebinding)
    between its opening HEARTBEAT and the handshake's end still frees its half-open slot."""
    ep = _responder(limits=Limits(max_half_open=1, max_per_source=1))
    peer = Peer(addr=("192.0.2.1", 1000))
    assert _open(ep, peer, 0.0)
    peer.addr = ("192.0.2.50", 2000)  # rebinding: same session, new address
    peer.state = UP
    (ack,) = [f for f in deliver(ep, peer, peer.heartbeat(), 0.01) if f.type is ACK]
    assert ack.state is UP
    assert _open(ep, Peer(my_id=77, addr=("192.0.2.9", 1)), 0.02)
    assert _open(ep, Peer(my_id=78, addr=("192.0.2.1", 1000)), 0.03) is False  # half-open: 1


# --- Config [HB-FREQ-1], SPEC 9.1 -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": 0}, "interval must be positive"),
        ({"interval": -1.0}, "interval must be positive"),
        ({"interval": math.nan}, "interval must be a number"),
        ({"interval": math.inf}, "interval must be a number"),
        ({"interval": 1e-7}, "interval=1e-07 s is below the 1 us resolution"),
        ({"interval": 200_000.0}, "exceeds the largest interval"),
        ({"min_rx": -0.5}, "min_rx must be positive"),
        ({"min_rx": math.nan}, "min_rx must be a number"),
        ({"min_rx": 1e6}, "min_rx=.* exceeds"),
        ({"multiplier": 0}, r"multiplier must be 1\.\.15"),
        ({"multiplier": 16}, r"multiplier must be 1\.\.15"),
        ({"max_strikes": 1}, "max_strikes must be at least 2"),
        ({"max_strikes": 0}, "max_strikes must be at least 2"),
        ({"handshake_timeout": 0}, "handshake_timeout must be a positive number"),
        ({"handshake_timeout": math.inf}, "handshake_timeout must be a positive number"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_config_rejects_with_a_clear_message(kwargs: dict[str, Any], message: str) -> None:
    """[HB-FRAME-6], [HB-FRAME-11], [HB-FREQ-1]: impossible settings are refused, saying
    which parameter is wrong and why."""
    with pytest.raises(LocalProtocolError, match=message):
        Config(**kwargs)


@pytest.mark.parametrize(
    "config",
    [
        Config(),
        Config.lan(),
        Config.wan(),
        Config.nat_keepalive(),
        Config.mobile(),
        Config(interval=None, min_rx=0),
        Config(multiplier=1, max_strikes=2),
        Config(multiplier=15, max_strikes=None),
        Config(interval=163_820.0, min_rx=163_820.0),
    ],
    ids=["default", "lan", "wan", "nat", "mobile", "nopref-r0", "m1", "m15", "largest"],
)
def test_config_presets_construct(config: Config) -> None:
    """SPEC 9.1, [HB-FRAME-14]: presets and edge values build and encode on the wire."""
    for us in (config.desired_tx_us, config.required_rx_us):
        decoded = decode_interval(encode_interval(us))
        assert decoded == us or (us is not None and decoded is not None and decoded >= us)


# --- frame.pack is encode ------------------------------------------------------------------------

_intervals = st.one_of(st.none(), st.integers(0, 0xFFFE).map(decode_interval))


@st.composite
def _valid_frames(draw: st.DrawFn) -> Frame:
    ftype = draw(st.sampled_from(FrameType))
    if ftype is CLOSE:
        state = CLOSED
    elif ftype is DATA:
        state = UP
    else:
        state = draw(st.sampled_from([DOWN, INIT, UP]))
    tlvs: list[Tlv] = draw(st.lists(st.builds(Tlv, st.integers(3, 0x7F), st.binary(max_size=8))))
    if ftype is DATA or (ftype in (HB, ACK) and draw(st.booleans())):
        tlvs.append(Tlv(TlvType.PAYLOAD, draw(st.binary(max_size=128))))
    if ftype is CLOSE and draw(st.booleans()):
        tlvs.append(Tlv(TlvType.CLOSE_TEXT, draw(st.text(max_size=30)).encode()[:123]))
    if draw(st.booleans()):
        tlvs.append(Tlv(TlvType.AUTH, draw(st.binary(min_size=17, max_size=17))))
    zero_ok = ftype is HB and state is DOWN
    return Frame(
        type=ftype,
        state=state,
        my_id=draw(st.integers(1, MASK32)),
        your_id=draw(st.integers(0 if zero_ok else 1, MASK32)),
        seq=draw(st.integers(0, MASK32)),
        timestamp=draw(st.integers(0, MASK32)),
        desired_tx=draw(_intervals.filter(lambda us: us != 0)),
        required_rx=draw(_intervals),
        mult=draw(st.integers(1, 15)),
        poll=ftype is HB and draw(st.booleans()),
        final=ftype is ACK and draw(st.booleans()),
        tlvs=tuple(tlvs),
    )


@settings(max_examples=300, derandomize=True, deadline=None)
@given(_valid_frames())
def test_pack_is_byte_identical_to_encode(frame: Frame) -> None:
    """[HB-FRAME-1]: the core's unchecked fast packer writes the same bytes as the codec."""
    tlv_area = b"".join(pack_tlv(t, v) for t, v in frame.tlvs)
    packed = pack(
        frame.type,
        frame.state,
        frame.poll,
        frame.final,
        frame.mult,
        frame.my_id,
        frame.your_id,
        frame.seq,
        frame.timestamp,
        encode_interval(frame.desired_tx),
        encode_interval(frame.required_rx),
        tlv_area,
    )
    assert packed == encode(frame)
    assert packed == schema_encode(frame)  # encode uses pack: the construct schema is the judge


def test_pack_catches_a_difference() -> None:
    """The comparison above can fail: one changed field changes the bytes."""
    frame = Frame(HB, UP, 1, 2, 3, 4, 100 * MS, 100 * MS)
    args: list[Any] = [HB, UP, False, False, 3, 1, 2, 3, 4, 0x2710, 0x2710]
    assert pack(*args) == encode(frame)
    args[8] = 5
    assert pack(*args) != encode(frame)


def test_connection_piggyback_and_activity() -> None:
    """[HB-TLV-8], [HB-TX-3]: a stream Connection offers the same verbs as an Endpoint: a
    piggybacked payload rides on its HEARTBEATs, and noting activity postpones the next one in
    idle-only mode."""
    idle = Config(interval=0.1, idle_only=True)
    a = Connection(idle, initiator=True, now=0.0, rng=random.Random(1))
    b = Connection(Config(interval=0.1), initiator=False, now=0.0, rng=random.Random(2))
    with pytest.raises(LocalProtocolError, match="at most 128"):
        a.set_piggyback(b"x" * 129)
    a.set_piggyback(b"load=3")

    def exchange(now: float) -> None:
        for _ in range(3):  # an empty read would mean end of stream: forward only bytes
            if data := a.data_to_send():
                b.receive_data(data, now)
            if data := b.data_to_send():
                a.receive_data(data, now)

    a.handle_timer(0.0)  # the first HEARTBEAT [HB-TX-5]
    exchange(0.0)
    assert b.snapshot(0.0).state is State.UP
    timer = a.get_timer()
    assert timer is not None
    a.note_activity(timer - 0.01)
    later = a.get_timer()
    assert later is not None
    assert later > timer
    a.handle_timer(later)
    exchange(later)
    events = list(iter(b.next_event, None))
    assert PiggybackReceived(b.session_id, b"load=3") in events


# --- Second review: fixes pinned ---------------------------------------------------------------


def test_a_client_never_binds_a_spoofed_opening_frame() -> None:
    """[HB-SES-2], [HB-SES-5], section 12.2: an endpoint that does not accept sessions never
    lets a frame with Your Identifier 0 bind its session (a blind attacker who knew only the
    two addresses could otherwise pin it to a made-up identifier for good)."""
    client = Endpoint(CONFIG, rng=random.Random(5), id_source=_ids(50))
    server = ("198.51.100.7", 7373)
    sid = client.connect(server, 0.0)
    client.datagrams_to_send(0.0)
    spoof = Peer(my_id=0x5EEDBEEF, addr=server)
    client.receive_datagram(spoof.heartbeat(state=DOWN), server, 0.1)
    assert client.snapshot(sid, 0.1).remote_id == 0
    assert client.counters["unknown_session"] == 1


def test_an_initiator_stuck_short_of_up_is_replaced() -> None:
    """[HB-SM-8]: a session that learned a remote identifier but is not UP within
    HANDSHAKE_TIMEOUT of opening is replaced by a fresh session, without a restart report."""
    ep = Endpoint(CONFIG, accept=True, rng=random.Random(6), id_source=_ids(60))
    other = ("198.51.100.8", 7373)
    sid = ep.connect(other, 0.0)
    ep.datagrams_to_send(0.0)
    stranger = Peer(my_id=0x0BADC0DE, addr=other)
    ep.receive_datagram(stranger.heartbeat(state=DOWN), other, 0.1)  # binds (simultaneous open)
    assert ep.snapshot(sid, 0.1).remote_id == 0x0BADC0DE
    ep.handle_timer(CONFIG.handshake_timeout)
    assert sid not in ep.sessions
    (new,) = ep.sessions.values()
    assert (new.remote_id, new.initiator, new.addr) == (0, True, other)
    assert not any(isinstance(e, PeerRestarted) for e in drain(ep))


def test_a_rebinding_is_verified_only_by_echoing_the_probes_random_timestamp() -> None:
    """[HB-UDP-8], [HB-UDP-9]: after a frame from a new address, the probe HEARTBEAT carries a
    random Timestamp; an ACK from there that echoes its Sequence Number but not that Timestamp
    (all an attacker who sees our counter can predict) does not move the session's traffic."""
    ep, peer, sid = _fresh()
    new_addr = ("203.0.113.9", 5555)
    peer.addr = new_addr
    ep.receive_datagram(peer.heartbeat(state=UP), new_addr, 0.3)
    sent = ep.datagrams_to_send(0.3)
    probes = [decode(d) for d, a in sent if a == new_addr and decode(d).type is HB]
    assert len(probes) == 1
    probe = probes[0]
    assert not probe.tlvs  # bare, whatever the piggyback [HB-UDP-6]
    forged = peer.frame(ACK, seq=probe.seq, timestamp=probe.timestamp ^ 1, your_id=sid)
    ep.receive_datagram(encode(forged), new_addr, 0.31)
    assert ep.snapshot(sid, 0.31).address == Peer().addr
    assert ep.counters["unsolicited_ack"] == 1  # and it used up nothing
    genuine = peer.frame(ACK, seq=probe.seq, timestamp=probe.timestamp, your_id=sid)
    ep.receive_datagram(encode(genuine), new_addr, 0.32)
    assert ep.snapshot(sid, 0.32).address == new_addr


def test_no_peer_can_make_us_send_faster_than_min_tx() -> None:
    """[HB-NEG-7]: a peer advertising R = 10 us to an endpoint with no rate of its own gets the
    endpoint's floor (1 ms by default), not 100,000 HEARTBEATs a second."""
    ep, _, sid = _established(Config(interval=None), Peer(required_rx=10))
    assert ep.snapshot(sid, 0.0).negotiated.tx_interval == 0.001
    ep2, _, sid2 = _established(Config(interval=None, min_tx=0.05), Peer(required_rx=10))
    assert ep2.snapshot(sid2, 0.0).negotiated.tx_interval == 0.05


def test_a_peer_speeding_up_is_judged_by_its_new_pace_while_it_polls() -> None:
    """[HB-FREQ-6]: while a peer's HEARTBEATs carry P, gaps are judged against the faster of
    its old and new D: a peer going from 1 s to 100 ms, whose Final is slow to come, is not
    struck for using the new pace it is entitled to use at once [HB-POLL-4]."""
    ep, peer, sid = _established(replace(CONFIG, max_strikes=2), Peer(desired_tx=1_000_000))
    for t in (1.0, 2.0):
        deliver(ep, peer, peer.heartbeat(state=UP), t)
    peer.desired_tx = 100_000
    t = 2.0
    for _ in range(8):
        t = round(t + 0.09, 6)
        deliver(ep, peer, peer.heartbeat(state=UP, poll=True), t)
    assert ep.counters["strikes"] == 0
    assert ep.snapshot(sid, t).state is UP


def test_idle_only_cannot_be_combined_with_min_rx_zero() -> None:
    """[HB-TX-3]: with R = 0 the peer only answers HEARTBEATs; idle-only mode would stop them
    while DATA flows, leaving nothing to detect the peer by."""
    with pytest.raises(LocalProtocolError, match="idle_only"):
        Config(idle_only=True, min_rx=0)
    assert Config.mobile().min_rx == 0


def test_with_r_zero_a_faster_local_pace_does_not_advance_the_deadline() -> None:
    """[HB-DET-5], [HB-NEG-2]: with local R = 0 we detect the peer through the ACKs to our
    HEARTBEATs. Switching from 10 s to 100 ms long after the last ACK must not fire detection
    at once: the running deadline stays where the old pace put it."""
    slow = Config(interval=10.0, min_rx=0, multiplier=3)
    ep, _, sid = _established(slow)
    before = ep.sessions[sid].detect_at
    assert before is not None
    ep.set_parameters(sid, 9.0, interval=0.1)
    session = ep.sessions[sid]
    assert session.detect_at is not None
    assert session.detect_at >= before
    ep.handle_timer(9.0)
    # Neither a false down nor a false stall (which is how an early deadline would show).
    assert not any(isinstance(e, PeerDown | LocalStall) for e in drain(ep))


def test_an_ack_survives_many_data_frames_sent_in_the_meantime() -> None:
    """[HB-ACK-5]: more than 1024 DATA frames between a HEARTBEAT and its ACK push the
    HEARTBEAT out of the 1024-sequence window; it is still remembered (among 16), so its ACK is
    accepted, while a second ACK for it, or one for a HEARTBEAT never sent, is not."""
    ep, peer, sid = _established()
    hb = next(f for f in _run(ep, 0.2, peer) if f[1].type is HB)[1]
    for i in range(1500):
        ep.send(sid, b"%d" % i, 0.2)
    ep.datagrams_to_send(0.2)
    ep.receive_datagram(peer.ack(hb), peer.addr, 0.21)
    assert ep.counters["unsolicited_ack"] == 0
    assert ep.snapshot(sid, 0.21).srtt is not None
    ep.receive_datagram(peer.ack(hb), peer.addr, 0.22)
    assert ep.counters["unsolicited_ack"] == 1


# --- Third review: fixes pinned ----------------------------------------------------------------


def test_r_zero_never_strikes_a_peer_repeating_its_up_its_poll_or_its_init() -> None:
    """[HB-FREQ-6], [HB-FREQ-8], [HB-NEG-1], [HB-POLL-7], [HB-TX-2]: an endpoint with R = 0
    judges HEARTBEATs against max(peer D, SLOW_START_INTERVAL). What a conforming peer sends
    it at the slow-start pace (its UP repeated until it sees ours, a poll repeated until the
    Final, INIT repeated during a handshake) is never premature, and every one is answered."""
    ep, peer, sid = _established(Config(interval=1.0, min_rx=0, multiplier=3, max_strikes=2))
    script: list[tuple[float, bytes]] = [(t, peer.heartbeat(state=UP)) for t in (0.8, 1.6, 2.4)]
    peer.desired_tx = 200_000  # a poll, repeated as if its Final were lost
    script += [(t, peer.heartbeat(state=UP, poll=True)) for t in (3.2, 4.0, 4.8)]
    script.append((5.0, peer.heartbeat(state=DOWN)))  # the peer lost us ...
    script += [(t, peer.heartbeat(state=INIT)) for t in (5.1, 5.9, 6.7)]  # ... INIT repeated
    for t, hb in script:
        out = deliver(ep, peer, hb, t)
        assert [f.type for f in out if f.type is ACK] == [ACK], t
    assert (ep.counters["premature"], ep.counters["strikes"]) == (0, 0)
    assert ep.snapshot(sid, 6.7).state is UP
    assert not any(isinstance(e, SessionClosed) for e in drain(ep))


NEW_B = ("198.51.100.20", 2001)
NEW_C = ("198.51.100.30", 3001)


def _probes(ep: Endpoint, now: float) -> list[tuple[Frame, Any]]:
    """The HEARTBEATs ``ep`` sends at ``now``, with their addresses."""
    sent = [(decode(raw), addr) for raw, addr in ep.datagrams_to_send(now)]
    return [(frame, addr) for frame, addr in sent if frame.type is HB]


def test_one_probe_per_period_whichever_address_and_a_replaced_probe_verifies_nothing() -> None:
    """[HB-UDP-8], [HB-UDP-9], [HB-UDP-10]: a session probes at most once per
    max(ExpectedRemote, TxInterval, SLOW_START_INTERVAL) = 1 s, whatever address a frame comes
    from; a later probe replaces the outstanding one, whose ACK then fails V-13; an ACK that
    answers the probe from a third address verifies nothing and gives no RTT sample."""
    ep, peer, sid = _established(Config(interval=1.0, min_rx=1.0, multiplier=3))
    home = peer.addr
    ep.receive_datagram(peer.data(b"1"), NEW_B, 0.3)
    ((probe_b, to),) = [p for p in _probes(ep, 0.3) if p[1] != home]
    assert to == NEW_B
    ep.receive_datagram(peer.data(b"2"), NEW_C, 0.4)  # within the period: no probe
    assert [a for _, a in _probes(ep, 0.4)] == []
    ep.receive_datagram(peer.data(b"3"), NEW_C, 1.4)
    ((probe_c, to),) = [p for p in _probes(ep, 1.4) if p[1] != home]
    assert to == NEW_C
    drain(ep)
    ep.receive_datagram(peer.ack(probe_b), NEW_B, 1.45)  # replaced: V-13
    assert ep.counters["unsolicited_ack"] == 1
    ep.receive_datagram(peer.ack(probe_c), NEW_B, 1.5)  # from a third address
    assert ep.counters["unsolicited_ack"] == 1
    assert ep.snapshot(sid, 1.5).address == home
    assert not any(isinstance(e, RttSample) for e in drain(ep))
    ep.receive_datagram(peer.data(b"4"), NEW_C, 2.5)
    ((probe_c2, to),) = [p for p in _probes(ep, 2.5) if p[1] != home]
    ep.receive_datagram(peer.ack(probe_c2), NEW_C, 2.55)
    assert ep.snapshot(sid, 2.55).address == NEW_C
    assert not any(isinstance(e, RttSample) for e in drain(ep))
    ep.receive_datagram(peer.data(b"5"), NEW_B, 2.6)  # verified, but still within the period
    assert [a for _, a in _probes(ep, 2.6) if a != NEW_C] == []
    ep.receive_datagram(peer.data(b"6"), NEW_B, 3.6)
    assert [a for _, a in _probes(ep, 3.6) if a != NEW_C] == [NEW_B]


def test_a_current_ack_from_a_new_address_draws_a_probe() -> None:
    """[HB-UDP-10], [HB-ACK-4]: a probe is not an answer, so an ACK from a new address (all a
    peer with R = 0 may ever send) starts a rebinding like any other current frame."""
    ep, peer, _ = _established(Config(interval=1.0, min_rx=0, multiplier=3))
    at, hb = _next_heartbeat(ep, peer, 0.0)
    ep.receive_datagram(peer.ack(hb), NEW_B, at + 0.01)
    assert [a for _, a in _probes(ep, at + 0.01)] == [NEW_B]


def test_a_reordered_opening_frame_makes_no_second_session() -> None:
    """[HB-SES-7], [HB-SES-2], [HB-RX-12]: a copy of a frame with Your Identifier 0 that
    arrives after the session's address was verified (the peer stopped sending those when it
    learned our identifier) creates no session, gets no answer and changes nothing; the
    same while the session lingers after a close."""
    ep = _responder()
    peer = Peer()
    first, late, later = peer.heartbeat(), peer.heartbeat(), peer.heartbeat()
    deliver(ep, peer, first, 0.0)
    peer.state = UP
    deliver(ep, peer, peer.heartbeat(), 0.01)
    (sid,) = ep.sessions
    drain(ep)
    assert deliver(ep, peer, late, 0.02) == []
    assert list(ep.sessions) == [sid]
    assert _drops(ep) == Counter(replay=1)
    assert ep.snapshot(sid, 0.02).state is UP
    assert drain(ep) == []
    ep.close(sid, 0.03)
    collect(ep, 0.03, peer)
    assert deliver(ep, peer, later, 0.04) == []
    assert list(ep.sessions) == [sid]
    assert _drops(ep) == Counter(replay=2)


def test_a_reordered_copy_of_a_simultaneous_open_makes_no_second_session() -> None:
    """[HB-SES-7], [HB-SES-2]: the same for a session that a frame with Your Identifier 0
    bound to our own initiator's session in a simultaneous open."""
    ep = Endpoint(CONFIG, accept=True, rng=random.Random(7), id_source=_ids(70))
    peer = Peer(my_id=0x0C0C0C0C)
    sid = ep.connect(peer.addr, 0.0)
    collect(ep, 0.0, peer)
    opener, late = peer.heartbeat(), peer.heartbeat()
    deliver(ep, peer, opener, 0.01)  # binds: the ACK teaches the peer our identifier
    assert peer.your_id == sid
    peer.state = INIT
    deliver(ep, peer, peer.heartbeat(), 0.02)  # verifies, and brings the session up
    assert ep.snapshot(sid, 0.02).state is UP
    assert deliver(ep, peer, late, 0.03) == []
    assert list(ep.sessions) == [sid]
    assert ep.counters["replay"] == 1


def test_the_first_opened_waiting_initiator_binds_and_a_closed_one_never() -> None:
    """[HB-SES-2]: of several initiator sessions to one address still waiting for a remote
    identifier, the first opened binds a frame with Your Identifier 0, then the next; a
    CLOSED (lingering) one binds nothing."""
    ep = Endpoint(CONFIG, accept=True, rng=random.Random(8), id_source=_ids(80))
    there = ("198.51.100.40", 7373)
    closed = ep.connect(there, 0.0)
    first = ep.connect(there, 0.0)
    second = ep.connect(there, 0.0)
    ep.close(closed, 0.0)
    ep.datagrams_to_send(0.0)
    for k, sid in enumerate((first, second)):
        peer = Peer(my_id=0x0D0D0D00 + k, addr=there)
        ep.receive_datagram(peer.heartbeat(), there, 0.1)
        assert ep.snapshot(sid, 0.1).remote_id == peer.my_id
    assert ep.snapshot(closed, 0.1).remote_id == 0
    assert len(ep.sessions) == 3


def test_an_infinite_detection_time_counts_as_handshake_timeout() -> None:
    """[HB-DET-9], [HB-SES-4], [HB-CLOSE-2], [HB-NEG-3]: with R = 0 on both sides
    DetectionTime is infinite; a half-open session then lives HANDSHAKE_TIMEOUT, not less,
    and a closed session lingers HANDSHAKE_TIMEOUT."""
    both_zero = Config(interval=0.1, min_rx=0, multiplier=3)
    ep = _responder(both_zero)
    half = Peer(my_id=0x0E0E0E0E, required_rx=0)
    deliver(ep, half, half.heartbeat(), 0.0)
    (sid,) = ep.sessions
    _run(ep, 9.9, half)
    assert sid in ep.sessions
    _run(ep, 10.0, half)
    assert sid not in ep.sessions
    peer = Peer(required_rx=0)
    sid = handshake(ep, peer, 20.0)
    ep.close(sid, 21.0)
    collect(ep, 21.0, peer)
    assert [f.type for f in deliver(ep, peer, peer.heartbeat(state=UP), 30.9)] == [CLOSE]
    _run(ep, 31.0, peer)
    assert sid not in ep.sessions


def test_an_endpoint_computes_with_the_interval_its_code_states() -> None:
    """[HB-FRAME-14]: 163.831 ms has no exact code and is sent rounded up, as 164 ms; the
    endpoint's own timers use 164 ms too, so that both ends compute with the same value."""
    ep = Endpoint(Config(interval=0.163831, min_rx=0.163831), rng=random.Random(1))
    peer = Peer()
    sid = ep.connect(peer.addr, 0.0)
    (hello,) = collect(ep, 0.0, peer)
    assert (hello.desired_tx, hello.required_rx) == (164_000, 164_000)
    negotiated = ep.snapshot(sid, 0.0).negotiated
    assert (negotiated.tx_interval, negotiated.expected_remote) == (0.164, 0.164)
    ep.set_parameters(sid, 0.0, min_rx=0.000015)  # 1.5 x 10 us: sent, and used, as 20 us
    assert ep.snapshot(sid, 0.0).negotiated.expected_remote == 0.00002


def _refuse(ep: Endpoint, sid: int, addr: Any, at: float) -> None:
    """A refusal CLOSE [HB-CLOSE-5]: fresh My Identifier and Sequence Number, Mult 1."""
    refusal = Frame(
        type=CLOSE,
        state=CLOSED,
        my_id=0x7E7E7E7E,
        your_id=sid,
        seq=0x1234,
        timestamp=CloseCode.REFUSED,
        desired_tx=None,
        required_rx=None,
        mult=1,
    )
    ep.receive_datagram(encode(refusal), addr, at)
    assert sid not in ep.sessions


def _first_heartbeat(ep: Endpoint, sid: int, until: float) -> tuple[float, Frame]:
    while (at := ep.get_timer()) is not None and at <= until:
        for raw, _ in ep.datagrams_to_send(at):
            frame = decode(raw)
            if frame.type is HB and frame.my_id == sid:
                return at, frame
    raise AssertionError("no HEARTBEAT")


def test_a_refused_initiator_backs_off_before_its_next_session() -> None:
    """[HB-CLOSE-6]: after the n-th refusal by a peer, the first HEARTBEAT of the next session
    to it waits min(1 s x 2^n, 60 s), plus up to 25 %; a session that comes UP resets n."""
    ep = Endpoint(CONFIG, rng=random.Random(9), id_source=_ids(90))
    server = ("198.51.100.50", 7373)
    t = 0.1
    for n in (1, 2, 3, 4, 5, 6, 7, 1):
        sid = ep.connect(server, t)
        _refuse(ep, sid, server, t)
        sid = ep.connect(server, t + 0.01)
        at, hello = _first_heartbeat(ep, sid, t + 100.0)
        wait = min(2.0**n, 60.0)
        assert wait <= at - t <= 1.25 * wait, (n, at - t)
        if n < 7:
            ep.close(sid, at)
        else:  # this one comes UP: the count starts again
            peer = Peer(my_id=0x0F0F0F0F, addr=server)
            deliver(ep, peer, peer.ack(hello, state=INIT), at + 0.01)
            assert ep.snapshot(sid, at + 0.01).state is UP
        t = round(at + 1.0, 6)
