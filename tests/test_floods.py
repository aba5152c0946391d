"""Floods against a server: memory stays bounded and a legitimate peer stays UP.

On the in-memory networks of :mod:`transports.testing` with a mock clock, an attacker floods a
UDP server with opening HEARTBEATs under fresh identifiers from many spoofed addresses (a
half-open flood), and with garbage and stale frames from one address as fast as it sends; and
it opens TCP connections that send part of a frame, or nothing, and stall (slowloris). In every
case the server holds no more than its limits allow (SPEC 12.5, [HB-SES-3]), counts what it
refuses, cuts off what never completes within HANDSHAKE_TIMEOUT ([HB-SES-4], [HB-TCP-4],
[HB-TCP-11]), frees the memory afterwards, and a legitimate peer that was UP before the flood
never sees it go down. The memory the server holds is measured with tracemalloc, counting only
what hbproto and the transports allocated (the test's own buffers are not the server's).

One test does the TCP flood on the real loopback, from several source addresses, and resets
connections before the server serves them.
"""

from __future__ import annotations

import errno
import gc
import logging
import random
import socket
import struct
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress

import pytest
import trio
import trio.testing

from hbproto import Config, Event, Limits, PeerDown, RttSample, SessionClosed, State
from hbproto.frame import Frame, FrameType, encode
from transports import Peer, Reconnecting, Server, connect, serve
from transports.tcp import DEFAULT_TCP_LIMITS
from transports.testing import MemoryListener, MemoryNetwork

CONFIG = Config(interval=0.1, multiplier=3, handshake_timeout=2.0)
SERVER = ("10.0.0.2", 7373)
HANDSHAKE = 2.0
LINGER = 1.0  # a closing TCP connection waits this long at most for the peer's end [HB-TCP-12]


class Watch:
    """Takes every event of a peer or server, as an application that keeps up would, and keeps
    all but the steady stream of RTT samples (so that it holds little memory itself)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def run(self, source: Server | Peer) -> None:
        async for event in source:
            if not isinstance(event, RttSample):
                self.events.append(event)

    def lost(self) -> list[Event]:
        """Events that would mean the legitimate session was disturbed."""
        return [
            e
            for e in self.events
            if isinstance(e, PeerDown | Reconnecting)
            or (isinstance(e, SessionClosed) and e.by_peer)
        ]

    def about_others(self, session: int) -> list[Event]:
        """Events about any session but ``session``."""
        return [e for e in self.events if getattr(e, "session", session) != session]


@contextmanager
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def held() -> int:
    """Bytes that hbproto and the transports hold now, as tracemalloc saw them allocated (after
    a garbage collection: a closed connection's session and core refer to each other)."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, "*/hbproto/*"), tracemalloc.Filter(True, "*/transports/*")]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


def opening(my_id: int) -> bytes:
    """A HEARTBEAT that opens a session (Your Identifier 0), as a fresh initiator sends it."""
    seq = (my_id * 7) & 0xFFFFFFFF
    frame = Frame(FrameType.HEARTBEAT, State.DOWN, my_id, 0, seq, 0, 100_000, 100_000)
    return encode(frame)


def up_session(server: Server) -> list[int]:
    return [s.session for s in server.sessions() if s.state is State.UP]


# --- UDP ----------------------------------------------------------------------------------------


@asynccontextmanager
async def udp_world(
    limits: Limits,
) -> AsyncIterator[tuple[MemoryNetwork, Server, Peer, Watch, Watch]]:
    """A UDP server with ``limits`` and a legitimate peer that is UP, on one memory network
    whose queues never overflow (the flood tests the server, not the link's capacity)."""
    net = MemoryNetwork(queue_limit=10_000_000)
    served, seen = Watch(), Watch()
    async with (
        serve("udp://10.0.0.2:7373", CONFIG, sock=net.socket(SERVER), limits=limits) as server,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(served.run, server)
        url = "udp://10.0.0.2:7373"
        async with connect(url, CONFIG, sock=net.socket(), rng=random.Random(1)) as peer:
            nursery.start_soon(seen.run, peer)
            await trio.sleep(1.0)  # steady state: the detection time is 3 x 100 ms
            yield net, server, peer, served, seen
        nursery.cancel_scope.cancel()


def spoof(net: MemoryNetwork, source: tuple[str, int], data: bytes) -> None:
    """One datagram from ``source``; whatever answers it goes nowhere (nobody is there)."""
    sock = net.socket(source)
    sock.send_nowait(data, SERVER)
    sock.close()


async def test_udp_half_open_flood_from_spoofed_addresses(autojump_clock: object) -> None:
    """10,000 opening HEARTBEATs in 2 s, each under a fresh My Identifier, from 200 spoofed
    hosts: the server never holds more than its half-open limit, creates no event for any of
    them [HB-SM-3], drops them all after HANDSHAKE_TIMEOUT [HB-SES-4], and the legitimate
    session stays UP throughout."""
    limits = Limits(max_sessions=10_000, max_half_open=50, max_per_source=20)
    with traced():
        async with udp_world(limits) as (net, server, peer, served, seen):
            before, legit = held(), up_session(server)
            most, sent, during = 0, 0, 0
            for tick in range(2000):
                for _ in range(5):
                    sent += 1
                    spoof(net, (f"198.51.100.{sent % 200}", 1024 + sent), opening(sent))
                most = max(most, len(server.sessions()))
                if tick == 1000:
                    during = held()
                await trio.sleep(0.001)
            flood_over = trio.current_time()
            await trio.sleep(HANDSHAKE + 0.5)
            after = held()
            assert peer.is_up
            assert up_session(server) == [s.session for s in server.sessions()]  # only it
            counters = server.counters
    assert sent == 10_000
    assert most == 1 + limits.max_half_open
    assert counters["refused"] >= sent - 2 * limits.max_half_open
    assert counters["expired"] >= limits.max_half_open
    assert served.about_others(legit[0]) == []  # nothing about the flood reached the application
    assert seen.lost() == []
    assert trio.current_time() - flood_over >= HANDSHAKE
    # 50 half-open sessions cost a few hundred bytes each. Afterwards what remains is tables
    # sized for that peak and allocator free lists: nothing that grows with the 10,000 frames.
    assert during - before < 50 * 2048
    assert after - before < 24 * 1024


async def test_udp_frame_flood_from_one_source(autojump_clock: object) -> None:
    """One host sends as fast as it can: garbage, frames for sessions that do not exist, and
    copies of the legitimate peer's own frames (from its host, spoofed) that are replays.
    All are dropped and counted; the legitimate session stays UP and nothing is created."""
    limits = Limits(max_sessions=100, max_half_open=10, max_per_source=10)
    recorded: list[bytes] = []
    async with udp_world(limits) as (net, server, peer, served, seen):
        legit_addr = peer.local_address
        assert legit_addr is not None

        def tap(data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> bool:
            if src == legit_addr and len(recorded) < 50:
                recorded.append(data)
            return False

        net.drop = tap
        await trio.sleep(1.0)
        net.drop = None
        legit = up_session(server)
        attacker = net.socket(("203.0.113.9", 666))
        rng = random.Random(7)
        for _ in range(1000):
            for kind in range(10):
                if kind < 4:
                    data = rng.randbytes(rng.randrange(0, 80))
                elif kind < 7:
                    frame = Frame(
                        FrameType.HEARTBEAT,
                        State.UP,
                        rng.getrandbits(32) | 1,
                        rng.getrandbits(32) | 1,
                        rng.getrandbits(32),
                    )
                    data = encode(frame)
                else:
                    data = rng.choice(recorded)  # a replay, from the peer's host
                    spoof(net, (legit_addr[0], legit_addr[1] + 1), data)
                    continue
                attacker.send_nowait(data, SERVER)
            await trio.sleep(0.002)
        assert peer.is_up
        counters = server.counters
        assert up_session(server) == legit
        assert served.about_others(legit[0]) == []
    assert seen.lost() == []
    assert counters["replay"] + counters["unsolicited_ack"] >= 2500
    assert counters["unknown_session"] >= 2500
    assert sum(counters[k] for k in ("truncated", "bad_version", "bad_length")) >= 3000


async def test_udp_spoofing_the_legitimate_peers_address(autojump_clock: object) -> None:
    """Opening HEARTBEATs with the legitimate peer's address take at most its host's share of
    half-open slots; its UP session is not touched, and its own frames still reach it."""
    limits = Limits(max_sessions=100, max_half_open=100, max_per_source=5)
    async with udp_world(limits) as (net, server, peer, _, seen):
        assert peer.local_address is not None
        host = peer.local_address[0]
        for n in range(200):
            spoof(net, (host, 20_000 + n), opening(0x5000_0000 + n))
            await trio.sleep(0.005)
        assert len(server.sessions()) == limits.max_per_source  # the UP session and 4 more
        assert server.counters["refused"] == 200 - (limits.max_per_source - 1)
        await trio.sleep(HANDSHAKE + 0.5)
        assert len(server.sessions()) == 1
        assert peer.is_up
    assert seen.lost() == []


# --- TCP, in memory -----------------------------------------------------------------------------


@asynccontextmanager
async def tcp_world(
    limits: Limits | None, listener: trio.abc.Listener[trio.abc.Stream] | None = None
) -> AsyncIterator[tuple[MemoryListener, Server, Peer, Watch, Watch]]:
    memory = MemoryListener()
    served, seen = Watch(), Watch()
    async with (
        serve(
            "tcp://10.0.0.2:7373", CONFIG, listeners=[listener or memory], limits=limits
        ) as server,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(served.run, server)
        url = "tcp://10.0.0.2:7373"
        async with connect(url, CONFIG, open_stream=memory.connect, rng=random.Random(1)) as peer:
            nursery.start_soon(seen.run, peer)
            await trio.sleep(1.0)
            yield memory, server, peer, served, seen
        nursery.cancel_scope.cancel()


LARGE_HEADER = bytes((0x13, 0xC1)) + (65535).to_bytes(2, "big")  # a DATA frame of 65535 bytes


async def slowloris(listener: MemoryListener, count: int) -> list[trio.abc.Stream]:
    """``count`` connections that send nothing, 3 bytes of a header, or all but the last 535
    bytes of a 65535-byte frame, and then stall."""
    streams = []
    for n in range(count):
        stream = await listener.connect()
        data = (b"", b"\x11\x41\x00", LARGE_HEADER + bytes(65_000 - 4))[n % 3]
        with suppress(trio.BrokenResourceError):  # refused: the server closed it already
            await stream.send_all(data)
        streams.append(stream)
    return streams


async def test_tcp_slowloris_is_bounded_and_cut_off(autojump_clock: object) -> None:
    """60 stalling connections against a limit of 10 not yet UP: 10 are held (the buffered
    partial frames with them, at most 64 KiB each), 50 are refused and counted, the 10 are cut
    off at HANDSHAKE_TIMEOUT (and gone once the close has lingered, [HB-TCP-12]) and their
    memory freed; the slots then serve a second wave; the legitimate peer, UP all along, never
    notices."""
    limits = Limits(max_sessions=100, max_half_open=10, max_per_source=100)
    with traced():
        async with tcp_world(limits) as (listener, server, peer, _, seen):
            before = held()
            streams = await slowloris(listener, 60)
            await trio.sleep(0.1)
            assert len(server.sessions()) == 1 + limits.max_half_open
            assert server.counters["refused"] == 50
            during = held()
            await trio.sleep(HANDSHAKE - 0.2)
            assert len(server.sessions()) == 1 + limits.max_half_open
            await trio.sleep(0.2 + LINGER)
            assert len(server.sessions()) == 1
            after = held()
            counters = server.counters
            assert counters["partial_frame_timeout"] + counters["handshake_timeout"] == 10
            streams += await slowloris(listener, 20)  # the slots are free again
            await trio.sleep(0.1)
            assert len(server.sessions()) == 1 + limits.max_half_open
            assert server.counters["refused"] == 60
            assert peer.is_up
            for stream in streams:
                await stream.aclose()
    assert seen.lost() == []
    # Held: up to three 65,000-byte partial frames among the ten, plus a few KiB per connection.
    assert during - before < 4 * 65_536 + 10 * 16_384
    assert after - before < 16_384


async def test_tcp_default_limits() -> None:
    """The documented defaults."""
    assert DEFAULT_TCP_LIMITS.max_sessions == 10_000
    assert DEFAULT_TCP_LIMITS.max_half_open == 1_000
    assert DEFAULT_TCP_LIMITS.max_per_source == 100


@pytest.mark.parametrize(
    ("limits", "held_at_most", "why"),
    [
        (Limits(max_sessions=3, max_half_open=10, max_per_source=10), 3, "max_sessions=3"),
        (Limits(max_sessions=10, max_half_open=2, max_per_source=10), 3, "max_half_open=2"),
        (Limits(max_sessions=10, max_half_open=10, max_per_source=4), 4, "max_per_source=4"),
    ],
)
async def test_tcp_limits_refuse_count_and_log_once(
    limits: Limits,
    held_at_most: int,
    why: str,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: object,
) -> None:
    """Each limit refuses the connections beyond it, counts every one, and logs when it starts
    refusing (once here, not once per connection: a flood would flood the log). Memory streams
    all come from one host, so the per-source limit counts them all."""
    caplog.set_level(logging.WARNING, logger="hbproto")
    async with tcp_world(limits) as (listener, server, peer, _, seen):
        streams = await slowloris(listener, 10)
        await trio.sleep(0.1)
        assert len(server.sessions()) == held_at_most
        assert server.counters["refused"] == 10 - (held_at_most - 1)
        assert peer.is_up
        for stream in streams:
            await stream.aclose()
    warnings = [r for r in caplog.records if r.getMessage().startswith("refusing TCP")]
    assert len(warnings) == 1
    assert why in warnings[0].getMessage()
    assert warnings[0].hbproto["why"].startswith(why)  # type: ignore[attr-defined]
    assert warnings[0].hbproto["refused"] == 1  # type: ignore[attr-defined]
    assert seen.lost() == []


async def test_tcp_refusals_are_logged_every_ten_seconds_while_they_go_on(
    caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    """A slow flood against a limit of one connection not yet UP, for 25 s: one log line when
    the limit starts refusing and one per 10 s after that, each with the number refused since
    the line before."""
    caplog.set_level(logging.WARNING, logger="hbproto")
    limits = Limits(max_sessions=100, max_half_open=1, max_per_source=100)
    async with tcp_world(limits) as (listener, server, _, _, seen):
        streams = []
        for _ in range(50):
            streams.append(await listener.connect())
            await trio.sleep(0.5)
        refused = server.counters["refused"]
        for stream in streams:
            await stream.aclose()
        lost = seen.lost()
    lines = [r for r in caplog.records if r.getMessage().startswith("refusing TCP")]
    counts = [r.hbproto["refused"] for r in lines]  # type: ignore[attr-defined]
    assert len(lines) == 3
    assert counts[0] == 1
    assert refused >= 30
    assert sum(counts) <= refused
    assert lost == []


class ExhaustedListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener whose kernel is out of descriptors for the first ``failures`` accepts."""

    def __init__(self, inner: MemoryListener, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    async def accept(self) -> trio.abc.Stream:
        if self.failures:
            self.failures -= 1
            await trio.lowlevel.checkpoint()
            raise OSError(errno.EMFILE, "Too many open files")
        return await self.inner.accept()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_tcp_server_outlives_descriptor_exhaustion(
    caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    """accept() failing with EMFILE (a connection flood beyond ``ulimit -n``) used to end the
    server; now it pauses, counts and logs, and serves the connections once it can."""
    caplog.set_level(logging.WARNING, logger="hbproto")
    memory = MemoryListener()
    listener = ExhaustedListener(memory, failures=5)
    async with serve("tcp://10.0.0.2:7373", CONFIG, listeners=[listener]) as server:
        url = "tcp://10.0.0.2:7373"
        async with connect(url, CONFIG, open_stream=memory.connect) as peer:
            assert peer.is_up
            assert server.counters["accept_failed"] == 5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "refusing TCP connections: the kernel cannot accept (too many open files) "
        "(1 since the last such line)"
    ]


# --- TCP, on the real loopback -----------------------------------------------------------------


def _attack(port: int, host: str, data: bytes) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.connect(("127.0.0.1", port))
    if data:
        sock.sendall(data)
    sock.setblocking(False)
    return sock


def _reset(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.connect(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a reset, before the server has served it


async def test_tcp_flood_on_loopback() -> None:
    """Real connections from six loopback hosts, 15 each, sending part of a header and stalling,
    plus connections reset as soon as they open: the per-source and half-open limits hold,
    the stalled connections are closed after HANDSHAKE_TIMEOUT, resets do not disturb the
    server, and the legitimate peer stays UP."""
    config = Config(interval=0.1, multiplier=5, handshake_timeout=1.0)
    limits = Limits(max_sessions=200, max_half_open=40, max_per_source=10)
    seen = Watch()
    attackers: list[socket.socket] = []
    try:
        with trio.fail_after(30):
            async with (
                serve("tcp://127.0.0.1:0", config, limits=limits) as server,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(Watch().run, server)
                port = server.local_address[1]
                async with connect(f"tcp://127.0.0.1:{port}", config) as peer:
                    nursery.start_soon(seen.run, peer)
                    for host in range(2, 8):
                        for _ in range(15):
                            attackers.append(_attack(port, f"127.0.0.{host}", b"\x11\x41\x00"))
                        _reset(port)
                        await trio.sleep(0)
                    while server.counters["refused"] + len(server.sessions()) < 91:
                        await trio.sleep(0.01)
                    assert len(server.sessions()) == 1 + limits.max_half_open
                    assert server.counters["refused"] == 90 - limits.max_half_open
                    cut_off = 0
                    while len(server.sessions()) > 1:  # within HANDSHAKE_TIMEOUT of each opening
                        await trio.sleep(0.05)
                    for sock in attackers:
                        with suppress(BlockingIOError, ConnectionResetError):
                            cut_off += sock.recv(100) == b""  # the server closed it
                    assert cut_off == limits.max_half_open
                    assert peer.is_up
                    assert (
                        server.counters["handshake_timeout"]
                        + server.counters["partial_frame_timeout"]
                        == limits.max_half_open
                    )
                nursery.cancel_scope.cancel()
    finally:
        for sock in attackers:
            sock.close()
    assert seen.lost() == []
