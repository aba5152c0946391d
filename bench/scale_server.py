"""The server side of the scale benchmark, one process: ``python -m bench.scale_server MODE``.

Modes:

* ``hbproto``: :func:`transports.serve` over UDP, the same code ``hbproto serve`` runs, given a
  socket prepared here (``sock=``) so that several processes can share the port with
  SO_REUSEPORT. The application loop takes every event, as ``hbproto serve`` does, and keeps
  each PeerDown with the time (CLOCK_MONOTONIC) at which the application saw it.
* ``bare``: the ceiling. A blocking ``recvfrom``/``sendto`` loop that echoes every datagram,
  with no protocol at all.
* ``drain``: the transport's I/O pattern without the protocol. trio waits until the socket is
  readable, then drains the non-blocking socket and echoes each datagram, like
  :class:`transports.udp.UdpDriver` does.

It prints ``{"port": P}`` once listening. In ``hbproto`` mode it then answers JSON commands on
stdin (``stats``, ``downs``, ``quit``); the other modes run until killed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import time
from collections import Counter
from typing import Any

import trio

from hbproto import Config, Limits, PeerDown
from transports import serve
from transports.datagram import SERVER_RCVBUF, KernelDatagramSocket


def make_socket(port: int, reuseport: bool) -> socket.socket:
    """A socket as :meth:`KernelDatagramSocket.bind` makes it (the same receive buffer, for
    every mode), with SO_REUSEPORT when several processes are to share the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SERVER_RCVBUF)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def announce(sock: socket.socket) -> None:
    print(json.dumps({"port": sock.getsockname()[1], "pid": os.getpid()}), flush=True)


def bare(sock: socket.socket) -> None:
    announce(sock)
    recvfrom, sendto = sock.recvfrom, sock.sendto
    while True:
        data, addr = recvfrom(2048)
        sendto(data, addr)


async def drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    announce(sock)
    recvfrom, sendto = sock.recvfrom, sock.sendto
    while True:
        await trio.lowlevel.wait_readable(sock)
        for _ in range(512):
            try:
                data, addr = recvfrom(2048)
            except BlockingIOError:
                break
            with contextlib.suppress(BlockingIOError):
                sendto(data, addr)


async def _lines(stream: trio.lowlevel.FdStream) -> Any:
    buffer = b""
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)


async def hbproto_server(sock: socket.socket, config: Config) -> None:
    # The load generator's peers come from many 127.x.y.z hosts with up to 1,000 peers each,
    # so the default per-source limit holds; the half-open limit is raised so that a fast
    # ramp-up of tens of thousands of handshakes is never refused.
    limits = Limits(max_half_open=100_000)
    downs: list[tuple[int, float, float, float]] = []
    events: Counter[str] = Counter()
    async with (
        serve("udp://127.0.0.1:0", config, limits=limits, sock=KernelDatagramSocket(sock)) as srv,
        trio.open_nursery() as nursery,
    ):

        async def take_events() -> None:
            async for event in srv:
                events[type(event).__name__] += 1
                if isinstance(event, PeerDown):
                    downs.append(
                        (
                            event.session,
                            time.monotonic(),
                            event.silent_for,
                            event.detection_time or 0.0,
                        )
                    )

        nursery.start_soon(take_events)
        announce(sock)
        control = trio.lowlevel.FdStream(os.dup(0))
        async for command in _lines(control):
            verb = command.get("cmd")
            if verb == "quit":
                break
            if verb == "stats":
                reply: dict[str, Any] = {"counters": dict(srv.counters), "events": dict(events)}
            elif verb == "downs":
                reply = {"downs": downs[:]}
            else:
                reply = {"error": f"unknown command {verb!r}"}
            print(json.dumps(reply), flush=True)
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["hbproto", "bare", "drain"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reuseport", action="store_true")
    parser.add_argument("--interval", type=float, default=1.0, help="hbproto: Config.interval")
    parser.add_argument("--min-rx", type=float, default=None, help="hbproto: Config.min_rx")
    args = parser.parse_args(argv)
    sock = make_socket(args.port, args.reuseport)
    if args.mode == "bare":
        bare(sock)
    elif args.mode == "drain":
        trio.run(drain, sock)
    else:
        trio.run(hbproto_server, sock, Config(interval=args.interval, min_rx=args.min_rx))
    return 0


if __name__ == "__main__":
    sys.exit(main())
