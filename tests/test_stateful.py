"""Stateful property tests: arbitrary interleavings of network input, time and API calls.

Two hypothesis state machines drive the sans-IO core the way the world would: a responder
Endpoint with small limits, talking to a few scripted peers that send valid frames in any
order, duplicated, stale, from the future or with wrong identifiers, plus mutated frames and
arbitrary bytes; and a Connection fed a byte stream cut at arbitrary points. Time jumps by
arbitrary amounts and the application calls the API at random.

After every step the invariants hold: nothing raised but a documented LocalProtocolError from an
API call; the session table and the timer heap stay bounded; get_timer() is None or a float
(after handle_timer(now), a float later than now); everything the core sent decodes; events are
well formed; and no PeerDown for a detection timeout comes before (the last valid frame the
session received + its DetectionTime). Validity is judged from the outside: a frame was valid
if no drop counter of SPEC section 7 moved when it was fed in. DetectionTime is bounded below
from what the peers advertise: every peer sends D = 100 ms, so ExpectedRemote >= 100 ms
whatever the local values (SPEC 9.1), and DetectionTime >= the peer's Mult x 100 ms.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hbproto import Config, Connection, Endpoint, Limits
from hbproto.errors import LocalProtocolError
from hbproto.events import (
    ConnectionEnded,
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
    MAX_FRAME,
    UDP_MAX_FRAME,
    Frame,
    FrameType,
    State,
    Tlv,
    TlvType,
    decode,
    encode,
)
from tests.peer import DROP_COUNTERS, Peer

PEER_D_US = 100_000  # every scripted peer advertises D = 100 ms
EXPECTED_FLOOR = PEER_D_US / 1_000_000  # so ExpectedRemote >= 0.1 s (SPEC 9.1)
MASK32 = 0xFFFFFFFF
EPS = 1e-9

CONFIG = Config(interval=0.1, min_rx=0.05, multiplier=3, handshake_timeout=2.0)
# Responders are bounded by the per-source limit (4 per host, two hosts); the session table
# itself fills up in the EndpointAtTheLimit variant below.
LIMITS = Limits(max_sessions=80, max_half_open=3, max_per_source=4)

SETTINGS = settings(
    max_examples=250,
    stateful_step_count=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

STATES = st.sampled_from([State.DOWN, State.INIT, State.UP])
SEQ_MODES = st.sampled_from(["next", "next", "next", "dup", "stale", "reorder", "jump"])
ID_MODES = st.sampled_from(["known", "known", "known", "zero", "wrong"])
INTERVALS = st.sampled_from([None, 0.05, 0.1, 0.3])
MIN_RXS = st.sampled_from([None, 0, 0.05, 0.2])
MULTS = st.sampled_from([1, 3, 5])
TIME_STEPS = st.one_of(st.floats(0.0, 0.2, allow_nan=False), st.floats(0.2, 4.0, allow_nan=False))


def _drops(counters: Counter[str]) -> Counter[str]:
    return Counter({k: counters[k] for k in DROP_COUNTERS if counters[k]})


def _check_negotiated(n: Negotiated) -> None:
    for value in (n.tx_interval, n.expected_remote, n.detection_time):
        assert value is None or (math.isfinite(value) and value > 0)
    assert 1 <= n.local_mult <= 15
    assert 1 <= n.remote_mult <= 15


@dataclass
class Tracker:
    """What the outside world can know about the sessions, and the event rules it checks."""

    known: set[int] = field(default_factory=set)  # every session handle seen
    up: dict[int, bool] = field(default_factory=dict)
    was_up: set[int] = field(default_factory=set)
    closed: set[int] = field(default_factory=set)
    last_valid: dict[int, float] = field(default_factory=dict)
    min_mult: dict[int, int] = field(default_factory=dict)

    def valid_frame(self, session: int, now: float, mult: int) -> None:
        self.known.add(session)
        self.last_valid[session] = max(now, self.last_valid.get(session, now))
        self.min_mult[session] = min(mult, self.min_mult.get(session, mult))

    def check(self, event: Event, now: float) -> None:
        session = getattr(event, "session", None)
        if session is not None:
            assert session in self.known, event
            assert session not in self.closed or isinstance(event, ConnectionEnded), event
        if isinstance(event, PeerUp):
            assert not self.up.get(event.session, False), event
            assert event.again == (event.session in self.was_up), event
            _check_negotiated(event.negotiated)
            self.up[event.session] = True
            self.was_up.add(event.session)
        elif isinstance(event, PeerDown):
            assert math.isfinite(event.silent_for)
            assert event.silent_for >= 0
            if event.reason is DownReason.DETECTION_TIMEOUT:
                # [HB-DET-2]: never before the last valid frame + DetectionTime.
                assert event.session in self.last_valid, event
                floor = self.min_mult[event.session] * EXPECTED_FLOOR
                assert now >= self.last_valid[event.session] + floor - EPS, (
                    event,
                    now,
                    self.last_valid[event.session],
                )
            if event.reason is not DownReason.HANDSHAKE_TIMEOUT:
                assert self.up.get(event.session, False), event
            self.up[event.session] = False
        elif isinstance(event, SessionClosed):
            assert 0 <= event.code <= MASK32
            self.closed.add(event.session)
            self.up[event.session] = False
        elif isinstance(event, RttSample):
            for value in (event.rtt, event.srtt, event.rttvar):
                assert math.isfinite(value)
                assert value >= 0
        elif isinstance(event, LocalStall):
            assert event.late_by > 0
            assert event.sessions_spared >= 1
        elif isinstance(event, ParametersChanged):
            _check_negotiated(event.negotiated)
        elif isinstance(event, PeerRestarted):
            assert event.old_session in self.known
            assert event.old_remote_id != event.new_remote_id
            self.closed.add(event.old_session)  # the old session is gone
            self.up[event.old_session] = False
        elif isinstance(event, MessageReceived | PiggybackReceived):
            assert isinstance(event.data, bytes)
        else:
            assert isinstance(event, LivenessInactive | ConnectionEnded), event


def _seq_for(peer: Peer, mode: str) -> int:
    """A sequence number for the next frame: in order, duplicated, out of the window,
    reordered inside it, or after a jump (as if many frames were lost)."""
    if mode == "dup":
        return (peer.seq - 1) & MASK32
    if mode == "stale":
        return (peer.seq - 100) & MASK32
    if mode == "reorder":
        return (peer.seq - 3) & MASK32
    if mode == "jump":
        peer.seq = (peer.seq + 1000) & MASK32
    seq = peer.seq
    peer.seq = (peer.seq + 1) & MASK32
    return seq


def _your_id(peer: Peer, mode: str) -> int:
    if mode == "zero":
        return 0
    if mode == "wrong":
        return (peer.your_id or 1) ^ 0x00010000
    return peer.your_id


def _heartbeat(peer: Peer, state: State, seq_mode: str, id_mode: str, poll: bool) -> Frame:
    your_id = _your_id(peer, id_mode)
    if your_id == 0:
        state = State.DOWN  # only a DOWN HEARTBEAT may leave Your Identifier 0 [HB-FRAME-8]
    return peer.frame(
        FrameType.HEARTBEAT, state=state, seq=_seq_for(peer, seq_mode), your_id=your_id, poll=poll
    )


def _learn(peer: Peer, frame: Frame) -> None:
    """A peer believes the latest session that talks to it (and answers an opener)."""
    peer.inbox.append(frame)
    del peer.inbox[:-40]  # keep what is needed to ACK recent HEARTBEATs
    if frame.your_id == peer.my_id or (frame.your_id == 0 and not peer.your_id):
        peer.your_id = frame.my_id


# --- The Endpoint machine -----------------------------------------------------------------------


class EndpointMachine(RuleBasedStateMachine):
    """A responder (that also connects out) with small limits, and three scripted peers."""

    limits = LIMITS

    def __init__(self) -> None:
        super().__init__()
        rng = random.Random(7)
        self.ep = Endpoint(
            CONFIG,
            accept=True,
            limits=self.limits,
            rng=random.Random(11),
            id_source=lambda: rng.getrandbits(32),
        )
        self.now = 0.0
        # Two peers share a host (the per-source limit); one asks for no periodic frames.
        self.peers = [
            Peer(my_id=0x1001, addr=("192.0.2.1", 1001), mult=3, seq=10),
            Peer(my_id=0x2002, addr=("192.0.2.1", 2002), mult=2, required_rx=0, seq=2**32 - 5),
            Peer(my_id=0x3003, addr=("192.0.2.3", 3003), mult=1, seq=77),
        ]
        self.addrs = {p.addr: p for p in self.peers}
        self.track = Tracker()

    # -- plumbing --

    def _flush(self) -> list[tuple[Frame, Any]]:
        out: list[tuple[Frame, Any]] = []
        for raw, addr in self.ep.datagrams_to_send(self.now):
            assert len(raw) <= UDP_MAX_FRAME  # [HB-UDP-2]
            frame = decode(raw)  # everything the core sends is a valid frame
            assert addr in self.addrs, addr  # the core never invents an address
            self.track.known.add(frame.my_id)
            _learn(self.addrs[addr], frame)
            out.append((frame, addr))
        for event in iter(self.ep.next_event, None):
            self.track.check(event, self.now)
        return out

    def _feed(self, peer: Peer, data: bytes, frame: Frame | None) -> None:
        before = _drops(self.ep.counters)
        self.ep.receive_datagram(data, peer.addr, self.now)
        valid = _drops(self.ep.counters) == before
        out = self._flush()
        if frame is None:
            assert not valid, "garbage was accepted"
            return
        if not valid:
            return
        session = frame.your_id
        if not session:  # the session that answered it [HB-SES-2]
            acks = [
                f.my_id
                for f, addr in out
                if addr == peer.addr and f.type is FrameType.ACK and f.seq == frame.seq
            ]
            if len(acks) != 1:
                return  # cannot tell which session took it: record nothing (sound)
            session = acks[0]
        self.track.valid_frame(session, self.now, peer.mult)

    # -- network: a well-behaved peer --

    @rule(p=st.integers(0, 2))
    def open_session(self, p: int) -> None:
        """The peer opens a session as an initiator would: DOWN, then UP once answered."""
        peer = self.peers[p]
        peer.your_id = 0
        frame = peer.frame(FrameType.HEARTBEAT, state=State.DOWN, seq=_seq_for(peer, "next"))
        self._feed(peer, encode(frame), frame)
        if peer.your_id:
            self.keepalive(p)

    @rule(p=st.integers(0, 2))
    def keepalive(self, p: int) -> None:
        peer = self.peers[p]
        if peer.your_id:
            frame = peer.frame(FrameType.HEARTBEAT, state=State.UP, seq=_seq_for(peer, "next"))
            self._feed(peer, encode(frame), frame)

    @rule(p=st.integers(0, 2), state=STATES)
    def answer(self, p: int, state: State) -> None:
        """ACK the newest HEARTBEAT the core sent this peer."""
        self.ack(p, 0, state)

    # -- network: anything goes --

    @rule(p=st.integers(0, 2), state=STATES, seq=SEQ_MODES, ids=ID_MODES, poll=st.booleans())
    def heartbeat(self, p: int, state: State, seq: str, ids: str, poll: bool) -> None:
        peer = self.peers[p]
        frame = _heartbeat(peer, state, seq, ids, poll)
        self._feed(peer, encode(frame), frame)

    @rule(p=st.integers(0, 2), back=st.integers(0, 39), state=STATES)
    def ack(self, p: int, back: int, state: State) -> None:
        peer = self.peers[p]
        heartbeats = [f for f in peer.inbox if f.type is FrameType.HEARTBEAT]
        if not heartbeats:
            return
        hb = heartbeats[-1 - back % len(heartbeats)]
        frame = peer.frame(
            FrameType.ACK,
            state=state,
            seq=hb.seq,
            timestamp=hb.timestamp,
            your_id=hb.my_id,
            final=hb.poll,
        )
        self._feed(peer, encode(frame), frame)

    @rule(p=st.integers(0, 2), payload=st.binary(max_size=64), seq=SEQ_MODES)
    def data(self, p: int, payload: bytes, seq: str) -> None:
        peer = self.peers[p]
        if not peer.your_id:
            return
        frame = peer.frame(
            FrameType.DATA,
            state=State.UP,
            seq=_seq_for(peer, seq),
            tlvs=(Tlv(TlvType.PAYLOAD, payload),),
        )
        self._feed(peer, encode(frame), frame)

    @rule(p=st.integers(0, 2), code=st.integers(0, 9))
    def close(self, p: int, code: int) -> None:
        peer = self.peers[p]
        if not peer.your_id:
            return
        frame = peer.frame(
            FrameType.CLOSE, state=State.CLOSED, seq=_seq_for(peer, "next"), timestamp=code
        )
        self._feed(peer, encode(frame), frame)

    @rule(p=st.integers(0, 2), new_id=st.integers(1, MASK32))
    def restart_peer(self, p: int, new_id: int) -> None:
        """The peer loses its state: new identifier, new counter, back to DOWN [HB-ID-3]."""
        peer = self.peers[p]
        peer.my_id, peer.your_id, peer.state = new_id, 0, State.DOWN
        peer.seq = new_id ^ 0x5555
        peer.inbox.clear()

    @rule(p=st.integers(0, 2), data=st.binary(max_size=80))
    def garbage(self, p: int, data: bytes) -> None:
        self._feed(self.peers[p], data, None)

    @rule(p=st.integers(0, 2), state=STATES, where=st.integers(0, 10_000), xor=st.integers(1, 255))
    def mutated(self, p: int, state: State, where: int, xor: int) -> None:
        peer = self.peers[p]
        raw = bytearray(encode(_heartbeat(peer, state, "next", "known", False)))
        raw[where % len(raw)] ^= xor  # CRC-32 catches every single-byte change
        self._feed(peer, bytes(raw), None)

    # -- time --

    @rule(dt=TIME_STEPS, step=st.booleans())
    def advance(self, dt: float, step: bool) -> None:
        target = self.now + dt
        if step:  # an event loop that wakes at every deadline
            while (at := self.ep.get_timer()) is not None and at <= target:
                self.now = max(self.now, at)
                self.ep.handle_timer(self.now)
                self._flush()
        self.now = target  # or one that oversleeps (a stall)
        self.ep.handle_timer(self.now)
        self._flush()
        timer = self.ep.get_timer()
        assert timer is None or timer > self.now  # no busy loop

    # -- the application --

    @rule(p=st.integers(0, 2))
    def connect(self, p: int) -> None:
        try:
            handle = self.ep.connect(self.peers[p].addr, self.now)
        except LocalProtocolError:
            assert len(self.ep.sessions) >= self.limits.max_sessions
            return
        self.track.known.add(handle)
        self._flush()

    @rule(pick=st.integers(0, 50), data=st.binary(max_size=1300))
    def send(self, pick: int, data: bytes) -> None:
        self._api(lambda h: self.ep.send(h, data, self.now), pick)

    @rule(pick=st.integers(0, 50), code=st.integers(0, 8), text=st.none() | st.text(max_size=20))
    def app_close(self, pick: int, code: int, text: str | None) -> None:
        self._api(lambda h: self.ep.close(h, self.now, code, text), pick)

    @rule(pick=st.integers(0, 50), interval=INTERVALS, min_rx=MIN_RXS, mult=MULTS)
    def set_parameters(
        self, pick: int, interval: float | None, min_rx: float | None, mult: int
    ) -> None:
        self._api(
            lambda h: self.ep.set_parameters(
                h, self.now, interval=interval, min_rx=min_rx, multiplier=mult
            ),
            pick,
        )

    @rule(pick=st.integers(0, 50), data=st.none() | st.binary(max_size=140))
    def set_piggyback(self, pick: int, data: bytes | None) -> None:
        self._api(lambda h: self.ep.set_piggyback(h, data), pick)

    def _api(self, call: Any, pick: int) -> None:
        handles = [*sorted(self.track.known), 0xDEADBEEF]  # sometimes a handle that is gone
        # Documented: a closed or unknown session, not UP, too large.
        with contextlib.suppress(LocalProtocolError):
            call(handles[pick % len(handles)])
        self._flush()

    # -- invariants --

    @invariant()
    def bounded(self) -> None:
        ep = self.ep
        assert len(ep.sessions) <= self.limits.max_sessions
        # Internal bookkeeping, looked at directly: a leak here is a slow denial of service.
        counted = [s for s in ep.sessions.values() if s.source is not None and not s.was_up]
        assert ep._half_open == len(counted) <= self.limits.max_half_open
        responders = Counter(s.addr[0] for s in ep.sessions.values() if not s.initiator)
        assert +ep.source_counts() == responders
        assert len(ep._heap) <= 4 * len(ep.sessions) + 16
        timer = ep.get_timer()
        assert timer is None or (isinstance(timer, float) and math.isfinite(timer))


# --- The Connection machine ---------------------------------------------------------------------


class ConnectionMachine(RuleBasedStateMachine):
    """One Connection over a byte stream that a scripted peer writes in arbitrary pieces."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.rng = random.Random(5)
        self.round = 0
        self._open(initiator=True)

    def _open(self, *, initiator: bool) -> None:
        rng = self.rng
        self.conn = Connection(
            CONFIG,
            initiator=initiator,
            now=self.now,
            rng=random.Random(self.round),
            id_source=lambda: rng.getrandbits(32),
        )
        self.round += 1
        self.peer = Peer(my_id=0x0C0C0C0C + self.round, mult=1 + self.round % 3, seq=2**32 - 3)
        self.pending = b""  # bytes of a frame cut in two, not yet delivered
        self.pending_frame: Frame | None = None
        self.track = Tracker(known={self.conn.session_id})
        self.ended_seen = False
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        pos = 0
        while pos < len(data):  # the stream splits into whole, valid frames [HB-TCP-1]
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            assert length <= MAX_FRAME
            frame = decode(data[pos : pos + length])
            assert frame.my_id == self.conn.session_id
            _learn(self.peer, frame)
            pos += length
        for event in iter(self.conn.next_event, None):
            assert not self.ended_seen, f"{event} after ConnectionEnded"
            self.track.check(event, self.now)
            if isinstance(event, ConnectionEnded):
                self.ended_seen = True
        assert self.ended_seen == self.conn.ended

    def _feed(self, data: bytes, frame: Frame | None) -> None:
        if self.conn.ended:
            return
        before = _drops(self.conn.counters)
        self.conn.receive_data(data, self.now)
        # Valid only if it was processed: nothing dropped, and no earlier garbage left a
        # partial frame that swallowed it (the stream buffer is empty).
        processed = self.conn._deframer.buffered == 0
        if frame is not None and processed and _drops(self.conn.counters) == before:
            self.track.valid_frame(self.conn.session_id, self.now, self.peer.mult)
        self._flush()

    def _frame_bytes(self, frame: Frame, cut: int) -> None:
        """Deliver ``frame``, whole (cut 0) or its first ``cut`` bytes now and the rest later."""
        data = encode(frame)
        if self.pending:  # finish the frame already on the wire first
            self.complete()
        cut %= len(data)
        if cut:
            self.pending, self.pending_frame = data[cut:], frame
            self._feed(data[:cut], None)
        else:
            self._feed(data, frame)

    @precondition(lambda self: not self.conn.ended)
    @rule()
    def handshake(self) -> None:
        """The peer does its part of the three-way handshake, whichever side it is."""
        if self.conn.session.initiator:
            self.ack(0, State.INIT)
        else:
            self.peer.your_id = 0
            frame = self.peer.frame(
                FrameType.HEARTBEAT, state=State.DOWN, seq=_seq_for(self.peer, "next")
            )
            self._frame_bytes(frame, 0)
        self.keepalive()

    @precondition(lambda self: not self.conn.ended)
    @rule()
    def keepalive(self) -> None:
        if self.peer.your_id and not self.conn.ended:
            frame = self.peer.frame(
                FrameType.HEARTBEAT, state=State.UP, seq=_seq_for(self.peer, "next")
            )
            self._frame_bytes(frame, 0)

    @precondition(lambda self: not self.conn.ended)
    @rule(state=STATES, seq=SEQ_MODES, ids=ID_MODES, poll=st.booleans(), cut=st.integers(0, 60))
    def heartbeat(self, state: State, seq: str, ids: str, poll: bool, cut: int) -> None:
        self._frame_bytes(_heartbeat(self.peer, state, seq, ids, poll), cut * (cut > 40))

    @precondition(lambda self: not self.conn.ended)
    @rule(back=st.integers(0, 39), state=STATES)
    def ack(self, back: int, state: State) -> None:
        heartbeats = [f for f in self.peer.inbox if f.type is FrameType.HEARTBEAT]
        if not heartbeats:
            return
        hb = heartbeats[-1 - back % len(heartbeats)]
        frame = self.peer.frame(
            FrameType.ACK,
            state=state,
            seq=hb.seq,
            timestamp=hb.timestamp,
            your_id=hb.my_id,
            final=hb.poll,
        )
        self._frame_bytes(frame, 0)

    @precondition(lambda self: not self.conn.ended and bool(self.peer.your_id))
    @rule(payload=st.binary(max_size=300), seq=SEQ_MODES, cut=st.integers(0, 400))
    def data(self, payload: bytes, seq: str, cut: int) -> None:
        frame = self.peer.frame(
            FrameType.DATA,
            state=State.UP,
            seq=_seq_for(self.peer, seq),
            tlvs=(Tlv(TlvType.PAYLOAD, payload),),
        )
        self._frame_bytes(frame, cut)

    @precondition(lambda self: not self.conn.ended and bool(self.peer.your_id))
    @rule(code=st.integers(0, 9))
    def close(self, code: int) -> None:
        frame = self.peer.frame(
            FrameType.CLOSE, state=State.CLOSED, seq=_seq_for(self.peer, "next"), timestamp=code
        )
        self._frame_bytes(frame, 0)

    @precondition(lambda self: not self.conn.ended and bool(self.pending))
    @rule()
    def complete(self) -> None:
        data, frame = self.pending, self.pending_frame
        self.pending, self.pending_frame = b"", None
        self._feed(data, frame)

    @precondition(lambda self: not self.conn.ended)
    @rule(where=st.integers(4, 10_000), xor=st.integers(1, 255))
    def mutated(self, where: int, xor: int) -> None:
        """A corrupted frame the stream still delimits: dropped, the stream goes on [HB-TCP-5]."""
        raw = bytearray(encode(_heartbeat(self.peer, State.UP, "next", "known", False)))
        raw[4 + where % (len(raw) - 4)] ^= xor
        if self.pending:
            self.complete()  # which may end the connection (say, a Sta DOWN)
        if not self.conn.ended:
            self._feed(bytes(raw), None)
            assert not self.conn.ended

    # Rules that end the connection fire one time in four, so that sessions live long enough
    # to reach the interesting states.

    @precondition(lambda self: not self.conn.ended)
    @rule(data=st.binary(min_size=1, max_size=40), fire=st.integers(0, 3))
    def garbage(self, data: bytes, fire: int) -> None:
        if fire == 0:
            self._feed(data, None)

    @precondition(lambda self: not self.conn.ended)
    @rule(fire=st.integers(0, 3))
    def end_of_stream(self, fire: int) -> None:
        if fire == 0:
            self._feed(b"", None)
            assert self.conn.ended  # [HB-TCP-7]

    @rule(dt=TIME_STEPS, step=st.booleans())
    def advance(self, dt: float, step: bool) -> None:
        target = self.now + dt
        if step:
            while (at := self.conn.get_timer()) is not None and at <= target:
                self.now = max(self.now, at)
                self.conn.handle_timer(self.now)
                self._flush()
        self.now = target
        self.conn.handle_timer(self.now)
        self._flush()
        timer = self.conn.get_timer()
        assert timer is None or timer > self.now  # no busy loop

    @rule(data=st.binary(max_size=200))
    def send(self, data: bytes) -> None:
        try:
            self.conn.send(data, self.now)
        except LocalProtocolError:
            assert self.conn.ended or self.conn.session.state is not State.UP
        self._flush()

    @rule(code=st.integers(0, 8), fire=st.integers(0, 3))
    def app_close(self, code: int, fire: int) -> None:
        if fire == 0:
            self.conn.close(self.now, code)
            self._flush()
            assert self.conn.ended

    @rule(interval=INTERVALS, min_rx=MIN_RXS, mult=MULTS)
    def set_parameters(self, interval: float | None, min_rx: float | None, mult: int) -> None:
        try:
            self.conn.set_parameters(self.now, interval=interval, min_rx=min_rx, multiplier=mult)
        except LocalProtocolError:
            assert self.conn.ended or self.conn.session.state is State.CLOSED
        self._flush()

    @precondition(lambda self: self.conn.ended)
    @rule(initiator=st.booleans())
    def reconnect(self, initiator: bool) -> None:
        self._open(initiator=initiator)

    @invariant()
    def well_behaved(self) -> None:
        timer = self.conn.get_timer()
        assert timer is None or (isinstance(timer, float) and math.isfinite(timer))
        if self.conn.ended:
            assert timer is None
            self.conn.receive_data(b"\x10\x00", self.now)  # an ended connection takes nothing
            assert self.conn.data_to_send() == b""


TestEndpointMachine = EndpointMachine.TestCase
TestEndpointMachine.settings = SETTINGS


class EndpointAtTheLimit(EndpointMachine):
    """The same, with a session table small enough to fill up."""

    limits = Limits(max_sessions=2, max_half_open=2, max_per_source=2)

    @rule(dt=st.floats(0.0, 10.0, allow_nan=False), step=st.booleans())
    def advance(self, dt: float, step: bool) -> None:
        """Longer jumps: a DOWN session must outlive a slow-start DetectionTime to be replaced."""
        super().advance(dt, step)


# The small table fills up: an initiator's session that stays DOWN must still be replaced
# [HB-SM-8] without handle_timer raising.
TestEndpointMachineAtTheLimit = EndpointAtTheLimit.TestCase
TestEndpointMachineAtTheLimit.settings = SETTINGS
TestConnectionMachine = ConnectionMachine.TestCase
TestConnectionMachine.settings = SETTINGS


def test_tracker_catches_an_early_peer_down() -> None:
    """The DetectionTime invariant can fail: a PeerDown 10 ms after a valid frame is flagged."""
    track = Tracker(known={1}, up={1: True})
    track.valid_frame(1, 5.0, mult=3)
    early = PeerDown(1, DownReason.DETECTION_TIMEOUT, DetectedBy.LOCAL, 0.01, 0.3)
    try:
        track.check(early, 5.01)
    except AssertionError:
        return
    raise AssertionError("an early PeerDown went unnoticed")


def test_tracker_catches_a_double_peer_up() -> None:
    track = Tracker(known={1})
    up = PeerUp(1, 2, Negotiated(0.1, 0.1, 0.3, 3, 3))
    track.check(up, 0.0)
    try:
        track.check(up, 0.1)
    except AssertionError:
        return
    raise AssertionError("a second PeerUp went unnoticed")
