"""Authentication end to end (SPEC section 10, 12.2, 12.3): the transports under attack.

tests/test_auth.py proves the core's rules one by one. Here whole peers run over the
transports, on an in-memory network with a mock clock where timing is asserted, and on the real
loopback with the ``hbproto`` command in another process where processes are killed and keys
given on the command line. The attacker sees the traffic (it is on the path, or taps it) and can
send anything from any address, but holds no key:

* frames that fail the MAC, however well shaped (the right identifiers, a newer sequence
  number), are dropped, counted, and never count as proof of life: a killed peer's session
  goes down one detection time after its last real frame, forgeries or not;
* recorded frames played back, inside the replay window or behind it, do not either;
* spoofed CLOSE, DOWN and ACK frames, unsigned or wrongly signed, neither end a live session
  nor bring it down (the same CLOSE without authentication does end it: the attack is real);
* keys rotate without a flap, including across processes where the command holds two keys;
* an endpoint's own frames sent back to it (an echo service, or an attacker reflecting them,
  signed as they are) never bring a session up.
"""

from __future__ import annotations

import signal
import socket
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

import pytest
import trio
import trio.testing

from hbproto import (
    AuthKeys,
    CloseCode,
    Config,
    DownReason,
    Endpoint,
    Event,
    PeerDown,
    PeerUp,
    SessionClosed,
    State,
)
from hbproto.frame import CRC_SIZE, Frame, FrameType, decode, encode
from tests.test_processes import Child, hbproto_command
from transports import ConnectFailed, Peer, Reconnecting, Server, connect, serve
from transports.testing import MemoryListener, MemoryNetwork
from transports.udp import UdpPeer, UdpServer

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(64, 96))
KEYS = AuthKeys({1: KEY_1}, active=1)
CONFIG = Config(interval=0.1, multiplier=3, auth=KEYS)
DT = 0.3
SERVER = ("10.0.0.2", 7373)
URL = "10.0.0.2:7373"
FORGERS = {
    "unsigned": None,
    "wrong key": AuthKeys({1: b"a guess at the key, 32 bytes ok"}, active=1),
    "unknown key id": AuthKeys({9: KEY_1}, active=9),
}


def forge(frame: Frame, forger: str) -> bytes:
    """``frame`` as an attacker without the key can send it."""
    bare = encode(frame)
    if forger == "flipped MAC":  # the right key's MAC, one bit changed
        signed = bytearray(KEYS.sign(bare))
        signed[-CRC_SIZE - 1] ^= 1
        signed[-CRC_SIZE:] = zlib.crc32(bytes(signed[:-CRC_SIZE])).to_bytes(CRC_SIZE, "big")
        return bytes(signed)
    keys = FORGERS[forger]
    return bare if keys is None else keys.sign(bare)


class Watch:
    """Takes every event of a peer or server, as an application that keeps up would."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Event]] = []

    async def run(self, source: Server | Peer) -> None:
        async for event in source:
            self.events.append((trio.current_time(), event))

    def of(self, kind: type[Event]) -> list[tuple[float, Event]]:
        return [(t, e) for t, e in self.events if isinstance(e, kind)]

    def lost(self) -> list[Event]:
        return [
            e
            for _, e in self.events
            if isinstance(e, PeerDown | Reconnecting)
            or (isinstance(e, SessionClosed) and e.by_peer)
        ]


@dataclass
class Wire:
    """What crossed an in-memory network, and a switch that silences the client (it dies)."""

    net: MemoryNetwork
    client: tuple[str, int] = ("", 0)
    dead: bool = False
    frames: list[tuple[float, tuple[str, int], bytes]] = field(default_factory=list)
    injecting: bool = False

    def rule(self, data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> bool:
        if self.injecting:
            return False
        if src == self.client and self.dead:
            return True
        self.frames.append((trio.current_time(), src, data))
        return False

    def sent_by(self, src: tuple[str, int]) -> list[Frame]:
        return [decode(d) for _, s, d in self.frames if s == src]

    def inject(self, data: bytes, src: tuple[str, int]) -> None:
        """Deliver ``data`` to the server as if ``src`` had sent it (a spoofing attacker)."""
        self.injecting = True
        try:
            self.net._deliver(data, src, SERVER)
        finally:
            self.injecting = False


@asynccontextmanager
async def udp_session(
    server_config: Config = CONFIG, client_config: Config = CONFIG
) -> AsyncIterator[tuple[Wire, Server, Peer, Watch, Watch]]:
    """A UDP server and a client UP on an in-memory network that the test taps."""
    wire = Wire(MemoryNetwork(queue_limit=100_000))
    wire.net.drop = wire.rule
    served, seen = Watch(), Watch()
    async with (
        serve(f"udp://{URL}", server_config, sock=wire.net.socket(SERVER)) as server,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(served.run, server)
        sock = wire.net.socket()
        wire.client = sock.local_address
        async with connect(f"udp://{URL}", client_config, sock=sock, rng=Random(3)) as peer:
            nursery.start_soon(seen.run, peer)
            await trio.sleep(1.0)
            yield wire, server, peer, served, seen
        nursery.cancel_scope.cancel()


def last_heartbeat(frames: list[Frame]) -> Frame:
    return [f for f in frames if f.type is FrameType.HEARTBEAT][-1]


def newer(template: Frame, ahead: int, state: State = State.UP) -> Frame:
    """A HEARTBEAT like ``template`` but ``ahead`` numbers further on: it would be current."""
    return Frame(
        FrameType.HEARTBEAT,
        state,
        template.my_id,
        template.your_id,
        (template.seq + ahead) & 0xFFFFFFFF,
        template.timestamp + ahead,
        template.desired_tx,
        template.required_rx,
        template.mult,
    )


# --- Forged frames are no proof of life ----------------------------------------------------------


@pytest.mark.parametrize("forger", [*FORGERS, "flipped MAC"])
async def test_forged_heartbeats_do_not_keep_a_dead_peer_alive_udp(
    forger: str, autojump_clock: object
) -> None:
    """The client dies; an attacker who saw its traffic sends, from its address every 20 ms,
    HEARTBEATs with its identifiers and the next sequence numbers, signed wrongly. The server
    counts them as failing authentication and declares the session down exactly one
    detection time after the client's last real frame [HB-AUTH-4], [HB-DET-2]."""
    async with udp_session() as (wire, server, _, served, _):
        wire.dead = True
        last_real = max(t for t, src, _ in wire.frames if src == wire.client)
        template = last_heartbeat(wire.sent_by(wire.client))
        ahead = 1
        while not served.of(PeerDown) and ahead < 200:
            wire.inject(forge(newer(template, ahead), forger), wire.client)
            ahead += 1
            await trio.sleep(0.02)
        counters = server.counters
    (t, down), *_ = served.of(PeerDown)
    assert isinstance(down, PeerDown)
    assert down.reason is DownReason.DETECTION_TIMEOUT
    assert t == pytest.approx(last_real + DT, abs=1e-6)
    failed = counters["auth_missing" if forger == "unsigned" else "auth_failed"]
    assert failed == ahead - 1 >= 10  # every forgery, and none was taken for a frame


class Proxy:
    """An on-path attacker between a TCP client and the server (in memory): it forwards both
    ways and records the client's frames until the client dies; then it writes its own bytes
    into the server's side of the connection."""

    def __init__(self, listener: MemoryListener, nursery: trio.Nursery) -> None:
        self.listener = listener
        self.nursery = nursery
        self.client_frames: list[bytes] = []
        self.server_frames: list[bytes] = []
        self.dead = False
        self.last_real = 0.0
        self.upstream: trio.abc.Stream | None = None

    async def open(self) -> trio.abc.Stream:
        client_end, ours = trio.testing.memory_stream_pair()
        self.upstream = await self.listener.connect()
        self.nursery.start_soon(self._pump, ours, self.upstream, self.client_frames)
        self.nursery.start_soon(self._pump, self.upstream, ours, self.server_frames)
        return client_end

    async def _pump(
        self, source: trio.abc.Stream, sink: trio.abc.Stream, frames: list[bytes]
    ) -> None:
        pending = b""
        from_client = frames is self.client_frames
        while data := await source.receive_some(65536):
            if from_client and self.dead:
                continue  # the client is gone: what it would say never arrives
            pending += data
            while len(pending) >= 4 and len(pending) >= int.from_bytes(pending[2:4], "big"):
                size = int.from_bytes(pending[2:4], "big")
                frames.append(pending[:size])
                pending = pending[size:]
            if from_client:
                self.last_real = trio.current_time()
            await sink.send_all(data)

    async def inject(self, data: bytes) -> None:
        assert self.upstream is not None
        await self.upstream.send_all(data)


@asynccontextmanager
async def tcp_session(
    config: Config = CONFIG,
) -> AsyncIterator[tuple[Proxy, Server, Peer, Watch, Watch]]:
    listener = MemoryListener()
    served, seen = Watch(), Watch()
    async with (
        serve(f"tcp://{URL}", config, listeners=[listener]) as server,
        trio.open_nursery() as nursery,
    ):
        proxy = Proxy(listener, nursery)
        nursery.start_soon(served.run, server)
        async with connect(f"tcp://{URL}", config, open_stream=proxy.open) as peer:
            nursery.start_soon(seen.run, peer)
            await trio.sleep(1.0)
            yield proxy, server, peer, served, seen
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("forger", [*FORGERS, "flipped MAC"])
async def test_forged_heartbeats_do_not_keep_a_dead_peer_alive_tcp(
    forger: str, autojump_clock: object
) -> None:
    """The same on TCP, where only an attacker on the path can write into the connection: the
    server drops the forgeries and the stream goes on [HB-TCP-5], and the session ends with a
    CLOSE at one detection time after the client's last real frame [HB-TCP-6]."""
    async with tcp_session() as (proxy, server, _, served, _):
        proxy.dead = True
        await trio.sleep(0)
        template = last_heartbeat([decode(f) for f in proxy.client_frames])
        for ahead in range(1, 60):
            if served.of(PeerDown):
                break
            await proxy.inject(forge(newer(template, ahead), forger))
            await trio.sleep(0.02)
        counters = server.counters
    (t, down), *_ = served.of(PeerDown)
    assert isinstance(down, PeerDown)
    assert down.reason is DownReason.DETECTION_TIMEOUT
    assert t == pytest.approx(proxy.last_real + DT, abs=1e-6)
    assert counters["auth_missing" if forger == "unsigned" else "auth_failed"] >= 10


async def test_replays_do_not_keep_a_dead_peer_alive(autojump_clock: object) -> None:
    """The attacker plays back the client's own signed frames, from its address: the oldest
    (behind the 64-number window, never duplicated before, [HB-SEQ-3]) and the latest (inside
    it: duplicates). All fail check V-12 (or V-13 for ACKs) and the session goes down on time."""
    async with udp_session() as (wire, server, _, served, _):
        await trio.sleep(8.0)  # more than 64 HEARTBEATs
        wire.dead = True
        recorded = [(t, d) for t, src, d in wire.frames if src == wire.client]
        last_real = recorded[-1][0]
        assert len(recorded) > 80
        replays = [d for _, d in recorded[:10] + recorded[-10:]]
        before = server.counters
        for _ in range(3):
            for data in replays:
                wire.inject(data, wire.client)
                await trio.sleep(0.005)
        counters = server.counters - before
        await trio.sleep(DT)
    ((t, _), *_) = served.of(PeerDown)
    assert t == pytest.approx(last_real + DT, abs=1e-6)
    assert counters["replay"] + counters["unsolicited_ack"] == 60


# --- Spoofed frames neither end nor keep a session --------------------------------------------


SPOOFS = ["CLOSE", "HEARTBEAT with Sta DOWN", "ACK with Sta DOWN"]


def spoofed(kind: str, client: Frame, server_frames: list[Frame], forger: str) -> bytes:
    """A frame from the client's identifiers that would end or bring down the session."""
    if kind == "CLOSE":
        frame = Frame(
            FrameType.CLOSE, State.CLOSED, client.my_id, client.your_id, client.seq + 5,
            CloseCode.SHUTDOWN, client.desired_tx, client.required_rx, client.mult,
        )  # fmt: skip
    elif kind == "HEARTBEAT with Sta DOWN":
        frame = newer(client, 5, State.DOWN)
    else:
        answered = last_heartbeat(server_frames)
        frame = Frame(
            FrameType.ACK, State.DOWN, client.my_id, client.your_id, answered.seq,
            answered.timestamp, client.desired_tx, client.required_rx, client.mult,
        )  # fmt: skip
    return forge(frame, forger)


@pytest.mark.parametrize("forger", ["unsigned", "wrong key"])
@pytest.mark.parametrize("kind", SPOOFS)
async def test_spoofed_frames_do_not_end_a_live_session_udp(
    kind: str, forger: str, autojump_clock: object
) -> None:
    async with udp_session() as (wire, server, peer, served, seen):
        for _ in range(20):
            client = last_heartbeat(wire.sent_by(wire.client))
            wire.inject(spoofed(kind, client, wire.sent_by(SERVER), forger), wire.client)
            await trio.sleep(0.15)
        assert peer.is_up
        assert [s.state for s in server.sessions()] == [State.UP]
        counters, lost = server.counters, served.lost() + seen.lost()
    assert lost == []
    assert counters["auth_missing" if forger == "unsigned" else "auth_failed"] == 20


@pytest.mark.parametrize("kind", SPOOFS[:2])
async def test_the_same_spoofed_frames_do_end_a_session_without_authentication(
    kind: str, autojump_clock: object
) -> None:
    """The control: without authentication one such frame ends (or brings down) the session,
    so it is authentication that stopped the attack above."""
    plain = Config(interval=0.1, multiplier=3)
    async with udp_session(plain, plain) as (wire, _, _, served, _):
        client = last_heartbeat(wire.sent_by(wire.client))
        wire.inject(spoofed(kind, client, [], "unsigned"), wire.client)
        await trio.sleep(0.01)
        assert served.lost() != []


@pytest.mark.parametrize("kind", SPOOFS)
async def test_spoofed_frames_do_not_end_a_live_session_tcp(
    kind: str, autojump_clock: object
) -> None:
    """On the path of a TCP connection, the attacker writes the frames into the stream."""
    async with tcp_session() as (proxy, server, peer, served, seen):
        for _ in range(10):
            client = last_heartbeat([decode(f) for f in proxy.client_frames])
            server_frames = [decode(f) for f in proxy.server_frames]
            await proxy.inject(spoofed(kind, client, server_frames, "wrong key"))
            await trio.sleep(0.15)
        assert peer.is_up
        assert [s.state for s in server.sessions()] == [State.UP]
        counters, lost = server.counters, served.lost() + seen.lost()
    assert lost == []
    assert counters["auth_failed"] == 10


# --- Key rotation -------------------------------------------------------------------------------


ROTATION = [
    AuthKeys({1: KEY_1, 2: KEY_2}, active=1),  # add the new key at both ends
    AuthKeys({1: KEY_1, 2: KEY_2}, active=2),  # then make it active at each end
    AuthKeys({2: KEY_2}, active=2),  # then remove the old one
]


async def test_key_rotation_without_a_flap(autojump_clock: object) -> None:
    """[HB-AUTH-7] in the order the SPEC gives, each step at one end and then the other, a
    detection time apart: the frames on the wire go from Key ID 1 to Key ID 2, nothing fails
    authentication and neither end sees the session go down."""
    async with udp_session() as (wire, server, peer, served, seen):
        assert isinstance(server, UdpServer)
        assert isinstance(peer, UdpPeer)
        for keys in ROTATION:
            for endpoint in (server.endpoint, peer.endpoint):
                endpoint.set_auth(keys)
                await trio.sleep(DT)
        since = trio.current_time()
        await trio.sleep(1.0)
        key_ids = Counter(
            decode(d).auth[0]  # type: ignore[index]
            for t, _, d in wire.frames
            if t > since
        )
        assert peer.is_up
        counters, lost = server.counters + peer.counters, served.lost() + seen.lost()
    assert lost == []
    assert set(key_ids) == {2}
    assert counters["auth_failed"] == counters["auth_missing"] == 0


@asynccontextmanager
async def key_files(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    one, two = tmp_path / "key1", tmp_path / "key2"
    one.write_bytes(KEY_1)
    two.write_bytes(KEY_2)
    yield f"1:@{one}", f"2:@{two}"
    await trio.lowlevel.checkpoint()


async def wait_ups(child: Child, count: int) -> None:
    """Until the command has reported ``count`` sessions UP."""
    sessions: set[object] = set()

    def match(record: dict[str, object]) -> bool:
        if record.get("event") == "PeerUp":
            sessions.add(record.get("session"))
        return len(sessions) >= count

    await child.wait_for(f"{count} PeerUp lines", match, timeout=10)


async def _listening(child: Child) -> int:
    note = await child.wait_for("the listening note", lambda r: "local" in r, timeout=10)
    return int(note["local"][1])


REAL = Config(interval=0.1, multiplier=5)  # 0.5 s: room for a loaded machine's scheduler


async def test_key_rotation_across_processes(tmp_path: Path) -> None:
    """The responder is ``hbproto serve --auth-key 1:@FILE --auth-key 2:@FILE --auth-active
    2`` in another process: it holds both keys through the changeover. The initiator here
    starts with both keys and Key ID 1 active, switches to 2, then drops 1, while the session
    runs: neither process sees it go down."""
    with trio.fail_after(40):
        async with key_files(tmp_path) as (one, two):
            args = ["-i", "0.1", "-m", "5", "--auth-key", one, "--auth-key", two]
            async with hbproto_command(
                "serve", "udp://127.0.0.1:0", *args, "--auth-active", "2"
            ) as child:
                port = await _listening(child)
                config = Config(interval=0.1, multiplier=5, auth=ROTATION[0])
                seen = Watch()
                async with (
                    connect(f"udp://127.0.0.1:{port}", config) as peer,
                    trio.open_nursery() as nursery,
                ):
                    assert isinstance(peer, UdpPeer)
                    nursery.start_soon(seen.run, peer)
                    await child.wait_event("PeerUp", timeout=10)
                    for keys in ROTATION[1:]:
                        await trio.sleep(1.0)
                        peer.endpoint.set_auth(keys)
                    await trio.sleep(1.5)
                    assert peer.is_up
                    assert peer.counters["auth_failed"] == 0
                    assert peer.endpoint.config.auth == ROTATION[2]
                    lost = seen.lost()
                    nursery.cancel_scope.cancel()
                closed = await child.wait_event("SessionClosed", timeout=10)
    assert closed["by_peer"] is True  # the initiator's own CLOSE at the end, nothing before
    assert not [r for r in child.records if r.get("event") == "PeerDown"]
    assert lost == []


async def test_two_keys_accepted_during_changeover_over_tcp(tmp_path: Path) -> None:
    """A TCP responder holding both keys (``--auth-key`` twice, signing with the first) serves,
    at the same time, a peer not yet told of the new key and one that already signs with it:
    each comes up, so the responder verifies both keys [HB-AUTH-7]. (A peer with only the
    new key could not verify the responder's frames: the new key goes to every end first.)"""
    with trio.fail_after(40):
        async with key_files(tmp_path) as (one, two):
            args = ["-i", "0.1", "-m", "5", "--auth-key", one, "--auth-key", two]
            async with hbproto_command("serve", "tcp://127.0.0.1:0", *args) as child:
                port = await _listening(child)
                old = Config(interval=0.1, multiplier=5, auth=AuthKeys({1: KEY_1}, active=1))
                new = Config(interval=0.1, multiplier=5, auth=ROTATION[1])
                url = f"tcp://127.0.0.1:{port}"
                async with connect(url, old) as first, connect(url, new) as second:
                    await wait_ups(child, 2)
                    await trio.sleep(1.5)
                    assert first.is_up
                    assert second.is_up
                    counters = first.counters + second.counters
    assert counters["auth_failed"] == 0
    assert not [r for r in child.records if r.get("event") == "PeerDown"]


async def test_forgeries_do_not_keep_a_killed_process_alive(tmp_path: Path) -> None:
    """The initiator is ``hbproto connect`` in another process, SIGKILLed while UP. From its
    very address (the port is free once it is dead) an attacker sends HEARTBEATs with its
    identifiers, signed with a wrong key, every 20 ms. The server here still declares the
    session down about one detection time after the kill."""
    keys = AuthKeys({1: KEY_1}, active=1)
    config = Config(interval=0.1, multiplier=5, auth=keys)
    served = Watch()
    with trio.fail_after(40):
        async with (
            key_files(tmp_path) as (one, _),
            serve("udp://127.0.0.1:0", config) as server,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(served.run, server)
            port = server.local_address[1]
            args = ["-i", "0.1", "-m", "5", "--auth-key", one]
            async with hbproto_command("connect", f"udp://127.0.0.1:{port}", *args) as child:
                await child.wait_event("PeerUp", timeout=10)
                await trio.sleep(0.5)
                (info,) = server.sessions()
                child.signal(signal.SIGKILL)
                killed_at = trio.current_time()
                assert await child.wait_exit(timeout=5) == -signal.SIGKILL  # its port is free
                attacker = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                await attacker.bind(info.address)
                seq = 0
                while not served.of(PeerDown) and seq < 250:
                    seq += 1
                    frame = Frame(
                        FrameType.HEARTBEAT, State.UP, info.remote_id, info.session,
                        seq << 20, seq, 100_000, None, 5,
                    )  # fmt: skip
                    await attacker.sendto(forge(frame, "wrong key"), ("127.0.0.1", port))
                    await trio.sleep(0.02)
                attacker.close()
                counters = server.counters
            nursery.cancel_scope.cancel()
    (t, down), *_ = served.of(PeerDown)
    assert isinstance(down, PeerDown)
    assert down.reason is DownReason.DETECTION_TIMEOUT
    assert 0.5 - 0.1 <= t - killed_at <= 0.5 + 1.0
    assert counters["auth_failed"] >= 10


# --- Reflection ---------------------------------------------------------------------------------


async def _echo_tcp(listener: trio.SocketListener) -> None:
    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)

    await trio.serve_listeners(echo, [listener])


@pytest.mark.parametrize("auth", [None, KEYS], ids=["plain", "authenticating"])
async def test_a_tcp_echo_service_does_not_bring_a_session_up(auth: AuthKeys | None) -> None:
    """Connected by mistake (or by an attacker) to a service that sends every byte back, the
    initiator hears its own frames, signed with its own key. It must not take them for a peer:
    before the fix it came UP talking to itself; now nothing answers the handshake."""
    config = Config(interval=0.05, multiplier=3, handshake_timeout=1.0, auth=auth)
    events: list[Event] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listener.socket.getsockname()[1]
            nursery.start_soon(_echo_tcp, listener)
            with pytest.raises(ConnectFailed):
                async with connect(f"tcp://127.0.0.1:{port}", config, on_event=events.append):
                    pass
            nursery.cancel_scope.cancel()
    assert not [e for e in events if isinstance(e, PeerUp)]


async def test_a_udp_echo_service_does_not_bring_a_session_up() -> None:
    config = Config(interval=0.05, multiplier=3, handshake_timeout=1.0, auth=KEYS)
    events: list[Event] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            await sock.bind(("127.0.0.1", 0))

            async def echo() -> None:
                while True:
                    data, addr = await sock.recvfrom(65536)
                    await sock.sendto(data, addr)

            nursery.start_soon(echo)
            port = sock.getsockname()[1]
            with pytest.raises(ConnectFailed):
                async with connect(f"udp://127.0.0.1:{port}", config, on_event=events.append):
                    pass
            nursery.cancel_scope.cancel()
            sock.close()
    assert not [e for e in events if isinstance(e, PeerUp)]


@pytest.mark.parametrize("auth", [None, KEYS], ids=["plain", "authenticating"])
def test_reflected_frames_do_not_bring_up_an_endpoint_that_also_accepts(
    auth: AuthKeys | None,
) -> None:
    """An endpoint that both accepts sessions and opens them (a mesh node) binds an opening
    frame to its own waiting session [HB-SES-2]. Its own opening frames, reflected back from
    the address it opened to, must not be bound: they are counted as belonging to no session."""
    ep = Endpoint(Config(interval=0.1, auth=auth), accept=True, rng=Random(1))
    target = ("198.51.100.7", 9)
    ep.connect(target, 0.0)
    ep.connect(target, 0.0)  # two sessions to one address: they must not pair up either
    now = 0.0
    while now < 5.0:
        for data, addr in ep.datagrams_to_send(now):
            ep.receive_datagram(data, addr, now)  # the attacker sends each one straight back
        now += 0.05
    events = list(iter(ep.next_event, None))
    assert not [e for e in events if isinstance(e, PeerUp)]
    assert all(s.remote_id == 0 for s in ep.sessions.values())
    assert ep.counters["unknown_session"] > 0
