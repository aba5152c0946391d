"""An hbproto peer on asyncio: the sans-IO core driven over UDP (Endpoint) and TCP (Connection).

The core never reads a clock or touches a socket. Driving it takes three things:

- bytes and ``now`` in: what a socket delivers goes to ``receive_datagram`` / ``receive_data``
  with ``now = loop.time()``, the loop's monotonic clock;
- bytes and events out: after every input, write what ``datagrams_to_send`` / ``data_to_send``
  returns, and handle what ``next_event`` returns (``_shared.App`` prints it, sends, echoes);
- the next deadline out: ``get_timer()`` is when the core next needs ``handle_timer``. One
  ``loop.call_at`` handle is kept at that time, cancelled and re-armed when it moves.

    python3 examples/asyncio_peer.py serve udp://127.0.0.1:7373 --echo
    python3 examples/asyncio_peer.py connect udp://127.0.0.1:7373 --send hello -i 0.1

Ctrl-C or ``--duration`` closes every session with a CLOSE, so the peer knows at once.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from asyncio import StreamReader, StreamWriter
from collections.abc import Callable
from contextlib import suppress
from typing import Any, cast

from _shared import LINGER, App, Options, parse

from hbproto import Connection, DownReason, Endpoint, LocalProtocolError


class Timer:
    """One ``call_at`` handle kept at the core's deadline, as aioquic does."""

    def __init__(self, fire: Callable[[float], None]) -> None:
        self.fire = fire
        self.handle: asyncio.TimerHandle | None = None

    def arm(self, deadline: float | None) -> None:
        if self.handle is not None and self.handle.when() == deadline:
            return  # the deadline did not move
        if self.handle is not None:
            self.handle.cancel()
        loop = asyncio.get_running_loop()
        self.handle = None if deadline is None else loop.call_at(deadline, self._fire, deadline)

    def _fire(self, deadline: float) -> None:
        self.handle = None
        # call_at may run a hair early (clock resolution): never tell the core it is early.
        self.fire(max(deadline, asyncio.get_running_loop().time()))


class UdpPeer(asyncio.DatagramProtocol):
    """An Endpoint (any number of sessions) on one UDP socket."""

    def __init__(self, app: App, endpoint: Endpoint) -> None:
        self.app, self.endpoint = app, endpoint
        self.timer = Timer(self.pump)  # datagrams_to_send runs the core's due timers itself
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        now = asyncio.get_running_loop().time()
        self.endpoint.receive_datagram(data, addr, now)
        self.pump(now)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error about an earlier datagram: the heartbeat notices a dead peer anyway

    def pump(self, now: float) -> None:
        """Send what the core has to send, handle its events, and re-arm the timer."""
        assert self.transport is not None
        while True:
            for data, addr in self.endpoint.datagrams_to_send(now):
                self.transport.sendto(data, cast(tuple[Any, ...], addr))  # as received
            if (event := self.endpoint.next_event()) is None:
                break
            if (reply := self.app.handle(event, now)) is not None:
                with suppress(LocalProtocolError):  # the session went down since the event
                    self.endpoint.send(*reply, now)
        self.timer.arm(self.endpoint.get_timer())

    def close(self, now: float) -> None:
        for session in list(self.endpoint.sessions):
            self.endpoint.close(session, now)
        self.pump(now)


class TcpPeer:
    """A Connection (one session) on one TCP stream."""

    def __init__(self, app: App, conn: Connection, writer: StreamWriter) -> None:
        self.app, self.conn, self.writer = app, conn, writer
        self.timer = Timer(self.on_timer)
        self.linger: asyncio.TimerHandle | None = None
        self.closed = asyncio.Event()

    async def run(self, reader: StreamReader) -> None:
        """Feed the core until the peer's end of stream, then close the socket."""
        loop = asyncio.get_running_loop()
        self.pump(loop.time())
        try:
            while data := await reader.read(65536):
                self.conn.receive_data(data, loop.time())  # ignored once the connection ended
                self.pump(loop.time())
            self.conn.receive_data(b"", loop.time())  # end of stream
        except OSError:
            self.conn.transport_failed(DownReason.CONNECTION_RESET, loop.time())
        finally:
            self.pump(loop.time())
            if self.linger is not None:
                self.linger.cancel()
            self.writer.close()
            self.closed.set()

    def on_timer(self, now: float) -> None:
        self.conn.handle_timer(now)
        self.pump(now)

    def pump(self, now: float) -> None:
        """Write what the core has to send, handle its events, and re-arm the timer."""
        while (event := self.conn.next_event()) is not None:
            if (reply := self.app.handle(event, now)) is not None:
                with suppress(LocalProtocolError):  # the session ended since the event
                    self.conn.send(reply[1], now)
        if data := self.conn.data_to_send():  # nothing after the CLOSE: write_eof forbids it
            self.writer.write(data)
        self.timer.arm(self.conn.get_timer())
        if self.conn.ended and self.linger is None:
            # Half-close behind the CLOSE and read on until the peer closes too: closing with
            # unread bytes would reset the connection, which can destroy the CLOSE in flight.
            with suppress(OSError):
                self.writer.write_eof()
            loop = asyncio.get_running_loop()
            self.linger = loop.call_later(LINGER, self.writer.transport.abort)


async def udp(app: App, options: Options, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    endpoint = Endpoint(options.config, accept=options.role == "serve")
    peer = UdpPeer(app, endpoint)
    where = (options.host, options.port)
    if options.role == "serve":
        transport, _ = await loop.create_datagram_endpoint(lambda: peer, local_addr=where)
        app.listening(loop.time(), transport.get_extra_info("sockname"))
    else:
        transport, _ = await loop.create_datagram_endpoint(lambda: peer, remote_addr=where)
        endpoint.connect(transport.get_extra_info("peername"), loop.time())
        peer.pump(loop.time())
    await stop.wait()
    peer.close(loop.time())
    transport.close()


async def tcp(app: App, options: Options, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    peers: set[TcpPeer] = set()

    async def run(reader: StreamReader, writer: StreamWriter) -> None:
        conn = Connection(options.config, initiator=options.role == "connect", now=loop.time())
        peers.add(peer := TcpPeer(app, conn, writer))
        await peer.run(reader)
        peers.discard(peer)

    if options.role == "serve":
        server = await asyncio.start_server(run, options.host, options.port)
        app.listening(loop.time(), server.sockets[0].getsockname())
    else:
        stream = await asyncio.open_connection(options.host, options.port)
        task = asyncio.create_task(run(*stream))
    await stop.wait()
    if options.role == "serve":
        server.close()  # accept no more
    for peer in list(peers):
        peer.conn.close(loop.time())
        peer.pump(loop.time())
    for peer in list(peers):
        await peer.closed.wait()  # within LINGER
    if options.role == "connect":
        await task


async def main(options: Options) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()  # Ctrl-C, --duration, or an initiator's session is over
    app = App(options, loop.time(), on_done=stop.set)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if options.duration is not None:
        loop.call_later(options.duration, stop.set)
    await (udp if options.link == "udp" else tcp)(app, options, stop)
    return app.status


if __name__ == "__main__":
    opts = parse("An hbproto peer on asyncio.")
    try:
        sys.exit(asyncio.run(main(opts)))
    except OSError as exc:  # could not bind or connect
        sys.exit(f"{sys.argv[0]}: {exc}")
