"""Benchmark hbproto's frame codec against construct and a hand-written ``struct`` baseline.

Usage::

    python bench/codec.py           # full run, about half a minute
    python bench/codec.py --quick   # a couple of seconds, for smoke tests

Three representative frames (a bare 28-byte HEARTBEAT, an ACK, a DATA frame with a 64-byte
payload) are encoded and decoded by:

* construct: the reference codec :func:`schema_encode`/:func:`schema_decode`, plus
  ``FRAME_SCHEMA.build``/``parse`` alone and, when ``FRAME_SCHEMA.compile()`` works, the
  compiled schema's ``build``/``parse``. The two "raw" rows build no :class:`Frame` and run no
  checks, so they only show what the schema itself costs;
* hbproto: the project's codec :func:`hbproto.frame.encode`/:func:`hbproto.frame.decode`;
* baseline: the codec written below with ``struct.Struct`` and ``zlib``. It does the same work
  as the project codec: it builds the same :class:`Frame` with enum members and decoded
  intervals, runs checks V-1 to V-8 (including the TLV walk) and the encoder's range checks,
  and computes the same CRC-32. Before timing anything the script checks that the baseline
  produces the same bytes, the same frames and the same errors as the project codec.

Each time is the median of several ``timeit`` repeats, in microseconds per frame. The ratio
column divides by the baseline. The goal is for hbproto to stay within 2x of the baseline;
the script reports whether it does and always exits 0 unless the baseline itself is wrong.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import struct
import sys
import timeit
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import construct

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
    FRAME_SCHEMA,
    INTERVAL_MAX_US,
    MAX_FRAME,
    Frame,
    FrameType,
    State,
    Tlv,
    TlvType,
    decode,
    encode,
    schema_decode,
    schema_encode,
)

GOAL_RATIO = 2.0

# --- The hand-written baseline ----------------------------------------------------------------

_HEAD = struct.Struct(">HHIIIIHH")
_TLV_HEAD = struct.Struct(">BH")
_CRC = struct.Struct(">I")
_TYPES = {t.value: t for t in FrameType}
_STATES = (State.CLOSED, State.DOWN, State.INIT, State.UP)
_UNITS = (10, 1_000, 100_000, 10_000_000)
_U32 = 0xFFFFFFFF
_PAYLOAD, _CLOSE_TEXT, _AUTH = 0x01, 0x02, 0x80


def _interval_code(us: int | None) -> int:
    # The canonical code (SPEC 4.4): the finest unit whose rounded-up count fits.
    if us is None:
        return 0xFFFF
    if not 0 <= us <= INTERVAL_MAX_US:
        raise LocalProtocolError(f"interval {us} us is out of range")
    if us <= 163_830:
        return -(-us // 10)
    if us <= 16_383_000:
        return 0x4000 | -(-us // 1_000)
    if us <= 1_638_300_000:
        return 0x8000 | -(-us // 100_000)
    return 0xC000 | -(-us // 10_000_000)


def _check_fields(frame: Frame) -> None:
    # V-7, in the SPEC's order.
    ftype, state = frame.type, frame.state
    if frame.mult == 0:
        raise InvalidField("Mult 0")
    if (ftype is FrameType.CLOSE) != (state is State.CLOSED):
        raise InvalidField("state does not match type")
    if ftype is FrameType.DATA and state is not State.UP:
        raise InvalidField("DATA not UP")
    if frame.poll and ftype is not FrameType.HEARTBEAT:
        raise InvalidField("P outside HEARTBEAT")
    if frame.final and ftype is not FrameType.ACK:
        raise InvalidField("F outside ACK")
    if frame.my_id == 0:
        raise InvalidField("My Identifier 0")
    if frame.your_id == 0 and not (ftype is FrameType.HEARTBEAT and state is State.DOWN):
        raise InvalidField("Your Identifier 0")
    if frame.desired_tx == 0:
        raise InvalidField("Desired TX 0")


def _check_tlvs(ftype: FrameType, tlvs: tuple[Tlv, ...]) -> None:
    # V-8 on parsed TLVs.
    has_payload = has_text = False
    last = len(tlvs) - 1
    for index, (tlv_type, value) in enumerate(tlvs):
        if tlv_type == _PAYLOAD:
            if has_payload:
                raise InvalidTlv("PAYLOAD twice")
            has_payload = True
            if ftype is FrameType.CLOSE:
                raise InvalidTlv("PAYLOAD in CLOSE")
            if ftype is not FrameType.DATA and len(value) > 128:
                raise InvalidTlv("piggyback too long")
        elif tlv_type == _CLOSE_TEXT:
            if has_text:
                raise InvalidTlv("CLOSE_TEXT twice")
            has_text = True
            if ftype is not FrameType.CLOSE:
                raise InvalidTlv("CLOSE_TEXT outside CLOSE")
            if len(value) > 123:
                raise InvalidTlv("CLOSE_TEXT too long")
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidTlv("CLOSE_TEXT not UTF-8") from None
        elif tlv_type == _AUTH:
            # Also catches a second AUTH: the first one is then not last.
            if index != last:
                raise InvalidTlv("AUTH not last")
            if len(value) != 17:
                raise InvalidTlv("AUTH length")
        elif tlv_type & 0x80:
            raise InvalidTlv("unknown critical TLV")
    if ftype is FrameType.DATA and not has_payload:
        raise InvalidTlv("DATA without PAYLOAD")


def baseline_decode(data: bytes, max_size: int = MAX_FRAME) -> Frame:
    """Decode one frame with ``struct``: checks V-1 to V-8, same result as :func:`decode`."""
    n = len(data)
    if n == 0:
        raise Truncated("empty")
    if data[0] >> 4 != 1:
        raise BadVersion("version")
    if n < 28:
        raise Truncated("short")
    if n > max_size:
        raise FrameTooLarge("too large")
    head, length, my_id, your_id, seq, ts, tx, rx = _HEAD.unpack_from(data)
    if length != n:
        raise BadLength("length")
    if zlib.crc32(data[: n - 4]) != _CRC.unpack_from(data, n - 4)[0]:
        raise BadChecksum("crc")
    ftype = _TYPES.get((head >> 8) & 0xF)
    if ftype is None:
        raise UnknownFrameType("type")
    frame = Frame(
        ftype,
        _STATES[(head >> 6) & 3],
        my_id,
        your_id,
        seq,
        ts,
        None if tx == 0xFFFF else (tx & 0x3FFF) * _UNITS[tx >> 14],
        None if rx == 0xFFFF else (rx & 0x3FFF) * _UNITS[rx >> 14],
        head & 0xF,
        bool(head & 0x20),
        bool(head & 0x10),
    )
    _check_fields(frame)
    if n > 28:
        items = []
        pos, end = 24, n - 4
        while pos < end:
            if end - pos < 3:
                raise InvalidTlv("stray bytes")
            tlv_type, tlv_len = _TLV_HEAD.unpack_from(data, pos)
            pos += 3
            if tlv_len > end - pos:
                raise InvalidTlv("TLV overruns")
            items.append(Tlv(tlv_type, bytes(data[pos : pos + tlv_len])))
            pos += tlv_len
        frame.tlvs = tuple(items)
    _check_tlvs(ftype, frame.tlvs)
    return frame


def baseline_encode(frame: Frame) -> bytes:
    """Encode with ``struct``: same range and V-7/V-8 checks and bytes as :func:`encode`."""
    ftype, state, mult, tlvs = frame.type, frame.state, frame.mult, frame.tlvs
    if not 1 <= mult <= 15:
        raise LocalProtocolError("Mult out of range")
    my_id, your_id, seq, ts = frame.my_id, frame.your_id, frame.seq, frame.timestamp
    if not (0 <= my_id <= _U32 and 0 <= your_id <= _U32 and 0 <= seq <= _U32 and 0 <= ts <= _U32):
        raise LocalProtocolError("field does not fit in 32 bits")
    size = 28
    for tlv_type, value in tlvs:
        if not 0 <= tlv_type <= 0xFF or len(value) > MAX_FRAME:
            raise LocalProtocolError("TLV out of range")
        size += 3 + len(value)
    try:
        _check_fields(frame)
        _check_tlvs(ftype, tlvs)
    except FrameError as exc:
        raise LocalProtocolError(f"invalid frame: {exc}") from None
    if size > MAX_FRAME:
        raise LocalProtocolError("frame too large")
    head = 0x1000 | (ftype << 8) | (state << 6) | (frame.poll << 5) | (frame.final << 4) | mult
    out = bytearray(
        _HEAD.pack(
            head,
            size,
            my_id,
            your_id,
            seq,
            ts,
            _interval_code(frame.desired_tx),
            _interval_code(frame.required_rx),
        )
    )
    for tlv_type, value in tlvs:
        out += _TLV_HEAD.pack(tlv_type, len(value))
        out += value
    out += _CRC.pack(zlib.crc32(out))
    return bytes(out)


# --- Frames and checks ------------------------------------------------------------------------

FRAMES: dict[str, Frame] = {
    "HEARTBEAT": Frame(
        FrameType.HEARTBEAT,
        State.UP,
        my_id=0x1234_5678,
        your_id=0x9ABC_DEF0,
        seq=1000,
        timestamp=0x0102_0304,
        desired_tx=300_000,
        required_rx=300_000,
        mult=3,
    ),
    "ACK": Frame(
        FrameType.ACK,
        State.UP,
        my_id=0x9ABC_DEF0,
        your_id=0x1234_5678,
        seq=1000,
        timestamp=0x0102_0304,
        desired_tx=300_000,
        required_rx=300_000,
        mult=3,
        final=True,
    ),
    "DATA/64": Frame(
        FrameType.DATA,
        State.UP,
        my_id=0x1234_5678,
        your_id=0x9ABC_DEF0,
        seq=1001,
        timestamp=0x0102_0305,
        desired_tx=300_000,
        required_rx=300_000,
        mult=3,
        tlvs=(Tlv(TlvType.PAYLOAD, bytes(range(64))),),
    ),
}


def _fix_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "big")


def _invalid_inputs() -> list[bytes]:
    """Bytes that each fail a different check, to compare the baseline's errors."""
    hb = encode(FRAMES["HEARTBEAT"])
    body = hb[:-4]

    def with_tlvs(raw: bytes) -> bytes:
        b = bytearray(body + raw)
        b[2:4] = (len(b) + 4).to_bytes(2, "big")
        return _fix_crc(bytes(b))

    return [
        b"",
        b"\x21",
        hb[:27],
        hb + b"\x00",
        body + b"\x00\x00\x00\x00",
        _fix_crc(b"\x15" + body[1:]),
        _fix_crc(body[:1] + b"\xc0" + body[2:]),  # Mult 0
        _fix_crc(body[:1] + b"\x03" + body[2:]),  # HEARTBEAT in CLOSED
        _fix_crc(body[:1] + b"\xd3" + body[2:]),  # F on a HEARTBEAT
        _fix_crc(body[:4] + bytes(4) + body[8:]),  # My Identifier 0
        _fix_crc(body[:20] + b"\x00\x00" + body[22:]),  # Desired TX 0
        with_tlvs(b"\x01"),
        with_tlvs(b"\x01\x00\x05ab"),
        with_tlvs(b"\x01\x00\x81" + bytes(129)),
        with_tlvs(b"\x02\x00\x01a"),
        with_tlvs(b"\x80\x00\x11" + bytes(17) + b"\x10\x00\x00"),
        with_tlvs(b"\x80\x00\x10" + bytes(16)),
        with_tlvs(b"\x81\x00\x00"),
        with_tlvs(b"\x01\x00\x00\x01\x00\x00"),
        with_tlvs(b"\x10\x00\x00\x10\x00\x00"),  # unknown non-critical, twice: valid
    ]


def _outcome(fn: Callable[[Any], Any], arg: Any) -> Any:
    try:
        return fn(arg)
    except (FrameError, LocalProtocolError) as exc:
        return type(exc)


def check_baseline() -> list[str]:
    """Differences between the baseline and the project codec (empty if they agree)."""
    problems = []
    for name, frame in FRAMES.items():
        data = encode(frame)
        if baseline_encode(frame) != data:
            problems.append(f"{name}: baseline_encode differs from encode")
        if baseline_decode(data) != decode(data) or decode(data) != frame:
            problems.append(f"{name}: baseline_decode differs from decode")
    for data in _invalid_inputs():
        expected, got = _outcome(decode, data), _outcome(baseline_decode, data)
        if expected != got:
            problems.append(f"decode {data.hex()}: hbproto {expected}, baseline {got}")
    hb = FRAMES["HEARTBEAT"]
    for bad in (
        replace(hb, mult=16),
        replace(hb, my_id=0),
        replace(hb, seq=2**32),
        replace(hb, desired_tx=0),
        replace(hb, required_rx=INTERVAL_MAX_US + 1),
        replace(FRAMES["ACK"], poll=True),
        replace(FRAMES["DATA/64"], tlvs=()),
    ):
        if _outcome(encode, bad) != _outcome(baseline_encode, bad):
            problems.append(f"encode {bad}: baseline disagrees")
    return problems


# --- Timing -----------------------------------------------------------------------------------


@dataclass
class Codec:
    name: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    encode_input: Callable[[Frame], Any] = lambda frame: frame


def _raw_value(frame: Frame) -> Any:
    """What ``FRAME_SCHEMA.build`` takes, as :func:`schema_encode` would assemble it."""
    return {"body": {"value": FRAME_SCHEMA.parse(encode(frame)).body.value}}


def _codecs() -> tuple[list[Codec], str | None]:
    codecs = [
        Codec("baseline (struct)", baseline_encode, baseline_decode),
        Codec("hbproto encode/decode", encode, decode),
        Codec("construct schema_*", schema_encode, schema_decode),
        Codec("construct raw build/parse", FRAME_SCHEMA.build, FRAME_SCHEMA.parse, _raw_value),
    ]
    try:
        compiled = FRAME_SCHEMA.compile()
        for frame in FRAMES.values():
            data = encode(frame)
            if compiled.parse(data) != FRAME_SCHEMA.parse(data):
                raise ValueError("compiled parse differs from the interpreted one")
            if compiled.build(_raw_value(frame)) != data:
                raise ValueError("compiled build differs from the interpreted one")
    except Exception as exc:  # compile() can fail in many ways; report and carry on
        return codecs, f"FRAME_SCHEMA.compile() unusable, skipped: {type(exc).__name__}: {exc}"
    codecs.append(Codec("construct compiled raw", compiled.build, compiled.parse, _raw_value))
    return codecs, None


def time_per_call(fn: Callable[[Any], Any], arg: Any, repeats: int, min_time: float) -> float:
    """Median microseconds per ``fn(arg)`` over ``repeats`` timeit runs of at least min_time s."""
    timer = timeit.Timer("fn(arg)", globals={"fn": fn, "arg": arg})
    number = 1
    while timer.timeit(number) < min_time:
        number *= 2
    return statistics.median(timer.repeat(repeat=repeats, number=number)) / number * 1e6


def warm_up(codecs: list[Codec], seconds: float) -> None:
    """Run every codec for a while first, so the first rows are not timed on a cold CPU."""
    deadline = timeit.default_timer() + seconds
    while timeit.default_timer() < deadline:
        for codec in codecs:
            for frame in FRAMES.values():
                codec.decode(codec.encode(codec.encode_input(frame)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time hbproto's frame codec against construct and a struct baseline."
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer, shorter repeats (a couple of seconds)"
    )
    args = parser.parse_args(argv)
    repeats, min_time = (3, 0.003) if args.quick else (7, 0.05)

    problems = check_baseline()
    if problems:
        print("The baseline does not do the same work as hbproto:", *problems, sep="\n  ")
        return 2

    print(f"Python {platform.python_version()} ({platform.python_implementation()})")
    processor = platform.processor() or platform.machine()
    print(f"machine: {processor}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"construct {construct.__version__}; {repeats} repeats of >= {min_time * 1e3:g} ms")
    codecs, compile_note = _codecs()
    if compile_note:
        print(compile_note)
    print()
    warm_up(codecs, 0.2 if args.quick else 0.5)

    header = (
        f"{'codec':<27} {'frame':<10} {'encode us':>10} {'decode us':>10}"
        f" {'enc/base':>9} {'dec/base':>9}"
    )
    print(header)
    print("-" * len(header))
    worst = {"encode": 0.0, "decode": 0.0}
    for frame_name, frame in FRAMES.items():
        data = encode(frame)
        base_enc = base_dec = 0.0
        for codec in codecs:
            enc = time_per_call(codec.encode, codec.encode_input(frame), repeats, min_time)
            dec = time_per_call(codec.decode, data, repeats, min_time)
            if codec.encode is baseline_encode:
                base_enc, base_dec = enc, dec
            if codec.encode is encode:
                worst["encode"] = max(worst["encode"], enc / base_enc)
                worst["decode"] = max(worst["decode"], dec / base_dec)
            print(
                f"{codec.name:<27} {frame_name:<10} {enc:>10.2f} {dec:>10.2f}"
                f" {enc / base_enc:>8.1f}x {dec / base_dec:>8.1f}x"
            )
        print()
    print("raw rows build no Frame and run no checks: the schema's own cost only.")
    verdicts = [
        f"{what} {'yes' if ratio <= GOAL_RATIO else 'NO'} (worst {ratio:.2f}x)"
        for what, ratio in worst.items()
    ]
    print(f"goal: hbproto within {GOAL_RATIO:g}x of the baseline: {', '.join(verdicts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
