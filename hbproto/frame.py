"""The hbproto v1 frame format (SPEC.md section 4), defined once.

:data:`FRAME_SCHEMA` is the construct definition of the wire format and the single source of
truth. :func:`decode` and :func:`encode` are the fast codec the rest of hbproto uses: its
``struct`` layout and bit positions are *derived* from the schema when this module is
imported, and property tests prove it byte-identical to :func:`schema_decode` and
:func:`schema_encode` in both directions.

Both codecs run the same semantic checks (:func:`_validate`), in the order SPEC.md section 7
lists them, and raise only :class:`~hbproto.errors.FrameError` subclasses on bad input.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

import construct as cs

from .errors import (
    BadChecksum,
    BadLength,
    BadVersion,
    FrameError,
    FrameTooLarge,
    InvalidField,
    InvalidTlv,
    LocalProtocolError,
    Truncated,
    UnknownFrameType,
)

if TYPE_CHECKING:
    from .auth import AuthKeys

__all__ = [
    "AUTH_MAC_SIZE",
    "AUTH_TLV_SIZE",
    "CLOSE_TEXT_MAX",
    "CRC_SIZE",
    "FIXED_SIZE",
    "FRAME_SCHEMA",
    "INTERVAL_MAX_US",
    "MAX_FRAME",
    "MIN_FRAME",
    "MULT_MAX",
    "NO_PREFERENCE_CODE",
    "PIGGYBACK_MAX",
    "UDP_MAX_FRAME",
    "VERSION",
    "CloseCode",
    "Frame",
    "FrameType",
    "State",
    "Tlv",
    "TlvType",
    "decode",
    "decode_interval",
    "encode",
    "encode_interval",
    "heartbeat_key",
    "pack",
    "pack_tlv",
    "schema_decode",
    "schema_encode",
]

VERSION = 1
FIXED_SIZE = 24
CRC_SIZE = 4
MIN_FRAME = FIXED_SIZE + CRC_SIZE
MAX_FRAME = 0xFFFF  # the Length field is 16 bits
UDP_MAX_FRAME = 1200  # largest frame a sender puts in one datagram by default (SPEC 11.1)
TLV_HEADER_SIZE = 3
PIGGYBACK_MAX = 128  # largest PAYLOAD value in a HEARTBEAT or ACK
CLOSE_TEXT_MAX = 123  # bytes of UTF-8, as WebSocket's close reason
AUTH_MAC_SIZE = 16  # HMAC-SHA-256 truncated to 128 bits
AUTH_VALUE_SIZE = 1 + AUTH_MAC_SIZE  # key id + MAC
AUTH_TLV_SIZE = TLV_HEADER_SIZE + AUTH_VALUE_SIZE  # what authentication adds to every frame
MULT_MAX = 15
ID_MAX = 0xFFFFFFFF
CRITICAL_TLV_BIT = 0x80


class FrameType(IntEnum):
    """Frame types (SPEC 4.3, 6, 13.1)."""

    HEARTBEAT = 1
    ACK = 2
    DATA = 3
    CLOSE = 4


class State(IntEnum):
    """The sender's session state as carried on the wire (SPEC 8.3, 13.2). Values follow BFD."""

    CLOSED = 0
    DOWN = 1
    INIT = 2
    UP = 3


class TlvType(IntEnum):
    """TLV types this version defines (SPEC 5, 13.3). Bit 0x80 marks a type a receiver must know."""

    PAYLOAD = 0x01
    CLOSE_TEXT = 0x02
    AUTH = 0x80


class CloseCode(IntEnum):
    """Reason codes carried by CLOSE frames (SPEC 6.4, 13.4). Unknown codes mean UNSPECIFIED."""

    UNSPECIFIED = 0
    SHUTDOWN = 1
    TIMEOUT = 2
    TOO_FREQUENT = 3
    AUTH_FAILURE = 4
    PROTOCOL_ERROR = 5
    RESTART = 6
    REFUSED = 7


# --- Interval encoding (SPEC 4.4) -------------------------------------------------------------
# Two bits of unit, fourteen bits of count. 0xFFFF means "no preference".

NO_PREFERENCE_CODE = 0xFFFF
_UNIT_US = (10, 1_000, 100_000, 10_000_000)
_COUNT_MAX = 0x3FFF
INTERVAL_MAX_US = (_COUNT_MAX - 1) * _UNIT_US[3]  # 0xFFFF itself is reserved for "no preference"


def decode_interval(code: int) -> int | None:
    """Microseconds for a 16-bit interval code; ``None`` for "no preference"."""
    if code == NO_PREFERENCE_CODE:
        return None
    return (code & _COUNT_MAX) * _UNIT_US[code >> 14]


@lru_cache(maxsize=4096)  # sessions share a handful of values; cached codes are shared ints
def encode_interval(us: int | None) -> int:
    """The canonical code for ``us`` microseconds, rounding up to the next representable value.

    Rounding up never asks the peer for more than was meant: a longer transmit interval or a
    longer minimum receive interval is always the conservative choice.
    """
    if us is None:
        return NO_PREFERENCE_CODE
    if not 0 <= us <= INTERVAL_MAX_US:
        raise LocalProtocolError(f"interval {us} us is outside 0..{INTERVAL_MAX_US} us")
    # Units divide one another, so the finest unit whose rounded-up count fits is exact
    # whenever any unit is, and otherwise rounds up the least.
    for unit_code, unit in enumerate(_UNIT_US):
        count = -(-us // unit)
        if count <= (_COUNT_MAX if unit_code < 3 else _COUNT_MAX - 1):
            return (unit_code << 14) | count
    raise AssertionError("unreachable: INTERVAL_MAX_US is representable")  # pragma: no cover


# --- The schema: the single source of truth ---------------------------------------------------

_INTERVAL = cs.ExprAdapter(
    cs.Int16ub,
    lambda code, _ctx: decode_interval(code),
    lambda us, _ctx: encode_interval(us),
)

TLV_SCHEMA = cs.Struct(
    "type" / cs.Int8ub,
    "length" / cs.Int16ub,
    "value" / cs.Bytes(cs.this.length),
)

BODY_SCHEMA = cs.Struct(
    "head"
    / cs.BitStruct(
        "version" / cs.Nibble,
        "type" / cs.Nibble,
        "state" / cs.BitsInteger(2),
        "poll" / cs.Flag,
        "final" / cs.Flag,
        "mult" / cs.Nibble,
    ),
    "length" / cs.Int16ub,
    "my_id" / cs.Int32ub,
    "your_id" / cs.Int32ub,
    "seq" / cs.Int32ub,
    "timestamp" / cs.Int32ub,
    "desired_tx" / _INTERVAL,
    "required_rx" / _INTERVAL,
    "tlvs" / cs.FixedSized(cs.this.length - FIXED_SIZE - CRC_SIZE, cs.GreedyRange(TLV_SCHEMA)),
)

FRAME_SCHEMA = cs.Struct(
    "body" / cs.RawCopy(BODY_SCHEMA),
    "crc" / cs.Checksum(cs.Int32ub, zlib.crc32, cs.this.body.data),
)
"""The complete frame: fixed part, TLVs, CRC-32 trailer over everything before it."""


# --- The fast path's layout, derived from the schema ------------------------------------------


def _unwrap(con: Any) -> Any:
    while isinstance(con, cs.Renamed | cs.Adapter):
        con = con.subcon
    return con


def _derive_layout(schema: Any) -> tuple[str, list[str], dict[str, tuple[int, int]]]:
    """The ``struct`` format, field names and bit positions of the schema's fixed-size prefix."""
    fmt = ">"
    names: list[str] = []
    bits: dict[str, tuple[int, int]] = {}
    sizes = {1: "B", 2: "H", 4: "I"}
    for sub in schema.subcons:
        inner = _unwrap(sub)
        if isinstance(inner, cs.FormatField):
            fmt += inner.fmtstr.lstrip("<>=!")
        elif isinstance(inner, cs.Transformed):  # a BitStruct
            width = inner.sizeof() * 8
            fmt += sizes[inner.sizeof()]
            for field in inner.subcon.subcons:
                core = _unwrap(field)
                size = core.length if isinstance(core, cs.BitsInteger) else 1
                width -= size
                bits[field.name] = (width, (1 << size) - 1)
        else:
            break  # the variable-size TLV area starts here
        names.append(sub.name)
    return fmt, names, bits


_FMT, _NAMES, _BITS = _derive_layout(BODY_SCHEMA)
_EXPECTED = ["head", "length", "my_id", "your_id", "seq", "timestamp", "desired_tx", "required_rx"]
if _NAMES != _EXPECTED:
    raise ImportError(f"frame schema and fast codec disagree on the fixed part: {_NAMES}")
_FIXED = struct.Struct(_FMT)
if _FIXED.size != FIXED_SIZE:
    raise ImportError(f"fixed part is {_FIXED.size} bytes, SPEC says {FIXED_SIZE}")
_VER_SHIFT, _VER_MASK = _BITS["version"]
_TYPE_SHIFT, _TYPE_MASK = _BITS["type"]
_STATE_SHIFT, _STATE_MASK = _BITS["state"]
_POLL_SHIFT, _ = _BITS["poll"]
_FINAL_SHIFT, _ = _BITS["final"]
_MULT_SHIFT, _MULT_MASK = _BITS["mult"]
_CRC = struct.Struct(">I")
# Every code decoded once: decoding is a lookup, and equal intervals are one shared object.
_INTERVALS: tuple[int | None, ...] = tuple(decode_interval(code) for code in range(0x10000))
_TLV_HEAD = struct.Struct(">BH")
_FRAME_TYPES = {t.value: t for t in FrameType}
_STATES = tuple(State)


# --- The decoded frame ------------------------------------------------------------------------


class Tlv(NamedTuple):
    """One TLV as it appeared on the wire (type byte and value bytes)."""

    type: int
    value: bytes


@dataclass(slots=True)
class Frame:
    """One hbproto frame. Field meanings are in SPEC.md section 4.

    ``desired_tx`` and ``required_rx`` are microseconds, ``None`` meaning "no preference".
    In an ACK, ``seq`` and ``timestamp`` are the values echoed from the HEARTBEAT; in a CLOSE,
    ``timestamp`` holds the reason code (see :attr:`close_code`).
    """

    type: FrameType
    state: State
    my_id: int
    your_id: int = 0
    seq: int = 0
    timestamp: int = 0
    desired_tx: int | None = None
    required_rx: int | None = None
    mult: int = 3
    poll: bool = False
    final: bool = False
    tlvs: tuple[Tlv, ...] = ()

    def _tlv(self, tlv_type: int) -> bytes | None:
        for tlv in self.tlvs:
            if tlv.type == tlv_type:
                return tlv.value
        return None

    @property
    def payload(self) -> bytes | None:
        """The PAYLOAD TLV's value: a DATA frame's message or a piggybacked payload."""
        return self._tlv(TlvType.PAYLOAD)

    @property
    def close_code(self) -> int:
        """The reason code of a CLOSE frame (raw: unknown codes are kept as numbers)."""
        return self.timestamp

    @property
    def close_text(self) -> str | None:
        """The CLOSE_TEXT TLV, decoded (validated as UTF-8 by the codec)."""
        raw = self._tlv(TlvType.CLOSE_TEXT)
        return None if raw is None else raw.decode("utf-8")

    @property
    def auth(self) -> tuple[int, bytes] | None:
        """``(key_id, mac)`` from the AUTH TLV, if present."""
        raw = self._tlv(TlvType.AUTH)
        return None if raw is None else (raw[0], raw[1:])

    @property
    def size(self) -> int:
        """Bytes this frame occupies on the wire."""
        return MIN_FRAME + sum(TLV_HEADER_SIZE + len(t.value) for t in self.tlvs)


# --- Validation shared by both codecs (SPEC 7, checks V-7 and V-8) ----------------------------


def _validate(frame: Frame) -> None:
    _check_fields(frame)
    _check_tlvs(frame.type, frame.tlvs)


def _check_fields(frame: Frame) -> None:
    """Check V-7, in the SPEC's order."""
    ftype = frame.type
    state = frame.state
    if frame.mult == 0:
        raise InvalidField("detect multiplier is 0")
    if (ftype is FrameType.CLOSE) != (state is State.CLOSED):
        raise InvalidField(f"{ftype.name} frame with state {state.name}")
    if ftype is FrameType.DATA and state is not State.UP:
        raise InvalidField(f"DATA frame with state {state.name}")
    if frame.poll and ftype is not FrameType.HEARTBEAT:
        raise InvalidField(f"P flag on a {ftype.name} frame")
    if frame.final and ftype is not FrameType.ACK:
        raise InvalidField(f"F flag on a {ftype.name} frame")
    if frame.my_id == 0:
        raise InvalidField("My Identifier is 0")
    if frame.your_id == 0 and not (ftype is FrameType.HEARTBEAT and state is State.DOWN):
        raise InvalidField(f"Your Identifier is 0 in a {ftype.name} frame with state {state.name}")
    if frame.desired_tx == 0:
        raise InvalidField("Desired TX Interval is 0")


def _check_tlvs(ftype: FrameType, tlvs: tuple[Tlv, ...]) -> None:
    """Check V-8 on TLVs that already parsed (the structural part is in the parsers)."""
    if not tlvs:
        if ftype is FrameType.DATA:
            raise InvalidTlv("DATA frame without a PAYLOAD TLV")
        return
    seen: set[int] = set()
    last = len(tlvs) - 1
    for index, (tlv_type, value) in enumerate(tlvs):
        if tlv_type in seen and tlv_type in _KNOWN_TLVS:
            raise InvalidTlv(f"TLV 0x{tlv_type:02x} appears twice")
        seen.add(tlv_type)
        if tlv_type == TlvType.PAYLOAD:
            if ftype is FrameType.CLOSE:
                raise InvalidTlv("PAYLOAD TLV in a CLOSE frame")
            if ftype is not FrameType.DATA and len(value) > PIGGYBACK_MAX:
                raise InvalidTlv(f"piggybacked PAYLOAD of {len(value)} bytes > {PIGGYBACK_MAX}")
        elif tlv_type == TlvType.CLOSE_TEXT:
            if ftype is not FrameType.CLOSE:
                raise InvalidTlv(f"CLOSE_TEXT TLV in a {ftype.name} frame")
            if len(value) > CLOSE_TEXT_MAX:
                raise InvalidTlv(f"CLOSE_TEXT of {len(value)} bytes > {CLOSE_TEXT_MAX}")
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidTlv("CLOSE_TEXT is not valid UTF-8") from None
        elif tlv_type == TlvType.AUTH:
            if index != last:
                raise InvalidTlv("AUTH TLV is not the last TLV")
            if len(value) != AUTH_VALUE_SIZE:
                raise InvalidTlv(f"AUTH TLV value is {len(value)} bytes, not {AUTH_VALUE_SIZE}")
        elif tlv_type & CRITICAL_TLV_BIT:
            raise InvalidTlv(f"unknown critical TLV 0x{tlv_type:02x}")
    if ftype is FrameType.DATA and TlvType.PAYLOAD not in seen:
        raise InvalidTlv("DATA frame without a PAYLOAD TLV")


_KNOWN_TLVS = frozenset(t.value for t in TlvType)


def _precheck(data: bytes, max_size: int) -> int:
    """Checks V-1 to V-4: everything that must hold before a byte past the header is read."""
    n = len(data)
    if n == 0:
        raise Truncated("empty frame")
    if data[0] >> 4 != VERSION:
        raise BadVersion(f"version {data[0] >> 4}")
    if n < MIN_FRAME:
        raise Truncated(f"{n} bytes, a frame has at least {MIN_FRAME}")
    if n > max_size:
        raise FrameTooLarge(f"{n} bytes > limit {max_size}")
    length = (data[2] << 8) | data[3]
    if length != n:
        raise BadLength(f"Length field says {length}, {n} bytes received")
    return n


# --- The fast codec ---------------------------------------------------------------------------


def decode(data: bytes, max_size: int = MAX_FRAME) -> Frame:
    """Decode exactly one frame from ``data`` (a datagram, or one frame cut from a stream).

    Raises a :class:`~hbproto.errors.FrameError` subclass, and nothing else, for bad input.
    """
    n = _precheck(data, max_size)
    if zlib.crc32(data[: n - CRC_SIZE]) != _CRC.unpack_from(data, n - CRC_SIZE)[0]:
        raise BadChecksum("CRC-32 mismatch")
    head, _, my_id, your_id, seq, ts, tx_code, rx_code = _FIXED.unpack_from(data)
    ftype = _FRAME_TYPES.get((head >> _TYPE_SHIFT) & _TYPE_MASK)
    if ftype is None:
        raise UnknownFrameType(f"type {(head >> _TYPE_SHIFT) & _TYPE_MASK}")
    # Field checks (V-7) come before any TLV check (V-8), structural ones included.
    frame = Frame(
        ftype,
        _STATES[(head >> _STATE_SHIFT) & _STATE_MASK],
        my_id,
        your_id,
        seq,
        ts,
        _INTERVALS[tx_code],
        _INTERVALS[rx_code],
        (head >> _MULT_SHIFT) & _MULT_MASK,
        bool((head >> _POLL_SHIFT) & 1),
        bool((head >> _FINAL_SHIFT) & 1),
    )
    _check_fields(frame)
    if n > MIN_FRAME:
        frame.tlvs = _parse_tlvs(data, n - CRC_SIZE)
    _check_tlvs(ftype, frame.tlvs)
    return frame


def _parse_tlvs(data: bytes, end: int) -> tuple[Tlv, ...]:
    tlvs = []
    pos = FIXED_SIZE
    while pos < end:
        if end - pos < TLV_HEADER_SIZE:
            raise InvalidTlv(f"{end - pos} stray bytes where a TLV header should be")
        tlv_type, length = _TLV_HEAD.unpack_from(data, pos)
        pos += TLV_HEADER_SIZE
        if length > end - pos:
            raise InvalidTlv(f"TLV 0x{tlv_type:02x} claims {length} bytes, {end - pos} remain")
        tlvs.append(Tlv(tlv_type, bytes(data[pos : pos + length])))
        pos += length
    return tuple(tlvs)


def encode(frame: Frame) -> bytes:
    """Encode ``frame``. Raises :class:`~hbproto.errors.LocalProtocolError` if it is invalid."""
    _check_for_send(frame)
    return pack(
        frame.type,
        frame.state,
        frame.poll,
        frame.final,
        frame.mult,
        frame.my_id,
        frame.your_id,
        frame.seq,
        frame.timestamp,
        encode_interval(frame.desired_tx),
        encode_interval(frame.required_rx),
        b"".join([pack_tlv(tlv_type, value) for tlv_type, value in frame.tlvs])
        if frame.tlvs
        else b"",
    )


def _check_for_send(frame: Frame) -> None:
    if not 1 <= frame.mult <= MULT_MAX:
        raise LocalProtocolError(f"detect multiplier {frame.mult} is outside 1..{MULT_MAX}")
    if not (
        0 <= frame.my_id <= ID_MAX
        and 0 <= frame.your_id <= ID_MAX
        and 0 <= frame.seq <= ID_MAX
        and 0 <= frame.timestamp <= ID_MAX
    ):
        raise LocalProtocolError(
            "my_id, your_id, seq and timestamp must fit in 32 bits: "
            f"{frame.my_id}, {frame.your_id}, {frame.seq}, {frame.timestamp}"
        )
    for tlv_type, _ in frame.tlvs:
        if not 0 <= tlv_type <= 0xFF:
            raise LocalProtocolError(f"TLV type {tlv_type} does not fit in 8 bits")
    if frame.size > MAX_FRAME:
        raise LocalProtocolError(f"frame of {frame.size} bytes exceeds {MAX_FRAME}")
    try:
        _validate(frame)
    except FrameError as exc:
        raise LocalProtocolError(f"refusing to encode an invalid frame: {exc}") from None


def pack(  # noqa: PLR0917 - positional on purpose: this is the per-frame hot path
    ftype: int,
    state: int,
    poll: bool,
    final: bool,
    mult: int,
    my_id: int,
    your_id: int,
    seq: int,
    timestamp: int,
    tx_code: int,
    rx_code: int,
    tlvs: bytes = b"",
    auth: AuthKeys | None = None,
) -> bytes:
    """Encode a frame from parts the caller has already made valid, skipping all checks.

    This is the core's path for the frames it builds itself (every ACK, every HEARTBEAT).
    Intervals are 16-bit codes (:func:`encode_interval`) and ``tlvs`` the encoded TLV area
    (:func:`pack_tlv`). Tests prove it byte-identical to :func:`encode`. With ``auth``, the
    frame ends in an AUTH TLV signed with the active key (SPEC section 10).
    """
    length = MIN_FRAME + len(tlvs)
    if auth is not None:
        length += AUTH_TLV_SIZE
    body = _FIXED.pack(
        (VERSION << _VER_SHIFT)
        | (ftype << _TYPE_SHIFT)
        | (state << _STATE_SHIFT)
        | (poll << _POLL_SHIFT)
        | (final << _FINAL_SHIFT)
        | (mult << _MULT_SHIFT),
        length,
        my_id,
        your_id,
        seq,
        timestamp,
        tx_code,
        rx_code,
    )
    if tlvs:
        body += tlvs
    if auth is not None:
        body = auth.seal(body)  # the MAC covers the final Length and every TLV [HB-AUTH-2]
    return body + _CRC.pack(zlib.crc32(body))  # after the MAC, over it [HB-AUTH-3]


@lru_cache(maxsize=4096)
def _heartbeat_key(  # noqa: PLR0917 - positional: it is an lru_cache key
    ftype: int, state: int, poll: bool, final: bool, mult: int, tx: int | None, rx: int | None
) -> int:
    head = (
        (VERSION << _VER_SHIFT)
        | (ftype << _TYPE_SHIFT)
        | (state << _STATE_SHIFT)
        | (poll << _POLL_SHIFT)
        | (final << _FINAL_SHIFT)
        | (mult << _MULT_SHIFT)
    )
    return (head << 32) | (encode_interval(tx) << 16) | encode_interval(rx)


def heartbeat_key(frame: Frame) -> int:
    """What a HEARTBEAT says about its sender, as one int: the first two bytes of the fixed part
    (version, type, Sta, P, F, Mult) and both interval codes, canonically encoded. Equal keys
    mean equal state and parameters; the core compares raw bytes against it on its fast path.
    Cached, so that sessions whose peers say the same thing share one int."""
    return _heartbeat_key(
        frame.type,
        frame.state,
        frame.poll,
        frame.final,
        frame.mult,
        frame.desired_tx,
        frame.required_rx,
    )


def routine_ack_key(mult: int, tx: int | None, rx: int | None) -> int:
    """The :func:`heartbeat_key` of an ACK with Sta UP and neither P nor F from a peer that
    advertises these values: what the core's ACK fast path compares raw bytes against."""
    return _heartbeat_key(FrameType.ACK, State.UP, False, False, mult, tx, rx)


def pack_tlv(tlv_type: int, value: bytes) -> bytes:
    """One encoded TLV."""
    return _TLV_HEAD.pack(tlv_type, len(value)) + value


# --- The reference codec: construct itself ----------------------------------------------------


def schema_decode(data: bytes, max_size: int = MAX_FRAME) -> Frame:
    """Decode with :data:`FRAME_SCHEMA`. Slow; the reference the fast codec is tested against."""
    n = _precheck(data, max_size)
    try:
        parsed = FRAME_SCHEMA.parse(data)
    except cs.ChecksumError:
        raise BadChecksum("CRC-32 mismatch") from None
    body = parsed.body.value
    tlvs = tuple(Tlv(t.type, bytes(t.value)) for t in body.tlvs)
    head = body.head
    ftype = _FRAME_TYPES.get(head.type)
    if ftype is None:
        raise UnknownFrameType(f"type {head.type}")
    frame = Frame(
        ftype,
        State(head.state),
        body.my_id,
        body.your_id,
        body.seq,
        body.timestamp,
        body.desired_tx,
        body.required_rx,
        head.mult,
        head.poll,
        head.final,
        tlvs,
    )
    _check_fields(frame)
    if sum(TLV_HEADER_SIZE + len(t.value) for t in tlvs) != n - MIN_FRAME:
        # GreedyRange stops quietly at a TLV that does not fit; the leftover bytes are an error.
        raise InvalidTlv("TLV area has bytes that do not form a TLV")
    _check_tlvs(ftype, tlvs)
    return frame


def schema_encode(frame: Frame) -> bytes:
    """Encode with :data:`FRAME_SCHEMA` (slow reference for tests and benchmarks)."""
    _check_for_send(frame)
    value = {
        "head": {
            "version": VERSION,
            "type": int(frame.type),
            "state": int(frame.state),
            "poll": frame.poll,
            "final": frame.final,
            "mult": frame.mult,
        },
        "length": frame.size,
        "my_id": frame.my_id,
        "your_id": frame.your_id,
        "seq": frame.seq,
        "timestamp": frame.timestamp,
        "desired_tx": frame.desired_tx,
        "required_rx": frame.required_rx,
        "tlvs": [{"type": t.type, "length": len(t.value), "value": t.value} for t in frame.tlvs],
    }
    data: bytes = FRAME_SCHEMA.build({"body": {"value": value}})
    return data
