"""The transports on the real network stack: loopback UDP and TCP, IPv4 and IPv6.

Every wait is bounded by ``trio.fail_after``; the intervals are short so that the tests are.
Timing bounds here are loose (a shared machine's scheduler is in the loop); the exact bounds
are proven on the mock clock in test_transports.py.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from hbproto import CloseCode, Config, MessageReceived, PeerDown, PeerUp, RttSample, SessionClosed
from transports import (
    Backoff,
    KernelTimeouts,
    ListenFailed,
    Peer,
    Reconnecting,
    Server,
    TransportOpened,
    connect,
    serve,
)

CONFIG = Config(interval=0.05, multiplier=3)


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


HOSTS = [
    "127.0.0.1",
    pytest.param("::1", marks=pytest.mark.skipif(not _has_ipv6(), reason="no IPv6")),
]


def url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


@asynccontextmanager
async def echo_server(scheme: str, host: str, port: int = 0, **kw: object) -> AsyncIterator[Server]:
    async with serve(url(scheme, host, port), CONFIG, **kw) as server, trio.open_nursery() as n:  # type: ignore[arg-type]

        async def echo() -> None:
            async for event in server:
                if isinstance(event, MessageReceived):
                    await server.send(event.session, b"echo:" + event.data)

        n.start_soon(echo)
        yield server
        n.cancel_scope.cancel()


async def take_until(peer: Peer, kind: type, timeout: float = 10) -> list[object]:
    seen: list[object] = []
    with trio.fail_after(timeout):
        async for event in peer:
            seen.append(event)
            if isinstance(event, kind):
                return seen
    raise AssertionError(f"the peer finished before a {kind.__name__}: {seen}")


@pytest.mark.parametrize("scheme", ["udp", "tcp"])
@pytest.mark.parametrize("host", HOSTS)
async def test_up_rtt_and_an_echo(scheme: str, host: str) -> None:
    with trio.fail_after(20):
        async with echo_server(scheme, host) as server:
            port = server.local_address[1]
            async with connect(url(scheme, host, port), CONFIG) as peer:
                await peer.send(b"ping")
                seen = await take_until(peer, MessageReceived)
                assert seen[-1] == MessageReceived(peer.session or 0, b"echo:ping")
                await take_until(peer, RttSample)
                info = peer.snapshot()
                assert info is not None
                assert info.srtt is not None
                assert 0 < info.srtt < 0.5
                (served,) = server.sessions()
                assert served.address is not None
                assert served.address[0] == host


async def run_server(
    scheme: str,
    port: int,
    stop: trio.Event,
    stopped: trio.Event,
    *,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        async with echo_server(scheme, "127.0.0.1", port) as server:
            task_status.started(server)
            await stop.wait()
    finally:
        stopped.set()


@pytest.mark.parametrize("scheme", ["udp", "tcp"])
async def test_close_with_a_reason_and_reconnect_to_a_restarted_server(scheme: str) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            stop_first, first_stopped = trio.Event(), trio.Event()
            first: Server = await nursery.start(run_server, scheme, 0, stop_first, first_stopped)
            port = first.local_address[1]
            backoff = Backoff(initial=0.5, maximum=0.5)  # the first server is gone by then
            async with connect(url(scheme, "127.0.0.1", port), CONFIG, reconnect=backoff) as peer:
                (info,) = first.sessions()
                await first.close_session(info.session, CloseCode.SHUTDOWN, "maintenance")
                closed = (await take_until(peer, SessionClosed))[-1]
                assert isinstance(closed, SessionClosed)
                assert closed.by_peer
                assert (closed.code, closed.text) == (CloseCode.SHUTDOWN, "maintenance")
                await take_until(peer, Reconnecting)
                stop_first.set()  # the server goes away; a new one on its port takes it back
                await first_stopped.wait()
                await nursery.start(run_server, scheme, port, trio.Event(), trio.Event())
                await take_until(peer, PeerUp)
                await peer.send(b"back")
                echoed = (await take_until(peer, MessageReceived))[-1]
                assert isinstance(echoed, MessageReceived)
                assert echoed.data == b"echo:back"
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("scheme", ["udp", "tcp"])
async def test_a_silent_server_is_detected(scheme: str) -> None:
    """A server whose application stops taking events stops heartbeating: detected on time."""
    with trio.fail_after(20):
        async with serve(url(scheme, "127.0.0.1", 0), CONFIG, max_events=2) as server:
            port = server.local_address[1]
            async with connect(url(scheme, "127.0.0.1", port), CONFIG) as peer:
                await take_until(peer, RttSample)  # past slow start: 3 x 50 ms now
                start = trio.current_time()
                seen = await take_until(peer, PeerDown)
                down = seen[-1]
                assert isinstance(down, PeerDown)
                assert down.detection_time == pytest.approx(0.15)
                assert down.silent_for >= 0.15 - 1e-6
                assert trio.current_time() - start < 2


@pytest.mark.parametrize("scheme", ["udp", "tcp"])
async def test_a_port_in_use_is_a_clear_error(scheme: str) -> None:
    async with serve(url(scheme, "127.0.0.1", 0), CONFIG) as server:
        port = server.local_address[1]
        with pytest.raises(ListenFailed, match="address already in use"):
            async with serve(url(scheme, "127.0.0.1", port), CONFIG):
                pass  # pragma: no cover


async def test_tcp_reports_the_kernel_options_it_set() -> None:
    kernel = KernelTimeouts(
        keepalive_idle=7, keepalive_interval=3, keepalive_count=4, user_timeout=1.5
    )
    async with serve("tcp://127.0.0.1:0", CONFIG, kernel=KernelTimeouts.minimum()) as server:
        port = server.local_address[1]
        async with connect(f"tcp://127.0.0.1:{port}", CONFIG, kernel=kernel, wait_up=False) as peer:
            opened = (await take_until(peer, TransportOpened))[-1]
            assert isinstance(opened, TransportOpened)
            assert opened.kernel == kernel
            async for event in server:
                if isinstance(event, TransportOpened):
                    assert event.kernel == KernelTimeouts.minimum()
                    break
