"""Whole-protocol scenarios in simulated time (see tests/simnet.py).

Each test drives real :class:`~hbproto.Endpoint` / :class:`~hbproto.Connection` objects over a
simulated network and checks, from the event log and from the frames on the wire, what the
SPEC requires. Every test's docstring cites the requirement identifiers it checks. All runs
are deterministic: every random choice comes from the seed passed to :class:`Network`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pytest

from hbproto import (
    CloseCode,
    Config,
    ConnectionEnded,
    DetectedBy,
    DownReason,
    Event,
    Frame,
    FrameType,
    Limits,
    LivenessInactive,
    LocalStall,
    MessageReceived,
    Negotiated,
    ParametersChanged,
    PeerDown,
    PeerRestarted,
    PeerUp,
    RttSample,
    SessionClosed,
    State,
    Tlv,
    TlvType,
    decode,
    encode,
)
from hbproto.errors import FrameError

from .simnet import (
    Addr,
    EndpointHost,
    Link,
    Logged,
    Network,
    ScriptedHost,
    SimulationError,
    Wire,
)

A_ADDR: Addr = ("10.0.0.1", 7373)
B_ADDR: Addr = ("10.0.0.2", 7373)
EPS = 1e-9
US = 1_000_000

# The worked example of SPEC 9.1.
EXAMPLE_A = Config(interval=0.1, min_rx=0.05, multiplier=3)
EXAMPLE_B = Config(interval=None, min_rx=0.3, multiplier=5)
FAST = Config(interval=0.1, multiplier=3)


# --- Helpers ------------------------------------------------------------------------------------


def udp_pair(
    seed: int,
    a: Config = FAST,
    b: Config = FAST,
    *,
    delay: float = 0.005,
    **link: object,
) -> Network:
    """Initiator ``a`` and responder ``b`` over a symmetric link; nothing connected yet."""
    net = Network(seed)
    net.add_endpoint("a", A_ADDR, a)
    net.add_endpoint("b", B_ADDR, b, accept=True)
    net.set_link("a", "b", both=True, delay=delay, **link)
    return net


def up_pair(
    seed: int,
    a: Config = FAST,
    b: Config = FAST,
    *,
    delay: float = 0.005,
    settle: float = 2.0,
    **link: object,
) -> tuple[Network, int, int]:
    """A connected pair, run for ``settle`` seconds; returns the net and both session ids."""
    net = udp_pair(seed, a, b, delay=delay, **link)
    sid_a = net.connect("a", "b")
    net.run_until(settle)
    up_a = net.log.expect(PeerUp, "a")
    up_b = net.log.expect(PeerUp, "b")
    assert up_a.event.session == sid_a
    assert up_a.event.remote_id == up_b.event.session
    return net, sid_a, up_b.event.session


def heartbeats(
    net: Network,
    src: str,
    *,
    since: float | None = None,
    until: float | None = None,
    state: State | None = None,
) -> list[Wire]:
    return [
        w
        for w in net.frames(src, ftype=FrameType.HEARTBEAT, since=since, until=until)
        if state is None or w.frame.state is state
    ]


def gaps(records: list[Wire]) -> list[float]:
    return [b.time - a.time for a, b in itertools.pairwise(records)]


def downs(net: Network, host: str | None = None) -> list[Logged[PeerDown]]:
    return net.log.select(PeerDown, host)


def assert_negotiated(
    neg: Negotiated, tx: float | None, expected: float | None, detection: float | None
) -> None:
    assert neg.tx_interval == pytest.approx(tx), neg
    assert neg.expected_remote == pytest.approx(expected), neg
    assert neg.detection_time == pytest.approx(detection), neg


def assert_detected_in_window(
    net: Network, monitor: str, peer: str, down: Logged[PeerDown], neg: Negotiated
) -> float:
    """[HB-DET-2]/[HB-DET-3]: the down lies in [last + DT, last + DT + ExpectedRemote]."""
    last = net.last_arrival(peer, monitor, before=down.time)
    assert last is not None
    assert neg.detection_time is not None
    assert neg.expected_remote is not None
    assert down.time >= last + neg.detection_time - EPS, (down, last)
    assert down.time <= last + neg.detection_time + neg.expected_remote + EPS, (down, last)
    assert down.event.silent_for == pytest.approx(down.time - last, abs=1e-6)
    assert down.event.detection_time == pytest.approx(neg.detection_time)
    return last


class RawPeer:
    """A hand-driven peer at a scripted address: builds frames with :func:`hbproto.encode`.

    It learns the responder's identifier from the first frame it receives and, with
    ``auto_ack``, answers every HEARTBEAT with a correct ACK.
    """

    def __init__(
        self,
        net: Network,
        name: str,
        addr: Addr,
        target: Addr,
        *,
        my_id: int = 0x5EED0001,
        desired_tx: float | None = 0.05,
        required_rx: float | None = None,
        mult: int = 3,
        auto_ack: bool = False,
    ) -> None:
        self.net = net
        self.name = name
        self.target = target
        self.my_id = my_id
        self.remote_id = 0
        self.seq = 1000
        self.desired_tx = None if desired_tx is None else round(desired_tx * US)
        self.required_rx = None if required_rx is None else round(required_rx * US)
        self.mult = mult
        self.auto_ack = auto_ack
        self.received: list[Frame] = []
        self.host: ScriptedHost = net.add_scripted(name, addr, self._on_datagram)

    def _on_datagram(self, host: ScriptedHost, now: float, data: bytes, src: Addr) -> None:
        try:
            frame = decode(data)
        except FrameError:
            return
        self.received.append(frame)
        if not self.remote_id:
            self.remote_id = frame.my_id
        if self.auto_ack and frame.type is FrameType.HEARTBEAT:
            ack = Frame(
                FrameType.ACK,
                State.UP if self.remote_id else State.DOWN,
                self.my_id,
                frame.my_id,
                frame.seq,
                frame.timestamp,
                self.desired_tx,
                self.required_rx,
                self.mult,
                final=frame.poll,
            )
            self.net.send_raw(self.name, encode(ack), src)

    def send(self, frame: Frame) -> Wire:
        return self.net.send_raw(self.name, encode(frame), self.target)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def heartbeat(self, state: State = State.UP, *, mult: int | None = None) -> Wire:
        your = self.remote_id if state is not State.DOWN else 0
        return self.send(
            Frame(
                FrameType.HEARTBEAT,
                state,
                self.my_id,
                your,
                self._next_seq(),
                0x1000,
                self.desired_tx,
                self.required_rx,
                self.mult if mult is None else mult,
            )
        )

    def data(self, payload: bytes) -> Wire:
        return self.send(
            Frame(
                FrameType.DATA,
                State.UP,
                self.my_id,
                self.remote_id,
                self._next_seq(),
                0x2000,
                self.desired_tx,
                self.required_rx,
                self.mult,
                tlvs=(Tlv(TlvType.PAYLOAD, payload),),
            )
        )

    def handshake(self) -> None:
        """DOWN, learn the responder's id from its ACK, then UP: the responder comes up."""
        self.heartbeat(State.DOWN)
        self.net.run_for(0.05)
        assert self.remote_id, "the responder did not answer"
        self.heartbeat(State.UP)
        self.net.run_for(0.05)


# --- The harness itself -------------------------------------------------------------------------


def _scenario(seed: int) -> tuple[list[tuple[float, str | None, bytes]], list[str]]:
    net = up_pair(seed, loss=0.1, jitter=0.01, duplicate=0.05)[0]
    net.run_until(5.0)
    wire = [(w.time, w.src, w.data) for w in net.wire]
    return wire, [f"{r.time}:{r.host}:{r.event!r}" for r in net.log.records]


def test_simulation_is_deterministic() -> None:
    """Harness: same seed, same run, bit for bit; another seed, another run."""
    assert _scenario(7) == _scenario(7)
    assert _scenario(7)[0] != _scenario(8)[0]


def test_link_loss_duplication_and_partition_are_applied() -> None:
    """Harness: the link model does what it says, so the scenarios test the core, not luck."""
    net, _, _ = up_pair(3, loss=0.25, duplicate=0.2)
    net.run_until(60.0)
    sent = net.frames("a", "b")
    lost = sum(1 for w in sent if w.dropped == "loss")
    dups = sum(1 for w in sent if len(w.delivered) == 2)
    assert 0.2 < lost / len(sent) < 0.3
    assert 0.1 < dups / (len(sent) - lost) < 0.3
    # Every duplicate is caught by V-12 (HEARTBEAT, DATA) or V-13 (ACK), and nothing else is.
    counters = net.endpoint("b").counters
    assert counters["replay"] + counters["unsolicited_ack"] == dups
    net.partition("a", "b")
    mark = net.now
    net.run_for(1.0)
    assert all(w.dropped == "partition" for w in net.frames(since=mark + EPS))


def test_livelock_and_step_budget_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Harness: a timer that stays due, or a run that never ends, raises instead of hanging."""
    net, _, _ = up_pair(1)
    monkeypatch.setattr(net.endpoint("a"), "get_timer", lambda: 1.0)
    with pytest.raises(SimulationError, match="livelock"):
        net.run_until(3.0)
    net2 = Network(1, max_steps=50)
    net2.add_endpoint("a", A_ADDR, FAST)
    net2.add_endpoint("b", B_ADDR, FAST, accept=True)
    net2.connect("a", "b")
    with pytest.raises(SimulationError, match="steps"):
        net2.run_until(60.0)


def test_stopped_host_buffer_is_bounded() -> None:
    """Harness: a stopped host keeps at most its socket buffer; a kernel drops the rest."""
    net = Network(2)
    net.add_endpoint("a", A_ADDR, FAST)
    net.add_endpoint("b", B_ADDR, FAST, accept=True, socket_buffer=4)
    net.connect("a", "b")
    net.run_until(2.0)
    net.stop("b")
    net.run_until(4.0)
    to_b = net.frames("a", "b", since=2.0)
    assert sum(1 for w in to_b if w.dropped == "buffer_full") == len(to_b) - 4
    net.resume("b")
    assert sum(1 for w in to_b if w.delivered == [4.0]) == 4


# --- Handshake ----------------------------------------------------------------------------------


def test_udp_handshake_worked_example() -> None:
    """[HB-NEG-1], [HB-NEG-2], [HB-NEG-4], [HB-DET-8], [HB-SM-2], [HB-TX-5]: SPEC 9.1's example.

    Initiator D=100 ms R=50 ms M=3, responder D=no preference R=300 ms M=5: the initiator
    sends every 300 ms and declares the responder down after 5 x 50 ms; the responder sends
    every 50 ms and declares the initiator down after 3 x 300 ms.
    """
    net = udp_pair(1, EXAMPLE_A, EXAMPLE_B, delay=0.01)
    sid = net.connect("a", "b")
    net.run_until(1.0)
    up_a = net.log.expect(PeerUp, "a")
    up_b = net.log.expect(PeerUp, "b")
    # The initiator goes UP on the responder's INIT: its DetectionTime keeps the slow-start
    # floor (5 x 1 s) until the responder's Sta UP arrives [HB-DET-8], then drops to 0.25 s.
    assert_negotiated(up_a.event.negotiated, 0.3, 0.05, 5.0)
    changed = net.log.expect(ParametersChanged, "a")
    assert changed.time == pytest.approx(0.04)
    assert_negotiated(changed.event.negotiated, 0.3, 0.05, 0.25)
    assert_negotiated(up_b.event.negotiated, 0.05, 0.3, 0.9)
    assert net.log.count(ParametersChanged) == 1
    assert_negotiated(net.endpoint("a").snapshot(sid, net.now).negotiated, 0.3, 0.05, 0.25)
    assert_negotiated(
        net.endpoint("b").snapshot(up_b.event.session, net.now).negotiated, 0.05, 0.3, 0.9
    )
    assert (up_a.event.negotiated.local_mult, up_a.event.negotiated.remote_mult) == (3, 5)
    assert (up_b.event.negotiated.local_mult, up_b.event.negotiated.remote_mult) == (5, 3)
    assert not up_a.event.again
    assert not up_b.event.again
    assert up_a.event.replaces is None
    # The three-way handshake on the wire (SPEC section 3).
    first = [w.frame for w in net.wire[:4]]
    assert [(f.type, f.state) for f in first] == [
        (FrameType.HEARTBEAT, State.DOWN),
        (FrameType.ACK, State.INIT),
        (FrameType.HEARTBEAT, State.UP),
        (FrameType.ACK, State.UP),
    ]
    assert net.wire[0].time == 0.0  # [HB-TX-5]: the first HEARTBEAT goes out at once
    assert first[0].my_id == sid
    assert first[0].your_id == 0
    assert first[1].my_id == up_b.event.session
    assert first[1].your_id == sid
    assert first[0].desired_tx == 100_000
    assert first[0].required_rx == 50_000
    assert first[1].desired_tx is None
    assert first[1].required_rx == 300_000
    assert up_a.time == pytest.approx(0.02)
    assert up_b.time == pytest.approx(0.03)


def test_tcp_handshake_worked_example() -> None:
    """[HB-TCP-1], [HB-TCP-2], [HB-NEG-1], [HB-NEG-2], [HB-NEG-4], [HB-DET-8]: the worked
    example on a stream, both sides reporting the negotiated values of SPEC 9.1."""
    net = Network(1)
    net.add_stream_pair("a", "b", EXAMPLE_A, EXAMPLE_B)
    net.set_link("a", "b", both=True, delay=0.01)
    net.run_until(3.0)
    up_a = net.log.expect(PeerUp, "a")
    up_b = net.log.expect(PeerUp, "b")
    assert_negotiated(up_a.event.negotiated, 0.3, 0.05, 5.0)  # [HB-DET-8] floor, as on UDP
    assert_negotiated(net.log.expect(ParametersChanged, "a").event.negotiated, 0.3, 0.05, 0.25)
    assert_negotiated(up_b.event.negotiated, 0.05, 0.3, 0.9)
    assert_negotiated(net.connection("a").snapshot(net.now).negotiated, 0.3, 0.05, 0.25)
    assert_negotiated(net.connection("b").snapshot(net.now).negotiated, 0.05, 0.3, 0.9)
    assert up_a.event.remote_id == up_b.event.session
    assert up_b.event.remote_id == up_a.event.session
    assert net.frames("a")[0].frame.state is State.DOWN  # the connecting side speaks first
    assert not net.log.select(ConnectionEnded)
    assert not downs(net)


def test_handshake_first_heartbeat_lost() -> None:
    """[HB-TX-2], [HB-TX-1], [HB-SES-2]: the lost first HEARTBEAT is repeated at the
    slow-start pace (T = 1 s, so 0.75-1.0 s later), still DOWN with Your Identifier 0."""
    net = udp_pair(4, delay=0.01)
    net.link("a", "b").drop_next(1)
    net.connect("a", "b")
    net.run_until(3.0)
    hb = heartbeats(net, "a")
    assert hb[0].dropped == "index"
    assert hb[1].frame.state is State.DOWN
    assert hb[1].frame.your_id == 0
    assert 0.75 - EPS <= hb[1].time - hb[0].time <= 1.0 + EPS
    up_a = net.log.expect(PeerUp, "a")
    assert up_a.time == pytest.approx(hb[1].time + 0.02)
    net.log.expect(PeerUp, "b")
    assert net.endpoint("b").counters["unknown_session"] == 0


def test_handshake_completing_ack_lost() -> None:
    """[HB-TX-2], [HB-HB-2], [HB-HB-4]: the responder's INIT ACK is lost; nothing is resent
    before the slow-start interval (0.75-1.0 x 1 s), then the handshake completes. The
    responder's session, whose address is not verified yet, sends nothing but ACKs."""
    net = udp_pair(5, delay=0.01)
    net.link("b", "a").drop_next(1)
    net.connect("a", "b")
    net.run_until(3.0)
    assert net.frames("b", "a")[0].dropped == "index"
    retries = [w for w in net.wire if w.time > 0.02]
    first_retry = retries[0]
    assert 0.75 - EPS <= first_retry.time <= 1.0 + 0.01 + EPS
    up_a = net.log.expect(PeerUp, "a")
    up_b = net.log.expect(PeerUp, "b")
    assert up_a.time <= 1.0 + 0.03
    assert up_b.time <= 1.0 + 0.04
    assert all(w.type is FrameType.ACK for w in net.frames("b", "a", until=up_b.time))


def _unanswered(seed: int) -> Network:
    net = udp_pair(seed, delay=0.01)
    net.partition("b", "a", one_way=True)
    net.connect("a", "b")
    most = 0

    def watch() -> None:
        nonlocal most
        most = max(most, len(net.endpoint("b").sessions))

    net.every(0.1, watch, start=0.0, until=40.0)
    net.run_until(40.0)
    assert most == 1
    return net


def test_handshake_that_never_completes() -> None:
    """[HB-SES-4], [HB-TX-7], [HB-TX-2], [HB-HB-4]: every answer is lost. The responder
    deletes each half-open session within min(DetectionTime, HANDSHAKE_TIMEOUT) (3 x 1 s
    here) and never holds more than one; the initiator reports HANDSHAKE_TIMEOUT after 10 s
    (and after each further 10 s) and doubles its slow-start interval each time. (SPEC
    reading: the code doubles already at the first HANDSHAKE_TIMEOUT.)"""
    net = _unanswered(7)
    assert net.endpoint("b").counters["expired"] >= 5
    first = net.log.expect(PeerDown, "a")
    assert first.event.reason is DownReason.HANDSHAKE_TIMEOUT
    assert first.time == pytest.approx(10.0)
    # Reported once [HB-TX-7]; the retries keep backing off without further reports.
    assert [r.time for r in downs(net, "a")] == pytest.approx([10.0])
    hbs = heartbeats(net, "a")
    assert all(w.frame.state is State.DOWN and w.frame.your_id == 0 for w in hbs)
    for k in range(4):
        period = 2.0**k
        window = [w for w in hbs if 10.0 * k < w.time <= 10.0 * (k + 1)]
        assert len(window) >= 2
        for g in gaps(window)[1:] if k else gaps(window):
            assert 0.75 * period - EPS <= g <= period + EPS, (k, g)
    assert not net.log.select(PeerUp)


def test_slow_start_backoff_reschedules_the_pending_heartbeat() -> None:
    """[HB-TX-6], [HB-TX-7]: when the slow-start T doubles, the pending HEARTBEAT is
    rescheduled to last + J x new T: no gap shorter than 0.75 x the new T follows."""
    net = _unanswered(7)
    hbs = heartbeats(net, "a")
    for k in (1, 2, 3):
        before = [w for w in hbs if w.time <= 10.0 * k][-1]
        after = next(w for w in hbs if w.time > 10.0 * k)
        assert after.time - before.time >= 0.75 * 2.0**k - EPS


def test_handshake_third_frame_lost() -> None:
    """[HB-SM-2], [HB-TX-1]: the initiator's UP HEARTBEAT is lost; the responder stays INIT
    until the initiator's next periodic HEARTBEAT (UP), one TxInterval later, brings it up."""
    net = udp_pair(6, EXAMPLE_A, EXAMPLE_B, delay=0.01)
    net.link("a", "b").drop.add(1)  # keep the first HEARTBEAT, lose the second
    net.connect("a", "b")
    net.run_until(3.0)
    lost = net.frames("a", "b")[1]
    assert lost.dropped == "index"
    assert lost.frame.state is State.UP
    up_b = net.log.expect(PeerUp, "b")
    assert up_b.time <= lost.time + 0.3 + 0.01 + EPS
    assert not downs(net)


@pytest.mark.parametrize("delay", [0.005, 0.05])
def test_simultaneous_open_ends_with_one_session(delay: float) -> None:
    """[HB-SES-2], [HB-SES-5], [HB-SM-2]: two responders open sessions to each other at the
    same moment; each binds the other's first HEARTBEAT to its own unbound initiator
    session, so each side ends up with exactly one session, UP, naming the other's."""
    net = Network(8)
    net.add_endpoint("a", A_ADDR, FAST, accept=True)
    net.add_endpoint("b", B_ADDR, FAST, accept=True)
    net.set_link("a", "b", both=True, delay=delay)
    sid_a = net.connect("a", "b")
    sid_b = net.connect("b", "a")
    net.run_until(5.0)
    assert list(net.endpoint("a").sessions) == [sid_a]
    assert list(net.endpoint("b").sessions) == [sid_b]
    assert net.endpoint("a").snapshot(sid_a, net.now).remote_id == sid_b
    assert net.endpoint("b").snapshot(sid_b, net.now).remote_id == sid_a
    assert net.log.count(PeerUp) == 2
    assert not downs(net)


# --- Steady state -------------------------------------------------------------------------------


@pytest.mark.parametrize(("mult", "high"), [(3, 1.0), (1, 0.9)])
def test_heartbeat_gaps_are_jittered_within_bounds(mult: int, high: float) -> None:
    """[HB-TX-1], [HB-TX-4]: consecutive HEARTBEATs are J x TxInterval apart, J uniform in
    [0.75, 1.0] ([0.75, 0.9] when the sender's Mult is 1), and the jitter spans the range."""
    cfg = Config(interval=0.1, multiplier=mult)
    net, _, _ = up_pair(11, cfg, cfg)
    net.run_until(60.0)
    for host in ("a", "b"):
        hb = heartbeats(net, host, since=1.0, state=State.UP)
        g = gaps(hb)
        assert len(g) > 500
        assert min(g) >= 0.75 * 0.1 - EPS, host
        assert max(g) <= high * 0.1 + EPS, host
        assert min(g) < 0.76 * 0.1  # really jittered, not a fixed factor
        assert max(g) > (high - 0.01) * 0.1
    assert not downs(net)


def test_every_heartbeat_answered_by_one_echoing_ack() -> None:
    """[HB-HB-1], [HB-ACK-1], [HB-ACK-2], [HB-ACK-3], [HB-SEQ-1]: every HEARTBEAT gets
    exactly one ACK, sent at once, echoing Sequence Number and Timestamp, addressed to the
    sender's identifier, carrying the answerer's identifier, never larger."""
    net, sid_a, sid_b = up_pair(12, EXAMPLE_A, EXAMPLE_B)
    net.run_until(20.0)
    ids = {"a": sid_a, "b": sid_b}
    for src, dst in (("a", "b"), ("b", "a")):
        acks: dict[int, list[Wire]] = {}
        for w in net.frames(dst, src, ftype=FrameType.ACK):
            acks.setdefault(w.frame.seq, []).append(w)
        hbs = heartbeats(net, src, until=19.0)
        assert len(hbs) > 50
        seqs = [w.frame.seq for w in hbs]
        assert seqs == [(seqs[0] + i) & 0xFFFFFFFF for i in range(len(seqs))]
        for hb in hbs:
            answers = acks.get(hb.frame.seq, [])
            assert len(answers) == 1, hb
            ack = answers[0]
            assert ack.frame.timestamp == hb.frame.timestamp
            assert ack.frame.your_id == ids[src]
            assert ack.frame.my_id == ids[dst]
            assert ack.frame.final == hb.frame.poll
            assert len(ack.data) <= len(hb.data)
            assert ack.time == hb.arrived  # answered as soon as processed


def test_rtt_samples_equal_twice_the_delay() -> None:
    """[HB-RTT-1], [HB-RTT-2]: each valid ACK yields one RTT sample equal to the round trip
    (2 x the one-way delay here), and the smoothed values converge on it."""
    net, _, _ = up_pair(13, delay=0.0123)
    net.run_until(10.0)
    for host, peer in (("a", "b"), ("b", "a")):
        samples = net.log.select(RttSample, host)
        delivered_acks = [w for w in net.frames(peer, host, ftype=FrameType.ACK) if w.delivered]
        assert len(samples) == len(delivered_acks)
        for s in samples:
            assert s.event.rtt == pytest.approx(0.0246, abs=2e-6)
        assert samples[-1].event.srtt == pytest.approx(0.0246, abs=2e-6)
        assert samples[-1].event.rttvar < 1e-5


# --- Detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["partition", "one_way", "kill", "stop"])
def test_silent_peer_declared_down_within_the_window(failure: str) -> None:
    """[HB-DET-1], [HB-DET-2], [HB-DET-3], [HB-SM-3], [HB-SM-4], [HB-HB-2]: a peer that goes
    silent (partition, one-way partition, killed, stopped) is declared down no earlier than
    last valid frame + DetectionTime and no later than + DetectionTime + ExpectedRemote,
    measured from the arrival of the last frame on the wire. The detecting side reports
    DETECTION_TIMEOUT / LOCAL; a side that still hears it is told by its Sta DOWN and reports
    PEER_REPORTED_DOWN / REMOTE."""
    net, sid_a, sid_b = up_pair(21, delay=0.007)
    net.run_until(10.0)
    neg_a = net.endpoint("a").snapshot(sid_a, net.now).negotiated
    neg_b = net.endpoint("b").snapshot(sid_b, net.now).negotiated
    assert_negotiated(neg_a, 0.1, 0.1, 0.3)
    if failure == "partition":
        net.partition("a", "b")
    elif failure == "one_way":
        net.partition("b", "a", one_way=True)
    elif failure == "kill":
        net.kill("b")
    else:
        net.stop("b")
    net.run_until(15.0)
    down_a = net.log.expect(PeerDown, "a")
    assert (down_a.event.reason, down_a.event.detected_by) == (
        DownReason.DETECTION_TIMEOUT,
        DetectedBy.LOCAL,
    )
    assert down_a.event.session == sid_a
    assert_detected_in_window(net, "a", "b", down_a, neg_a)
    assert len(downs(net, "a")) == 1
    # The triggered HEARTBEAT with Sta DOWN goes out at the moment of detection [HB-HB-2].
    told = [w for w in heartbeats(net, "a", since=down_a.time) if w.frame.state is State.DOWN]
    assert told
    assert told[0].time == down_a.time
    b_downs = downs(net, "b")
    if failure == "partition":
        assert len(b_downs) == 1
        assert b_downs[0].event.reason is DownReason.DETECTION_TIMEOUT
        assert_detected_in_window(net, "b", "a", b_downs[0], neg_b)
    elif failure == "one_way":
        # B still hears A, so it learns from A's Sta DOWN, one delay later [HB-SM-4].
        assert len(b_downs) == 1
        assert (b_downs[0].event.reason, b_downs[0].event.detected_by) == (
            DownReason.PEER_REPORTED_DOWN,
            DetectedBy.REMOTE,
        )
        assert b_downs[0].time == pytest.approx(down_a.time + 0.007)
    else:
        assert not b_downs  # dead or frozen: it reports nothing
        assert not net.log.select(Event, "b", since=10.0)


# --- Loss ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "link",
    [
        {"loss": 0.2},
        {"loss": 0.2, "jitter": 0.03, "duplicate": 0.05},  # with reordering and duplicates
    ],
    ids=["loss", "loss+reorder+dup"],
)
def test_random_loss_below_the_multiplier_gives_no_false_down(link: dict[str, float]) -> None:
    """[HB-DET-2], [HB-DET-4], [HB-SEQ-3], [HB-ACK-5]: 20 % random loss each way with Mult 5
    over 3000 intervals: the peer is never declared down (5 consecutive intervals without a
    single frame are vanishingly rare), and no frame is misread on the way."""
    cfg = Config(interval=0.1, multiplier=5)
    net, _, _ = up_pair(22, cfg, cfg, settle=10.0, **link)
    net.run_until(300.0)
    assert net.log.count(PeerUp) == 2
    assert not downs(net)
    assert not net.log.select(PeerRestarted)
    assert not net.log.select(SessionClosed)
    lost = sum(1 for w in net.wire if w.dropped == "loss")
    assert 0.18 < lost / len(net.wire) < 0.22


def _reflect_trials(seed: int, dropped: int) -> Network:
    # Reflect mode ([HB-NEG-1]): b asks for no periodic HEARTBEATs, so b -> a carries only b's
    # periodic HEARTBEATs and "k consecutive datagrams" is exactly "k consecutive intervals".
    net, _, _ = up_pair(
        seed,
        Config(interval=0.1, multiplier=3),
        Config(interval=0.1, min_rx=0, multiplier=3),
        settle=5.0,
    )
    net.every(5.0, lambda: net.link("b", "a").drop_next(dropped), start=5.0, until=60.0)
    net.run_until(63.0)
    return net


@pytest.mark.parametrize("seed", [31, 32])
def test_mult_minus_one_consecutive_losses_never_bring_the_peer_down(seed: int) -> None:
    """[HB-DET-2], [HB-DET-4], [HB-TX-1]: losing Mult-1 = 2 consecutive HEARTBEATs (by index,
    12 times) leaves a gap of 3 jittered intervals, at most 3 x TxInterval = DetectionTime:
    never a PeerDown on either side."""
    net = _reflect_trials(seed, 2)
    assert sum(1 for w in net.frames("b", "a") if w.dropped == "index") == 24
    assert not downs(net)
    assert net.log.count(PeerUp) == 2


@pytest.mark.parametrize("seed", [33, 34])
def test_mult_consecutive_losses_bring_the_peer_down(seed: int) -> None:
    """[HB-DET-3], [HB-SM-3], [HB-SM-5]: losing Mult = 3 consecutive HEARTBEATs leaves a gap of
    4 intervals of at least 0.75 x T, so at least 3 x T = DetectionTime: the peer is declared
    down every time (12 trials), within the window, and comes back up again each time.
    (With Mult > 3, jitter can make Mult losses fit inside DetectionTime; Mult 3 is the
    largest for which Mult losses must be detected.)"""
    net = _reflect_trials(seed, 3)
    trials = sorted({w.time for w in net.frames("b", "a") if w.dropped == "index"})
    a_downs = downs(net, "a")
    assert len(a_downs) == 12, list(net.describe("a"))
    for down in a_downs:
        assert down.event.reason is DownReason.DETECTION_TIMEOUT
        # a sends nothing periodic; it expects b every 100 ms, 3 x 100 ms DetectionTime.
        assert_detected_in_window(net, "a", "b", down, Negotiated(None, 0.1, 0.3, 3, 3))
    ups = net.log.select(PeerUp, "a")
    assert len(ups) == 13
    assert all(u.event.again for u in ups[1:])
    assert len(trials) == 36


# --- Partition and heal -------------------------------------------------------------------------


def test_partition_healed_within_detection_time_comes_back_as_the_same_session() -> None:
    """[HB-SM-3], [HB-SM-5], [HB-SEQ-4], [HB-TX-2], [HB-SES-5]: both sides go DOWN, keep
    their identifiers and send DOWN at the slow-start pace; after the heal the handshake runs
    again on the same identifiers and both report "up again", not a restart."""
    net, sid_a, sid_b = up_pair(41)
    net.at(10.0, lambda: net.partition("a", "b"))
    net.at(11.0, lambda: net.heal("a", "b"))
    net.run_until(20.0)
    assert len(downs(net, "a")) == len(downs(net, "b")) == 1
    for host, sid in (("a", sid_a), ("b", sid_b)):
        ups = net.log.select(PeerUp, host)
        assert len(ups) == 2
        again = ups[1]
        assert again.event.again
        assert again.event.session == sid
        assert again.event.replaces is None
        assert 11.0 < again.time <= 11.0 + 1.0 + 0.02
    # Slow start while DOWN [HB-TX-2]: 0.75-1.0 s between DOWN HEARTBEATs.
    down_hbs = heartbeats(net, "a", since=10.0, until=11.0, state=State.DOWN)
    assert all(0.75 - EPS <= g <= 1.0 + EPS for g in gaps(down_hbs))
    assert not net.log.select(PeerRestarted)
    assert set(net.endpoint("a").sessions) == {sid_a}
    assert set(net.endpoint("b").sessions) == {sid_b}


def test_partition_healed_much_later_comes_back_as_a_replacement() -> None:
    """[HB-SM-8], [HB-SES-4], SPEC 8.4: after one slow-start DetectionTime DOWN, the initiator
    replaces its session (new identifier, Your Identifier 0) and the responder deletes its
    own; after the heal the new session comes up, replacing the old one, and since the remote
    identifier changed the initiator reports a restart (the SPEC notes that a long outage
    looks exactly like one)."""
    net, sid_a, sid_b = up_pair(42)
    net.at(10.0, lambda: net.partition("a", "b"))
    net.at(20.0, lambda: net.heal("a", "b"))
    net.run_until(25.0)
    down_a = net.log.expect(PeerDown, "a")
    # The replacement opens one slow-start DetectionTime (3 x 1 s) after going DOWN.
    fresh = [w for w in heartbeats(net, "a") if w.frame.my_id != sid_a]
    assert fresh
    assert fresh[0].time == pytest.approx(down_a.time + 3.0)
    assert fresh[0].frame.your_id == 0
    assert net.endpoint("b").counters["expired"] == 1
    up = net.log.select(PeerUp, "a")[-1]
    assert up.event.replaces == sid_a
    assert not up.event.again
    assert 20.0 < up.time <= 21.0 + 0.02
    restarted = net.log.expect(PeerRestarted, "a")
    assert restarted.event.old_session == sid_a
    assert restarted.event.old_remote_id == sid_b
    assert restarted.event.new_remote_id == up.event.remote_id != sid_b
    assert restarted.time == up.time
    b_up = net.log.select(PeerUp, "b")[-1]
    assert not b_up.event.again
    assert b_up.event.remote_id == up.event.session
    assert not net.log.select(PeerRestarted, "b")  # its old session had expired
    assert list(net.endpoint("a").sessions) == [up.event.session]
    assert list(net.endpoint("b").sessions) == [b_up.event.session]


# --- Restart ------------------------------------------------------------------------------------


def test_responder_restart_is_reported_by_the_initiator() -> None:
    """[HB-SM-8], [HB-ID-3], [HB-SES-1], SPEC 8.4: the responder is killed and a new process
    takes its address. The initiator's frames are discarded there (unknown identifier); it
    goes DOWN, replaces its session one slow-start DetectionTime later, and reports
    PeerRestarted with the new remote identifier when the new session comes up."""
    net, sid_a, sid_b = up_pair(51)
    net.at(10.0, lambda: net.kill("b"))
    net.at(10.5, lambda: net.restart("b"))
    net.run_until(20.0)
    down = net.log.expect(PeerDown, "a")
    assert down.event.reason is DownReason.DETECTION_TIMEOUT
    assert net.endpoint("b").counters["unknown_session"] >= 2
    restarted = net.log.expect(PeerRestarted, "a")
    new_b = net.log.expect(PeerUp, "b", since=10.5)
    assert new_b.generation == 1
    assert restarted.event.old_session == sid_a
    assert restarted.event.old_remote_id == sid_b
    assert restarted.event.new_remote_id == new_b.event.session != sid_b
    assert down.time + 3.0 <= restarted.time <= down.time + 3.0 + 0.05
    up = net.log.select(PeerUp, "a")[-1]
    assert up.event.replaces == sid_a
    assert up.event.session == restarted.event.session != sid_a


@pytest.mark.parametrize("outage", [0.2, 1.0])
def test_initiator_restart_is_reported_by_the_responder(outage: float) -> None:
    """[HB-SM-6], [HB-ID-3], SPEC 8.4: the initiator is killed and restarted at the same
    address; when its new session is up, the responder reports PeerRestarted for the old one
    (silent for more than its ExpectedRemote by then) and deletes it."""
    net, sid_a, sid_b = up_pair(52)
    net.at(10.0, lambda: net.kill("a"))

    def come_back() -> None:
        net.restart("a")
        net.connect("a", "b")

    net.at(10.0 + outage, come_back)
    net.run_until(15.0)
    new_up = net.log.expect(PeerUp, "b", since=10.0)
    restarted = net.log.expect(PeerRestarted, "b")
    assert restarted.time == new_up.time
    assert restarted.event.session == new_up.event.session
    assert restarted.event.old_session == sid_b
    assert restarted.event.old_remote_id == sid_a
    assert restarted.event.new_remote_id == new_up.event.remote_id != sid_a
    assert list(net.endpoint("b").sessions) == [new_up.event.session]
    # A short outage is not mistaken for a down: the old session goes straight to restart.
    assert len(downs(net, "b")) == (0 if outage < 0.3 else 1)


# --- NAT rebinding ------------------------------------------------------------------------------


NEW_A: Addr = ("192.0.2.7", 40001)


def _acks_go_back_to_their_heartbeat(net: Network, src: str, dst: str) -> int:
    """[HB-UDP-4]: every ACK from ``dst`` went to the source address of its HEARTBEAT."""
    sources: dict[int, list[Addr | None]] = {}
    for w in net.frames(src, dst, ftype=FrameType.HEARTBEAT, delivered=True):
        sources.setdefault(w.frame.seq, []).append(w.src_addr)
    checked = 0
    for ack in net.frames(dst, src, ftype=FrameType.ACK):
        assert ack.dst_addr in sources[ack.frame.seq], ack
        checked += 1
    return checked


def test_nat_rebinding_keeps_the_session() -> None:
    """[HB-UDP-3], [HB-UDP-4], [HB-UDP-5], [HB-UDP-8], [HB-SES-1]: the initiator's datagrams
    start coming from a new address (and the old mapping dies). The responder still finds the
    session by identifier, answers each HEARTBEAT where it came from, verifies the new address
    with one HEARTBEAT before moving its own traffic there, and nobody goes down."""
    net, _, sid_b = up_pair(61, delay=0.01)
    net.at(10.0, lambda: net.rebind("a", NEW_A))
    net.run_until(30.0)
    assert not downs(net)
    assert net.log.count(PeerUp) == 2
    info = net.endpoint("b").snapshot(sid_b, net.now)
    assert info.address == NEW_A
    first_new = min(w.arrived or 99.0 for w in net.frames("a", "b") if w.src_addr == NEW_A)
    # The probe: one HEARTBEAT to the new address as soon as a frame arrives from it.
    probes = [w for w in heartbeats(net, "b", since=first_new) if w.dst_addr == NEW_A]
    assert probes
    assert probes[0].time == first_new
    # Its ACK (from the new address) verifies the address; from then on everything goes there.
    verified_at = probes[0].time + 0.02
    late = net.frames("b", "a", since=verified_at + EPS)
    assert late
    assert all(w.dst_addr == NEW_A for w in late)
    assert _acks_go_back_to_their_heartbeat(net, "a", "b") > 100


def test_nat_rebinding_with_reordering_answers_each_frame_where_it_came_from() -> None:
    """[HB-UDP-4], [HB-UDP-5], [HB-SM-9]: with reordering across the rebinding (the old
    mapping still works for a while), every ACK goes to the source address of the HEARTBEAT
    it answers, even for a late frame from the old address, and the session survives."""
    net, _, sid_b = up_pair(62, delay=0.01, jitter=0.02)

    def rebind() -> None:
        net.rebind("a", NEW_A, keep_old=True)
        net.set_link("a", "b", delay=0.01)  # new-address frames overtake the slow old ones

    net.at(9.7, lambda: net.set_link("a", "b", delay=0.2))
    net.at(10.0, rebind)
    net.run_until(20.0)
    to_b = net.frames("a", "b", delivered=True)
    first_new = min(w.arrived or 99.0 for w in to_b if w.src_addr == NEW_A)
    late_old = [w for w in to_b if w.src_addr == A_ADDR and (w.arrived or 0.0) > first_new]
    # The scenario must reorder HEARTBEATs across the rebinding, or it checks nothing.
    assert any(w.type is FrameType.HEARTBEAT for w in late_old)
    assert _acks_go_back_to_their_heartbeat(net, "a", "b") > 50
    assert not downs(net)
    assert net.endpoint("b").snapshot(sid_b, net.now).address == NEW_A


def test_session_limits_follow_a_rebound_session() -> None:
    """[HB-SES-3], [HB-SEC-3]: the per-source limit counts the sessions a source holds. After a
    session's peer moved to another address and the session ended, its original source holds
    nothing, so a new peer there must be accepted."""
    net = Network(63)
    net.add_endpoint("a", A_ADDR, FAST)
    net.add_endpoint("b", B_ADDR, FAST, accept=True, limits=Limits(max_per_source=1))
    net.set_link("a", "b", both=True, delay=0.005)
    sid_a = net.connect("a", "b")
    net.run_until(2.0)
    net.rebind("a", NEW_A)
    net.run_until(4.0)
    net.endpoint("a").close(sid_a, net.now)
    net.run_until(6.0)
    assert not net.endpoint("b").sessions
    net.add_endpoint("c", ("10.0.0.1", 7374), FAST)  # the same host as a's original address
    net.set_link("c", "b", both=True, delay=0.005)
    net.connect("c", "b")
    net.run_until(8.0)
    assert net.endpoint("b").counters["refused"] == 0
    net.log.expect(PeerUp, "c")


# --- Close --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "text"),
    [(CloseCode.SHUTDOWN, "maintenance window"), (0x80000001, "private reason")],
    ids=["shutdown", "private-code"],
)
def test_close_with_reason_and_text_reaches_both_sides(code: int, text: str) -> None:
    """[HB-CLOSE-1], [HB-CLOSE-3], [HB-CLOSE-4], [HB-TLV-5], [HB-CONF-1]: the closing side
    reports SessionClosed at once and sends a CLOSE with the code in Timestamp and the text in
    CLOSE_TEXT; the other side reports the same code (raw, even a private one) and text, and
    answers nothing."""
    net, sid_a, sid_b = up_pair(71)
    net.at(5.0, lambda: net.endpoint("a").close(sid_a, net.now, code, text))
    net.run_until(8.0)
    mine = net.log.expect(SessionClosed, "a")
    theirs = net.log.expect(SessionClosed, "b")
    assert (mine.time, mine.event.session, mine.event.code, mine.event.text) == (
        5.0,
        sid_a,
        code,
        text,
    )
    assert not mine.event.by_peer
    assert (theirs.event.session, theirs.event.code, theirs.event.text) == (sid_b, code, text)
    assert theirs.event.by_peer
    assert theirs.time == pytest.approx(5.005)
    close, *lingering = net.frames("a", "b", since=5.0)
    assert close.type is FrameType.CLOSE
    assert close.time == 5.0
    assert close.frame.close_code == code
    assert close.frame.close_text == text
    assert not net.frames("b", "a", since=theirs.time)  # nothing answers a CLOSE
    # The closer sends nothing more but lingering CLOSEs for frames already in flight.
    in_flight = {w.arrived for w in net.frames("b", "a", delivered=True)}
    for w in lingering:
        assert w.type is FrameType.CLOSE
        assert w.frame.close_code == code
        assert w.time in in_flight
    assert not downs(net)


def test_lost_close_is_answered_by_the_lingering_session() -> None:
    """[HB-CLOSE-2], [HB-CLOSE-3], [HB-UDP-4], [HB-UDP-6]: the CLOSE is lost; the closed side
    lingers and answers the peer's next HEARTBEAT with one CLOSE carrying the original code,
    no larger than that HEARTBEAT. The peer then reports the close."""
    net, sid_a, _ = up_pair(72)

    def close() -> None:
        net.link("a", "b").drop_next(1)
        net.endpoint("a").close(sid_a, net.now, CloseCode.SHUTDOWN, "bye")

    net.at(5.0, close)
    net.run_until(8.0)
    closes = net.frames("a", "b", ftype=FrameType.CLOSE)
    assert [w.dropped for w in closes] == ["index", None]
    answered = [w for w in net.frames("b", "a", delivered=True) if w.arrived == closes[1].time]
    assert len(answered) == 1
    assert answered[0].type is FrameType.HEARTBEAT
    assert len(closes[1].data) <= len(answered[0].data)
    assert closes[1].frame.close_code == CloseCode.SHUTDOWN
    assert closes[1].time <= 5.0 + 0.1 + 0.005 + EPS  # the peer's next HEARTBEAT
    theirs = net.log.expect(SessionClosed, "b")
    assert theirs.event.code == CloseCode.SHUTDOWN
    assert theirs.event.by_peer
    assert net.endpoint("a").counters["closed_session"] >= 1
    assert not downs(net)
    # Once the peer has the CLOSE it falls silent, and the linger ends by itself.
    assert not net.frames("b", "a", since=theirs.time)
    assert not net.endpoint("a").sessions


# --- Parameter changes (Poll / Final) -----------------------------------------------------------


def test_poll_sets_p_until_the_final_ack() -> None:
    """[HB-POLL-1], [HB-POLL-3], [HB-POLL-4], [HB-ACK-1], [HB-NEG-4], [HB-DET-5]: slowing down
    from 100 ms to 200 ms while the first answers are lost: every HEARTBEAT carries P (and the
    new D) until an ACK with F for one of them arrives; the peer applies the new D at once
    (ParametersChanged, longer DetectionTime); the poller keeps its old pace until the Final,
    then slows down. (The peer does not enforce its R here: see
    test_slowing_down_is_not_punished_as_too_frequent.)"""
    lenient = Config(interval=0.1, multiplier=3, max_strikes=None)
    net, sid_a, _ = up_pair(81, FAST, lenient)

    def poll() -> None:
        net.link("b", "a").drop_next(6)
        net.endpoint("a").set_parameters(sid_a, net.now, interval=0.2)

    net.at(5.0, poll)
    net.run_until(15.0)
    hbs = heartbeats(net, "a", since=5.0)
    assert hbs[0].time == 5.0  # a triggered HEARTBEAT starts the poll
    first_p = hbs[0].frame.seq
    finals = [
        w
        for w in net.frames("b", "a", ftype=FrameType.ACK, delivered=True)
        if w.frame.final and (w.frame.seq - first_p) & 0xFFFFFFFF < 1 << 31
    ]
    end = min(w.arrived or 99.0 for w in finals)
    polled = [w for w in hbs if w.time <= end]
    after = [w for w in hbs if w.time > end]
    assert len(polled) >= 3  # the loss made the poll last several HEARTBEATs
    assert all(w.frame.poll and w.frame.desired_tx == 200_000 for w in polled)
    assert after
    assert not any(w.frame.poll for w in after)
    # Every P got an F, and nothing else did [HB-ACK-1].
    for ack in net.frames("b", "a", ftype=FrameType.ACK, since=5.0):
        hb = next(w for w in hbs if w.frame.seq == ack.frame.seq)
        assert ack.frame.final == hb.frame.poll
    # [HB-POLL-4]: the larger D applies to the poller's own sending only after the Final.
    assert max(gaps(polled)) <= 0.1 + EPS
    assert min(gaps(after[1:])) >= 0.75 * 0.2 - EPS
    b_change = net.log.expect(ParametersChanged, "b", since=5.0)
    assert b_change.time == pytest.approx(5.005)
    assert_negotiated(b_change.event.negotiated, 0.1, 0.2, 0.6)
    a_change = net.log.expect(ParametersChanged, "a", since=5.0)
    assert a_change.time == pytest.approx(end)
    assert_negotiated(a_change.event.negotiated, 0.2, 0.1, 0.3)
    assert not downs(net)


def test_speeding_up_applies_at_once() -> None:
    """[HB-POLL-4], [HB-TX-6]: a smaller local D takes effect at once: the next HEARTBEAT
    follows the new, shorter interval even before the Final."""
    net, sid_a, _ = up_pair(82, Config(interval=0.5), Config(interval=0.5), delay=0.05)
    net.at(5.0, lambda: net.endpoint("a").set_parameters(sid_a, net.now, interval=0.05))
    net.run_until(6.0)
    hbs = heartbeats(net, "a", since=5.0)
    assert hbs[0].time == 5.0
    assert hbs[0].frame.poll
    assert 0.75 * 0.05 - EPS <= hbs[1].time - 5.0 <= 0.05 + EPS
    assert hbs[1].frame.poll  # the Final cannot be back yet (RTT 100 ms)
    assert not downs(net)


def test_mult_change_needs_no_poll() -> None:
    """[HB-POLL-5], [HB-DET-5], [HB-NEG-4]: a new Mult goes out at once without P; the peer
    applies it to its DetectionTime on receipt."""
    net, sid_a, _ = up_pair(86)
    net.at(5.0, lambda: net.endpoint("a").set_parameters(sid_a, net.now, multiplier=5))
    net.run_until(7.0)
    hbs = heartbeats(net, "a", since=5.0)
    assert hbs[0].time == 5.0
    assert all(w.frame.mult == 5 and not w.frame.poll for w in hbs)
    changed = net.log.expect(ParametersChanged, "b", since=5.0)
    assert changed.time == pytest.approx(5.005)
    assert_negotiated(changed.event.negotiated, 0.1, 0.1, 0.5)
    assert changed.event.negotiated.remote_mult == 5


def test_poll_is_repeated_even_when_the_peer_wants_no_heartbeats() -> None:
    """[HB-POLL-7], [HB-NEG-1]: b asked for no periodic HEARTBEATs (R = 0), and a's first
    poll HEARTBEAT is lost: a still repeats it within max(TxInterval, 1 s), and the poll
    ends with the Final; then a falls silent again."""
    net, sid_a, _ = up_pair(85, FAST, Config(interval=0.1, min_rx=0), settle=3.0)
    assert not heartbeats(net, "a", since=1.0)

    def poll() -> None:
        net.link("a", "b").drop_next(1)
        net.endpoint("a").set_parameters(sid_a, net.now, interval=0.2)

    net.at(5.0, poll)
    net.run_until(10.0)
    first, again, *rest = heartbeats(net, "a", since=5.0)
    assert (first.time, first.dropped, first.frame.poll) == (5.0, "index", True)
    assert again.frame.poll
    assert 0.75 - EPS <= again.time - first.time <= 1.0 + EPS
    final = net.frames("b", "a", ftype=FrameType.ACK, since=again.time, delivered=True)[0]
    assert final.frame.final
    assert final.frame.seq == again.frame.seq
    assert not rest
    assert not downs(net)


def test_a_receiver_with_r_zero_never_strikes_a_repeated_poll() -> None:
    """[HB-FREQ-6], [HB-FREQ-8], [HB-POLL-7]: b asks for no periodic HEARTBEATs (R = 0) and
    enforces its rate with 2 strikes; a polls and b's first three Finals are lost, so a repeats
    its poll at the slow-start pace. b judges those against max(a's D, 1 s): none is premature,
    the fourth Final ends the poll, and nobody is closed."""
    net, sid_a, _ = up_pair(87, FAST, Config(interval=30.0, min_rx=0, max_strikes=2), settle=3.0)

    def poll() -> None:
        net.link("b", "a").drop_next(3)
        net.endpoint("a").set_parameters(sid_a, net.now, interval=0.2)

    net.at(5.0, poll)
    net.run_until(12.0)
    polls = heartbeats(net, "a", since=5.0)
    assert len(polls) == 4
    assert all(w.frame.poll for w in polls)
    finals = net.frames("b", "a", ftype=FrameType.ACK, since=5.0)
    assert [w.dropped for w in finals] == ["index", "index", "index", None]
    assert finals[-1].frame.final
    assert net.endpoint("b").counters["strikes"] == 0
    assert not net.log.select(SessionClosed)
    assert not downs(net)


def test_a_receiver_with_r_zero_never_strikes_a_repeated_up() -> None:
    """[HB-NEG-1], [HB-FREQ-6], [HB-FREQ-8]: b asks for no periodic HEARTBEATs (R = 0); the
    ACKs that carry b's UP to a are lost three times, so a repeats its UP at the slow-start
    pace until one arrives. b answers each, strikes none, and then a falls silent."""
    net = udp_pair(88, FAST, Config(interval=30.0, min_rx=0, max_strikes=2))
    net.link("b", "a").drop.update({1, 2, 3})  # b's ACK(INIT) passes; its ACK(UP)s do not
    net.connect("a", "b")
    net.run_until(10.0)
    ups = heartbeats(net, "a", state=State.UP)
    assert len(ups) == 4
    assert all(0.75 - EPS <= g <= 1.0 + EPS for g in gaps(ups[1:]))
    acks = net.frames("b", "a", ftype=FrameType.ACK, since=ups[0].time)
    assert [w.dropped for w in acks] == ["index", "index", "index", None]
    assert net.endpoint("b").counters["strikes"] == 0
    assert net.log.count(PeerUp) == 2
    assert not net.log.select(SessionClosed)
    assert not downs(net)


@pytest.mark.parametrize("link", [{"loss": 0.1}, {"loss": 0.1, "jitter": 0.02}])
def test_repeated_speed_changes_never_cause_a_false_down(link: dict[str, float]) -> None:
    """[HB-POLL-1], [HB-POLL-2], [HB-POLL-4], [HB-SM-9], [HB-FREQ-1], [HB-DET-5]: both sides
    switch D and R between 20 ms and 200 ms, out of step, 120 times in a minute, with loss (and
    reordering): the asymmetry of [HB-POLL-4] keeps every detection time long enough, so
    nobody is declared down."""
    # Rate enforcement off: see test_slowing_down_is_not_punished_as_too_frequent.
    fast = Config(interval=0.02, min_rx=0.02, multiplier=3, max_strikes=None)
    net, sid_a, sid_b = up_pair(83, fast, fast, delay=0.005, **link)
    state = {"a": False, "b": False}

    def toggle(host: str, sid: int) -> Callable[[], None]:
        def flip() -> None:
            state[host] = not state[host]
            value = 0.2 if state[host] else 0.02
            net.endpoint(host).set_parameters(sid, net.now, interval=value, min_rx=value)

        return flip

    net.every(0.5, toggle("a", sid_a), start=2.0, until=62.0)
    net.every(0.5, toggle("b", sid_b), start=2.23, until=62.0)
    net.run_until(65.0)
    assert not downs(net), list(net.describe())[:40]
    assert not net.log.select(SessionClosed)
    assert net.log.count(ParametersChanged, "a") > 60
    assert net.log.count(ParametersChanged, "b") > 60
    assert sum(1 for w in heartbeats(net, "a") if w.frame.poll) > 120


def test_slowing_down_is_not_punished_as_too_frequent() -> None:
    """[HB-POLL-4], [HB-FREQ-1], [HB-FREQ-6], Appendix B ("a conforming sender never breaks
    it"): a conforming endpoint that slows from 100 ms to 200 ms over a 300 ms RTT path,
    without any loss, must not be closed for sending too often."""
    net, sid_a, _ = up_pair(84, delay=0.15, settle=3.0)
    net.at(5.0, lambda: net.endpoint("a").set_parameters(sid_a, net.now, interval=0.2))
    net.run_until(10.0)
    assert not net.log.select(SessionClosed)
    assert not downs(net)


# --- Too-frequent protection --------------------------------------------------------------------

RAW_ADDR: Addr = ("10.0.0.9", 5000)
STRICT = Config(interval=1.0, min_rx=0.5, multiplier=3, max_strikes=3)


def _raw_peer(seed: int, b: Config = STRICT, *, auto_ack: bool = False) -> tuple[Network, RawPeer]:
    net = Network(seed)
    net.add_endpoint("b", B_ADDR, b, accept=True)
    raw = RawPeer(net, "x", RAW_ADDR, B_ADDR, auto_ack=auto_ack)
    net.set_link("x", "b", both=True, delay=0.001)
    raw.handshake()
    net.log.expect(PeerUp, "b")
    return net, raw


def raw_last_heartbeat_before(net: Network, t: float) -> float:
    """When the raw peer's last HEARTBEAT before ``t`` reached the receiver."""
    return max(
        w.arrived
        for w in net.frames("x", "b", ftype=FrameType.HEARTBEAT)
        if w.arrived is not None and w.arrived < t
    )


def test_too_frequent_heartbeats_are_closed_after_max_strikes() -> None:
    """[HB-FREQ-1], [HB-FREQ-3], [HB-FREQ-6], [HB-FREQ-7], [HB-CLOSE-1]: a peer (hand-built
    frames) that sends identical HEARTBEATs every 60 ms to a receiver whose R is 500 ms
    (premature below 250 ms) earns at most one strike per 250 ms; at the third strike it gets a
    CLOSE with reason too_frequent carrying the receiver's R."""
    net, raw = _raw_peer(91)
    sent = []
    for _ in range(16):
        sent.append(raw.heartbeat())
        net.run_for(0.06)  # not a divisor of 250 ms: no arrival sits exactly on a boundary
    closed = net.log.expect(SessionClosed, "b")
    assert closed.event.code == CloseCode.TOO_FREQUENT
    assert not closed.event.by_peer
    arrivals = [t for t in (w.arrived for w in sent) if t is not None]
    # The rule, restated: premature below half of 500 ms, one strike per 250 ms at most.
    strikes: list[float] = []
    previous = raw_last_heartbeat_before(net, arrivals[0])
    for t in arrivals:
        if t - previous < 0.25 - EPS and (not strikes or t - strikes[-1] >= 0.25 - EPS):
            strikes.append(t)
        previous = t
    assert closed.time == strikes[2]
    assert net.endpoint("b").counters["strikes"] == 3
    previous_arrivals = [raw_last_heartbeat_before(net, arrivals[0]), *arrivals[:-1]]
    premature_before_close = sum(
        1
        for prev, t in zip(previous_arrivals, arrivals, strict=True)
        if t <= closed.time and t - prev < 0.25 - EPS
    )
    assert net.endpoint("b").counters["premature"] == premature_before_close
    close = net.frames("b", "x", ftype=FrameType.CLOSE)
    assert close[0].time == closed.time
    assert close[0].frame.close_code == CloseCode.TOO_FREQUENT
    assert close[0].frame.required_rx == 500_000
    assert close[0].dst_addr == RAW_ADDR
    # The later ones meet a closed, lingering session: one CLOSE each [HB-CLOSE-2].
    later = [t for t in arrivals if t > closed.time]
    assert net.endpoint("b").counters["closed_session"] == len(later)
    assert [w.time for w in close[1:]] == later
    assert all(w.frame.close_code == CloseCode.TOO_FREQUENT for w in close)


def test_acks_data_and_exempt_heartbeats_never_count_as_strikes() -> None:
    """[HB-FREQ-2], [HB-FREQ-6], [HB-DET-1]: DATA every 20 ms and an ACK for each of the
    receiver's HEARTBEATs (every ~45 ms), with HEARTBEATs only every 300 ms: no strike, no
    close, every message delivered. Then two prematures and an exempt HEARTBEAT (Mult changed):
    the exempt one is no third strike."""
    b = Config(interval=0.05, min_rx=0.5, multiplier=3, max_strikes=3)
    net, raw = _raw_peer(92, b, auto_ack=True)
    net.run_for(0.3)
    start = net.now
    for i in range(500):
        if i % 15 == 0:
            raw.heartbeat()
        raw.data(b"m%d" % i)
        net.run_for(0.02)
    assert not net.log.select(SessionClosed)
    assert net.endpoint("b").counters["premature"] == 0
    assert net.log.count(MessageReceived, "b") == 500
    acks = net.frames("x", "b", ftype=FrameType.ACK, since=start)
    assert len(acks) > 150
    assert net.endpoint("b").counters["unsolicited_ack"] == 0
    raw.heartbeat()
    net.run_for(0.05)
    raw.heartbeat()
    net.run_for(0.05)
    assert net.endpoint("b").counters["premature"] == 2
    raw.heartbeat(mult=4)  # exempt: its Mult differs from the previous HEARTBEAT's
    net.run_for(0.05)
    assert net.endpoint("b").counters["premature"] == 2
    assert not net.log.select(SessionClosed)


def test_an_exempt_heartbeat_resets_the_strikes() -> None:
    """[HB-FREQ-1], [HB-FREQ-6]: "MUST reset the count to 0 on each HEARTBEAT that is not
    premature", and an exempt HEARTBEAT is never premature. Premature, premature, exempt,
    premature is therefore one strike at the end, not three: no close."""
    net, raw = _raw_peer(93)
    for _ in range(4):  # settle the exempt window with well-spaced HEARTBEATs
        net.run_for(0.3)
        raw.heartbeat()
    net.run_for(0.05)
    raw.heartbeat()  # strike 1
    net.run_for(0.05)
    raw.heartbeat()  # strike 2
    net.run_for(0.05)
    raw.heartbeat(mult=4)  # exempt: resets the count
    net.run_for(0.05)
    raw.heartbeat(mult=4)  # strike 1 again
    net.run_for(0.05)
    assert not net.log.select(SessionClosed)


@pytest.mark.parametrize(("close_r", "floor"), [(0.3, 0.3), (0.05, 0.2)])
def test_closed_for_too_frequent_reconnects_slower(close_r: float, floor: float) -> None:
    """[HB-FREQ-4], [HB-CLOSE-3]: a conforming endpoint closed with too_frequent reports it,
    and when the application connects again the new session's D is at least the larger of
    twice the TxInterval it used (2 x 100 ms) and the R carried by the CLOSE."""
    net, sid_a, sid_b = up_pair(94)
    b_seq = max(w.frame.seq for w in net.frames("b", "a") if w.type is FrameType.HEARTBEAT)
    forged = Frame(
        FrameType.CLOSE,
        State.CLOSED,
        sid_b,
        sid_a,
        (b_seq + 5) & 0xFFFFFFFF,
        CloseCode.TOO_FREQUENT,
        100_000,
        round(close_r * US),
        3,
    )
    net.send_raw("b", encode(forged), A_ADDR)
    net.run_for(0.5)
    closed = net.log.expect(SessionClosed, "a")
    assert (closed.event.code, closed.event.by_peer) == (CloseCode.TOO_FREQUENT, True)
    mark = net.now
    sid2 = net.connect("a", "b")  # the application asks for 100 ms again
    net.run_until(mark + 10.0)
    up = net.log.expect(PeerUp, "a", since=mark)
    assert up.event.session == sid2
    assert up.event.negotiated.tx_interval is not None
    assert up.event.negotiated.tx_interval >= floor - EPS
    new_hbs = [w for w in heartbeats(net, "a", since=mark) if w.frame.my_id == sid2]
    assert new_hbs
    for w in new_hbs:
        assert w.frame.desired_tx is not None
        assert w.frame.desired_tx >= round(floor * US)
    steady = [w for w in new_hbs if w.time > up.time + 0.5]
    assert min(gaps(steady)) >= 0.75 * floor - EPS


# --- Reflect mode -------------------------------------------------------------------------------


@pytest.mark.parametrize("dies", ["a", "b"])
def test_reflect_mode_sends_no_periodic_heartbeats_and_still_detects(dies: str) -> None:
    """[HB-NEG-1], [HB-NEG-2], [HB-DET-3], [HB-ACK-1]: a asks for no periodic HEARTBEATs
    (R = 0). b then sends only ACKs once UP; a detects b through those ACKs (ExpectedRemote =
    1.25 x a's TxInterval), b detects a through a's HEARTBEATs. Whichever dies, the other
    declares it down within the window."""
    net, sid_a, sid_b = up_pair(101, Config(interval=0.1, min_rx=0), FAST, settle=3.0)
    up_b = net.log.expect(PeerUp, "b")
    assert up_b.event.negotiated.tx_interval is None
    neg_a = net.endpoint("a").snapshot(sid_a, net.now).negotiated
    neg_b = net.endpoint("b").snapshot(sid_b, net.now).negotiated
    assert_negotiated(neg_a, 0.1, 0.125, 0.375)
    assert_negotiated(neg_b, None, 0.1, 0.3)
    net.run_until(10.0)
    assert not heartbeats(net, "b", since=up_b.time + EPS)
    assert len(net.frames("b", "a", ftype=FrameType.ACK)) > 80
    net.kill(dies)
    net.run_until(15.0)
    alive = "b" if dies == "a" else "a"
    down = net.log.expect(PeerDown, alive)
    assert down.event.reason is DownReason.DETECTION_TIMEOUT
    assert_detected_in_window(net, alive, dies, down, neg_a if alive == "a" else neg_b)


def test_reflect_on_both_sides_reports_liveness_inactive() -> None:
    """[HB-NEG-3]: both ask for R = 0: LivenessInactive on both sides at UP, no periodic
    HEARTBEATs afterwards, no detection timer: a dead peer is never declared down."""
    quiet = Config(interval=0.1, min_rx=0)
    net, sid_a, sid_b = up_pair(102, quiet, quiet, settle=3.0)
    for host, sid in (("a", sid_a), ("b", sid_b)):
        inactive = net.log.expect(LivenessInactive, host)
        assert inactive.event.session == sid
        assert inactive.time == net.log.expect(PeerUp, host).time
        assert_negotiated(net.log.expect(PeerUp, host).event.negotiated, None, None, None)
    up_time = max(r.time for r in net.log.select(PeerUp))
    net.run_until(10.0)
    assert not net.frames(since=up_time + EPS)
    net.kill("b")
    net.run_until(40.0)
    assert not downs(net)


# --- Idle-only mode -----------------------------------------------------------------------------


def test_idle_only_sends_no_heartbeats_while_data_flows() -> None:
    """[HB-TX-3], [HB-DET-1], [HB-CONF-2]: in idle-only mode every frame restarts the
    interval, so DATA every 50 ms (with T = 100 ms) suppresses all HEARTBEATs; the DATA is
    proof of life, so the peer never times the sender out; HEARTBEATs resume when DATA
    stops."""
    idle = Config(interval=0.1, multiplier=3, idle_only=True)
    net, sid_a, _ = up_pair(111, idle, FAST)
    net.every(0.05, lambda: net.endpoint("a").send(sid_a, b"tick", net.now), start=5.0, until=15.0)
    net.run_until(25.0)
    assert not heartbeats(net, "a", since=5.0 + EPS, until=15.0)
    assert len(heartbeats(net, "a", since=15.0)) > 50
    assert net.log.count(MessageReceived, "b") == len(net.frames("a", "b", ftype=FrameType.DATA))
    assert net.log.count(MessageReceived, "b") == 201
    assert not downs(net)
    # Still periodic mode on the other side: its HEARTBEATs keep their schedule.
    assert len(heartbeats(net, "b", since=5.0, until=15.0)) > 100


def test_data_is_delivered_at_most_once_over_a_duplicating_path() -> None:
    """[HB-DATA-3], [HB-SEQ-3], [HB-CONF-2]: with 30 % duplication and reordering on the
    path, each DATA message is delivered once, on the right session, and duplicates are
    counted as replays."""
    net, sid_a, sid_b = up_pair(112, duplicate=0.3, jitter=0.02)

    def sender(i: int) -> Callable[[], None]:
        return lambda: net.endpoint("a").send(sid_a, b"%d" % i, net.now)

    for i in range(200):
        net.at(3.0 + i * 0.01, sender(i))
    net.run_until(8.0)
    got = net.log.select(MessageReceived, "b")
    assert sorted(int(r.event.data) for r in got) == list(range(200))
    assert {r.event.session for r in got} == {sid_b}
    dup_data = sum(1 for w in net.frames("a", "b", ftype=FrameType.DATA) if len(w.delivered) == 2)
    assert dup_data > 30
    assert net.endpoint("b").counters["replay"] >= dup_data


# --- Local stall --------------------------------------------------------------------------------

P1_ADDR: Addr = ("10.0.1.1", 7373)
P2_ADDR: Addr = ("10.0.1.2", 7373)
M_ADDR: Addr = ("10.0.1.100", 7373)


def _stalled_monitor(timers_first: bool, *, enforce: bool) -> tuple[Network, int, int]:
    """m (DetectionTime 0.3 s for its peers) is frozen from 10 s to 13 s, ten DetectionTimes,
    while p1 keeps sending (m's socket buffers it) and p2 dies as the freeze starts. The peers
    expect m only every 15 s, so they never notice the freeze themselves."""
    net = Network(121)
    monitor = Config(interval=5.0, multiplier=3, max_strikes=3 if enforce else None)
    net.add_endpoint("m", M_ADDR, monitor, accept=True)
    peer_cfg = Config(interval=0.1, multiplier=3)
    for name, addr in (("p1", P1_ADDR), ("p2", P2_ADDR)):
        net.add_endpoint(name, addr, peer_cfg)
        net.set_link(name, "m", both=True, delay=0.002)
        net.connect(name, "m")
    net.run_until(10.0)
    sessions = {r.event.remote_id: r.event.session for r in net.log.select(PeerUp, "m")}
    m_p1 = sessions[net.log.expect(PeerUp, "p1").event.session]
    m_p2 = sessions[net.log.expect(PeerUp, "p2").event.session]
    neg = net.endpoint("m").snapshot(m_p1, net.now).negotiated
    assert_negotiated(neg, 5.0, 0.1, 0.3)
    net.stop("m")
    net.kill("p2")
    net.run_until(13.0)
    frozen = net.hosts["m"]
    assert isinstance(frozen, EndpointHost)
    assert len(frozen.buffered) > 25
    net.resume("m", timers_first=timers_first)
    net.run_until(20.0)
    return net, m_p1, m_p2


@pytest.mark.parametrize("timers_first", [True, False], ids=["timers-first", "reads-first"])
def test_stalled_monitor_spares_live_peers_and_still_catches_dead_ones(timers_first: bool) -> None:
    """[HB-STALL-1], [HB-STALL-2], [HB-DET-3]: after a freeze of ten DetectionTimes, whichever
    the event loop gets to first (late timers or buffered reads): no PeerDown for the live
    peer, a LocalStall report, and the dead peer declared down within one extra
    ExpectedRemote of the resume. (The monitor does not enforce its R here: see
    test_stalled_monitor_does_not_strike_buffered_heartbeats.)"""
    net, m_p1, m_p2 = _stalled_monitor(timers_first, enforce=False)
    assert not net.log.select(PeerDown, "m", where=lambda e: e.session == m_p1)
    stall = net.log.expect(LocalStall, "m")
    assert stall.time == 13.0
    assert stall.event.late_by > 2.5
    assert stall.event.sessions_spared == (2 if timers_first else 1)
    dead = net.log.expect(PeerDown, "m", where=lambda e: e.session == m_p2)
    assert 13.0 < dead.time <= 13.0 + 0.1 + EPS
    assert dead.event.reason is DownReason.DETECTION_TIMEOUT
    assert not downs(net, "p1")
    assert net.endpoint("m").snapshot(m_p1, net.now).state is State.UP


@pytest.mark.parametrize("timers_first", [True, False], ids=["timers-first", "reads-first"])
def test_stalled_monitor_does_not_strike_buffered_heartbeats(timers_first: bool) -> None:
    """[HB-STALL-1], [HB-FREQ-1], SPEC 9.6 ("a stalled monitor resumes without accusing peers
    that were fine all along"): the same freeze with rate enforcement on: the live peer, which
    never sent faster than allowed, must not be closed for sending too often."""
    net, m_p1, _ = _stalled_monitor(timers_first, enforce=True)
    assert not net.log.select(SessionClosed)
    assert net.endpoint("m").snapshot(m_p1, net.now).state is State.UP


# --- Peer hung and resumed (SPEC 8.4) -----------------------------------------------------------


def test_peer_hung_briefly_comes_back_up_again() -> None:
    """SPEC 8.4, [HB-SM-4], [HB-SM-5], [HB-STALL-1], [HB-SEQ-4]: b is frozen for 1 s. a
    declares it down and keeps sending Sta DOWN to the same identifiers; on resume b reads
    them (PeerDown: peer reported), and the handshake brings both back "up again" with the
    same identifiers: no restart reported."""
    net, sid_a, sid_b = up_pair(131)
    net.at(10.0, lambda: net.stop("b"))
    net.at(11.0, lambda: net.resume("b"))
    net.run_until(15.0)
    down_a = net.log.expect(PeerDown, "a")
    assert down_a.event.reason is DownReason.DETECTION_TIMEOUT
    down_b = net.log.expect(PeerDown, "b")
    assert down_b.time == 11.0
    assert down_b.event.reason is DownReason.PEER_REPORTED_DOWN
    for host, sid in (("a", sid_a), ("b", sid_b)):
        again = net.log.select(PeerUp, host)[-1]
        assert again.event.again
        assert again.event.session == sid
        assert again.time <= 11.0 + 1.0 + 0.02
    assert not net.log.select(PeerRestarted)
    assert set(net.endpoint("a").sessions) == {sid_a}


def test_peer_hung_for_long_comes_back_as_a_restart() -> None:
    """SPEC 8.4, [HB-SM-4], [HB-SM-6], [HB-SM-8], [HB-SES-4]: b is frozen for 10 s. a
    replaces its session meanwhile; on resume b reads the old session's frames (its old
    session goes DOWN: peer reported) and the new session's HEARTBEATs (a new session comes
    up). a reports a restart (the remote identifier changed). b does not: its old session
    has just received frames (from the buffer), so [HB-SM-6] does not apply, and it is
    deleted one slow-start DetectionTime later instead."""
    net, sid_a, sid_b = up_pair(132)
    net.at(10.0, lambda: net.stop("b"))
    net.at(20.0, lambda: net.resume("b"))
    net.run_until(25.0)
    restarted_a = net.log.expect(PeerRestarted, "a")
    assert restarted_a.event.old_session == sid_a
    assert restarted_a.event.old_remote_id == sid_b
    assert 20.0 <= restarted_a.time <= 20.1
    new_b = net.log.expect(PeerUp, "b", since=20.0)
    assert not new_b.event.again
    assert restarted_a.event.new_remote_id == new_b.event.session != sid_b
    assert new_b.event.remote_id == restarted_a.event.session
    old_down = net.log.expect(PeerDown, "b")
    assert (old_down.time, old_down.event.session) == (20.0, sid_b)
    assert old_down.event.reason is DownReason.PEER_REPORTED_DOWN
    assert not net.log.select(PeerRestarted, "b")
    assert net.endpoint("b").counters["expired"] == 1
    assert len(net.endpoint("a").sessions) == len(net.endpoint("b").sessions) == 1


# --- TCP ----------------------------------------------------------------------------------------


def tcp_pair(
    seed: int,
    a: Config = FAST,
    b: Config = FAST,
    *,
    delay: float = 0.005,
    link: dict[str, object] | None = None,
) -> Network:
    """Initiator ``a`` and responder ``b`` joined by a stream, connected now."""
    net = Network(seed)
    net.add_stream_pair("a", "b", a, b)
    net.set_link("a", "b", both=True, delay=delay, **(link or {}))
    return net


@pytest.mark.parametrize(
    "link",
    [{"chunking": "byte", "chunk_gap": 0.0001}, {"chunking": "random", "max_chunk": 7}],
    ids=["byte-at-a-time", "random-chunks"],
)
def test_tcp_works_whatever_the_chunking(link: dict[str, object]) -> None:
    """[HB-TCP-1], [HB-TCP-3], [HB-DET-1], [HB-CONF-2]: frames delivered one byte at a time
    (or in random pieces) are reassembled: the session comes up, stays up, measures RTT and
    delivers every message, in order."""
    net = tcp_pair(141, link=link)
    net.run_until(3.0)
    for i in range(20):
        net.connection("a").send(b"message %d" % i, net.now)
        net.run_for(0.1)
    net.run_until(20.0)
    assert net.log.count(PeerUp) == 2
    assert not net.log.select(ConnectionEnded)
    assert not downs(net)
    got = [r.event.data for r in net.log.select(MessageReceived, "b")]
    assert got == [b"message %d" % i for i in range(20)]
    assert net.log.count(RttSample, "a") > 100
    assert sum(len(w.data) for w in net.frames("a", "b")) > 5000


def test_tcp_partial_frame_that_never_completes_ends_the_connection() -> None:
    """[HB-TCP-4], [HB-DET-1]: a writes 10 bytes of a frame and hangs. The bytes are no proof
    of life; b ends the connection within DetectionTime of their arrival (here its detection
    timer, which runs from the last whole frame, gets there first)."""
    net = tcp_pair(142)
    net.run_until(5.0)
    net.stop("a")
    partial = net.inject_stream("a", encode(Frame(FrameType.HEARTBEAT, State.UP, 1, 2))[:10])
    net.run_until(10.0)
    ended = net.log.expect(ConnectionEnded, "b")
    arrived = partial.arrived
    assert arrived is not None
    assert ended.time <= arrived + 0.3 + EPS
    assert ended.event.reason in (DownReason.DETECTION_TIMEOUT, DownReason.PARTIAL_FRAME_TIMEOUT)
    assert net.log.expect(PeerDown, "b").time == ended.time


def test_tcp_partial_frame_is_the_only_bound_when_liveness_is_inactive() -> None:
    """[HB-TCP-4], [HB-NEG-3]: with R = 0 on both sides no detection timer runs, so only the
    partial-frame rule ends a connection whose peer hung mid-frame: PARTIAL_FRAME_TIMEOUT, after
    HANDSHAKE_TIMEOUT (10 s by default), since DetectionTime is infinite here."""
    quiet = Config(interval=0.1, min_rx=0)
    net = tcp_pair(143, quiet, quiet)
    net.run_until(5.0)
    assert net.log.count(LivenessInactive) == 2
    net.stop("a")
    partial = net.inject_stream("a", b"\x11\x43\x00\x1c\x00")
    net.run_until(30.0)
    ended = net.log.expect(ConnectionEnded, "b")
    assert ended.event.reason is DownReason.PARTIAL_FRAME_TIMEOUT
    arrived = partial.arrived
    assert arrived is not None
    assert ended.time == pytest.approx(arrived + quiet.handshake_timeout)


@pytest.mark.parametrize(
    ("garbage", "counter"),
    [(b"\x00\x01garbage on the stream.......", "bad_version"), (b"\x11\x43\x00\x03", "bad_length")],
    ids=["bad-version", "bad-length"],
)
def test_tcp_garbage_ends_the_connection_with_protocol_error(garbage: bytes, counter: str) -> None:
    """[HB-TCP-3], [HB-CLOSE-3]: bytes that cannot be framed end the connection at once: b
    sends a CLOSE with protocol_error (which a reports) and ends with PROTOCOL_ERROR."""
    net = tcp_pair(144)
    net.run_until(5.0)
    junk = net.inject_stream("a", garbage)
    net.run_until(8.0)
    ended = net.log.expect(ConnectionEnded, "b")
    assert ended.event.reason is DownReason.PROTOCOL_ERROR
    assert ended.time == junk.arrived
    assert net.connection("b").counters[counter] == 1
    close = net.frames("b", "a", ftype=FrameType.CLOSE)
    assert len(close) == 1
    assert close[0].frame.close_code == CloseCode.PROTOCOL_ERROR
    closed_a = net.log.expect(SessionClosed, "a")
    assert (closed_a.event.code, closed_a.event.by_peer) == (CloseCode.PROTOCOL_ERROR, True)
    assert net.log.expect(ConnectionEnded, "a").event.reason is None
    assert not downs(net)


@pytest.mark.parametrize("how", ["close", "kill"])
def test_tcp_end_of_stream_is_transport_closed(how: str) -> None:
    """[HB-TCP-7]: the peer's socket closes without a CLOSE (the application closed it, or
    the process died): PeerDown TRANSPORT_CLOSED, distinct from a timeout or a CLOSE, at the
    moment the end of stream arrives."""
    net = tcp_pair(145)
    net.run_until(5.0)
    if how == "close":
        net.close_stream("a")
    else:
        net.kill("a")
    net.run_until(8.0)
    down = net.log.expect(PeerDown, "b")
    assert down.event.reason is DownReason.TRANSPORT_CLOSED
    assert down.time == pytest.approx(5.005)
    ended = net.log.expect(ConnectionEnded, "b")
    assert (ended.time, ended.event.reason) == (down.time, DownReason.TRANSPORT_CLOSED)
    assert not net.log.select(SessionClosed, "b")


@pytest.mark.parametrize("one_way", [False, True], ids=["partition", "one-way"])
def test_tcp_leaving_up_ends_the_connection(one_way: bool) -> None:
    """[HB-TCP-6], [HB-DET-2], [HB-DET-3]: on a stream, leaving UP ends the connection with a
    CLOSE sent first, instead of the triggered HEARTBEAT: reason timeout after the detection
    timer. In a one-way partition the side that still hears receives that CLOSE."""
    net = tcp_pair(146)
    net.run_until(5.0)
    neg = net.connection("a").snapshot(net.now).negotiated
    net.partition("b", "a", one_way=one_way)
    net.run_until(10.0)
    down = net.log.expect(PeerDown, "a")
    assert down.event.reason is DownReason.DETECTION_TIMEOUT
    assert_detected_in_window(net, "a", "b", down, neg)
    ended = net.log.expect(ConnectionEnded, "a")
    assert (ended.time, ended.event.reason) == (down.time, DownReason.DETECTION_TIMEOUT)
    sent = net.frames("a", "b", since=down.time)
    assert [w.type for w in sent] == [FrameType.CLOSE]
    assert sent[0].frame.close_code == CloseCode.TIMEOUT
    if one_way:
        closed_b = net.log.expect(SessionClosed, "b")
        assert (closed_b.event.code, closed_b.event.by_peer) == (CloseCode.TIMEOUT, True)
        assert closed_b.time == pytest.approx(down.time + 0.005)
    else:
        b_down = net.log.expect(PeerDown, "b")
        assert b_down.event.reason is DownReason.DETECTION_TIMEOUT
        assert net.log.expect(ConnectionEnded, "b").time == b_down.time


def test_tcp_peer_hung_finds_its_connection_closed() -> None:
    """SPEC 8.4, [HB-TCP-6], [HB-CLOSE-3], [HB-STALL-1]: over TCP a frozen peer is declared
    down and the connection ends with a CLOSE (timeout); the peer, on resume, reads that
    CLOSE from its buffer and reports it: recovery needs a new connection."""
    net = tcp_pair(147)
    net.at(5.0, lambda: net.stop("b"))
    net.at(6.0, lambda: net.resume("b"))
    net.run_until(8.0)
    down = net.log.expect(PeerDown, "a")
    assert net.log.expect(ConnectionEnded, "a").time == down.time
    closed = net.log.expect(SessionClosed, "b")
    assert (closed.time, closed.event.code, closed.event.by_peer) == (
        6.0,
        CloseCode.TIMEOUT,
        True,
    )
    assert net.log.expect(ConnectionEnded, "b").time == 6.0


def test_tcp_initiator_announces_up_at_once() -> None:
    """[HB-HB-2], [HB-SM-2]: on TCP too, the initiator that goes UP on the responder's INIT
    ACK tells it at once with a triggered HEARTBEAT (the ACK cannot be answered), so the
    responder is UP one delay later, as on UDP."""
    net = tcp_pair(149, EXAMPLE_A, EXAMPLE_B, delay=0.01)
    net.run_until(2.0)
    up_a = net.log.expect(PeerUp, "a")
    up_b = net.log.expect(PeerUp, "b")
    assert up_b.time == pytest.approx(up_a.time + 0.01)


def test_tcp_parameter_change_starts_the_poll_at_once() -> None:
    """[HB-POLL-1], SPEC 8.3 (local events: "triggered HEARTBEAT with P"): on TCP, changing
    D sends a HEARTBEAT with P and the new values at once."""
    net = tcp_pair(148, delay=0.01)
    net.run_until(5.0)
    net.connection("a").set_parameters(net.now, interval=0.2, min_rx=None, multiplier=3)
    net.run_until(5.5)
    first = heartbeats(net, "a", since=5.0)[0]
    assert first.time == 5.0
    assert first.frame.poll


# --- Many sessions ------------------------------------------------------------------------------


def test_two_hundred_sessions_over_lossy_links() -> None:
    """[HB-UDP-3], [HB-SEC-4], [HB-DET-2], [HB-TX-1]: 200 initiators (one address each) to
    one responder Endpoint, 100 ms x 3, 1 % loss and 0-3 ms of jitter each way, for 60 s of
    simulated time: every session comes up once, nobody is falsely declared down, and the
    whole run takes a few seconds of real time."""
    net = Network(151, record_frames=False, default_link=Link(loss=0.01, delay=0.002, jitter=0.003))
    net.add_endpoint("srv", ("10.9.0.1", 7373), FAST, accept=True)

    def opener(name: str) -> Callable[[], int]:
        return lambda: net.connect(name, "srv")

    for i in range(200):
        net.add_endpoint(f"c{i}", (f"10.1.{i // 100}.{i % 100}", 7373), FAST)
        net.at(i * 0.005, opener(f"c{i}"))  # staggered over the first second
    started = time.perf_counter()
    net.run_until(60.0)
    elapsed = time.perf_counter() - started
    assert net.log.count(PeerUp, "srv") == 200
    assert sum(net.log.count(PeerUp, f"c{i}") for i in range(200)) == 200
    assert not net.log.select(PeerDown)
    assert not net.log.select(PeerRestarted)
    assert len(net.endpoint("srv").sessions) == 200
    assert net.frames_sent > 400_000
    # About 540,000 frames; the core alone needs some 6 s of CPU for them on a 2020s machine.
    assert elapsed < 25.0, f"{elapsed:.1f} s of real time for {net.frames_sent} frames"


def test_third_handshake_frame_lost_when_the_responder_asked_for_no_heartbeats() -> None:
    """[HB-NEG-1], [HB-SM-2]: the responder advertises R = 0, so once UP the initiator sends
    nothing periodic; but until the responder's UP shows that its own UP arrived, it keeps
    repeating it (at the slow-start pace), so losing the third frame delays the handshake by a
    second instead of leaving the responder in INIT until it gives up."""
    reflector = Config(interval=0.1, min_rx=0)
    net = udp_pair(61, FAST, reflector, delay=0.01)
    net.link("a", "b").drop.add(1)  # keep the first HEARTBEAT, lose the UP that follows
    net.connect("a", "b")
    net.run_until(5.0)
    lost = net.frames("a", "b")[1]
    assert (lost.dropped, lost.frame.state) == ("index", State.UP)
    up_b = net.log.expect(PeerUp, "b")
    assert up_b.time <= lost.time + 1.0 + 0.01 + EPS
    assert not downs(net)
