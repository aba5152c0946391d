"""An hbproto peer on a plain ``selectors`` loop: the sans-IO core over UDP and TCP, no framework.

The core never reads a clock or touches a socket. One thread drives it:

- bytes and ``now`` in: what a ready socket delivers goes to ``receive_datagram`` /
  ``receive_data``, with ``now = time.monotonic()``;
- bytes and events out: after every wake-up, write what ``datagrams_to_send`` /
  ``data_to_send`` returns, and handle what ``next_event`` returns (``_shared.App`` prints it,
  sends, echoes);
- the next deadline out: ``get_timer()`` is when the core next needs ``handle_timer``, so the
  loop sleeps in ``select(timeout=deadline - now)`` on the earliest deadline of all.

    python3 examples/selectors_peer.py serve tcp://127.0.0.1:7373 --echo
    python3 examples/selectors_peer.py connect tcp://127.0.0.1:7373 --send hello -i 0.1

Ctrl-C or ``--duration`` closes every session with a CLOSE, so the peer knows at once.
"""

from __future__ import annotations

import math
import selectors
import signal
import socket
import sys
import time
from contextlib import suppress
from typing import Any, cast

from _shared import LINGER, App, Options, parse

from hbproto import Connection, DownReason, Endpoint, LocalProtocolError

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
Selector = selectors.BaseSelector


class UdpPeer:
    """An Endpoint (any number of sessions) on one non-blocking UDP socket."""

    def __init__(self, app: App, endpoint: Endpoint, sock: socket.socket) -> None:
        self.app, self.endpoint, self.sock = app, endpoint, sock
        self.finished = False

    def on_ready(self, mask: int, now: float) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:  # drained (or an ICMP error: the heartbeat copes with a dead peer)
                return
            self.endpoint.receive_datagram(data, addr, now)

    def deadline(self) -> float | None:
        return self.endpoint.get_timer()

    def step(self, now: float) -> None:
        """Send what the core has to send (running due timers), and handle its events."""
        while True:
            for data, addr in self.endpoint.datagrams_to_send(now):
                with suppress(OSError):  # a full buffer loses it, as the network could
                    self.sock.sendto(data, cast(tuple[Any, ...], addr))  # as received
            if (event := self.endpoint.next_event()) is None:
                return
            if (reply := self.app.handle(event, now)) is not None:
                with suppress(LocalProtocolError):  # the session went down since the event
                    self.endpoint.send(*reply, now)

    def close(self, now: float) -> None:
        for session in list(self.endpoint.sessions):
            self.endpoint.close(session, now)
        self.step(now)
        self.finished = True


class TcpPeer:
    """A Connection (one session) on one non-blocking TCP socket."""

    def __init__(self, app: App, conn: Connection, sock: socket.socket, sel: Selector) -> None:
        self.app, self.conn, self.sock, self.sel = app, conn, sock, sel
        self.out = bytearray()  # what the socket did not take yet
        self.linger_until: float | None = None  # once the connection ended
        self.eof = self.writing = self.finished = False
        sock.setblocking(False)
        sel.register(sock, READ, self.on_ready)

    def on_ready(self, mask: int, now: float) -> None:
        if mask & READ:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                self.conn.transport_failed(DownReason.CONNECTION_RESET, now)
                data = b""
            self.eof = not data
            self.conn.receive_data(data, now)  # ignored once the connection ended

    def deadline(self) -> float | None:
        return self.linger_until if self.conn.ended else self.conn.get_timer()

    def step(self, now: float) -> None:
        """Run due timers, handle events, write what the core has to send; close when done."""
        conn = self.conn
        if (timer := conn.get_timer()) is not None and timer <= now:
            conn.handle_timer(now)
        while (event := conn.next_event()) is not None:
            if (reply := self.app.handle(event, now)) is not None:
                with suppress(LocalProtocolError):  # the session ended since the event
                    conn.send(reply[1], now)
        self.out += conn.data_to_send()
        if self.out and not self.eof:
            try:
                del self.out[: self.sock.send(self.out)]
            except BlockingIOError:
                pass
            except OSError:  # the connection broke: the next read says how
                self.out.clear()
        if self.writing != bool(self.out):  # wake up for room only while bytes wait
            self.writing = bool(self.out)
            self.sel.modify(self.sock, READ | (WRITE if self.writing else 0), self.on_ready)
        if conn.ended and self.linger_until is None:
            self.linger_until = now + LINGER
        if conn.ended and not self.out and not self.eof:
            # Half-close behind the CLOSE and read on until the peer closes too: closing with
            # unread bytes would reset the connection, which can destroy the CLOSE in flight.
            with suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)
        if self.linger_until is not None and (self.eof or now >= self.linger_until):
            self.sel.unregister(self.sock)
            self.sock.close()
            self.finished = True

    def close(self, now: float) -> None:
        self.conn.close(now)
        self.step(now)


Peer = UdpPeer | TcpPeer


def start(options: Options, app: App, sel: Selector, peers: list[Peer]) -> socket.socket | None:
    """Open the socket(s); return the TCP listener, if any."""
    now, serving = time.monotonic(), options.role == "serve"
    if options.link == "udp":
        udp = socket.SOCK_DGRAM
        family, _, _, _, addr = socket.getaddrinfo(options.host, options.port, type=udp)[0]
        sock = socket.socket(family, udp)
        sock.setblocking(False)
        endpoint = Endpoint(options.config, accept=serving)
        if serving:
            sock.bind(addr)
            app.listening(now, sock.getsockname())
        else:
            endpoint.connect(addr, now)
        peers.append(peer := UdpPeer(app, endpoint, sock))
        sel.register(sock, READ, peer.on_ready)
        return None
    if not serving:
        sock = socket.create_connection((options.host, options.port), timeout=5)
        peers.append(TcpPeer(app, Connection(options.config, initiator=True, now=now), sock, sel))
        return None
    listener = socket.create_server((options.host, options.port))
    listener.setblocking(False)
    app.listening(now, listener.getsockname())

    def accept(mask: int, now: float) -> None:
        with suppress(BlockingIOError):
            sock, _ = listener.accept()
            conn = Connection(options.config, initiator=False, now=now)
            peers.append(TcpPeer(app, conn, sock, sel))

    sel.register(listener, READ, accept)
    return listener


def main(options: Options) -> int:
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    app = App(options, time.monotonic(), on_done=stop)
    sel: Selector = selectors.DefaultSelector()
    # A signal writes a byte to this socket pair, so that it wakes select() instead of waiting
    # out its timeout (Python retries select() after running the handler).
    wake, waker = socket.socketpair()
    waker.setblocking(False)
    signal.set_wakeup_fd(waker.fileno())
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    sel.register(wake, READ, lambda mask, now: wake.recv(64))
    peers: list[Peer] = []
    listener = start(options, app, sel, peers)
    until = math.inf if options.duration is None else time.monotonic() + options.duration
    closing_until = math.inf  # once closing: give TCP peers up to LINGER to read our CLOSE
    while True:
        now = time.monotonic()
        if (stopping or now >= until) and closing_until == math.inf:
            closing_until = now + LINGER
            if listener is not None:
                sel.unregister(listener)
                listener.close()
            for peer in peers:
                peer.close(now)
        peers[:] = [peer for peer in peers if not peer.finished]
        if closing_until < math.inf and (not peers or now >= closing_until):
            break
        deadlines = [d for peer in peers if (d := peer.deadline()) is not None]
        wake_at = min([until, closing_until, *deadlines])
        for key, mask in sel.select(None if wake_at == math.inf else max(0.0, wake_at - now)):
            key.data(mask, time.monotonic())
        now = time.monotonic()
        for peer in list(peers):
            peer.step(now)
    for key in list(sel.get_map().values()):  # the UDP socket, the wake-up pair, late TCP peers
        cast(socket.socket, key.fileobj).close()
    waker.close()
    return app.status


if __name__ == "__main__":
    opts = parse("An hbproto peer on a plain selectors loop.")
    try:
        sys.exit(main(opts))
    except OSError as exc:  # could not bind or connect
        sys.exit(f"{sys.argv[0]}: {exc}")
