"""The trio transports on in-memory networks and a mock clock: every timing exact and fast.

UDP runs over :class:`transports.testing.MemoryNetwork`, TCP over in-memory stream pairs from
:class:`transports.testing.MemoryListener`. The ``autojump_clock`` fixture (pytest-trio) jumps
the clock whenever every task waits, so seconds of heartbeats take milliseconds and the times
the tests assert are the protocol's own.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from random import Random
from typing import TypeVar

import pytest
import trio
import trio.testing

from hbproto import (
    CloseCode,
    Config,
    DetectedBy,
    DownReason,
    Event,
    MessageReceived,
    PeerDown,
    PeerUp,
    RttSample,
    SessionClosed,
    State,
)
from hbproto.frame import Frame, FrameType, decode, encode
from transports import (
    Backoff,
    ConnectFailed,
    NotConnected,
    Peer,
    Reconnecting,
    Server,
    TransportOpened,
    connect,
    serve,
)
from transports.testing import MemoryListener, MemoryNetwork

E = TypeVar("E", bound=Event)
CONFIG = Config(interval=0.1, multiplier=3)
DT = 0.3  # detection time with CONFIG on both sides
SERVER = ("10.0.0.2", 7373)


@dataclass
class Net:
    """One in-memory network of either kind, and how to open each end on it."""

    scheme: str
    udp: MemoryNetwork = field(default_factory=MemoryNetwork)
    tcp: MemoryListener = field(default_factory=MemoryListener)
    frozen: set[str] = field(default_factory=set)  # "client"/"server": hung, sends nothing

    @asynccontextmanager
    async def serve(self, config: Config = CONFIG, **kw: object) -> AsyncIterator[Server]:
        if self.scheme == "udp":
            sock = self.udp.socket(SERVER)
            async with serve("udp://10.0.0.2:7373", config, sock=sock, **kw) as s:  # type: ignore[arg-type]
                yield s
        else:
            async with serve("tcp://10.0.0.2:7373", config, listeners=[self.tcp], **kw) as s:  # type: ignore[arg-type]
                yield s

    @asynccontextmanager
    async def connect(self, config: Config = CONFIG, **kw: object) -> AsyncIterator[Peer]:
        url = f"{self.scheme}://10.0.0.2:7373"
        if self.scheme == "udp":
            async with connect(url, config, sock=self.udp.socket(), rng=Random(1), **kw) as p:  # type: ignore[arg-type]
                yield p
        else:
            async with connect(url, config, open_stream=self.tcp.connect, rng=Random(1), **kw) as p:  # type: ignore[arg-type]
                yield p


@pytest.fixture(params=["udp", "tcp"])
def net(request: pytest.FixtureRequest) -> Net:
    return Net(request.param)


class Recorder:
    """Takes every event of a peer or server, with the time it came; tests wait on it."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Event]] = []
        self._changed = trio.Event()

    async def run(self, source: Server | Peer, *, echo: Server | None = None) -> None:
        async for event in source:
            self.events.append((trio.current_time(), event))
            self._changed.set()
            self._changed = trio.Event()
            if echo is not None and isinstance(event, MessageReceived):
                await echo.send(event.session, b"echo:" + event.data)

    def of(self, kind: type[E]) -> list[tuple[float, E]]:
        return [(t, e) for t, e in self.events if isinstance(e, kind)]

    async def wait_for(self, kind: type[E], count: int = 1, timeout: float = 30) -> tuple[float, E]:
        with trio.fail_after(timeout):
            while len(self.of(kind)) < count:
                await self._changed.wait()
        return self.of(kind)[count - 1]


async def test_up_rtt_and_messages_both_ways(net: Net, autojump_clock: object) -> None:
    served = Recorder()
    async with net.serve() as server, trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(served.run, server, echo=server))
        async with net.connect() as peer:
            assert peer.is_up
            assert peer.session is not None
            for i in range(20):
                await peer.send(b"m%d" % i)
            got: list[bytes] = []
            rtts = 0
            async for event in peer:
                if isinstance(event, MessageReceived):
                    got.append(event.data)
                rtts += isinstance(event, RttSample)
                if len(got) == 20 and rtts >= 3:
                    break
            # Over TCP, and over a network that neither loses nor reorders, order is kept.
            assert got == [b"echo:m%d" % i for i in range(20)]
            info = peer.snapshot()
            assert info is not None
            assert info.state is State.UP
            assert info.srtt is not None
            assert peer.event_counts["PeerUp"] == 1
            assert server.sessions()[0].state is State.UP
        _, closed = await served.wait_for(SessionClosed)
        nursery.cancel_scope.cancel()
    assert [e.data for _, e in served.of(MessageReceived)] == [b"m%d" % i for i in range(20)]
    assert closed.by_peer
    assert closed.code == CloseCode.SHUTDOWN


async def test_an_application_that_stops_taking_events_is_detected(
    net: Net, autojump_clock: object
) -> None:
    """The heartbeat lives in the business loop: when the server's application stops taking
    events its transport stops too, and the client declares it down within the detection
    time [HB-DET-2]: no earlier than DetectionTime after the last frame, and no later."""
    seen = Recorder()
    async with net.serve(max_events=4) as server, trio.open_nursery() as nursery:
        app = trio.CancelScope()

        async def application() -> None:
            with app:
                async for _ in server:
                    pass

        nursery.start_soon(application)
        async with net.connect() as peer:
            nursery.start_soon(seen.run, peer)
            await trio.sleep(2)
            hung_at = trio.current_time()
            app.cancel()  # the application hangs: nothing takes the server's events any more
            t, down = await seen.wait_for(PeerDown)
        nursery.cancel_scope.cancel()
    assert down.reason is DownReason.DETECTION_TIMEOUT
    assert down.detected_by is DetectedBy.LOCAL
    assert down.detection_time == pytest.approx(DT)
    assert DT - 1e-9 <= down.silent_for <= DT + 1e-6
    assert t - hung_at <= DT + 0.5  # the server's transport stops once its 4-event queue fills


async def test_network_silence_is_detected_on_time(autojump_clock: object) -> None:
    """A pulled cable on UDP: down exactly DetectionTime after the last frame [HB-DET-2]."""
    net = Net("udp")
    seen = Recorder()
    async with net.serve() as server, trio.open_nursery() as nursery:
        nursery.start_soon(Recorder().run, server)
        async with net.connect() as peer:
            nursery.start_soon(seen.run, peer)
            await trio.sleep(1.234)
            cut = trio.current_time()
            net.udp.drop = lambda data, src, dst: True
            t, down = await seen.wait_for(PeerDown)
        nursery.cancel_scope.cancel()
    assert DT - 1e-9 <= down.silent_for <= DT + 1e-6
    assert cut < t <= cut + DT + 1e-6


async def test_close_with_reason_reaches_the_peer_which_finishes(
    net: Net, autojump_clock: object
) -> None:
    seen = Recorder()
    async with net.serve() as server, trio.open_nursery() as nursery:
        server_events = Recorder()
        nursery.start_soon(server_events.run, server)
        async with net.connect() as peer:
            _, up = await server_events.wait_for(PeerUp)
            await server.close_session(up.session, CloseCode.TOO_FREQUENT, "slow down")
            await seen.run(peer)  # ends: the peer finished
            assert peer.finished
            assert not peer.is_up
            assert peer.end_reason is not None
            assert "closed by the peer" in peer.end_reason
            with pytest.raises(NotConnected):
                await peer.send(b"late")
        nursery.cancel_scope.cancel()
    ((_, closed),) = seen.of(SessionClosed)
    assert closed.by_peer
    assert closed.code == CloseCode.TOO_FREQUENT
    assert closed.text == "slow down"


async def test_reconnects_with_backoff_after_the_server_closes(
    net: Net, autojump_clock: object
) -> None:
    seen = Recorder()
    backoff = Backoff(initial=1.0, maximum=1.0)
    async with net.serve() as server, trio.open_nursery() as nursery:
        server_events = Recorder()
        nursery.start_soon(server_events.run, server)
        async with net.connect(reconnect=backoff) as peer:
            nursery.start_soon(seen.run, peer)
            first = peer.session
            _, up = await server_events.wait_for(PeerUp)
            await server.close_session(up.session)
            t_retry, retry = await seen.wait_for(Reconnecting)
            t_up, again = await seen.wait_for(PeerUp, 2)
            assert peer.is_up
            assert peer.session == again.session != first
            await peer.send(b"still here")
            await server_events.wait_for(MessageReceived)
        nursery.cancel_scope.cancel()
    assert retry.attempt == 1
    assert retry.delay is not None
    assert 0.5 <= retry.delay <= 1.0
    assert t_up - t_retry >= retry.delay - 1e-9


async def test_a_udp_session_that_went_down_resumes_when_the_path_returns(
    autojump_clock: object,
) -> None:
    """With reconnect, a UDP session that went DOWN keeps trying itself [HB-TX-7]."""
    net = Net("udp")
    seen = Recorder()
    async with net.serve() as server, trio.open_nursery() as nursery:
        nursery.start_soon(Recorder().run, server)
        async with net.connect(reconnect=True) as peer:
            nursery.start_soon(seen.run, peer)
            net.udp.drop = lambda data, src, dst: True
            await seen.wait_for(PeerDown)
            _, retry = await seen.wait_for(Reconnecting)
            assert retry.delay is None
            assert not peer.is_up
            net.udp.drop = None
            await seen.wait_for(PeerUp, 2)
            assert peer.is_up
        nursery.cancel_scope.cancel()


async def test_tcp_retries_a_refused_connection(autojump_clock: object) -> None:
    net = Net("tcp")
    refusals = 2

    async def flaky() -> trio.abc.Stream:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise ConnectionRefusedError(111, "Connection refused")
        return await net.tcp.connect()

    seen = Recorder()
    async with net.serve() as server, trio.open_nursery() as nursery:
        nursery.start_soon(Recorder().run, server)
        async with connect(
            "tcp://10.0.0.2:7373", CONFIG, open_stream=flaky, reconnect=True, wait_up=False
        ) as peer:
            nursery.start_soon(seen.run, peer)
            await peer.wait_up()
        nursery.cancel_scope.cancel()
    retries = [e for _, e in seen.of(Reconnecting)]
    assert [r.attempt for r in retries] == [1, 2]
    assert all("refused" in r.reason for r in retries)
    assert seen.of(TransportOpened)


async def test_unreachable_peers_raise_one_clear_error(autojump_clock: object) -> None:
    async def refused() -> trio.abc.Stream:
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(ConnectFailed, match="connection refused"):
        async with connect("tcp://10.0.0.9:1", CONFIG, open_stream=refused):
            pass  # pragma: no cover
    start = trio.current_time()
    with pytest.raises(ConnectFailed, match=r"no hbproto peer answered .* within 10 s"):
        async with connect("udp://10.0.0.9:1", CONFIG, sock=MemoryNetwork().socket()):
            pass  # pragma: no cover
    assert trio.current_time() - start == pytest.approx(CONFIG.handshake_timeout)


async def test_an_error_in_the_block_comes_out_as_itself(net: Net, autojump_clock: object) -> None:
    async with net.serve() as server, trio.open_nursery() as nursery:
        served = Recorder()
        nursery.start_soon(served.run, server)
        with pytest.raises(KeyError, match="mine"):
            async with net.connect():
                raise KeyError("mine")
        # The block's error did not stop the graceful close.
        _, closed = await served.wait_for(SessionClosed)
        assert closed.by_peer
        assert closed.code == CloseCode.SHUTDOWN
        nursery.cancel_scope.cancel()


async def test_cancelling_the_block_still_sends_close(net: Net, autojump_clock: object) -> None:
    async with net.serve() as server, trio.open_nursery() as nursery:
        served = Recorder()
        nursery.start_soon(served.run, server)
        with trio.move_on_after(1.0):
            async with net.connect():
                await trio.sleep_forever()
        _, closed = await served.wait_for(SessionClosed)
        assert closed.by_peer
        assert closed.code == CloseCode.SHUTDOWN
        nursery.cancel_scope.cancel()


async def test_sending_before_up_is_refused(net: Net, autojump_clock: object) -> None:
    async with net.serve() as server, trio.open_nursery() as nursery:
        nursery.start_soon(Recorder().run, server)
        async with net.connect(wait_up=False) as peer:
            with pytest.raises(NotConnected):
                await peer.send(b"too early")
            async for event in peer:
                if isinstance(event, PeerUp):
                    break
            assert peer.is_up  # already, when the application sees PeerUp: it may send at once
            await peer.send(b"now")
        with pytest.raises(NotConnected):
            await server.send(0x1234, b"nobody")
        nursery.cancel_scope.cancel()


async def test_idle_only_heartbeats_give_way_to_messages(autojump_clock: object) -> None:
    """[HB-TX-3]: in idle-only mode, flowing DATA suppresses HEARTBEATs."""
    net = Net("udp")
    sent: list[tuple[float, int]] = []  # (time, frame type) of what the client sends

    def count(data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> bool:
        if dst == SERVER:
            sent.append((trio.current_time(), data[0] & 0x0F))
        return False

    net.udp.drop = count
    config = Config(interval=0.1, multiplier=3, idle_only=True)
    async with net.serve() as server, trio.open_nursery() as nursery:
        nursery.start_soon(Recorder().run, server)
        async with net.connect(config) as peer:
            await trio.sleep(3)  # past slow start
            start = trio.current_time()
            while trio.current_time() < start + 2:
                await peer.send(b"business")
                await trio.sleep(0.05)
            busy_end = trio.current_time()
            await trio.sleep(2)
        nursery.cancel_scope.cancel()
    busy = [kind for t, kind in sent if start + 0.2 < t <= busy_end]
    idle = [(t, kind) for t, kind in sent if busy_end + 0.2 < t <= busy_end + 2]
    assert busy.count(FrameType.DATA) >= 30
    assert FrameType.HEARTBEAT not in busy
    # Idle again: HEARTBEATs resume, and with the ACKs (which also count as traffic) the
    # client is never silent for longer than its interval.
    assert any(kind == FrameType.HEARTBEAT for _, kind in idle)
    times = [t for t, _ in idle]
    assert max(b - a for a, b in itertools.pairwise(times)) <= 0.1 + 1e-9


async def test_a_peer_that_stops_reading_is_dropped(autojump_clock: object) -> None:
    """[HB-TCP-9]: a write blocked for DetectionTime means the peer is not reading."""
    listener = MemoryListener()
    blocked = trio.Event()

    class Stuck(trio.abc.HalfCloseableStream):
        def __init__(self, inner: trio.abc.HalfCloseableStream) -> None:
            self.inner = inner

        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            if blocked.is_set():
                await trio.sleep_forever()  # the server's receive window stays shut
            await self.inner.send_all(data)

        async def wait_send_all_might_not_block(self) -> None:
            await self.inner.wait_send_all_might_not_block()

        async def send_eof(self) -> None:
            await self.inner.send_eof()

        async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
            return await self.inner.receive_some(max_bytes)

        async def aclose(self) -> None:
            await self.inner.aclose()

    async def open_stuck() -> trio.abc.Stream:
        stream = await listener.connect()
        assert isinstance(stream, trio.abc.HalfCloseableStream)
        return Stuck(stream)

    seen = Recorder()
    # The server may miss 15 of the client's heartbeats, so it notices late; the client, with
    # its writes blocked, must notice first.
    client_config = Config(interval=0.1, multiplier=15)
    async with (
        serve("tcp://x:1", CONFIG, listeners=[listener]) as server,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(Recorder().run, server)
        async with connect(
            "tcp://x:1", client_config, open_stream=open_stuck, rng=Random(3)
        ) as peer:
            nursery.start_soon(seen.run, peer)
            await trio.sleep(2)
            blocked.set()
            start = trio.current_time()
            t, down = await seen.wait_for(PeerDown)
        nursery.cancel_scope.cancel()
    assert down.reason is DownReason.SEND_BLOCKED
    assert t - start <= 2 * DT + 1e-6  # the first blocked write comes within DT, then DT


async def test_every_event_is_logged_and_counted(
    caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    net = Net("udp")
    calls: list[Event] = []
    caplog.set_level(logging.DEBUG, logger="hbproto")
    async with net.serve() as server, trio.open_nursery() as nursery:
        nursery.start_soon(Recorder().run, server)
        async with net.connect(on_event=calls.append) as peer:
            await trio.sleep(1)
            counts = dict(peer.event_counts)
        nursery.cancel_scope.cancel()
    records = [r for r in caplog.records if hasattr(r, "hbproto")]
    up = [r for r in records if r.hbproto["event"] == "PeerUp"]
    assert up
    assert up[0].levelno == logging.INFO
    assert up[0].hbproto["peer"] == "udp://10.0.0.2:7373"
    assert up[0].hbproto["negotiated"]["local_mult"] == 3
    assert any(r.hbproto["event"] == "RttSample" and r.levelno == logging.DEBUG for r in records)
    assert counts["PeerUp"] == 1
    assert counts["RttSample"] >= 1
    assert sum(counts.values()) <= len(calls)


async def test_a_refused_client_waits_out_the_refusal_backoff(
    net: Net, autojump_clock: object
) -> None:
    """[HB-CLOSE-6]: no new session sooner than 2 s after a refusal, whatever the client's own
    back-off says (here 0.1 s); the count restarts once a session comes up, so the second
    refusal of a session that came up costs 2 s again, not 4."""
    seen = Recorder()
    async with net.serve() as server, trio.open_nursery() as nursery:
        server_events = Recorder()
        nursery.start_soon(server_events.run, server)
        async with net.connect(reconnect=Backoff(initial=0.1, maximum=0.1)) as peer:
            nursery.start_soon(seen.run, peer)
            for n in (1, 2):
                _, up = await server_events.wait_for(PeerUp, n)
                await server.close_session(up.session, CloseCode.REFUSED)
                _, closed = await seen.wait_for(SessionClosed, n)
                refused_at = seen.of(SessionClosed)[n - 1][0]
                _, retry = await seen.wait_for(Reconnecting, n)
                t_up, _ = await seen.wait_for(PeerUp, n + 1)
                assert closed.code == CloseCode.REFUSED
                assert 2.0 <= t_up - refused_at <= 2.5 + 0.1
                assert retry.delay is not None
                assert retry.delay >= 2.0  # the delay reported is the one that happens
                assert t_up - refused_at == pytest.approx(retry.delay, abs=0.15)
        nursery.cancel_scope.cancel()


async def test_a_refusal_before_up_is_a_connect_failure(autojump_clock: object) -> None:
    """Without reconnect, a responder that refuses the very first session (HB-CLOSE-5) is a
    connect failure: the peer finishes with ``failure`` set, as it does over TCP."""
    net = MemoryNetwork()
    responder = net.socket(SERVER)

    async def refuse() -> None:
        await responder.wait_readable()
        got = responder.recv_nowait()
        assert got is not None
        opening = decode(got[0])
        close = Frame(
            FrameType.CLOSE,
            State.CLOSED,
            my_id=0x5EED,
            your_id=opening.my_id,
            seq=1,
            timestamp=CloseCode.REFUSED,
        )
        responder.send_nowait(encode(close), got[1])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refuse)
        async with connect("udp://10.0.0.2:7373", CONFIG, sock=net.socket(), wait_up=False) as peer:
            await Recorder().run(peer)
            assert peer.failure is not None
            assert "refused" in str(peer.failure)
