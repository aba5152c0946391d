"""The exceptions the transports raise: one clear exception each, never a bare exception group."""

from __future__ import annotations

import errno

__all__ = [
    "AddressError",
    "ConnectFailed",
    "ListenFailed",
    "NotConnected",
    "TransportError",
    "UnknownHost",
    "os_reason",
]


class TransportError(Exception):
    """Base class of every error the transports raise."""


class AddressError(TransportError, ValueError):
    """An address such as ``udp://host:port`` could not be parsed or resolved."""


class UnknownHost(TransportError):
    """A host name did not resolve to an address."""


class ListenFailed(TransportError):
    """A server could not bind its address (in use, not local, not permitted)."""


class ConnectFailed(TransportError):
    """A client could not reach its peer: refused, unreachable, or nothing answered in time."""


class NotConnected(TransportError):
    """A message could not be sent because no session is UP (yet, or any more)."""


_REASONS = {
    errno.EADDRINUSE: "address already in use",
    errno.EADDRNOTAVAIL: "not an address of this machine",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.ECONNREFUSED: "connection refused (nothing listens there)",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "timed out",
}


def os_reason(exc: OSError) -> str:
    """A short, lower-case reason for a socket error, as a one-line message needs."""
    return _REASONS.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
