"""An impairment proxy: a UDP or TCP relay that delays, jitters, reorders and duplicates.

The kernel here has no netem, so delay spikes and reordering are made in user space. The proxy
listens on one address and relays to another: each UDP client gets an upstream socket of its
own (as a NAT would give it), each accepted TCP connection an upstream connection. Packets
(UDP) or received chunks (TCP) going *up* (client to server) and *down* (server to client) are
delayed by the parameters of their direction::

    python3 -m tests.impair udp 10.77.1.1:7474 10.77.2.2:7373

Parameters change at run time: each line on stdin is a JSON object, for example
``{"delay": 0.3}``, ``{"reorder": 0.2, "reorder_by": 0.08, "direction": "down"}`` or
``{"reset": true}``, and each is answered on stdout with one JSON line: the parameters now in
force, the counts so far, and when the change took effect, as ``t`` on the proxy's trio clock
and as ``monotonic`` (``time.monotonic()``, a clock every process on the machine shares); or
``{"error": ...}`` for a line it cannot apply, which then changes nothing. The first line on
stdout, ``{"ready": ...}``, says it listens. End of stdin stops the proxy.

``delay`` (seconds) is added to every packet, ``jitter`` adds a uniform extra in
``[0, jitter]``; without reordering, delivery stays in order (a packet never overtakes the one
before it, as in a queue). ``reorder`` (a probability) or ``reorder_every`` (every N-th packet)
holds a UDP packet back ``reorder_by`` seconds more, out of order, so later packets overtake it.
``duplicate`` (a probability) sends a UDP packet twice. TCP keeps its byte stream in order
whatever the parameters, as a TCP receiver does with reordered segments: a chunk held back holds
back everything after it (head-of-line blocking, counted as ``held``), and duplication does not
apply.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import trio

__all__ = ["Impairment", "Scheduler", "main"]

DIRECTIONS = ("up", "down")
MAX_FLOWS = 256  # UDP clients relayed at once; datagrams from more are dropped and counted
_DATAGRAM = 65535


@dataclass(slots=True)
class Impairment:
    """What is done to the packets of one direction."""

    delay: float = 0.0
    jitter: float = 0.0
    reorder: float = 0.0
    reorder_every: int = 0
    reorder_by: float = 0.0
    duplicate: float = 0.0

    def update(self, changes: dict[str, Any]) -> None:
        """Apply ``changes`` (field name to value); :class:`ValueError` for a bad one."""
        known = {f.name: f.type for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown parameter {name!r}")
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ValueError(f"{name} must be a number, not {value!r}")
            if value < 0 or (name in ("reorder", "duplicate") and value > 1):
                raise ValueError(f"{name} out of range: {value!r}")
            setattr(self, name, int(value) if name == "reorder_every" else float(value))


Send = Callable[[bytes], Awaitable[None]]


class Scheduler:
    """Releases packets of one direction of one flow at their due times.

    ``push`` decides a packet's due time from the direction's :class:`Impairment`; ``run``
    sends each when it is due. Packets that are not held back for reordering keep their order.
    """

    def __init__(
        self, impairment: Impairment, send: Send, counts: Counter[str], rng: random.Random
    ) -> None:
        self.impairment = impairment
        self.send = send
        self.counts = counts
        self.rng = rng
        self._heap: list[tuple[float, int, bytes]] = []
        self._order = 0
        self._in_order_due = -math.inf
        self._passed = 0
        self._wake = trio.Event()

    def push(self, data: bytes, *, stream: bool = False) -> None:
        imp = self.impairment
        now = trio.current_time()
        due = now + imp.delay + (self.rng.uniform(0, imp.jitter) if imp.jitter else 0.0)
        self._passed += 1
        held = bool(
            (imp.reorder_every and self._passed % imp.reorder_every == 0)
            or (imp.reorder and self.rng.random() < imp.reorder)
        )
        if held:
            due += imp.reorder_by
            self.counts["held" if stream else "reordered"] += 1
        if stream or not held:
            due = max(due, self._in_order_due)  # a queue: no overtaking
            self._in_order_due = due
        copies = 2 if not stream and imp.duplicate and self.rng.random() < imp.duplicate else 1
        if copies == 2:
            self.counts["duplicated"] += 1
        for _ in range(copies):
            heapq.heappush(self._heap, (due, self._order, data))
            self._order += 1
        self._wake.set()

    async def run(self) -> None:
        heap = self._heap
        while True:
            if not heap:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            due = heap[0][0]
            if due > trio.current_time():
                self._wake = trio.Event()
                with trio.move_on_at(due):
                    await self._wake.wait()  # an earlier packet may arrive meanwhile
                continue
            _, _, data = heapq.heappop(heap)
            self.counts["sent"] += 1
            await self.send(data)


class Proxy:
    """The relay and its parameters, per direction."""

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int], seed: int) -> None:
        self.listen = listen
        self.upstream = upstream
        self.params = {d: Impairment() for d in DIRECTIONS}
        self.counts = {d: Counter[str]() for d in DIRECTIONS}
        self.rng = random.Random(seed)

    def control(self, line: str) -> dict[str, Any]:
        """Apply one control line; return the reply."""
        try:
            command = json.loads(line)
            if not isinstance(command, dict):
                raise ValueError("a control line is a JSON object")
            direction = command.pop("direction", "both")
            if direction not in (*DIRECTIONS, "both"):
                raise ValueError(f"direction must be up, down or both, not {direction!r}")
            targets = DIRECTIONS if direction == "both" else (direction,)
            reset = command.pop("reset", False)
            Impairment().update(command)  # all or nothing: a bad value changes no parameter
            for d in targets:
                if reset:
                    self.params[d].update(asdict(Impairment()))
                self.params[d].update(command)
        except ValueError as exc:
            return {"error": str(exc)}
        return {
            "ok": True,
            "t": trio.current_time(),
            "monotonic": time.monotonic(),
            "params": {d: asdict(p) for d, p in self.params.items()},
            "counts": {d: dict(c) for d, c in self.counts.items()},
        }

    def scheduler(self, direction: str, send: Send) -> Scheduler:
        """A scheduler for one direction of one flow; it reads the direction's parameters as
        they are when each packet arrives."""
        return Scheduler(self.params[direction], send, self.counts[direction], self.rng)

    # --- UDP ----------------------------------------------------------------------------------

    async def serve_udp(self, task_status: trio.TaskStatus[None]) -> None:
        listener = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await listener.bind(self.listen)
        flows: dict[Any, Scheduler] = {}
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    data, client = await listener.recvfrom(_DATAGRAM)
                except OSError:
                    self.counts["up"]["recv_error"] += 1
                    continue
                up = flows.get(client)
                if up is None:
                    if len(flows) >= MAX_FLOWS:
                        self.counts["up"]["dropped_flows"] += 1
                        continue
                    up = await self._udp_flow(nursery, listener, client)
                    flows[client] = up
                up.push(data)

    async def _udp_flow(
        self, nursery: trio.Nursery, listener: trio.socket.SocketType, client: Any
    ) -> Scheduler:
        """An upstream socket for a new client, and the tasks that carry its traffic."""
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await sock.connect(self.upstream)

        async def to_server(data: bytes) -> None:
            try:
                await sock.send(data)
            except OSError:
                self.counts["up"]["send_error"] += 1  # e.g. an ICMP error: lost like a datagram

        async def to_client(data: bytes) -> None:
            try:
                await listener.sendto(data, client)
            except OSError:
                self.counts["down"]["send_error"] += 1

        down = self.scheduler("down", to_client)

        async def from_server() -> None:
            while True:
                try:
                    data = await sock.recv(_DATAGRAM)
                except OSError:
                    self.counts["down"]["recv_error"] += 1
                    continue
                down.push(data)

        up = self.scheduler("up", to_server)
        nursery.start_soon(up.run)
        nursery.start_soon(down.run)
        nursery.start_soon(from_server)
        return up

    # --- TCP ----------------------------------------------------------------------------------

    async def serve_tcp(self, task_status: trio.TaskStatus[None]) -> None:
        listeners = await trio.open_tcp_listeners(self.listen[1], host=self.listen[0])
        async with trio.open_nursery() as nursery:
            task_status.started()
            await trio.serve_listeners(self._tcp_connection, listeners, handler_nursery=nursery)

    async def _tcp_connection(self, client: trio.SocketStream) -> None:
        try:
            server = await trio.open_tcp_stream(*self.upstream)
        except OSError:
            self.counts["up"]["connect_error"] += 1
            await client.aclose()
            return
        async with client, server, trio.open_nursery() as nursery:
            done = [0]

            def pump(
                source: trio.SocketStream, sink: trio.SocketStream, direction: str
            ) -> Callable[[], Awaitable[None]]:
                async def send(data: bytes) -> None:
                    if not data:
                        await sink.send_eof()  # the end of stream, in its place in the queue
                        done[0] += 1
                        if done[0] == 2:
                            nursery.cancel_scope.cancel()
                        return
                    await sink.send_all(data)

                queue = self.scheduler(direction, send)

                async def read() -> None:
                    while True:
                        data = await source.receive_some(_DATAGRAM)
                        queue.push(bytes(data), stream=True)
                        if not data:
                            return

                async def both() -> None:
                    try:
                        async with trio.open_nursery() as inner:
                            inner.start_soon(queue.run)
                            inner.start_soon(read)
                    except* (trio.BrokenResourceError, trio.ClosedResourceError):
                        nursery.cancel_scope.cancel()  # a reset on one side ends the pair

                return both

            nursery.start_soon(pump(client, server, "up"))
            nursery.start_soon(pump(server, client, "down"))


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: use HOST:PORT")
    return host, int(port)


async def _run(args: argparse.Namespace) -> None:
    proxy = Proxy(args.listen, args.upstream, args.seed)
    for name in ("delay", "jitter"):
        if getattr(args, name):
            proxy.params["up"].update({name: getattr(args, name)})
            proxy.params["down"].update({name: getattr(args, name)})
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())

    def say(record: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    async with trio.open_nursery() as nursery:
        serve = proxy.serve_udp if args.proto == "udp" else proxy.serve_tcp
        await nursery.start(serve)
        say({"ready": True, "proto": args.proto, "listen": list(args.listen)})
        pending = b""
        while chunk := await stdin.receive_some(4096):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if line.strip():
                    say(proxy.control(line.decode(errors="replace")))
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m tests.impair", description=__doc__)
    parser.add_argument("proto", choices=["udp", "tcp"])
    parser.add_argument("listen", type=_hostport, metavar="LISTEN", help="HOST:PORT to listen on")
    parser.add_argument(
        "upstream", type=_hostport, metavar="UPSTREAM", help="HOST:PORT to relay to"
    )
    parser.add_argument("--delay", type=float, default=0.0, help="initial delay, seconds")
    parser.add_argument("--jitter", type=float, default=0.0, help="initial jitter, seconds")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    trio.run(_run, parser.parse_args(argv))


if __name__ == "__main__":
    main()
