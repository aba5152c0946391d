"""Exceptions raised by hbproto.

Errors are split the way h11 splits them:

* :class:`LocalProtocolError` means *this* program misused the API (tried to encode a frame
  with an out-of-range field, for example). It is a bug in the caller.
* :class:`RemoteProtocolError` means bytes that arrived from the network are invalid. On a
  datagram transport the core never lets these escape: the frame is dropped and counted, as
  SPEC.md section 7 requires. The codec raises them so the caller can count the reason.

Every :class:`FrameError` subclass carries ``reason``, the drop-counter name that SPEC.md
section 7 assigns to that check, so logs and counters agree across implementations.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BadChecksum",
    "BadLength",
    "BadVersion",
    "FrameError",
    "FrameTooLarge",
    "HbprotoError",
    "InvalidField",
    "InvalidTlv",
    "LocalProtocolError",
    "RemoteProtocolError",
    "Truncated",
    "UnknownFrameType",
]


class HbprotoError(Exception):
    """Base class of every exception hbproto raises on purpose."""


class LocalProtocolError(HbprotoError):
    """The caller asked for something the protocol does not allow."""


class RemoteProtocolError(HbprotoError):
    """The peer (or whoever sent the bytes) violated the protocol."""


class FrameError(RemoteProtocolError):
    """Bytes that do not form a valid frame. ``reason`` is the SPEC's drop-counter name."""

    reason: ClassVar[str] = "malformed"


class Truncated(FrameError):
    """Fewer bytes than the fixed part and checksum need (SPEC V-2)."""

    reason = "truncated"


class BadVersion(FrameError):
    """The version nibble is not 1 (SPEC V-1)."""

    reason = "bad_version"


class BadLength(FrameError):
    """The Length field disagrees with the bytes received, or is below the minimum (SPEC V-4)."""

    reason = "bad_length"


class FrameTooLarge(FrameError):
    """The frame is larger than the receiver's configured maximum (SPEC V-3)."""

    reason = "too_large"


class BadChecksum(FrameError):
    """The CRC-32 trailer does not match the frame's bytes (SPEC V-5)."""

    reason = "bad_checksum"


class UnknownFrameType(FrameError):
    """The frame type is not one this version defines (SPEC V-6)."""

    reason = "unknown_type"


class InvalidField(FrameError):
    """A fixed-part field holds a value the SPEC forbids (SPEC V-7)."""

    reason = "bad_field"


class InvalidTlv(FrameError):
    """The TLV area is malformed or breaks a TLV rule (SPEC V-8)."""

    reason = "bad_tlv"
