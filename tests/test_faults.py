"""Real network faults on a real network stack, judged against SPEC.md's bounds.

Each test builds a lab of three network namespaces (tests/netlab.py): ``hbproto connect`` in
one, ``hbproto serve`` in another, a router between them where iptables pulls cables, drops
packets at random and rebinds a NAT, and where tests/impair.py delays and reorders. Each fault
runs over UDP and over TCP (and, where it means something, over TCP with kernel keepalive at
its minimum beside the heartbeat); the test reads what each side reports.

Detection is judged two ways [HB-DET-2], [HB-DET-3]: by the side itself (the silence it reports
is within [DetectionTime, DetectionTime + ExpectedRemote], plus a tolerance measured on this
machine above), and from outside (the report comes within the same window of the fault, widened
below by one TxInterval, the longest the last frame can have arrived before the fault). Every
PeerDown where the peer is alive is counted as a false positive.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
from random import Random
from types import FrameType as PyFrame

import pytest
import trio
import trio.testing

from hbproto import Config, Endpoint, Event, FrameType, PeerDown, SessionClosed, decode
from tests import netlab
from tests.netlab import DT, ER, INTERVAL, LINKS, Outcome, Report
from tests.peer import Peer, deliver, handshake
from transports import connect, serve
from transports.testing import MemoryListener

# CI installs what labs need: there a missing tool fails the tests rather than skipping them.
needs_lab = pytest.mark.skipif(
    not (netlab.can_make_labs() or os.environ.get("CI")),
    reason="needs Linux, root, ip and iptables",
)

TEST_BOUND = 60.0  # no test may take longer, whatever hangs
HEARTBEAT_LINKS = ["udp", "tcp", "tcp+ka"]
SCHEMES = ["udp", "tcp"]
CLOSED_TIMEOUT = "closed by peer code 2"  # a CLOSE with reason timeout [HB-TCP-6]
SLOW_START_DT = netlab.MULTIPLIER * 1.0  # DetectionTime with the 1 s slow-start floor


@pytest.fixture(autouse=True)
def _bounded() -> Iterator[None]:
    """A hard bound on each test: the lab's cleanup runs as the exception unwinds."""

    def expire(signum: int, frame: PyFrame | None) -> None:
        raise TimeoutError(f"the test took longer than {TEST_BOUND} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, TEST_BOUND)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def tol() -> float:
    return netlab.tolerance()


def assert_detected(report: Report | None, tol: float, *, outside: bool = True) -> None:
    """A detection timeout within [DT, DT + ER] of the last frame [HB-DET-2], [HB-DET-3]."""
    assert report is not None, "no report of the fault"
    assert report.event == "PeerDown", report
    assert report.reason == "detection_timeout", report
    assert report.detected_by == "local", report
    assert report.detection_time == pytest.approx(DT), report
    assert report.silent_for is not None
    assert report.silent_for >= DT - 1e-6, f"declared after {report.silent_for} s < {DT} s"
    assert report.silent_for <= DT + ER + tol, f"declared after {report.silent_for} s"
    if outside:
        earliest, latest = report.after_bounds
        assert latest >= DT - INTERVAL - tol, f"{latest:.3f} s after the fault: too early"
        assert earliest <= DT + ER + tol, f"{earliest:.3f} s after the fault: too late"


def assert_follows(report: Report | None, tol: float, *, events: set[str]) -> None:
    """A report caused by the other side's detection: its frame (Sta DOWN, or a CLOSE) arrives
    just after the other side declares, so within the same window of the fault."""
    assert report is not None, "no report of the fault"
    assert f"{report.event}:{report.reason}" in events, report
    earliest, latest = report.after_bounds
    assert latest >= DT - INTERVAL - tol, report
    assert earliest <= DT + ER + 2 * tol, report


def no_downs(outcome: Outcome) -> None:
    downs = {side: [line.record for line in lines] for side, lines in outcome.downs.items()}
    assert not any(downs.values()), f"false PeerDown: {downs}"


# --- Pulled cable -----------------------------------------------------------------------------


@needs_lab
@pytest.mark.parametrize("link", HEARTBEAT_LINKS)
def test_cable_pulled_both_ways(link: str, tol: float) -> None:
    """Both sides hear nothing: each declares the other down by its own detection timer.
    Over TCP, kernel keepalive beside the heartbeat does not get there first: while heartbeats
    are unacknowledged in flight, it does not probe at all."""
    outcome = netlab.cable(LINKS[link], "both")
    assert_detected(outcome.reports["client"], tol)
    assert_detected(outcome.reports["server"], tol)


@needs_lab
@pytest.mark.parametrize("direction", ["to_server", "to_client"])
@pytest.mark.parametrize("link", SCHEMES)
def test_cable_pulled_one_way(link: str, direction: str, tol: float) -> None:
    """One direction dropped: the side that hears nothing declares by its timer; the other
    still hears it and learns it from it: over UDP a HEARTBEAT with Sta DOWN (a PeerDown
    detected remotely [HB-SM-4]), over TCP a CLOSE with reason timeout [HB-TCP-6]."""
    outcome = netlab.cable(LINKS[link], direction)
    deaf, told = ("server", "client") if direction == "to_server" else ("client", "server")
    assert_detected(outcome.reports[deaf], tol)
    expected = {"udp": "PeerDown:peer_reported_down", "tcp": f"SessionClosed:{CLOSED_TIMEOUT}"}
    assert_follows(outcome.reports[told], tol, events={expected[link]})
    if link == "udp":
        assert outcome.report(told).detected_by == "remote"


# --- Random loss ------------------------------------------------------------------------------

COVERED = [(0.1, 6), (0.3, 12)]
LOSS_RUN = 4.0


@needs_lab
@pytest.mark.parametrize(("probability", "multiplier"), COVERED, ids=["10%-x6", "30%-x12"])
def test_loss_covered_by_the_multiplier_udp(probability: float, multiplier: int) -> None:
    """Random loss both ways, with a multiplier that covers it: no false PeerDown. Each side
    hears the peer's HEARTBEATs and the ACKs to its own; even counting only one stream, a
    false alarm needs ``multiplier`` losses in a row: p^k per interval, times the 80
    intervals of the run, is below 1e-4 for both settings."""
    outcome = netlab.loss(LINKS["udp"], probability, multiplier, LOSS_RUN)
    assert outcome.facts["intervals"] * probability**multiplier < 1e-4
    no_downs(outcome)


@needs_lab
@pytest.mark.parametrize(("probability", "multiplier"), COVERED, ids=["10%-x6", "30%-x12"])
def test_loss_over_tcp_becomes_delay(probability: float, multiplier: int, tol: float) -> None:
    """The same loss over TCP: the kernel retransmits, so loss becomes delay, and a segment
    lost again after its first quick retransmission waits for a retransmission timeout, at
    least 200 ms and doubling. No multiplier at this interval covers that: the heartbeat
    reports the stalls. What must hold is that each PeerDown is a genuine silence of at least
    DetectionTime (never early) and that each is explained by a retransmission timeout of one
    of the two kernels, for a silence of DetectionTime >= 300 ms cannot come from anything
    quicker at this RTT."""
    outcome = netlab.loss(LINKS["tcp"], probability, multiplier, LOSS_RUN)
    dt = INTERVAL * multiplier
    timeouts = {
        side: [line for line in lines if line["reason"] == "detection_timeout"]
        for side, lines in outcome.downs.items()
    }
    for side, lines in outcome.downs.items():
        other = "server" if side == "client" else "client"
        resets = [line for line in lines if line["reason"] == "connection_reset"]
        # A side that declares its peer down closes the connection; data from the peer that
        # reaches the closed socket before its CLOSE has made it through the loss draws a
        # reset. That reset is the other side's timeout seen from here, not a down of its own.
        assert len(resets) <= len(timeouts.get(other, [])), (side, [r.record for r in resets])
        for line in timeouts[side]:
            assert dt - 1e-6 <= line["silent_for"] <= dt + ER + tol, (side, line.record)
        assert len(timeouts[side]) + len(resets) == len(lines), (side, [r.record for r in lines])
    stalls = sum(len(lines) for lines in timeouts.values())
    assert stalls <= outcome.facts["tcp_timeouts"], outcome.facts


def binomial_band(n: int, q: float, tail: float) -> tuple[int, int]:
    """The ``tail`` and ``1 - tail`` quantiles of Binomial(n, q)."""
    pmf = (1 - q) ** n
    cdf = pmf
    low: int | None = None
    for k in range(n + 1):
        if k:
            pmf *= (n - k + 1) / k * q / (1 - q)
            cdf += pmf
        if low is None and cdf >= tail:
            low = k
        if cdf >= 1 - tail:
            return low or 0, k
    return low or 0, n


RATES = [(0.1, 1), (0.3, 3)]
RATE_RUN = {"udp": 20.0, "tcp": 6.0}  # long enough over UDP for a tight band around theory


@needs_lab
@pytest.mark.parametrize(("probability", "multiplier"), RATES, ids=["10%-x1", "30%-x3"])
@pytest.mark.parametrize("link", SCHEMES)
def test_false_positive_rate_under_loss(
    link: str, probability: float, multiplier: int, tol: float
) -> None:
    """At a small multiplier false alarms are frequent, and over UDP their rate is what theory
    says: one stream of HEARTBEATs each lost with probability p, and a false PeerDown after a
    received one exactly when the next k are lost (netlab.loss_rate says why exactly), so
    p^k per HEARTBEAT received. The count must lie in the 99.9 % binomial band around that,
    with the rate widened by 30 % down and 50 % up for what the model leaves out (late
    wake-ups at the edge of the window, the edges of the run). Over TCP, retransmission turns
    each loss into a delay of about one interval, or of a retransmission timeout, so the
    count is only reported (docs/reliability.md); every PeerDown must still be a silence of
    at least DetectionTime."""
    outcome = netlab.loss_rate(LINKS[link], probability, multiplier, RATE_RUN[link])
    facts = outcome.facts
    dt = INTERVAL * multiplier
    for line in outcome.downs["client"]:
        assert line["reason"] == "detection_timeout", line.record
        assert dt - 1e-6 <= line["silent_for"] <= dt + INTERVAL + tol, line.record
    if link == "tcp":
        return
    assert facts["steady_time"] > RATE_RUN[link] / 4, facts  # enough time UP to judge a rate
    n = round(facts["received"])
    q = probability**multiplier
    low = binomial_band(n, q * 0.7, 0.0005)[0]
    high = binomial_band(n, min(1.0, q * 1.5), 0.0005)[1]
    assert low <= facts["false_downs"] <= high, (
        f"{facts['false_downs']} false PeerDowns in {n} HEARTBEATs received; theory "
        f"{n * q:.1f}, band [{low}, {high}]; {facts}"
    )


# --- The peer killed, hung, restarted ------------------------------------------------------


@needs_lab
@pytest.mark.parametrize("link", HEARTBEAT_LINKS)
def test_peer_killed(link: str, tol: float) -> None:
    """SIGKILL the responder. Over UDP only silence tells: the detection timer. Over TCP the
    dead process's kernel closes the connection, reported at once as the transport's doing
    [HB-TCP-7], long before any timer."""
    outcome = netlab.killed(LINKS[link])
    report = outcome.report("client")
    if link == "udp":
        assert_detected(report, tol)
    else:
        assert report.reason in ("transport_closed", "connection_reset"), report
        assert report.after_bounds[0] <= tol, report


@needs_lab
@pytest.mark.parametrize("link", HEARTBEAT_LINKS)
def test_peer_hung_then_resumed(link: str, tol: float) -> None:
    """SIGSTOP the responder for 1 s, then SIGCONT (SPEC 8.4). The initiator declares it down
    by its timer (kernel keepalive cannot: the stopped process's kernel answers it). On resume,
    within a slow-start DetectionTime (3 s), a UDP session comes back UP again, the same
    session; a TCP session ended with the DOWN, so a new connection brings a new one."""
    outcome = netlab.hung(LINKS[link], 1.0)
    assert_detected(outcome.reports["client"], tol)
    expected = "same session" if link == "udp" else "new session"
    assert outcome.facts["came_back"] == expected, outcome.facts
    assert outcome.facts["back_after"] <= 1.0, outcome.facts


@needs_lab
@pytest.mark.parametrize("link", SCHEMES)
def test_peer_hung_longer_comes_back_new(link: str, tol: float) -> None:
    """SIGSTOP for 3.6 s, longer than the initiator's slow-start DetectionTime: by then it has
    replaced its session [HB-SM-8], so the peer comes back with a new session, which over UDP
    the initiator reports as a restart of the peer."""
    outcome = netlab.hung(LINKS[link], 3.6)
    assert_detected(outcome.reports["client"], tol)
    expected = "restart" if link == "udp" else "new session"
    assert outcome.facts["came_back"] == expected, outcome.facts


@needs_lab
@pytest.mark.parametrize("link", SCHEMES)
def test_peer_restarted(link: str, tol: float) -> None:
    """SIGKILL the responder and start a new one on the same address. Over UDP the initiator
    detects the silence, keeps its DOWN session for one slow-start DetectionTime (3 x 1 s),
    replaces it, and the new session comes up with the new responder: a restart [HB-SM-8].
    Over TCP the connection ends at once and the initiator reconnects."""
    outcome = netlab.restarted(LINKS[link])
    if link == "udp":
        assert_detected(outcome.reports["client"], tol)
        assert outcome.facts["came_back"] == "restart", outcome.facts
        back = outcome.facts["back_after"]
        assert DT + SLOW_START_DT - INTERVAL - tol <= back <= DT + ER + SLOW_START_DT + 2 * tol, (
            outcome.facts
        )
    else:
        assert outcome.report("client").reason in ("transport_closed", "connection_reset")
        assert outcome.facts["came_back"] == "new session", outcome.facts


# --- NAT rebinding ------------------------------------------------------------------------------


@needs_lab
@pytest.mark.parametrize("link", SCHEMES)
def test_nat_rebinding(link: str) -> None:
    """The router's NAT moves the initiator to a new source port mid-session. Over UDP the
    session survives: frames are matched by identifier, and the responder adopts the new
    address once a probe there is answered [HB-UDP-3], [HB-UDP-8]. A TCP connection cannot
    survive it: the responder's kernel resets the unknown connection, both ends report the
    reset, and the initiator reconnects through the new mapping."""
    outcome = netlab.rebind(LINKS[link])
    before, after = outcome.facts["peer_before"], outcome.facts["peer_after"]
    assert before is not None
    assert before.startswith(f"{netlab.ROUTER_SERVER_SIDE}:410"), outcome.facts
    assert after is not None
    assert after.startswith(f"{netlab.ROUTER_SERVER_SIDE}:420"), outcome.facts
    if link == "udp":
        no_downs(outcome)
        assert outcome.facts["same_session"], outcome.facts
    else:
        for side in ("client", "server"):
            assert outcome.report(side).reason == "connection_reset", outcome.reports
        assert outcome.facts["came_back"] == "new session", outcome.facts


def test_a_rebinding_probe_right_after_a_heartbeat_is_answered() -> None:
    """[HB-UDP-8], [HB-FREQ-3], SPEC 9.5; no lab: the core alone, in simulated time.

    test_nat_rebinding once saw the responder keep sending to the dead mapping for a second:
    the initiator's ACK to a HEARTBEAT crossed the NAT just after it rebound, the responder
    probed the new address at once, and the probe reached the initiator 2 ms after that
    HEARTBEAT: premature, so left unanswered, and the next probe may only follow a second
    later [HB-UDP-10]. A conforming peer earns at most one strike in a row, so a first strike
    is now answered (and still counted)."""
    config = Config(interval=0.05, multiplier=3)
    client = Endpoint(config, rng=Random(1))
    server = Endpoint(config, accept=True, rng=Random(2))
    before, after, server_addr = ("10.0.0.1", 1000), ("10.0.0.1", 2000), ("10.0.0.2", 7373)
    client.connect(server_addr, 0.0)
    heartbeat: bytes | None = None
    now = 0.0
    while heartbeat is None:  # UP and steady; then up to the server's next HEARTBEAT
        now = min(t for t in (client.get_timer(), server.get_timer()) if t is not None)
        for data, _ in client.datagrams_to_send(now):
            server.receive_datagram(data, before, now)
        for data, _ in server.datagrams_to_send(now):
            if now > 1.0 and decode(data).type is FrameType.HEARTBEAT:
                heartbeat = data
            else:
                client.receive_datagram(data, server_addr, now)
    client.receive_datagram(heartbeat, server_addr, now)
    (ack,) = client.datagrams_to_send(now + 0.001)  # its ACK leaves through a rebound NAT
    server.receive_datagram(ack[0], after, now + 0.001)
    (probe,) = server.datagrams_to_send(now + 0.001)
    assert probe[1] == after
    client.receive_datagram(probe[0], server_addr, now + 0.002)
    answers = client.datagrams_to_send(now + 0.002)
    assert [decode(data).type for data, _ in answers] == [FrameType.ACK]
    assert (client.counters["premature"], client.counters["strikes"]) == (1, 1)
    server.receive_datagram(answers[0][0], after, now + 0.003)
    assert [server.snapshot(sid, now).address for sid in server.sessions] == [after]


def test_only_a_first_strike_is_answered() -> None:
    """[HB-FREQ-1], [HB-FREQ-3], [HB-FREQ-7]: against a peer that keeps sending too often,
    the HEARTBEATs of a burst after a strike, and every later strike, go unanswered."""
    ep = Endpoint(Config(interval=0.1, multiplier=3), accept=True)
    peer = Peer()  # D = R = 100 ms: premature under 50 ms after the previous HEARTBEAT
    handshake(ep, peer, 0.0)
    answered = []
    for t in (0.2, 0.23, 0.24, 0.27, 0.30):  # strike at 0.23, burst, burst, strike at 0.30
        sent = deliver(ep, peer, peer.heartbeat(), t)
        answered.append(sum(f.type is FrameType.ACK for f in sent))
    assert answered == [1, 1, 0, 0, 0]
    assert ep.counters["strikes"] == 2


# --- A stalled monitor ------------------------------------------------------------------------


@needs_lab
@pytest.mark.parametrize("link", SCHEMES)
def test_local_stall_does_not_accuse_every_peer(link: str) -> None:
    """SIGSTOP the responder itself, holding three sessions, for 0.5 s: over three of its
    DetectionTimes, under its peers' (750 ms). When it resumes, its peers' frames wait in its
    buffers: no session may be declared down (SPEC 9.6). A session whose timer is found
    overdue by more than ExpectedRemote is spared and the stall reported [HB-STALL-1],
    [HB-STALL-2]; one whose frames are read before its timer runs was never overdue at all
    (the UDP transport drains its socket before it runs timers). Either way: no PeerDown, on
    either side."""
    outcome = netlab.stall(LINKS[link], peers=3, pause=0.5)
    assert outcome.facts["pause"] > 3 * DT
    no_downs(outcome)


class _Gated(trio.abc.HalfCloseableStream):
    """A stream whose writes wait while ``gate`` is shut, as a write waits for window room."""

    def __init__(self, inner: trio.abc.HalfCloseableStream, gate: list[trio.Event]) -> None:
        self.inner = inner
        self.gate = gate

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.gate[0].wait()
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_stall_during_a_write_is_not_a_peer_that_stopped_reading(
    mock_clock: trio.testing.MockClock,
) -> None:
    """[HB-TCP-9], [HB-STALL-1]; no lab: in-memory streams, and time moved by hand.

    test_local_stall_does_not_accuse_every_peer[tcp] once saw the stopped responder resume
    and drop a peer with ``send_blocked``: it had been stopped in the middle of a write, and on
    resuming found the write 0.5 s old, past DetectionTime. Here a peer stalls for 0.5 s while
    a write is under way, the write completes as soon as it runs again, and nobody is down."""
    listener = MemoryListener()
    gate = [trio.Event()]
    gate[0].set()

    async def open_gated() -> trio.abc.Stream:
        stream = await listener.connect()
        assert isinstance(stream, trio.abc.HalfCloseableStream)
        return _Gated(stream, gate)

    config = Config(interval=0.05, multiplier=3)
    downs: list[Event] = []

    async def watch(source: AsyncIterator[Event]) -> None:
        async for event in source:
            if isinstance(event, PeerDown | SessionClosed):
                downs.append(event)

    async def run_for(seconds: float) -> None:
        for _ in range(round(seconds / 0.005)):
            mock_clock.jump(0.005)
            await trio.testing.wait_all_tasks_blocked()

    async with (
        serve("tcp://x:1", config, listeners=[listener]) as server,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(watch, server)
        async with connect("tcp://x:1", config, open_stream=open_gated, rng=Random(3)) as peer:
            nursery.start_soon(watch, peer)
            await run_for(0.5)  # UP, steady, heartbeats both ways
            gate[0] = trio.Event()  # the next write waits...
            await run_for(0.06)  # ...and within an interval one is under way
            mock_clock.jump(0.5)  # this process stalls, mid-write, for 0.5 s
            await trio.testing.wait_all_tasks_blocked()  # it resumes: its reader runs first
            gate[0].set()  # and the write goes out
            await run_for(0.5)
            assert downs == []
            assert peer.is_up
        nursery.cancel_scope.cancel()


# --- Delay spikes and reordering ----------------------------------------------------------------

SPIKE_BELOW = 0.04  # with one interval, the longest gap stays under DetectionTime
SPIKE_ABOVE = 2 * DT


@needs_lab
@pytest.mark.parametrize("link", SCHEMES)
def test_delay_spike_below_detection_time(link: str) -> None:
    """40 ms more delay both ways for 1 s: the longest gap is one interval plus 40 ms, under
    DetectionTime: no PeerDown."""
    no_downs(netlab.spike(LINKS[link], SPIKE_BELOW))


@needs_lab
@pytest.mark.parametrize("link", SCHEMES)
def test_delay_spike_above_detection_time(link: str, tol: float) -> None:
    """300 ms more delay for 1 s: nothing arrives for longer than DetectionTime, so both sides
    declare within the window of the spike's start, then the session comes back (over UDP
    the same session; over TCP a new connection)."""
    outcome = netlab.spike(LINKS[link], SPIKE_ABOVE)
    assert_detected(outcome.reports["client"], tol)
    assert_detected(outcome.reports["server"], tol)
    expected = "same session" if link == "udp" else "new session"
    assert outcome.facts["came_back"] == expected, outcome.facts


@needs_lab
@pytest.mark.parametrize("link", SCHEMES)
def test_reordering_below_detection_time(link: str) -> None:
    """For 3 s, 30 % of packets held back 40 ms and 5 ms of jitter (and over UDP 10 %
    duplicated): late, repeated and out-of-order frames are still proof of life or are
    discarded [HB-SM-9], and no gap reaches DetectionTime: no PeerDown."""
    outcome = netlab.reorder(LINKS[link], above=False)
    counts = outcome.facts["proxy"]
    key = "reordered" if link == "udp" else "held"
    assert counts["up"][key] > 10, counts  # the impairment really happened
    assert counts["down"][key] > 10, counts
    no_downs(outcome)


@needs_lab
@pytest.mark.parametrize("link", SCHEMES)
def test_reordering_above_detection_time(link: str, tol: float) -> None:
    """Every 4th packet held back 2 x DetectionTime. Over UDP the others overtake it and keep
    the session alive; the late ones arrive stale and change nothing: no PeerDown. TCP cannot
    deliver past a missing segment: the byte stream stops behind it, and both sides declare
    after DetectionTime of silence."""
    outcome = netlab.reorder(LINKS[link], above=True)
    counts = outcome.facts["proxy"]
    key = "reordered" if link == "udp" else "held"
    assert counts["up"][key] > 0, counts
    if link == "udp":
        no_downs(outcome)
    else:
        # The silence starts at the first packet held, not when the impairment was set.
        assert_detected(outcome.reports["client"], tol, outside=False)
        assert_detected(outcome.reports["server"], tol, outside=False)
