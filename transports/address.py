"""Peer addresses as the command line and the API take them: ``udp://host:port``, ``tcp://...``.

IPv6 literals go in brackets (``udp://[::1]:7373``). A missing port means :data:`DEFAULT_PORT`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import trio

from .errors import AddressError, UnknownHost

__all__ = ["DEFAULT_PORT", "Address", "SockAddr", "parse_address"]

DEFAULT_PORT = 7373

SockAddr = tuple[str, int]
"""A resolved address: numeric host and port (an IPv6 scope stays in the host: ``fe80::1%eth0``)."""


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed ``scheme://host:port``."""

    scheme: Literal["udp", "tcp"]
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    async def resolve(self, *, passive: bool = False) -> tuple[socket.AddressFamily, SockAddr]:
        """The first address ``host`` resolves to, as a family and a numeric ``(host, port)``.

        ``passive`` resolves for binding (an empty host means every local address). Raises
        :class:`UnknownHost` if the name does not resolve.
        """
        kind = socket.SOCK_DGRAM if self.scheme == "udp" else socket.SOCK_STREAM
        host: str | None = self.host or None
        try:
            infos = await trio.socket.getaddrinfo(
                host, self.port, type=kind, flags=socket.AI_PASSIVE if passive else 0
            )
        except OSError as exc:  # socket.gaierror: the name does not resolve
            reason = (exc.strerror or str(exc)).lower()
            raise UnknownHost(f"cannot resolve {self.host!r}: {reason}") from None
        family, _, _, _, sockaddr = infos[0]
        return family, (str(sockaddr[0]), int(sockaddr[1]))


def parse_address(text: str, *, default_host: str = "127.0.0.1") -> Address:
    """Parse ``udp://host:port`` or ``tcp://host:port``; raise :class:`AddressError` if bad."""
    if "://" not in text:
        raise AddressError(f"{text!r} is not an address like udp://127.0.0.1:{DEFAULT_PORT}")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("udp", "tcp"):
        raise AddressError(f"{text!r}: the scheme must be udp or tcp, not {parts.scheme!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise AddressError(f"{text!r}: an address is only scheme://host:port")
    try:
        port = parts.port
    except ValueError:
        raise AddressError(f"{text!r}: the port must be a number from 0 to 65535") from None
    host = parts.hostname or ""
    if not host and not parts.netloc.startswith(("[", ":")) and parts.netloc:
        raise AddressError(f"{text!r}: cannot read a host from {parts.netloc!r}")
    return Address(
        "udp" if scheme == "udp" else "tcp",
        host or default_host,
        DEFAULT_PORT if port is None else port,
    )
