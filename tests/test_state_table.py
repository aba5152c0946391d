"""The state machine of SPEC 8.3, one test per table row, driven through a real Endpoint.

Each test brings a session into a local state with real frames from a scripted peer, sends the
frame of the row (as bytes), and checks the new state where a peer would see it: the Sta of
the frames the core sends next. Events and the session snapshot are checked as well.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from hbproto import Config, Endpoint
from hbproto.errors import LocalProtocolError
from hbproto.events import (
    DetectedBy,
    DownReason,
    Event,
    MessageReceived,
    PeerDown,
    PeerUp,
    RttSample,
    SessionClosed,
)
from hbproto.frame import CloseCode, Frame, FrameType, State
from hbproto.state import (
    LOCAL_TRANSITIONS,
    RECEIVE_TRANSITIONS,
    LocalEvent,
    on_local,
    on_receive,
)
from tests.peer import Peer, collect, deliver, drain, handshake

CLOSED, DOWN, INIT, UP = State.CLOSED, State.DOWN, State.INIT, State.UP

# SPEC 8.3, spelled out here rather than imported, so that a wrong table in state.py fails.
SPEC_RECEIVE: dict[tuple[State, State], State] = {
    (DOWN, CLOSED): CLOSED,
    (DOWN, DOWN): INIT,
    (DOWN, INIT): UP,
    (DOWN, UP): DOWN,
    (INIT, CLOSED): CLOSED,
    (INIT, DOWN): INIT,
    (INIT, INIT): UP,
    (INIT, UP): UP,
    (UP, CLOSED): CLOSED,
    (UP, DOWN): DOWN,
    (UP, INIT): UP,
    (UP, UP): UP,
}
SPEC_LOCAL: dict[tuple[State, LocalEvent], State] = {
    (DOWN, LocalEvent.CLOSE): CLOSED,
    (INIT, LocalEvent.CLOSE): CLOSED,
    (UP, LocalEvent.CLOSE): CLOSED,
    (INIT, LocalEvent.DETECTION_TIMEOUT): DOWN,
    (UP, LocalEvent.DETECTION_TIMEOUT): DOWN,
}

# Both sides: D = R = 100 ms, Mult 3. UP: TxInterval = ExpectedRemote = 0.1 s, DT = 0.3 s;
# before UP the slow-start floor makes DT 3 s [HB-TX-2].
CONFIG = Config(interval=0.1, min_rx=0.1, multiplier=3)
DT_UP = 0.3
DT_SLOW = 3.0
EXPECTED = 0.1


def _ids(seed: int) -> Callable[[], int]:
    rng = random.Random(seed)
    return lambda: rng.getrandbits(32)


def _endpoint(*, accept: bool) -> Endpoint:
    return Endpoint(CONFIG, accept=accept, rng=random.Random(1), id_source=_ids(2))


def _session_in(local: State, peer: Peer, now: float) -> tuple[Endpoint, int]:
    """An endpoint with one session in state ``local``, built from real frames only."""
    if local is DOWN:
        # An initiator's session starts DOWN [HB-SM-1] and stays there until it hears INIT.
        ep = _endpoint(accept=False)
        sid = ep.connect(peer.addr, now)
        (first,) = collect(ep, now, peer)
        assert (first.type, first.state, first.your_id) == (FrameType.HEARTBEAT, DOWN, 0)
        peer.your_id = first.my_id
        return ep, sid
    ep = _endpoint(accept=True)
    if local is INIT:
        (ack,) = deliver(ep, peer, peer.heartbeat(state=DOWN), now)
        assert ack.state is INIT
        # A DOWN that echoes our identifier verifies the address [HB-HB-4]: the session then
        # sends periodic HEARTBEATs (slow start) and can close with a CLOSE.
        (ack,) = deliver(ep, peer, peer.heartbeat(state=DOWN), now)
        assert ack.state is INIT
        return ep, peer.your_id
    assert local is UP
    sid = handshake(ep, peer, now)
    drain(ep)
    return ep, sid


def _next_from_core(ep: Endpoint, peer: Peer, after: float, until: float) -> tuple[float, Frame]:
    """Run the core's timers from ``after`` on; return the first frame it sends and when."""
    while True:
        at = ep.get_timer()
        assert at is not None, "the core has no timer left"
        assert at <= until, f"nothing sent by {until}"
        out = collect(ep, max(at, after), peer)
        if out:
            return max(at, after), out[0]


def _assert_silent(ep: Endpoint, peer: Peer, until: float) -> None:
    """Run every timer up to ``until``: the core must send nothing."""
    while (at := ep.get_timer()) is not None and at < until:
        assert collect(ep, at, peer) == []


def _acks(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.type is FrameType.ACK]


def _row_frame(peer: Peer, sta: State) -> bytes:
    if sta is CLOSED:
        return peer.close(CloseCode.SHUTDOWN, "bye")
    return peer.heartbeat(state=sta)


def _expected_events(local: State, new: State, sid: int) -> list[type[Event]]:
    if new is CLOSED:
        return [SessionClosed]
    if new is UP and local is not UP:
        return [PeerUp]
    if local is UP and new is DOWN:
        return [PeerDown]
    return []


def test_state_module_matches_spec_tables() -> None:
    """[HB-SM-1]: the tables in state.py are the SPEC's, row for row."""
    assert RECEIVE_TRANSITIONS == SPEC_RECEIVE
    assert LOCAL_TRANSITIONS == SPEC_LOCAL


@pytest.mark.parametrize(
    ("local", "sta"), list(SPEC_RECEIVE), ids=[f"{a.name}+{b.name}" for a, b in SPEC_RECEIVE]
)
def test_receive_transition_row(local: State, sta: State) -> None:
    """[HB-SM-1], [HB-SM-2], [HB-SM-4], [HB-CLOSE-3], [HB-ACK-1]: one row of the receive table,
    with a HEARTBEAT (or a CLOSE for Sta CLOSED). The ACK carries the state after the frame."""
    peer = Peer()
    ep, sid = _session_in(local, peer, 0.0)
    drain(ep)
    new = SPEC_RECEIVE[(local, sta)]
    out = deliver(ep, peer, _row_frame(peer, sta), 0.05)
    events = drain(ep)
    assert [type(e) for e in events] == _expected_events(local, new, sid)
    if new is CLOSED:
        assert out == []  # a CLOSE is never answered [HB-CLOSE-3]
        (closed,) = events
        assert closed == SessionClosed(sid, CloseCode.SHUTDOWN, "bye", by_peer=True)
        _assert_silent(ep, peer, until=10.0)  # unless the peer speaks first
        return
    (ack,) = out
    assert (ack.type, ack.state, ack.your_id, ack.my_id) == (FrameType.ACK, new, peer.my_id, sid)
    assert ep.snapshot(sid, 0.05).state is new
    if local is UP and new is DOWN:
        (down,) = events
        assert isinstance(down, PeerDown)
        assert (down.reason, down.detected_by) == (
            DownReason.PEER_REPORTED_DOWN,
            DetectedBy.REMOTE,
        )
    if new is UP and local is not UP:
        (up,) = events
        assert isinstance(up, PeerUp)
        assert (up.session, up.remote_id, up.again) == (sid, peer.my_id, False)
    # The next HEARTBEAT the core sends, whenever it comes, carries the same state.
    _, nxt = _next_from_core(ep, peer, 0.05, 0.05 + 1.0)
    assert (nxt.type, nxt.state) == (FrameType.HEARTBEAT, new)


def _outstanding_heartbeat(ep: Endpoint, peer: Peer, now: float) -> tuple[float, Frame]:
    heartbeats = peer.heartbeats()
    if heartbeats:
        return now, heartbeats[-1]
    return _next_from_core(ep, peer, now, now + 1.0)


NON_CLOSED_ROWS = [(a, b) for a, b in SPEC_RECEIVE if b is not CLOSED]


@pytest.mark.parametrize(
    ("local", "sta"), NON_CLOSED_ROWS, ids=[f"{a.name}+{b.name}" for a, b in NON_CLOSED_ROWS]
)
def test_receive_transition_row_by_ack(local: State, sta: State) -> None:
    """[HB-SM-1]: the table applies to every frame type; here an ACK. A change of state is
    announced at once with a triggered HEARTBEAT [HB-HB-2]; no change, no frame [HB-ACK-4]."""
    peer = Peer()
    ep, sid = _session_in(local, peer, 0.0)
    drain(ep)
    now, heartbeat = _outstanding_heartbeat(ep, peer, 0.0)
    assert heartbeat.state is local
    new = SPEC_RECEIVE[(local, sta)]
    out = deliver(ep, peer, peer.ack(heartbeat, state=sta), now)
    if new is local:
        assert out == []
    else:
        (triggered,) = out
        assert (triggered.type, triggered.state) == (FrameType.HEARTBEAT, new)
    kinds = [type(e) for e in drain(ep) if not isinstance(e, RttSample)]
    assert kinds == _expected_events(local, new, sid)
    assert ep.snapshot(sid, now).state is new
    _, nxt = _next_from_core(ep, peer, now, now + 1.0)
    assert nxt.state is new


UP_ROWS = [(a, b) for a, b in SPEC_RECEIVE if b is UP]


@pytest.mark.parametrize(("local", "sta"), UP_ROWS, ids=[f"{a.name}+DATA" for a, _ in UP_ROWS])
def test_receive_transition_row_by_data(local: State, sta: State) -> None:
    """[HB-SM-1], [HB-DATA-2]: a DATA frame (always Sta UP) drives the table before its
    message is looked at; the message is delivered if and only if the session is then UP."""
    peer = Peer()
    ep, sid = _session_in(local, peer, 0.0)
    drain(ep)
    new = SPEC_RECEIVE[(local, sta)]
    out = deliver(ep, peer, peer.data(b"m"), 0.05)
    events = drain(ep)
    if new is UP:
        assert [type(e) for e in events] == [*_expected_events(local, new, sid), MessageReceived]
        assert events[-1] == MessageReceived(sid, b"m")
        assert ep.counters["data_not_up"] == 0
    else:
        assert events == []
        assert ep.counters["data_not_up"] == 1
    if new is local:
        assert out == []
    else:
        assert [(f.type, f.state) for f in out] == [(FrameType.HEARTBEAT, new)]
    assert ep.snapshot(sid, 0.05).state is new


def test_three_way_handshake_responder() -> None:
    """[HB-SM-2], SPEC 3: DOWN -> INIT on the initiator's DOWN, INIT -> UP only when the
    initiator shows it heard us; PeerUp comes with the third frame, not before."""
    ep = _endpoint(accept=True)
    peer = Peer()
    (ack1,) = deliver(ep, peer, peer.heartbeat(state=DOWN), 0.0)
    assert (ack1.state, ack1.your_id) == (INIT, peer.my_id)
    assert drain(ep) == []
    # A second DOWN does not bring it up: the peer has not shown that it hears us.
    (ack2,) = deliver(ep, peer, peer.heartbeat(state=DOWN), 0.5)
    assert ack2.state is INIT
    assert drain(ep) == []
    peer.state = UP
    (ack3,) = deliver(ep, peer, peer.heartbeat(), 0.6)
    assert ack3.state is UP
    (up,) = drain(ep)
    assert isinstance(up, PeerUp)
    assert (up.session, up.remote_id) == (ack1.my_id, peer.my_id)


def test_three_way_handshake_initiator() -> None:
    """[HB-SM-2], [HB-TX-5], [HB-HB-2]: the initiator sends DOWN at once, goes UP on the
    responder's INIT and says so at once in a triggered HEARTBEAT with both identifiers."""
    ep = _endpoint(accept=False)
    peer = Peer(my_id=0x0B0B0B0B)
    sid = ep.connect(peer.addr, 0.0)
    (hello,) = collect(ep, 0.0, peer)
    assert (hello.type, hello.state, hello.my_id, hello.your_id) == (
        FrameType.HEARTBEAT,
        DOWN,
        sid,
        0,
    )
    peer.your_id = sid
    (triggered,) = deliver(ep, peer, peer.ack(hello, state=INIT), 0.01)
    assert (triggered.type, triggered.state) == (FrameType.HEARTBEAT, UP)
    assert (triggered.my_id, triggered.your_id) == (sid, peer.my_id)
    kinds = [type(e) for e in drain(ep)]
    assert PeerUp in kinds


def test_down_plus_up_stays_down() -> None:
    """[HB-SM-2]: DOWN + UP stays DOWN (the peer claims UP but never heard us), repeatedly."""
    peer = Peer()
    ep, sid = _session_in(DOWN, peer, 0.0)
    for i in range(5):
        out = deliver(ep, peer, peer.heartbeat(state=UP), 0.3 * (i + 1))
        # Periodic (slow-start) HEARTBEATs may go out too; every frame says DOWN.
        assert [f.type for f in out].count(FrameType.ACK) == 1
        assert all(f.state is DOWN for f in out)
    assert drain(ep) == []
    assert ep.snapshot(sid, 2.0).state is DOWN


def test_up_plus_down_reports_peer_down() -> None:
    """[HB-SM-4]: UP + DOWN -> DOWN, reported as the peer's verdict, not a local timeout."""
    peer = Peer()
    ep, sid = _session_in(UP, peer, 0.0)
    (ack,) = deliver(ep, peer, peer.heartbeat(state=DOWN), 0.05)
    assert ack.state is DOWN
    (down,) = drain(ep)
    assert isinstance(down, PeerDown)
    assert (down.session, down.reason, down.detected_by) == (
        sid,
        DownReason.PEER_REPORTED_DOWN,
        DetectedBy.REMOTE,
    )


@pytest.mark.parametrize("local", [DOWN, INIT, UP], ids=lambda s: s.name)
def test_any_plus_close_is_closed_by_peer(local: State) -> None:
    """[HB-CLOSE-3], [HB-CLOSE-4]: a CLOSE closes from any state, is reported with its raw
    code and text, and is not answered. An unknown code is reported as the number received."""
    peer = Peer()
    ep, sid = _session_in(local, peer, 0.0)
    drain(ep)
    out = deliver(ep, peer, peer.close(0x1234, "later"), 0.05)
    assert out == []
    assert drain(ep) == [SessionClosed(sid, 0x1234, "later", by_peer=True)]


@pytest.mark.parametrize("local", [DOWN, INIT, UP], ids=lambda s: s.name)
def test_local_close_row(local: State) -> None:
    """[HB-SM-1], [HB-CLOSE-1]: the application closes from DOWN, INIT or UP: CLOSED, and a
    CLOSE with the application's reason (Sta CLOSED, code in Timestamp) goes out."""
    peer = Peer()
    ep, sid = _session_in(local, peer, 0.0)
    if local is DOWN:
        # Let the DOWN session learn the peer's identifier (DOWN + UP stays DOWN), so that
        # a CLOSE can be addressed.
        (ack,) = deliver(ep, peer, peer.heartbeat(state=UP), 0.01)
        assert ack.state is DOWN
    drain(ep)
    ep.close(sid, 0.05, CloseCode.RESTART, "moving")
    (close,) = collect(ep, 0.05, peer)
    assert (close.type, close.state, close.close_code, close.close_text) == (
        FrameType.CLOSE,
        CLOSED,
        CloseCode.RESTART,
        "moving",
    )
    assert (close.my_id, close.your_id) == (sid, peer.my_id)
    assert drain(ep) == [SessionClosed(sid, CloseCode.RESTART, "moving", by_peer=False)]
    assert ep.snapshot(sid, 0.05).state is CLOSED
    _assert_silent(ep, peer, until=10.0)  # closed means closed: no HEARTBEAT follows


def test_detection_timeout_from_up() -> None:
    """[HB-SM-3], [HB-DET-2], [HB-DET-3]: UP + detection timer -> DOWN, reported as a local
    detection-timer verdict, announced with a triggered HEARTBEAT (Sta DOWN); the session
    keeps the peer's identifier."""
    peer = Peer()
    ep, sid = _session_in(UP, peer, 0.0)
    t = 0.0
    while True:
        at = ep.get_timer()
        assert at is not None
        t = at
        out = collect(ep, t, peer)
        events = drain(ep)
        if events:
            break
        assert all(f.state is UP for f in out)
    (down,) = events
    assert isinstance(down, PeerDown)
    assert (down.reason, down.detected_by) == (DownReason.DETECTION_TIMEOUT, DetectedBy.LOCAL)
    assert DT_UP <= t <= DT_UP + EXPECTED
    assert [(f.type, f.state, f.your_id) for f in out] == [(FrameType.HEARTBEAT, DOWN, peer.my_id)]
    assert ep.snapshot(sid, t).remote_id == peer.my_id


def _initiator_in_init(peer: Peer) -> tuple[Endpoint, int]:
    ep, sid = _session_in(DOWN, peer, 0.0)
    (ack,) = deliver(ep, peer, peer.heartbeat(state=DOWN), 0.0)
    assert ack.state is INIT
    return ep, sid


def test_detection_timeout_from_init() -> None:
    """[HB-SM-3], [HB-DET-1]: the detection timer also runs in INIT (with the slow-start
    floor): INIT + silence -> DOWN, with a triggered HEARTBEAT (Sta DOWN), no earlier than
    DetectionTime after the last valid frame; counted as handshake_timeout, and not reported
    as a peer that was up and went down."""
    peer = Peer()
    ep, sid = _initiator_in_init(peer)
    t = 0.0
    while True:
        at = ep.get_timer()
        assert at is not None
        t = at
        out = collect(ep, t, peer)
        if any(f.state is DOWN for f in out):
            break
        assert all(f.state is INIT for f in out)
        assert t < DT_SLOW
    assert DT_SLOW <= t <= DT_SLOW + 1.0
    assert [(f.type, f.state) for f in out] == [(FrameType.HEARTBEAT, DOWN)]
    assert ep.counters["handshake_timeout"] == 1
    assert not any(
        isinstance(e, PeerDown) and e.reason is DownReason.DETECTION_TIMEOUT for e in drain(ep)
    )
    assert ep.snapshot(sid, t).state is DOWN
    assert ep.snapshot(sid, t).remote_id == peer.my_id


def test_reordered_frame_does_not_drive_the_table() -> None:
    """[HB-SM-1], [HB-SM-9]: a valid frame that is not current (reordered inside the replay
    window) is proof of life and is answered, but does not change the state."""
    peer = Peer()
    ep, sid = _session_in(UP, peer, 0.0)
    newest = peer.seq + 5
    (ack,) = _acks(deliver(ep, peer, peer.heartbeat(state=UP, seq=newest), 0.06))
    assert ack.state is UP
    out = deliver(ep, peer, peer.heartbeat(state=DOWN, seq=newest - 2), 0.12)
    assert [f.state for f in out] == [UP] * len(out)  # answered, but still UP
    assert len(_acks(out)) == 1
    assert drain(ep) == []
    assert ep.counters["replay"] == 0
    info = ep.snapshot(sid, 0.12)
    assert (info.state, info.last_rx) == (UP, 0.12)  # proof of life all the same
    # The current frame with Sta DOWN does drive it.
    (ack,) = _acks(deliver(ep, peer, peer.heartbeat(state=DOWN, seq=newest + 1), 0.18))
    assert ack.state is DOWN


def test_older_ack_does_not_drive_the_table() -> None:
    """[HB-SM-1], [HB-SM-9]: an ACK for an older HEARTBEAT than the last applied ACK answered
    is valid (an RTT sample) but not current: its Sta DOWN changes nothing."""
    peer = Peer()
    ep, sid = _session_in(UP, peer, 0.0)
    t = 0.0
    while len(peer.heartbeats()) < 2:
        t, _ = _next_from_core(ep, peer, t, 1.0)
        deliver(ep, peer, peer.heartbeat(state=UP), t)  # keep the session alive
    first, second = peer.heartbeats()[:2]
    drain(ep)
    assert deliver(ep, peer, peer.ack(second, state=UP), t) == []
    assert deliver(ep, peer, peer.ack(first, state=DOWN), t) == []
    assert [type(e) for e in drain(ep)] == [RttSample, RttSample]
    assert ep.snapshot(sid, t).state is UP


@pytest.mark.parametrize("remote", list(State), ids=lambda s: s.name)
def test_state_module_refuses_closed_receive(remote: State) -> None:
    """[HB-SM-1]: a CLOSED session processes no frame (check V-14); the table module raises."""
    with pytest.raises(LocalProtocolError, match="V-14"):
        on_receive(CLOSED, remote)


@pytest.mark.parametrize(
    ("local", "event"),
    [(s, e) for s in State for e in LocalEvent if (s, e) not in SPEC_LOCAL],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_state_module_refuses_impossible_local_event(local: State, event: LocalEvent) -> None:
    """[HB-SM-1]: a local event the table does not list raises, naming event and state."""
    with pytest.raises(LocalProtocolError, match=local.name):
        on_local(local, event)


def test_state_module_rows() -> None:
    """[HB-SM-1]: on_receive and on_local return the table's entries."""
    for (local, remote), new in SPEC_RECEIVE.items():
        assert on_receive(local, remote) is new
    for (local, event), new in SPEC_LOCAL.items():
        assert on_local(local, event) is new
