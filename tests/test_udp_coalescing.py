"""A busy UDP loop coalesces its wake-ups; a quiet one answers at once.

:class:`transports.udp.UdpDriver` counts the datagrams it moves over each second; above
``BUSY_RATE`` a second it wakes at most once per ``COALESCE`` and serves everything that came
due meanwhile. These tests run on the mock clock over the in-memory network: one checks that a
flood is taken in few wake-ups and still entirely (every datagram counted), one that a quiet
server's ACK is not held back, and one that a busy server's is held back by no more than
``COALESCE``.
"""

from __future__ import annotations

from collections import Counter

import pytest
import trio

from hbproto import Config, Endpoint, Event, RttSample
from transports import connect
from transports.address import SockAddr
from transports.testing import MemoryDatagramSocket, MemoryNetwork
from transports.udp import BUSY_RATE, COALESCE, UdpDriver

SERVER = ("10.0.0.1", 7373)
FAST = Config(interval=0.01, multiplier=3)


class CountingSocket:
    """A socket that counts the loop's wake-ups: each drains it until it finds it empty."""

    def __init__(self, sock: MemoryDatagramSocket) -> None:
        self.sock = sock
        self.wakeups = 0

    @property
    def local_address(self) -> SockAddr:
        return self.sock.local_address

    async def wait_readable(self) -> None:
        await self.sock.wait_readable()

    def recv_nowait(self) -> tuple[bytes, SockAddr] | None:
        got = self.sock.recv_nowait()
        if got is None:
            self.wakeups += 1
        return got

    def send_nowait(self, data: bytes, addr: SockAddr) -> bool:
        return self.sock.send_nowait(data, addr)

    def close(self) -> None:
        self.sock.close()


async def _flood(net: MemoryNetwork, per_second: int, seconds: float) -> int:
    """Garbage datagrams at a steady rate, one at a time; returns how many were sent."""
    sock = net.socket()
    gap = 1 / per_second
    sent = 0
    deadline = trio.current_time() + seconds
    while trio.current_time() < deadline:
        sock.send_nowait(b"not a frame", SERVER)
        sent += 1
        await trio.sleep(gap)
    return sent


async def _serve(net: MemoryNetwork, nursery: trio.Nursery) -> tuple[UdpDriver, CountingSocket]:
    sock = CountingSocket(net.socket(SERVER))
    endpoint = Endpoint(FAST, accept=True)

    async def emit(event: Event) -> None:
        await trio.lowlevel.checkpoint()

    driver = UdpDriver(sock, endpoint, emit, Counter())
    nursery.start_soon(driver.run)
    return driver, sock


@pytest.mark.parametrize("rate", [BUSY_RATE // 4, BUSY_RATE * 5])
async def test_a_flood_is_taken_in_coalesced_wakeups_and_entirely(
    rate: int, autojump_clock: object
) -> None:
    net = MemoryNetwork(queue_limit=100_000)
    async with trio.open_nursery() as nursery:
        driver, sock = await _serve(net, nursery)
        sent = await _flood(net, rate, 1.0)  # long enough to be judged busy, or not
        woke_before = sock.wakeups
        sent += await _flood(net, rate, 2.0)
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    wakeups = sock.wakeups - woke_before
    assert sum(driver.endpoint.counters.values()) == sent  # every datagram read and counted
    if rate < BUSY_RATE:
        assert wakeups >= 0.99 * rate * 2.0  # one per datagram: nothing held back
    else:
        assert wakeups <= 2.2 / COALESCE  # at most one per COALESCE (2.1 s in all)
        assert wakeups < rate * 2.0 / 4


async def _rtts(busy: bool) -> list[float]:
    net = MemoryNetwork(queue_limit=100_000)
    rtts: list[float] = []
    async with trio.open_nursery() as nursery:
        await _serve(net, nursery)
        if busy:
            nursery.start_soon(_flood, net, BUSY_RATE * 5, 4.0)
        await trio.sleep(1.5)  # a busy server is judged so after a second
        async with connect("udp://10.0.0.1:7373", FAST, sock=net.socket()) as peer:
            with trio.move_on_after(2.0):
                async for event in peer:
                    if isinstance(event, RttSample):
                        rtts.append(event.rtt)
        nursery.cancel_scope.cancel()
    return rtts


async def test_a_quiet_server_acks_at_once(autojump_clock: object) -> None:
    rtts = await _rtts(busy=False)
    assert len(rtts) > 100
    assert max(rtts) < 1e-5  # the in-memory network delivers instantly


async def test_a_busy_server_holds_an_ack_back_no_longer_than_coalesce(
    autojump_clock: object,
) -> None:
    rtts = await _rtts(busy=True)
    assert len(rtts) > 100
    assert max(rtts) <= COALESCE + 1e-5
    assert sum(rtts) / len(rtts) > COALESCE / 10  # it is held back: the flood made it busy
