"""Events the transports add to the core's (:mod:`hbproto.events`).

A peer or server yields the core's events (:class:`~hbproto.PeerUp`,
:class:`~hbproto.PeerDown`, :class:`~hbproto.MessageReceived`, ...) and these.
"""

from __future__ import annotations

from dataclasses import dataclass

from hbproto import Event

from .address import SockAddr
from .kernel import KernelTimeouts

__all__ = ["Reconnecting", "TransportOpened"]


@dataclass(slots=True)
class TransportOpened(Event):
    """A TCP connection is open and its session starts; ``kernel`` is what the kernel has in
    force for keepalive and TCP_USER_TIMEOUT on it (read back after setting)."""

    session: int
    local: SockAddr
    remote: SockAddr
    kernel: KernelTimeouts


@dataclass(slots=True)
class Reconnecting(Event):
    """A client lost its session (or never got one) and tries again.

    ``attempt`` counts tries since the session was last UP. ``delay`` is the back-off before the
    next try, in seconds, with jitter. It is ``None`` when the UDP session itself keeps trying:
    a session that went DOWN keeps sending at the slow-start rate and backs off as the SPEC says
    [HB-TX-7], so a peer that comes back resumes the same session or is reported restarted.
    """

    attempt: int
    delay: float | None
    reason: str
