"""hbproto's trio transports: the sans-IO core (:mod:`hbproto`) over UDP and TCP.

One interface for both: :func:`connect` opens a :class:`Peer` (the initiator), :func:`serve` a
:class:`Server` (the responder). Iterate either for events; send application messages on the
same socket or connection as the heartbeats. The ``hbproto`` command (:mod:`transports.cli`)
is built on these.
"""

from ._base import Backoff, Observer, Peer, Server, event_fields
from .address import DEFAULT_PORT, Address, parse_address
from .api import connect, serve
from .errors import (
    AddressError,
    ConnectFailed,
    ListenFailed,
    NotConnected,
    TransportError,
    UnknownHost,
)
from .events import Reconnecting, TransportOpened
from .kernel import KernelTimeouts

__all__ = [
    "DEFAULT_PORT",
    "Address",
    "AddressError",
    "Backoff",
    "ConnectFailed",
    "KernelTimeouts",
    "ListenFailed",
    "NotConnected",
    "Observer",
    "Peer",
    "Reconnecting",
    "Server",
    "TransportError",
    "TransportOpened",
    "UnknownHost",
    "connect",
    "event_fields",
    "parse_address",
    "serve",
]
