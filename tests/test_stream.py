"""Tests for :class:`hbproto.stream.StreamDeframer`, the TCP binding's frame cutter."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbproto.errors import (
    BadChecksum,
    BadLength,
    BadVersion,
    FrameError,
    FrameTooLarge,
    LocalProtocolError,
)
from hbproto.frame import (
    MAX_FRAME,
    MIN_FRAME,
    PIGGYBACK_MAX,
    Frame,
    FrameType,
    State,
    Tlv,
    TlvType,
    decode,
    encode,
)
from hbproto.stream import StreamDeframer

HEARTBEAT = encode(Frame(FrameType.HEARTBEAT, State.UP, my_id=1, your_id=2, seq=3))
ACK = encode(Frame(FrameType.ACK, State.UP, my_id=2, your_id=1, seq=3, final=True))
DATA = encode(
    Frame(FrameType.DATA, State.UP, my_id=1, your_id=2, tlvs=(Tlv(TlvType.PAYLOAD, b"x" * 200),))
)
CLOSE = encode(
    Frame(
        FrameType.CLOSE, State.CLOSED, my_id=1, your_id=2, tlvs=(Tlv(TlvType.CLOSE_TEXT, b"bye"),)
    )
)
SAMPLES = [
    pytest.param(HEARTBEAT, id="heartbeat"),
    pytest.param(ACK, id="ack"),
    pytest.param(DATA, id="data"),
    pytest.param(CLOSE, id="close"),
]


def _drain(deframer: StreamDeframer) -> list[bytes]:
    """Every whole frame the deframer has, in order."""
    frames = []
    while (frame := deframer.next_frame()) is not None:
        frames.append(frame)
    return frames


def _header(first_byte: int, length: int) -> bytes:
    return bytes([first_byte, 0xC3]) + struct.pack(">H", length)


# --- Reassembly -------------------------------------------------------------------------------


@pytest.mark.parametrize("frame", SAMPLES)
def test_frame_split_at_every_boundary(frame: bytes) -> None:
    for cut in range(1, len(frame)):
        deframer = StreamDeframer()
        deframer.receive_data(frame[:cut], now=1.0)
        assert deframer.next_frame() is None
        deframer.receive_data(frame[cut:], now=2.0)
        assert _drain(deframer) == [frame], cut
        assert deframer.buffered == 0


def test_frames_fed_byte_at_a_time() -> None:
    stream = HEARTBEAT + DATA + ACK + CLOSE
    ends = set(itertools.accumulate(len(f) for f in (HEARTBEAT, DATA, ACK, CLOSE)))
    deframer = StreamDeframer()
    out = []
    for offset in range(len(stream)):
        deframer.receive_data(stream[offset : offset + 1], now=float(offset))
        frames = _drain(deframer)
        # A frame comes out exactly when its last byte arrives, never earlier.
        assert len(frames) == (offset + 1 in ends)
        out += frames
    assert out == [HEARTBEAT, DATA, ACK, CLOSE]
    assert [decode(f) for f in out] == [decode(f) for f in (HEARTBEAT, DATA, ACK, CLOSE)]


def test_many_frames_in_one_chunk() -> None:
    frames = [HEARTBEAT, ACK, DATA, CLOSE] * 50
    deframer = StreamDeframer()
    deframer.receive_data(b"".join(frames), now=1.0)
    assert _drain(deframer) == frames
    assert deframer.buffered == 0
    assert deframer.next_frame() is None


def test_large_backlog_with_partial_tail() -> None:
    # More than 64 KiB of whole frames then half a frame: exercises the buffer compaction.
    frames = [HEARTBEAT] * 3000
    deframer = StreamDeframer()
    deframer.receive_data(b"".join(frames) + DATA[:10], now=1.0)
    assert _drain(deframer) == frames
    assert deframer.buffered == 10
    assert deframer.partial_since == 1.0
    deframer.receive_data(DATA[10:] + ACK, now=2.0)
    assert _drain(deframer) == [DATA, ACK]
    assert deframer.buffered == 0


def test_bad_checksum_frame_is_cut_out_and_the_next_frame_survives() -> None:
    corrupt = HEARTBEAT[:-1] + bytes([HEARTBEAT[-1] ^ 0x01])
    deframer = StreamDeframer()
    deframer.receive_data(corrupt + DATA, now=1.0)
    first, second = _drain(deframer)
    assert first == corrupt
    with pytest.raises(BadChecksum):
        decode(first)
    assert second == DATA
    assert decode(second).payload == b"x" * 200


# --- Fatal framing errors ---------------------------------------------------------------------


@pytest.mark.parametrize("first_byte", [0x00, 0x21, 0xF1])
def test_bad_version_fails_on_the_first_byte(first_byte: int) -> None:
    deframer = StreamDeframer()
    deframer.receive_data(bytes([first_byte]), now=1.0)
    with pytest.raises(BadVersion):
        deframer.next_frame()


def test_bad_version_after_a_good_frame() -> None:
    deframer = StreamDeframer()
    deframer.receive_data(HEARTBEAT + b"\x20", now=1.0)
    assert deframer.next_frame() == HEARTBEAT
    with pytest.raises(BadVersion):
        deframer.next_frame()


@pytest.mark.parametrize(
    ("length", "max_frame_size", "error"),
    [
        pytest.param(0, MAX_FRAME, BadLength, id="length-0"),
        pytest.param(MIN_FRAME - 1, MAX_FRAME, BadLength, id="length-27"),
        pytest.param(1201, 1200, FrameTooLarge, id="above-limit"),
        pytest.param(MAX_FRAME, MIN_FRAME, FrameTooLarge, id="65535-over-minimum-limit"),
    ],
)
def test_bad_length_fails_on_the_fourth_byte(
    length: int, max_frame_size: int, error: type[FrameError]
) -> None:
    deframer = StreamDeframer(max_frame_size)
    header = _header(0x11, length)
    for byte in header[:3]:
        deframer.receive_data(bytes([byte]), now=1.0)
        assert deframer.next_frame() is None
    deframer.receive_data(header[3:], now=1.0)
    with pytest.raises(error):
        deframer.next_frame()
    # Memory bound: nothing of the rejected frame is kept, and no body was ever waited for.
    assert deframer.buffered == 0


@pytest.mark.parametrize("length", [MIN_FRAME, 1200])
def test_length_at_the_limits_is_accepted(length: int) -> None:
    deframer = StreamDeframer(1200)
    deframer.receive_data(_header(0x11, length), now=1.0)
    assert deframer.next_frame() is None
    deframer.receive_data(bytes(length - 4), now=1.0)
    assert deframer.next_frame() == _header(0x11, length) + bytes(length - 4)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\x20", id="version"),
        pytest.param(_header(0x11, 5), id="short-length"),
        pytest.param(_header(0x11, MAX_FRAME), id="long-length"),
    ],
)
def test_fatal_error_repeats(garbage: bytes) -> None:
    deframer = StreamDeframer(1200)
    deframer.receive_data(garbage, now=1.0)
    with pytest.raises(FrameError) as first:
        deframer.next_frame()
    with pytest.raises(type(first.value)):
        deframer.next_frame()
    # A dead stream takes no more bytes (nothing to buffer without bound) and never
    # resynchronises: there is no boundary left to trust.
    with pytest.raises(type(first.value)):
        deframer.receive_data(HEARTBEAT * 1000, now=2.0)
    assert deframer.buffered == 0
    with pytest.raises(type(first.value)):
        deframer.next_frame()


def test_partial_since_is_exact_when_the_caller_does_not_drain() -> None:
    deframer = StreamDeframer()
    deframer.receive_data(HEARTBEAT + HEARTBEAT[:2], now=1.0)
    deframer.receive_data(HEARTBEAT[2:4], now=2.0)
    assert deframer.next_frame() == HEARTBEAT
    # The second frame's first byte came with the first chunk, at 1.0.
    assert deframer.partial_since == 1.0
    deframer.receive_data(HEARTBEAT[4:], now=3.0)
    assert deframer.next_frame() == HEARTBEAT
    assert deframer.partial_since is None


def test_trickled_bytes_keep_bounded_bookkeeping_and_an_early_clock() -> None:
    deframer = StreamDeframer()
    big = _header(0x13, 5000)
    deframer.receive_data(big, now=0.0)
    for i in range(4000):
        deframer.receive_data(b"\x00", now=float(i + 1))
    assert len(deframer._arrivals) <= 16
    # However the record is compacted, the clock starts at the frame's first byte.
    assert deframer.partial_since == 0.0


def test_oversized_length_is_rejected_before_the_body_is_buffered() -> None:
    deframer = StreamDeframer(1200)
    deframer.receive_data(_header(0x11, MAX_FRAME), now=1.0)
    with pytest.raises(FrameTooLarge):
        deframer.next_frame()
    assert deframer.buffered == 0


@pytest.mark.parametrize("size", [-1, 0, MIN_FRAME - 1, MAX_FRAME + 1])
def test_constructor_rejects_bad_max_frame_size(size: int) -> None:
    with pytest.raises(LocalProtocolError):
        StreamDeframer(size)


@pytest.mark.parametrize("size", [MIN_FRAME, 1200, MAX_FRAME])
def test_constructor_accepts_max_frame_size(size: int) -> None:
    assert StreamDeframer(size).max_frame_size == size


# --- partial_since ----------------------------------------------------------------------------


def test_partial_since_tracks_the_first_byte_of_an_incomplete_frame() -> None:
    deframer = StreamDeframer()
    assert deframer.partial_since is None
    deframer.receive_data(b"", now=0.5)
    assert deframer.partial_since is None
    deframer.receive_data(DATA[:5], now=1.0)
    assert deframer.next_frame() is None
    assert deframer.partial_since == 1.0
    deframer.receive_data(DATA[5:50], now=2.0)
    assert deframer.next_frame() is None
    assert deframer.partial_since == 1.0
    deframer.receive_data(DATA[50:], now=3.0)
    assert deframer.next_frame() == DATA
    assert deframer.partial_since is None


def test_partial_since_after_a_frame_boundary() -> None:
    deframer = StreamDeframer()
    # The next frame's first bytes arrive together with the end of this one.
    deframer.receive_data(HEARTBEAT[:10], now=1.0)
    deframer.next_frame()
    deframer.receive_data(HEARTBEAT[10:] + ACK[:3], now=2.0)
    assert deframer.next_frame() == HEARTBEAT
    assert deframer.partial_since == 2.0
    assert deframer.next_frame() is None
    assert deframer.partial_since == 2.0
    deframer.receive_data(ACK[3:], now=3.0)
    assert deframer.next_frame() == ACK
    assert deframer.partial_since is None
    # Idle again: the next byte starts a new wait.
    deframer.receive_data(CLOSE[:1], now=4.0)
    assert deframer.next_frame() is None
    assert deframer.partial_since == 4.0


# --- Random chunkings -------------------------------------------------------------------------


@st.composite
def frame_bytes(draw: st.DrawFn) -> bytes:
    """The encoding of a random valid frame (sizes from 28 bytes to a few hundred)."""
    ftype = draw(st.sampled_from(FrameType))
    state = {FrameType.CLOSE: State.CLOSED, FrameType.DATA: State.UP}.get(ftype, State.UP)
    payload_max = 400 if ftype is FrameType.DATA else PIGGYBACK_MAX
    tlvs: tuple[Tlv, ...] = ()
    if ftype is FrameType.DATA or (ftype is not FrameType.CLOSE and draw(st.booleans())):
        tlvs = (Tlv(TlvType.PAYLOAD, draw(st.binary(max_size=payload_max))),)
    frame = Frame(
        ftype,
        state,
        my_id=draw(st.integers(1, 2**32 - 1)),
        your_id=draw(st.integers(1, 2**32 - 1)),
        seq=draw(st.integers(0, 2**32 - 1)),
        tlvs=tlvs,
    )
    return encode(frame)


@settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.data())
def test_random_chunkings_reproduce_the_frames(data: st.DataObject) -> None:
    frames = data.draw(st.lists(frame_bytes(), min_size=1, max_size=12))
    stream = b"".join(frames)
    cuts = data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=40))
    bounds = [0, *sorted(cuts), len(stream)]
    starts = [0, *itertools.accumulate(len(f) for f in frames)]

    deframer = StreamDeframer()
    out: list[bytes] = []
    arrival: list[float] = []  # arrival time of every byte of the stream, by offset
    for index, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        now = float(index)
        deframer.receive_data(stream[lo:hi], now=now)
        arrival += [now] * (hi - lo)
        out += _drain(deframer)
        # After draining, what is left is the head of one incomplete frame, and partial_since
        # is the time its first byte arrived.
        consumed = starts[len(out)]
        assert deframer.buffered == hi - consumed
        if deframer.buffered == 0:
            assert deframer.partial_since is None
        else:
            assert deframer.partial_since == arrival[consumed]
    assert out == frames
    assert deframer.partial_since is None
