"""Open a peer or a server from an address, whatever the transport: :func:`connect`, :func:`serve`.

Both are async context managers that own a nursery for the transport's tasks. Leaving the block
closes gracefully (a CLOSE with reason ``shutdown`` goes out, even when the block is left by
cancellation or Ctrl-C); an error in the transport's tasks comes out as one exception, not as an
exception group.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from random import Random

import trio

from hbproto import Config, Event, Limits

from ._base import Backoff, Observer, Peer, Server, one_error
from .address import Address, parse_address
from .datagram import DatagramSocket, KernelDatagramSocket
from .errors import ListenFailed, os_reason
from .kernel import KernelTimeouts
from .tcp import StreamOpener, TcpPeer, TcpServer
from .udp import UdpPeer, UdpServer

__all__ = ["connect", "serve"]

_CLOSE_GRACE = 1.0  # longest a graceful close may take while the caller is being cancelled


@asynccontextmanager
async def connect(
    address: str | Address,
    config: Config | None = None,
    *,
    wait_up: bool = True,
    reconnect: Backoff | bool = False,
    kernel: KernelTimeouts | None = None,
    piggyback: bytes | None = None,
    max_events: int = 1024,
    logger: logging.Logger | None = None,
    on_event: Callable[[Event], None] | None = None,
    rng: Random | None = None,
    sock: DatagramSocket | None = None,
    open_stream: StreamOpener | None = None,
) -> AsyncIterator[Peer]:
    """Open a session to ``address`` (``udp://host:port`` or ``tcp://host:port``).

    With ``wait_up`` (the default) the block starts once the session is UP, and
    :class:`~transports.errors.ConnectFailed` is raised if it cannot come up. ``reconnect``
    (``True`` or a :class:`Backoff`) keeps the peer trying after its session is lost. ``kernel``
    sets kernel keepalive and TCP_USER_TIMEOUT on a TCP connection. ``sock`` (UDP) and
    ``open_stream`` (TCP) replace the kernel's transport, for tests on in-memory networks.

    Events: iterate the peer. It keeps at most ``max_events`` unread; when that many wait, the
    transport waits too, and stops heartbeating, as a hung application would.
    """
    addr = parse_address(address) if isinstance(address, str) else address
    config = config or Config()
    backoff = Backoff() if reconnect is True else (reconnect or None)
    observer = Observer(logger, on_event, name=str(addr))
    peer: UdpPeer | TcpPeer
    with one_error():
        if addr.scheme == "udp":
            if sock is None:
                sock, remote = await KernelDatagramSocket.connect(addr)
            else:
                remote = (addr.host, addr.port)
            peer = UdpPeer(
                addr,
                sock,
                remote,
                config,
                reconnect=backoff,
                observer=observer,
                max_events=max_events,
                rng=rng,
            )
        else:
            peer = TcpPeer(
                addr,
                config,
                kernel=kernel,
                reconnect=backoff,
                observer=observer,
                max_events=max_events,
                rng=rng,
                open_stream=open_stream,
            )
        if piggyback is not None:
            peer.set_piggyback(piggyback)
        async with trio.open_nursery() as nursery:
            running = trio.CancelScope(shield=True)
            nursery.start_soon(_run_in, running, peer.run)
            try:
                if wait_up:
                    await peer.wait_up()
                yield peer
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_GRACE):
                    await peer.close()
                    await peer.wait_finished()
                running.cancel()


@asynccontextmanager
async def serve(
    address: str | Address,
    config: Config | None = None,
    *,
    kernel: KernelTimeouts | None = None,
    limits: Limits | None = None,
    max_events: int = 1024,
    logger: logging.Logger | None = None,
    on_event: Callable[[Event], None] | None = None,
    rng: Random | None = None,
    sock: DatagramSocket | None = None,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]] | None = None,
) -> AsyncIterator[Server]:
    """Accept sessions on ``address`` (``udp://host:port`` or ``tcp://host:port``; port 0
    picks a free one, see :attr:`Server.local_address`).

    Raises :class:`~transports.errors.ListenFailed` if the address cannot be bound. ``kernel``
    applies to every accepted TCP connection. ``limits`` bounds what peers can make the server
    hold [HB-SES-3]: sessions on UDP (in all, not yet UP, per source host; default
    :class:`~hbproto.Limits`), connections on TCP (the same three; default
    :data:`~transports.tcp.DEFAULT_TCP_LIMITS`); what they refuse is counted (``refused``),
    and on TCP logged when a limit starts refusing. ``sock`` (UDP) and ``listeners`` (TCP)
    replace the kernel's, for tests on in-memory networks (:mod:`transports.testing`).
    """
    addr = parse_address(address, default_host="0.0.0.0") if isinstance(address, str) else address
    config = config or Config()
    observer = Observer(logger, on_event, name=str(addr))
    server: UdpServer | TcpServer
    with one_error():
        if addr.scheme == "udp":
            sock = sock or await KernelDatagramSocket.bind(addr)
            server = UdpServer(
                addr,
                sock,
                config,
                limits=limits,
                observer=observer,
                max_events=max_events,
                rng=rng,
            )
        else:
            if listeners is None:
                try:
                    listeners = await trio.open_tcp_listeners(addr.port, host=addr.host or None)
                except OSError as exc:
                    raise ListenFailed(f"cannot listen on {addr}: {os_reason(exc)}") from None
            server = TcpServer(
                addr,
                listeners,
                config,
                kernel=kernel,
                limits=limits,
                observer=observer,
                max_events=max_events,
                rng=rng,
            )
        async with trio.open_nursery() as nursery:
            running = trio.CancelScope(shield=True)
            nursery.start_soon(_run_in, running, server.run)
            try:
                yield server
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_GRACE):
                    await server.aclose()
                running.cancel()


async def _run_in(scope: trio.CancelScope, run: Callable[[], Awaitable[None]]) -> None:
    """Run the transport's task in ``scope``, shielded from the caller's cancellation, so that
    it can still carry the graceful close out; the context manager cancels it after that."""
    with scope:
        await run()
