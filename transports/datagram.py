"""The datagram socket the UDP transport drives, and its kernel implementation.

The UDP transport needs four things of a socket: wait until a datagram may be waiting, take one
without blocking, send one without blocking, and close. :class:`DatagramSocket` names them, so
the same transport runs over a kernel socket (:class:`KernelDatagramSocket`) or over the
in-memory network of :mod:`transports.testing` in tests on a mock clock. Waiting once and then
draining the socket without blocking costs far less per datagram than awaiting each ``recvfrom``.
"""

from __future__ import annotations

import socket
from typing import Protocol

import trio

from .address import Address, SockAddr
from .errors import ConnectFailed, ListenFailed, os_reason

__all__ = ["DatagramSocket", "KernelDatagramSocket"]

_MAX_DATAGRAM = 65535
# A responder's receive buffer. The system default (about 200 KiB, a few hundred small
# datagrams) overflows in the bursts of a server with tens of thousands of peers, and every
# datagram dropped there is a heartbeat lost; the kernel caps the request at net.core.rmem_max.
SERVER_RCVBUF = 4 << 20


class DatagramSocket(Protocol):
    """What the UDP transport needs of a socket."""

    @property
    def local_address(self) -> SockAddr: ...

    async def wait_readable(self) -> None:
        """Return when a datagram may be waiting (possibly spuriously)."""

    def recv_nowait(self) -> tuple[bytes, SockAddr] | None:
        """One waiting datagram and its source, or ``None``. May raise :class:`OSError` for an
        error the network reported (such as ICMP port unreachable on a connected socket)."""

    def send_nowait(self, data: bytes, addr: SockAddr) -> bool:
        """Send one datagram; ``False`` if the socket's buffer is full and it was not sent."""

    def close(self) -> None: ...


def _numeric(sockaddr: tuple[object, ...]) -> SockAddr:
    return (str(sockaddr[0]), int(str(sockaddr[1])))


class KernelDatagramSocket:
    """A non-blocking kernel UDP socket."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock

    @classmethod
    async def bind(cls, address: Address) -> KernelDatagramSocket:
        """A socket bound to ``address`` (port 0: any free port); :class:`ListenFailed` if not."""
        family, sockaddr = await address.resolve(passive=True)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SERVER_RCVBUF)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            sock.close()
            raise ListenFailed(f"cannot listen on {address}: {os_reason(exc)}") from None
        return cls(sock)

    @classmethod
    async def connect(cls, address: Address) -> tuple[KernelDatagramSocket, SockAddr]:
        """A socket connected to ``address``, so that ICMP errors about it are reported."""
        family, sockaddr = await address.resolve()
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            raise ConnectFailed(f"cannot reach {address}: {os_reason(exc)}") from None
        return cls(sock), _numeric(sock.getpeername())

    @property
    def local_address(self) -> SockAddr:
        return _numeric(self.sock.getsockname())

    async def wait_readable(self) -> None:
        await trio.lowlevel.wait_readable(self.sock)

    def recv_nowait(self) -> tuple[bytes, SockAddr] | None:
        try:
            data, addr = self.sock.recvfrom(_MAX_DATAGRAM)
        except BlockingIOError:
            return None
        # IPv4 gives (host, port) already; IPv6's flow and scope fields are dropped.
        return data, addr if len(addr) == 2 else (addr[0], addr[1])

    def send_nowait(self, data: bytes, addr: SockAddr) -> bool:
        try:
            self.sock.sendto(data, addr)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()
