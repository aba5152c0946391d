"""Property tests for the frame codec.

The fast codec (:func:`encode`/:func:`decode`) must be byte-identical to the construct
reference (:func:`schema_encode`/:func:`schema_decode`) on valid frames, and on any input at
all both decoders must either return the same frame or raise the same
:class:`~hbproto.errors.FrameError` subclass. A third, hand-spelled packer (``_raw_pack``)
writes the SPEC layout directly, so a mistake shared by the schema and the derived fast path
still shows up, and it can put invalid frames on the wire to check the decoders' verdicts.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbproto.errors import (
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
from hbproto.frame import (
    CLOSE_TEXT_MAX,
    INTERVAL_MAX_US,
    MAX_FRAME,
    MIN_FRAME,
    MULT_MAX,
    NO_PREFERENCE_CODE,
    PIGGYBACK_MAX,
    Frame,
    FrameType,
    State,
    Tlv,
    TlvType,
    decode,
    decode_interval,
    encode,
    encode_interval,
    schema_decode,
    schema_encode,
)

U32_MAX = 2**32 - 1
AUTH_VALUE_SIZE = 17
# The interval units from SPEC 4.5, spelled out here rather than imported so the tests do not
# inherit a mistake in the implementation's table.
UNITS_US = (10, 1_000, 100_000, 10_000_000)
COUNT_MAX = 0x3FFF

Decoder = Callable[..., Frame]
Encoder = Callable[[Frame], bytes]
DECODERS = [pytest.param(decode, id="fast"), pytest.param(schema_decode, id="schema")]
ENCODERS = [pytest.param(encode, id="fast"), pytest.param(schema_encode, id="schema")]


def _settings(max_examples: int) -> settings:
    # derandomize keeps runs reproducible; no deadline because construct is slow and the
    # first example pays for imports.
    return settings(
        max_examples=max_examples,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


# --- Helpers ----------------------------------------------------------------------------------


def _raw_pack(frame: Frame, *, length: int | None = None, crc: int | None = None) -> bytes:
    """Pack ``frame`` exactly as SPEC 4.1 lays it out, without any validation."""
    tlv_area = b"".join(struct.pack(">BH", t, len(v)) + v for t, v in frame.tlvs)
    head = (
        (1 << 12)
        | (frame.type << 8)
        | (frame.state << 6)
        | (frame.poll << 5)
        | (frame.final << 4)
        | frame.mult
    )
    body = struct.pack(
        ">HHIIIIHH",
        head,
        MIN_FRAME + len(tlv_area) if length is None else length,
        frame.my_id,
        frame.your_id,
        frame.seq,
        frame.timestamp,
        encode_interval(frame.desired_tx),
        encode_interval(frame.required_rx),
    )
    body += tlv_area
    return body + struct.pack(">I", zlib.crc32(body) if crc is None else crc)


def _fix_up(body: bytes, *, fix_length: bool = True) -> bytes:
    """Make ``body`` pass V-4 and V-5: set the Length field and append a correct CRC-32."""
    out = bytearray(body)
    if fix_length and len(out) >= 4:
        out[2:4] = ((len(out) + 4) & 0xFFFF).to_bytes(2, "big")
    return bytes(out) + zlib.crc32(out).to_bytes(4, "big")


def _outcome(decoder: Decoder, data: bytes) -> Frame | type[FrameError]:
    """The frame ``decoder`` returns, or the class of the FrameError it raises.

    Any other exception propagates and fails the test: that is the property being checked.
    """
    try:
        return decoder(data)
    except FrameError as exc:
        return type(exc)


def _check_decoders_agree(data: bytes, max_size: int = MAX_FRAME) -> None:
    fast = _outcome(lambda b: decode(b, max_size), data)
    reference = _outcome(lambda b: schema_decode(b, max_size), data)
    assert fast == reference, f"decoders disagree on {data.hex()}"
    if isinstance(fast, Frame):
        # Whatever decodes is valid, so it must encode, and to something that decodes the same.
        # (Not necessarily to the same bytes: a non-canonical interval code is accepted.)
        assert decode(encode(fast)) == fast


def _utf8_at_most(text: str, limit: int) -> bytes:
    raw = text.encode()
    while len(raw) > limit:
        text = text[:-1]
        raw = text.encode()
    return raw


# --- Strategies -------------------------------------------------------------------------------

_BOUNDARY_CODES = [0, 1, COUNT_MAX, 0x4000, 0x4001, 0x7FFF, 0x8000, 0xBFFF, 0xC000, 0xFFFE]
interval_codes = st.one_of(
    st.integers(0, 0xFFFF), st.sampled_from([*_BOUNDARY_CODES, NO_PREFERENCE_CODE])
)
# Every value comes from decoding a code, so it is representable and encodes back exactly.
intervals = interval_codes.map(decode_interval)
desired_tx_values = intervals.filter(lambda us: us != 0)
u32 = st.integers(0, U32_MAX)
nonzero_u32 = st.integers(1, U32_MAX)
close_texts = st.text(max_size=CLOSE_TEXT_MAX).map(lambda s: _utf8_at_most(s, CLOSE_TEXT_MAX))
unknown_tlvs = st.builds(Tlv, st.integers(0x03, 0x7F), st.binary(max_size=16))
auth_tlvs = st.builds(
    Tlv,
    st.just(int(TlvType.AUTH)),
    st.binary(min_size=AUTH_VALUE_SIZE, max_size=AUTH_VALUE_SIZE),
)


@st.composite
def tlv_lists(draw: st.DrawFn, ftype: FrameType, max_data_payload: int) -> tuple[Tlv, ...]:
    """TLVs legal in a frame of type ``ftype`` (the rules of SPEC 5 / ``_validate_tlvs``)."""
    tlvs: list[Tlv] = draw(st.lists(unknown_tlvs, max_size=3))
    if ftype is FrameType.DATA:
        tlvs.append(Tlv(TlvType.PAYLOAD, draw(st.binary(max_size=max_data_payload))))
    elif ftype is not FrameType.CLOSE and draw(st.booleans()):
        tlvs.append(Tlv(TlvType.PAYLOAD, draw(st.binary(max_size=PIGGYBACK_MAX))))
    if ftype is FrameType.CLOSE and draw(st.booleans()):
        tlvs.append(Tlv(TlvType.CLOSE_TEXT, draw(close_texts)))
    ordered = list(draw(st.permutations(tlvs)))
    if draw(st.booleans()):
        ordered.append(draw(auth_tlvs))  # AUTH must be last
    return tuple(ordered)


@st.composite
def valid_frames(draw: st.DrawFn, max_data_payload: int = 300) -> Frame:
    """Any frame the SPEC allows, with fields drawn across their whole legal ranges."""
    ftype = draw(st.sampled_from(FrameType))
    if ftype is FrameType.CLOSE:
        state = State.CLOSED
    elif ftype is FrameType.DATA:
        state = State.UP
    else:
        state = draw(st.sampled_from([State.DOWN, State.INIT, State.UP]))
    your_id_ok_zero = ftype is FrameType.HEARTBEAT and state is State.DOWN
    return Frame(
        type=ftype,
        state=state,
        my_id=draw(nonzero_u32),
        your_id=draw(u32 if your_id_ok_zero else nonzero_u32),
        seq=draw(u32),
        timestamp=draw(u32),
        desired_tx=draw(desired_tx_values),
        required_rx=draw(intervals),
        mult=draw(st.integers(1, MULT_MAX)),
        poll=draw(st.booleans()) if ftype is FrameType.HEARTBEAT else False,
        final=draw(st.booleans()) if ftype is FrameType.ACK else False,
        tlvs=draw(tlv_lists(ftype, max_data_payload)),
    )


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` after one to four random edits (bit flip, truncation, insertion, ...)."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "set", "head"]))
        if kind == "truncate":
            del out[draw(st.integers(0, len(out))) :]
        elif kind == "insert":
            at = draw(st.integers(0, len(out)))
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif not out:
            continue
        elif kind == "flip":
            out[draw(st.integers(0, len(out) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            at = draw(st.integers(0, len(out) - 1))
            del out[at : at + draw(st.integers(1, 8))]
        elif kind == "set":
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        else:  # rewrite one of the two bit-packed bytes: type, state, flags, multiplier
            at = draw(st.integers(0, min(1, len(out) - 1)))
            out[at] = draw(st.integers(0, 255))
    return bytes(out)


# --- Valid frames: the two codecs agree in both directions -------------------------------------


@_settings(800)
@given(valid_frames())
def test_codecs_agree_on_valid_frames(frame: Frame) -> None:
    data = encode(frame)
    assert data == schema_encode(frame)
    assert data == _raw_pack(frame)
    assert len(data) == frame.size
    assert decode(data) == frame
    assert schema_decode(data) == frame


def test_known_encoding() -> None:
    """One frame written out by hand from SPEC 4.1, so a layout change cannot go unnoticed."""
    frame = Frame(FrameType.HEARTBEAT, State.UP, my_id=1, your_id=2, seq=3, timestamp=4)
    expected = bytes.fromhex("11c3 001c 00000001 00000002 00000003 00000004 ffff ffff")
    expected += zlib.crc32(expected).to_bytes(4, "big")
    assert encode(frame) == expected
    assert decode(expected) == frame


# --- Arbitrary and mutated bytes: only FrameError, and the decoders agree ---------------------


@_settings(2000)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    _check_decoders_agree(data)


@_settings(2000)
@given(st.binary(min_size=MIN_FRAME - 4, max_size=120), st.integers(0, 15))
def test_arbitrary_bytes_with_valid_version_length_and_crc(body: bytes, nibble: int) -> None:
    # Random bytes almost never get past V-1, V-4 and V-5; fixing those up tests the rest.
    fixed = bytes([0x10 | nibble]) + body[1:]
    _check_decoders_agree(_fix_up(fixed))


@_settings(800)
@given(st.data())
def test_mutated_encodings(data: st.DataObject) -> None:
    frame = data.draw(valid_frames(max_data_payload=64))
    _check_decoders_agree(data.draw(mutated(encode(frame))))


@_settings(1000)
@given(st.data(), st.booleans(), st.integers(MIN_FRAME, MAX_FRAME))
def test_mutated_encodings_with_crc_fixed_up(
    data: st.DataObject, fix_length: bool, max_size: int
) -> None:
    frame = data.draw(valid_frames(max_data_payload=64))
    body = data.draw(mutated(encode(frame)[:-4]))
    _check_decoders_agree(_fix_up(body, fix_length=fix_length), max_size)


# --- Decoding: each check raises its own error -----------------------------------------------

_HB = Frame(FrameType.HEARTBEAT, State.UP, my_id=7, your_id=9, seq=1, timestamp=2)
_GOOD = _raw_pack(_HB)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param(b"", Truncated, id="empty"),
        pytest.param(b"\x10", Truncated, id="one-byte"),
        pytest.param(b"\x20", BadVersion, id="version-2-one-byte"),
        pytest.param(b"\x00" + _GOOD[1:], BadVersion, id="version-0"),
        pytest.param(b"\xf1" + _GOOD[1:], BadVersion, id="version-15"),
        pytest.param(_GOOD[:-1], Truncated, id="27-bytes"),
        pytest.param(_GOOD + b"\x00", BadLength, id="extra-byte"),
        pytest.param(_raw_pack(_HB, length=29), BadLength, id="length-too-big"),
        pytest.param(_raw_pack(_HB, crc=0), BadChecksum, id="bad-crc"),
        pytest.param(_fix_up(b"\x10" + _GOOD[1:24]), UnknownFrameType, id="type-0"),
        pytest.param(_fix_up(b"\x15" + _GOOD[1:24]), UnknownFrameType, id="type-5"),
        pytest.param(_fix_up(b"\x1f" + _GOOD[1:24]), UnknownFrameType, id="type-15"),
        pytest.param(_fix_up(_GOOD[:24] + b"\x03\x00"), InvalidTlv, id="stray-tlv-bytes"),
        pytest.param(_fix_up(_GOOD[:24] + b"\x03\x00\x05ab"), InvalidTlv, id="tlv-overruns"),
    ],
)
def test_decode_rejects(decoder: Decoder, data: bytes, error: type[FrameError]) -> None:
    with pytest.raises(error):
        decoder(data)


@pytest.mark.parametrize("decoder", DECODERS)
def test_decode_enforces_max_size(decoder: Decoder) -> None:
    assert decoder(_GOOD, MIN_FRAME) == _HB
    frame = replace(_HB, tlvs=(Tlv(0x10, b""),))
    with pytest.raises(FrameTooLarge):
        decoder(_raw_pack(frame), MIN_FRAME + 2)


# --- Regressions: exact inputs found by the properties above ---------------------------------


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize(
    ("data", "error"),
    [
        # Type 5 with one stray byte in the TLV area: V-6 comes before V-8.
        ("15c3001d00000001000000020000000000000000ffffffff032940e576", UnknownFrameType),
        # Type 0, likewise (the shrunk example the fix-up property found).
        ("1000001d000000000000000000000000000000000000000000eae5b260", UnknownFrameType),
    ],
)
def test_check_order_with_a_malformed_tlv_area(
    decoder: Decoder, data: str, error: type[FrameError]
) -> None:
    with pytest.raises(error):
        decoder(bytes.fromhex(data))


@pytest.mark.parametrize("decoder", DECODERS)
def test_field_checks_come_before_the_tlv_area(decoder: Decoder) -> None:
    # Mult 0 (V-7) and a stray byte in the TLV area (V-8): SPEC 7 stops at V-7.
    with pytest.raises(InvalidField):
        decoder(_fix_up(b"\x11\xc0" + _GOOD[2:24] + b"\x03"))


# --- Invalid frames: encode refuses them, and their bytes do not decode ----------------------

_ACK = Frame(FrameType.ACK, State.UP, my_id=7, your_id=9)
_DATA = Frame(FrameType.DATA, State.UP, my_id=7, your_id=9, tlvs=((Tlv(TlvType.PAYLOAD, b"x")),))
_CLOSE = Frame(FrameType.CLOSE, State.CLOSED, my_id=7, your_id=9)
_AUTH = Tlv(TlvType.AUTH, bytes(AUTH_VALUE_SIZE))

# (frame, the error its bytes must raise on decode; None where the wire cannot carry it)
INVALID: dict[str, tuple[Frame, type[FrameError] | None]] = {
    "mult-0": (replace(_HB, mult=0), InvalidField),
    "mult-16": (replace(_HB, mult=16), None),
    "mult-negative": (replace(_HB, mult=-1), None),
    "my-id-0": (replace(_HB, my_id=0), InvalidField),
    "my-id-2**32": (replace(_HB, my_id=2**32), None),
    "your-id-2**32": (replace(_HB, your_id=2**32), None),
    "seq-2**32": (replace(_HB, seq=2**32), None),
    "timestamp-2**32": (replace(_HB, timestamp=2**32), None),
    "seq-negative": (replace(_HB, seq=-1), None),
    "your-id-0-in-ack": (replace(_ACK, your_id=0), InvalidField),
    "your-id-0-in-init-heartbeat": (replace(_HB, state=State.INIT, your_id=0), InvalidField),
    "poll-on-ack": (replace(_ACK, poll=True), InvalidField),
    "poll-on-data": (replace(_DATA, poll=True), InvalidField),
    "final-on-heartbeat": (replace(_HB, final=True), InvalidField),
    "close-not-closed": (replace(_CLOSE, state=State.UP), InvalidField),
    "heartbeat-closed": (replace(_HB, state=State.CLOSED), InvalidField),
    "data-in-init": (replace(_DATA, state=State.INIT), InvalidField),
    "desired-tx-0": (replace(_HB, desired_tx=0), InvalidField),
    "desired-tx-too-big": (replace(_HB, desired_tx=INTERVAL_MAX_US + 1), None),
    "required-rx-too-big": (replace(_HB, required_rx=INTERVAL_MAX_US + 1), None),
    "required-rx-negative": (replace(_HB, required_rx=-1), None),
    "data-without-payload": (replace(_DATA, tlvs=()), InvalidTlv),
    "data-with-only-unknown-tlv": (replace(_DATA, tlvs=(Tlv(0x10, b""),)), InvalidTlv),
    "piggyback-129": (replace(_HB, tlvs=(Tlv(TlvType.PAYLOAD, bytes(129)),)), InvalidTlv),
    "payload-in-close": (replace(_CLOSE, tlvs=(Tlv(TlvType.PAYLOAD, b"x"),)), InvalidTlv),
    "close-text-in-heartbeat": (replace(_HB, tlvs=(Tlv(TlvType.CLOSE_TEXT, b"x"),)), InvalidTlv),
    "close-text-124": (replace(_CLOSE, tlvs=(Tlv(TlvType.CLOSE_TEXT, b"a" * 124),)), InvalidTlv),
    "close-text-bad-utf8": (replace(_CLOSE, tlvs=(Tlv(TlvType.CLOSE_TEXT, b"\xff"),)), InvalidTlv),
    "auth-not-last": (replace(_HB, tlvs=(_AUTH, Tlv(0x10, b""))), InvalidTlv),
    "auth-16-bytes": (replace(_HB, tlvs=(Tlv(TlvType.AUTH, bytes(16)),)), InvalidTlv),
    "auth-18-bytes": (replace(_HB, tlvs=(Tlv(TlvType.AUTH, bytes(18)),)), InvalidTlv),
    "payload-twice": (replace(_DATA, tlvs=_DATA.tlvs * 2), InvalidTlv),
    "unknown-critical-tlv": (replace(_HB, tlvs=(Tlv(0x81, b""),)), InvalidTlv),
    "tlv-type-256": (replace(_HB, tlvs=(Tlv(0x100, b""),)), None),
    # schema_encode once let construct's FormatFieldError escape here.
    "frame-65536-bytes": (replace(_DATA, tlvs=(Tlv(TlvType.PAYLOAD, bytes(65505)),)), None),
}


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("case", INVALID)
def test_encode_refuses_invalid_frames(encoder: Encoder, case: str) -> None:
    frame, _ = INVALID[case]
    with pytest.raises(LocalProtocolError):
        encoder(frame)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("case", [c for c, (_, err) in INVALID.items() if err is not None])
def test_decode_refuses_invalid_frames(decoder: Decoder, case: str) -> None:
    frame, error = INVALID[case]
    assert error is not None
    with pytest.raises(error):
        decoder(_raw_pack(frame))


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(replace(_HB, tlvs=(Tlv(TlvType.PAYLOAD, bytes(128)),)), id="piggyback-128"),
        pytest.param(
            replace(_CLOSE, tlvs=(Tlv(TlvType.CLOSE_TEXT, "é".encode() * 61 + b"a"),)),
            id="close-text-123",
        ),
        pytest.param(replace(_DATA, tlvs=(Tlv(TlvType.PAYLOAD, bytes(65504)),)), id="65535"),
        pytest.param(replace(_HB, state=State.DOWN, your_id=0), id="your-id-0-down"),
        pytest.param(replace(_HB, mult=MULT_MAX, desired_tx=INTERVAL_MAX_US), id="maxima"),
        pytest.param(replace(_HB, required_rx=0, tlvs=(Tlv(0x7F, b""),) * 2), id="unknown-x2"),
    ],
)
def test_boundary_frames_are_accepted(frame: Frame) -> None:
    data = encode(frame)
    assert schema_encode(frame) == data
    assert decode(data) == frame
    assert schema_decode(data) == frame


# --- The interval codec (SPEC 4.5) -----------------------------------------------------------


def _max_count(unit: int) -> int:
    # Unit 3 with count 0x3FFF would be 0xFFFF, which is reserved for "no preference".
    return COUNT_MAX - 1 if unit == 3 else COUNT_MAX


def _smallest_representable_at_least(us: int) -> int:
    candidates = []
    for unit, size in enumerate(UNITS_US):
        count = -(-us // size)
        if count <= _max_count(unit):
            candidates.append(count * size)
    return min(candidates)


def _is_canonical(code: int) -> bool:
    """True if ``code`` uses the finest unit that can carry its value exactly."""
    unit, count = code >> 14, code & COUNT_MAX
    us = count * UNITS_US[unit]
    finest = next(
        u for u, size in enumerate(UNITS_US) if us % size == 0 and us // size <= _max_count(u)
    )
    return unit == finest


_UNIT_EDGES = [UNITS_US[u] * COUNT_MAX for u in range(3)] + [INTERVAL_MAX_US]
microseconds = st.one_of(
    st.integers(0, INTERVAL_MAX_US),
    st.integers(0, 2_000_000),
    st.sampled_from(_UNIT_EDGES).flatmap(lambda e: st.integers(max(0, e - 30), e + 30)),
).filter(lambda us: us <= INTERVAL_MAX_US)


@_settings(1000)
@given(microseconds)
def test_encode_interval_rounds_up_to_the_nearest_representable(us: int) -> None:
    code = encode_interval(us)
    assert 0 <= code < NO_PREFERENCE_CODE
    decoded = decode_interval(code)
    assert decoded is not None
    assert decoded >= us
    assert decoded == _smallest_representable_at_least(us)
    assert _is_canonical(code)


def test_every_interval_code() -> None:
    canonical = 0
    for code in range(NO_PREFERENCE_CODE):
        us = decode_interval(code)
        assert us == (code & COUNT_MAX) * UNITS_US[code >> 14]
        back = encode_interval(us)
        assert decode_interval(back) == us
        assert (back == code) == _is_canonical(code), hex(code)
        canonical += back == code
    # Values 0..163830 step 10, then the multiples of the coarser units above the finer range.
    assert canonical == (COUNT_MAX + 1) + 3 * (COUNT_MAX - COUNT_MAX // 100) - 1
    assert decode_interval(NO_PREFERENCE_CODE) is None
    assert encode_interval(None) == NO_PREFERENCE_CODE


@pytest.mark.parametrize("us", [-1, -10, INTERVAL_MAX_US + 1, INTERVAL_MAX_US + 10**7])
def test_encode_interval_rejects_out_of_range(us: int) -> None:
    with pytest.raises(LocalProtocolError):
        encode_interval(us)
