"""hbproto: an application-layer heartbeat protocol.

This package is the sans-IO core: it never touches a socket, a clock or an event loop.
The wire format lives in :mod:`hbproto.frame`, the TCP de-framer in :mod:`hbproto.stream`.
"""

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
from .stream import StreamDeframer

__version__ = "0.1.0"

__all__ = [
    "BadChecksum",
    "BadLength",
    "BadVersion",
    "CloseCode",
    "Frame",
    "FrameError",
    "FrameTooLarge",
    "FrameType",
    "HbprotoError",
    "InvalidField",
    "InvalidTlv",
    "LocalProtocolError",
    "RemoteProtocolError",
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
