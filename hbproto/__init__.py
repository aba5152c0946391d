"""hbproto: an application-layer heartbeat protocol.

This package is the sans-IO core: it never touches a socket, a clock or an event loop. Bytes
and ``now`` go in; bytes, events and the next deadline come out.

- :class:`Endpoint`: many sessions over one datagram socket (UDP).
- :class:`Connection`: one session over a byte stream (TCP).
- :mod:`hbproto.frame`: the wire format; :mod:`hbproto.state`: the state table;
  :mod:`hbproto.timers`: the timer rules; :mod:`hbproto.events`: what the core reports.
- :class:`AuthKeys`: keys for authentication (SPEC section 10), given as ``Config(auth=...)``.
"""

from .auth import AuthKeys
from .config import Config
from .connection import Connection
from .endpoint import UNCHANGED, Endpoint, Limits
from .errors import (
    BadChecksum,
    BadLength,
    BadVersion,
    FrameError,
    FrameTooLarge,
    HbprotoError,
    InvalidField,
    InvalidTlv,
    LocalProtocolError,
    RemoteProtocolError,
    Truncated,
    UnknownFrameType,
)
from .events import (
    ConnectionEnded,
    DetectedBy,
    DownReason,
    Event,
    LivenessInactive,
    LocalStall,
    MessageReceived,
    Negotiated,
    ParametersChanged,
    PeerDown,
    PeerRestarted,
    PeerUp,
    PiggybackReceived,
    RttSample,
    SessionClosed,
)
from .frame import (
    CloseCode,
    Frame,
    FrameType,
    State,
    Tlv,
    TlvType,
    decode,
    decode_interval,
    encode,
    encode_interval,
)
from .session import SessionInfo
from .stream import StreamDeframer

__version__ = "0.1.0"

__all__ = [
    "UNCHANGED",
    "AuthKeys",
    "BadChecksum",
    "BadLength",
    "BadVersion",
    "CloseCode",
    "Config",
    "Connection",
    "ConnectionEnded",
    "DetectedBy",
    "DownReason",
    "Endpoint",
    "Event",
    "Frame",
    "FrameError",
    "FrameTooLarge",
    "FrameType",
    "HbprotoError",
    "InvalidField",
    "InvalidTlv",
    "Limits",
    "LivenessInactive",
    "LocalProtocolError",
    "LocalStall",
    "MessageReceived",
    "Negotiated",
    "ParametersChanged",
    "PeerDown",
    "PeerRestarted",
    "PeerUp",
    "PiggybackReceived",
    "RemoteProtocolError",
    "RttSample",
    "SessionClosed",
    "SessionInfo",
    "State",
    "StreamDeframer",
    "Tlv",
    "TlvType",
    "Truncated",
    "UnknownFrameType",
    "__version__",
    "decode",
    "decode_interval",
    "encode",
    "encode_interval",
]
