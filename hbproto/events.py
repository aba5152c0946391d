"""Events the core reports to the application (SPEC.md [HB-CONF-1]).

Pull them with ``next_event()`` until it returns ``None``. Every event names the session it
concerns by the session's local identifier (``session``), which is also the handle the
application passes back to the core's verbs. Times are in the caller's clock (whatever ``now``
values it passes in), intervals in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "ConnectionEnded",
    "DetectedBy",
    "DownReason",
    "Event",
    "LivenessInactive",
    "LocalStall",
    "MessageReceived",
    "Negotiated",
    "ParametersChanged",
    "PeerDown",
    "PeerRestarted",
    "PeerUp",
    "PiggybackReceived",
    "RttSample",
    "SessionClosed",
]


class DownReason(Enum):
    """Why a session left UP (or never got there)."""

    DETECTION_TIMEOUT = "detection_timeout"  # no valid frame for DetectionTime [HB-SM-3]
    PEER_REPORTED_DOWN = "peer_reported_down"  # the peer sent Sta DOWN [HB-SM-4]
    HANDSHAKE_TIMEOUT = "handshake_timeout"  # the session never came up in time
    TRANSPORT_CLOSED = "transport_closed"  # the byte stream ended without a CLOSE [HB-TCP-7]
    PROTOCOL_ERROR = "protocol_error"  # the byte stream could not be framed [HB-TCP-3]
    PARTIAL_FRAME_TIMEOUT = "partial_frame_timeout"  # a frame never finished [HB-TCP-4]
    # Failures the kernel reports on a stream, passed in with Connection.transport_failed:
    CONNECTION_RESET = "connection_reset"  # the peer's kernel reset the connection
    KERNEL_KEEPALIVE = "kernel_keepalive"  # TCP keepalive probes went unanswered
    KERNEL_USER_TIMEOUT = "kernel_user_timeout"  # TCP_USER_TIMEOUT: data stayed unacknowledged
    SEND_BLOCKED = "send_blocked"  # the peer stopped reading: writes blocked [HB-TCP-9]


class DetectedBy(Enum):
    """Which side detected a failure: this endpoint's timer, or the peer (its Sta DOWN)."""

    LOCAL = "local"
    REMOTE = "remote"


@dataclass(slots=True)
class Negotiated:
    """The timer values in force for a session (SPEC 9.1). ``None`` means "no periodic traffic"."""

    tx_interval: float | None
    expected_remote: float | None
    detection_time: float | None
    local_mult: int
    remote_mult: int


class Event:
    """Base class of every event."""

    __slots__ = ()


@dataclass(slots=True)
class PeerUp(Event):
    """The handshake completed.

    ``again`` is true when this same session was UP before. ``replaces`` is the handle of the
    session this one replaced after a long outage [HB-SM-8], if any.
    """

    session: int
    remote_id: int
    negotiated: Negotiated
    again: bool = False
    replaces: int | None = None


@dataclass(slots=True)
class PeerDown(Event):
    """The session left UP (or INIT). ``silent_for`` is the time since the last valid frame."""

    session: int
    reason: DownReason
    detected_by: DetectedBy
    silent_for: float
    detection_time: float | None


@dataclass(slots=True)
class PeerRestarted(Event):
    """A session to the same peer came up with a different remote identifier [HB-SM-6/8]."""

    session: int
    old_session: int
    old_remote_id: int
    new_remote_id: int


@dataclass(slots=True)
class SessionClosed(Event):
    """The session is CLOSED: by a CLOSE from the peer, or locally. ``code`` is raw."""

    session: int
    code: int
    text: str | None
    by_peer: bool


@dataclass(slots=True)
class RttSample(Event):
    """One round-trip sample from an ACK, with RFC 6298 smoothing [HB-RTT-2]."""

    session: int
    rtt: float
    srtt: float
    rttvar: float


@dataclass(slots=True)
class MessageReceived(Event):
    """An application message arrived in a DATA frame."""

    session: int
    data: bytes


@dataclass(slots=True)
class PiggybackReceived(Event):
    """A HEARTBEAT or ACK carried a PAYLOAD TLV [HB-TLV-8]."""

    session: int
    data: bytes


@dataclass(slots=True)
class ParametersChanged(Event):
    """The negotiated values changed while UP [HB-NEG-4]."""

    session: int
    negotiated: Negotiated


@dataclass(slots=True)
class LivenessInactive(Event):
    """Both ends asked for no periodic traffic: nobody can detect a failure [HB-NEG-3]."""

    session: int


@dataclass(slots=True)
class ConnectionEnded(Event):
    """A stream :class:`~hbproto.connection.Connection` is finished; close the socket.

    Always the last event of a connection. ``reason`` says what ended it (``None`` when the
    session was closed by a CLOSE, sent or received, which a :class:`SessionClosed` reported).
    """

    session: int
    reason: DownReason | None


@dataclass(slots=True)
class LocalStall(Event):
    """The core was driven late: ``late_by`` seconds past a deadline [HB-STALL-2]."""

    late_by: float
    sessions_spared: int
