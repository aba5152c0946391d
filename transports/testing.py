"""An in-memory datagram network for testing applications and transports on a mock clock.

Sockets on a :class:`MemoryNetwork` deliver instantly and in order, through a bounded queue each,
unless the network's :attr:`~MemoryNetwork.drop` rule says otherwise. Everything waits on trio
primitives, so ``trio.testing.MockClock(autojump_threshold=0)`` can run hours of heartbeats in
milliseconds. For TCP, :class:`MemoryListener` hands out ``trio.testing.memory_stream_pair()``
ends: pass it to ``serve(..., listeners=[listener])`` and ``listener.connect`` to
``connect(..., open_stream=...)``.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable

import trio
import trio.testing

from .address import SockAddr

__all__ = ["MemoryDatagramSocket", "MemoryListener", "MemoryNetwork"]

DropRule = Callable[[bytes, SockAddr, SockAddr], bool]


class MemoryNetwork:
    """Addressable in-memory datagram sockets.

    ``drop(data, source, destination)``, when set, returns true for a datagram the network
    loses; :attr:`counters` counts ``delivered``, ``dropped`` and ``overflow`` (a full queue).
    """

    def __init__(self, *, queue_limit: int = 256) -> None:
        self.queue_limit = queue_limit
        self.drop: DropRule | None = None
        self.counters: Counter[str] = Counter()
        self._sockets: dict[SockAddr, MemoryDatagramSocket] = {}
        self._next_port = 40000

    def socket(self, address: SockAddr | None = None) -> MemoryDatagramSocket:
        """A socket at ``address``, or at a fresh port on 10.0.0.1 when it is ``None``."""
        if address is None:
            self._next_port += 1
            address = ("10.0.0.1", self._next_port)
        if address in self._sockets:
            raise OSError(f"{address} is in use")
        sock = MemoryDatagramSocket(self, address)
        self._sockets[address] = sock
        return sock

    def _deliver(self, data: bytes, source: SockAddr, destination: SockAddr) -> None:
        if self.drop is not None and self.drop(data, source, destination):
            self.counters["dropped"] += 1
            return
        target = self._sockets.get(destination)
        if target is None:
            self.counters["unreachable"] += 1
            return
        if len(target._queue) >= self.queue_limit:
            self.counters["overflow"] += 1
            return
        self.counters["delivered"] += 1
        target._queue.append((bytes(data), source))
        target._lot.unpark_all()


class MemoryDatagramSocket:
    """One socket of a :class:`MemoryNetwork` (implements ``DatagramSocket``)."""

    def __init__(self, network: MemoryNetwork, address: SockAddr) -> None:
        self._network = network
        self._address = address
        self._queue: deque[tuple[bytes, SockAddr]] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self.closed = False

    @property
    def local_address(self) -> SockAddr:
        return self._address

    async def wait_readable(self) -> None:
        if self.closed:
            raise trio.ClosedResourceError
        if self._queue:
            await trio.lowlevel.checkpoint()
        else:
            await self._lot.park()

    def recv_nowait(self) -> tuple[bytes, SockAddr] | None:
        return self._queue.popleft() if self._queue else None

    def send_nowait(self, data: bytes, addr: SockAddr) -> bool:
        if self.closed:
            raise trio.ClosedResourceError
        self._network._deliver(data, self._address, addr)
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._network._sockets.pop(self._address, None)
            self._lot.unpark_all()


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener for in-memory streams: :meth:`connect` returns the client's end of a new
    ``trio.testing.memory_stream_pair`` and :meth:`accept` the server's."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](math.inf)

    async def connect(self) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        await self._send.send(server)
        return client

    async def accept(self) -> trio.abc.Stream:
        return await self._receive.receive()

    async def aclose(self) -> None:
        self._send.close()
        self._receive.close()
        await trio.lowlevel.checkpoint()
