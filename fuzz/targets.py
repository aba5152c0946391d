"""Fuzz targets: hbproto's parsers and state machines fed hostile input, invariants checked.

A target is a *harness* that applies concrete operations to the code under test (bytes in,
time passing, application calls) and checks, after every one, that

* only documented errors escape: the decoder raises :class:`~hbproto.errors.FrameError`
  subclasses, the TCP de-framer the three fatal ones, the application verbs
  :class:`~hbproto.errors.LocalProtocolError`, and ``Endpoint.receive_datagram``,
  ``Connection.receive_data`` and the timers nothing at all (SPEC section 7: a bad frame is a
  silent, counted drop);
* memory stays bounded: the endpoint's session, half-open and per-source tables within its
  :class:`~hbproto.Limits`, its bookkeeping maps holding only live sessions, the timer heap
  within a constant of the sessions, the de-framer's buffer within one frame;
* nothing can spin: after ``handle_timer(now)`` the next deadline is later than ``now``, and an
  incomplete frame always has a deadline;
* everything sent is a valid frame, signed when the session authenticates, addressed only to an
  address the code was given or heard from; a *blind* attacker (one that never sees what the
  endpoint sends) gets no more bytes towards any address than it sent from it (SPEC 12.1); and,
  between two authenticating endpoints on a hostile network, no event is ever produced that the
  other endpoint did not cause (SPEC 10, 12.2).

Inputs are generated as *recipes* that the harness resolves against its state, so that forged
frames can carry the identifiers, sequence numbers and timestamps the code under test actually
uses and get past the cheap checks into the state machine. One generator serves two sources of
choices (:class:`Draw`): hypothesis in the test suite, where a failure shrinks, and a seeded
random generator in the long run, which makes scenarios about a hundred times faster. What ran is
recorded as concrete operations: a finding is saved as a JSON vector
(:meth:`Harness.vector`) that :func:`replay` runs again without hypothesis.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from functools import partial
from random import Random
from typing import Any, ClassVar, Protocol, TypeVar

from hypothesis import strategies as st

from hbproto import AuthKeys, Config, Connection, Endpoint, Limits, StreamDeframer
from hbproto.endpoint import _PEERS_KEPT
from hbproto.errors import (
    BadLength,
    BadVersion,
    FrameError,
    FrameTooLarge,
    LocalProtocolError,
)
from hbproto.events import (
    ConnectionEnded,
    Event,
    MessageReceived,
    PeerUp,
    PiggybackReceived,
    SessionClosed,
)
from hbproto.frame import (
    AUTH_TLV_SIZE,
    MAX_FRAME,
    MIN_FRAME,
    UDP_MAX_FRAME,
    Frame,
    FrameType,
    decode,
    encode,
)
from tests.peer import DROP_COUNTERS as SPEC_DROP_COUNTERS

__all__ = [
    "TARGETS",
    "Finding",
    "Harness",
    "Scenario",
    "Target",
    "replay",
]

Op = list[Any]
Addr = tuple[str, int]
MASK32 = 0xFFFFFFFF

# Every counter the core may move: SPEC 13.5's drop counters and the implementation's own.
DROP_COUNTERS = frozenset(SPEC_DROP_COUNTERS)
KNOWN_COUNTERS = DROP_COUNTERS | {
    "data_not_up",
    "data_unsupported",
    "handshake_timeout",
    "partial_frame_timeout",
    "premature",
    "strikes",
    "refused",
    "expired",
    "stall_spared",
}
STREAM_FATAL = (BadVersion, BadLength, FrameTooLarge)  # [HB-TCP-3]

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(32, 64))
# The keys an endpoint goes through in a rotation [HB-AUTH-7]; "rekey" picks one.
KEYSETS = (
    AuthKeys({1: KEY_1}, active=1),
    AuthKeys({1: KEY_1, 2: KEY_2}, active=1),
    AuthKeys({1: KEY_1, 2: KEY_2}, active=2),
    AuthKeys({2: KEY_2}, active=2),
)
# How a forged frame is signed: with a key the endpoint holds (an insider), with a wrong
# secret under a good Key ID, under a Key ID nobody has, or not at all.
SIGNERS: dict[str, AuthKeys] = {
    "right1": AuthKeys({1: KEY_1}, active=1),
    "right2": AuthKeys({2: KEY_2}, active=2),
    "wrong": AuthKeys({1: b"not the key" * 3}, active=1),
    "unknown_key": AuthKeys({9: KEY_1}, active=9),
}
INSIDER_SIGNS = ("none", "right1", "right1", "right2", "wrong", "unknown_key", "short")
OUTSIDER_SIGNS = ("none", "none", "wrong", "unknown_key", "short")

A_ADDR: Addr = ("192.0.2.1", 40000)
B_ADDR: Addr = ("192.0.2.2", 7373)
PORTS = (7373, 40000, 40001, 55555)
IDENTITIES = (0x0A0A0A0A, 0x0B0B0B0B, 0x00000001, 0xFFFFFFFF, 0x0C0C0C0C)
# Interval codes (SPEC 4.4): 0 (no Desired TX Interval may be 0), 100 ms, 300 ms, 10 ms, 1 ms
# non-canonical, "no preference", the largest, 1 s, 20 s.
INTERVAL_CODES = (0x0000, 0x4064, 0x412C, 0x03E8, 0x4001, 0xFFFF, 0xFFFE, 0x43E8, 0x80C8)
_FIXED = struct.Struct(">HHIIIIHH")
_TLV_HEAD = struct.Struct(">BH")


class Finding(AssertionError):
    """An invariant of a target broke. (Any exception a target lets escape is a finding.)"""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise Finding(message)


# --- Forged frames ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameRecipe:
    """A frame to forge, with identifiers and sequence numbers as references that a harness
    resolves against what the code under test has said (see :class:`Forger`)."""

    ftype: int
    state: int  # -1: as a well-behaved peer would (see Forger.forge)
    poll: bool
    final: bool
    mult: int
    # ("pool", k): an attacker identity; ("peer", k): one the code heard from; ("local", k): the
    # code's own (its frames reflected); ("raw", v).
    my: tuple[str, int]
    # ("local", k): an identifier the code sent; ("learned", 0): the one that last addressed
    # my_id, as a peer would answer; ("raw", v).
    your: tuple[str, int]
    # ("next", 0), ("back", d) behind the next, ("raw", v), or ("echo", k): ACK the k-th
    # HEARTBEAT the code sent.
    seq: tuple[str, int]
    timestamp: int
    tx: int
    rx: int
    tlvs: tuple[tuple[int, bytes, int | None], ...]  # (type, value, a lying length or None)
    sign: str  # a key of SIGNERS, "none", or "short" (an AUTH TLV of the wrong length)
    length: int | None  # a lying Length field
    crc: int | None  # a wrong CRC-32


_T = TypeVar("_T")


class Draw(Protocol):
    """Where a generator's choices come from: hypothesis in the test suite (choices it can
    shrink), a seeded :class:`random.Random` in the long run (``fuzz/run.py``)."""

    def integer(self, lo: int, hi: int) -> int: ...
    def binary(self, max_size: int) -> bytes: ...
    def pick(self, options: Sequence[_T]) -> _T: ...


class RandomDraw:
    """Choices from a seeded generator, biased like hypothesis towards bounds and small values."""

    def __init__(self, rng: Random) -> None:
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        rng = self.rng
        roll = rng.random()
        if roll < 0.1:
            return lo if roll < 0.05 else hi
        if roll < 0.25:
            return min(hi, lo + rng.randrange(16))
        return rng.randint(lo, hi)

    def binary(self, max_size: int) -> bytes:
        return self.rng.randbytes(self.integer(0, max_size))

    def pick(self, options: Sequence[_T]) -> _T:
        return options[self.rng.randrange(len(options))]


class HypothesisDraw:
    """Choices drawn from hypothesis, so that a failing scenario shrinks."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def binary(self, max_size: int) -> bytes:
        return self.data.draw(st.binary(max_size=max_size))

    def pick(self, options: Sequence[_T]) -> _T:
        return self.data.draw(st.sampled_from(options))


def draw_edits(d: Draw) -> list[tuple[str, int, int]]:
    return [
        (d.pick("fstid"), d.integer(0, 4096), d.integer(0, 255)) for _ in range(d.integer(1, 4))
    ]


def draw_tlvs(d: Draw, ftype: int, wild: bool) -> tuple[tuple[int, bytes, int | None], ...]:
    """TLVs for a frame of type ``ftype``: mostly what the SPEC allows, sometimes not."""
    tlvs: list[tuple[int, bytes, int | None]] = []
    if ftype == FrameType.DATA:
        tlvs += [(1, d.binary(140), None) for _ in range(d.integer(0 if wild else 1, 1))]
    elif ftype == FrameType.CLOSE:
        tlvs += [(2, d.binary(130), None) for _ in range(d.integer(0, 1))]
    else:
        tlvs += [(1, d.binary(140), None) for _ in range(d.integer(0, 1))]
    for _ in range(d.integer(0, 2)):
        if wild:
            lie = d.integer(0, 0xFFFF) if d.integer(0, 1) else None
            tlvs.append((d.integer(0, 255), d.binary(40), lie))
        else:
            tlvs.append((d.integer(3, 0x7F), d.binary(20), None))
    return tuple(tlvs)


def draw_frame(d: Draw, *, blind: bool = False, insider: bool = True) -> FrameRecipe:
    """A frame an attacker could send. ``blind``: it has never seen what the endpoint sends
    (no echoed identifiers, no ACKs of its HEARTBEATs). ``insider``: it may hold a key."""
    wild = d.integer(0, 7) == 0  # now and then, break the field rules too
    ftype = d.integer(0, 15) if wild else d.pick((1, 1, 1, 1, 2, 2, 2, 3, 3, 4))
    state = d.integer(0, 3) if wild else {4: 0, 3: 3}.get(ftype) or d.pick((1, 2, 3, 3))
    poll = bool(d.integer(0, 1)) if wild else ftype == 1 and d.integer(0, 4) == 0
    final = bool(d.integer(0, 1)) if wild or ftype == 2 else False
    mult = d.integer(0 if wild else 1, 15)
    my_kinds = (
        ("pool", "pool", "pool", "raw") if blind else ("pool", "pool", "peer", "local", "raw")
    )
    my_kind = d.pick(my_kinds)
    my = (my_kind, d.integer(0, 7) if my_kind != "raw" else d.integer(0, MASK32))
    opening = ftype == FrameType.HEARTBEAT and state == 1
    if not blind and (d.integer(0, 3) if opening else d.integer(0, 7)):
        your = (d.pick(("local", "learned")), d.integer(0, 15))
    else:
        your = ("raw", 0 if opening or d.integer(0, 3) == 0 else d.integer(0, MASK32))
    seq_kinds: tuple[str, ...] = ("next", "next", "next", "back", "raw")
    if not blind and ftype == FrameType.ACK:
        seq_kinds = ("echo", "echo", "echo", *seq_kinds)
    seq_kind = d.pick(seq_kinds)
    seq_value = {"next": 0, "back": d.integer(0, 80), "echo": d.integer(0, 31)}.get(seq_kind)
    return FrameRecipe(
        ftype=ftype,
        state=state,
        poll=poll,
        final=final,
        mult=mult,
        my=my,
        your=your,
        seq=(seq_kind, d.integer(0, MASK32) if seq_value is None else seq_value),
        timestamp=d.integer(0, MASK32),
        tx=d.pick(INTERVAL_CODES[1:]) if d.integer(0, 3) else d.integer(0, 0xFFFF),
        rx=d.pick(INTERVAL_CODES) if d.integer(0, 3) else d.integer(0, 0xFFFF),
        tlvs=draw_tlvs(d, ftype, wild),
        sign=d.pick(INSIDER_SIGNS if insider else OUTSIDER_SIGNS),
        length=d.integer(0, 0xFFFF) if wild and d.integer(0, 1) else None,
        crc=d.integer(0, MASK32) if wild and d.integer(0, 3) == 0 else None,
    )


def peer_frame(sign: str, your: tuple[str, int], identity: int = 0) -> FrameRecipe:
    """The next HEARTBEAT of a well-behaved peer (100 ms, x3) with an attacker identity."""
    return FrameRecipe(
        ftype=1,
        state=-1,
        poll=False,
        final=False,
        mult=3,
        my=("pool", identity),
        your=your,
        seq=("next", 0),
        timestamp=0,
        tx=0x4064,
        rx=0x4064,
        tlvs=(),
        sign=sign,
        length=None,
        crc=None,
    )


def assemble(r: FrameRecipe, my_id: int, your_id: int, seq: int, timestamp: int) -> bytes:
    """The bytes of a forged frame: fields as given, right or wrong, then AUTH and CRC."""
    tlvs = b"".join(
        _TLV_HEAD.pack(t, (len(v) if lie is None else lie) & 0xFFFF) + v for t, v, lie in r.tlvs
    )
    if r.sign == "short":
        tlvs += _TLV_HEAD.pack(0x80, 5) + bytes(5)
    signer = SIGNERS.get(r.sign)
    length = MIN_FRAME + len(tlvs) + (AUTH_TLV_SIZE if signer is not None else 0)
    head = (1 << 12) | (r.ftype << 8) | (r.state << 6) | (r.poll << 5) | (r.final << 4) | r.mult
    body = _FIXED.pack(
        head,
        (length if r.length is None else r.length) & 0xFFFF,
        my_id & MASK32,
        your_id & MASK32,
        seq & MASK32,
        timestamp & MASK32,
        r.tx,
        r.rx,
    )
    body += tlvs
    if signer is not None:
        body = signer.seal(body)
    crc = zlib.crc32(body) if r.crc is None else r.crc
    return body + crc.to_bytes(4, "big")


def mutate(data: bytes, changes: list[tuple[str, int, int]], *, fix: bool) -> bytes:
    """``data`` after some edits (bit flip, byte set, truncation, insertion, deletion); with
    ``fix``, the Length field and CRC-32 are made to match again, so that the edit reaches the
    checks after V-5."""
    out = bytearray(data)
    for kind, where, value in changes:
        at = where % (len(out) + 1)
        if kind == "t":
            del out[at:]
        elif kind == "i":
            out[at:at] = bytes([value]) * (1 + value % 7)
        elif not out:
            continue
        elif kind == "f":
            out[at % len(out)] ^= 1 << (value % 8)
        elif kind == "s":
            out[at % len(out)] = value
        else:
            del out[at : at + 1 + value % 8]
    if fix and len(out) >= MIN_FRAME:
        out[2:4] = len(out).to_bytes(2, "big") if len(out) <= 0xFFFF else out[2:4]
        out[-4:] = zlib.crc32(bytes(out[:-4])).to_bytes(4, "big")
    return bytes(out)


class Forger:
    """Resolves :class:`FrameRecipe` references against what the code under test has sent."""

    def __init__(self) -> None:
        self.local_ids: deque[int] = deque(maxlen=16)  # identifiers the code used
        self.peer_ids: deque[int] = deque(maxlen=8)  # identifiers the code's peers used
        self.heartbeats: deque[Frame] = deque(maxlen=32)  # HEARTBEATs the code sent
        self.own: deque[bytes] = deque(maxlen=16)  # the code's latest frames, as sent
        self.learned: dict[int, int] = {}  # identifier addressed -> the code's identifier
        self.states: dict[int, int] = {}  # identifier addressed -> the code's state towards it
        self.seqs: dict[int, int] = {}

    def learn(self, frame: Frame) -> None:
        if frame.my_id not in self.local_ids:
            self.local_ids.append(frame.my_id)
        if frame.type is FrameType.HEARTBEAT:
            self.heartbeats.append(frame)
        if frame.your_id:
            self.learned.pop(frame.your_id, None)
            self.learned[frame.your_id] = frame.my_id
            self.states[frame.your_id] = frame.state
            if len(self.learned) > 64:
                del self.states[next(iter(self.learned))]
                del self.learned[next(iter(self.learned))]

    def learn_peer(self, my_id: int) -> None:
        if my_id and my_id not in self.peer_ids:
            self.peer_ids.append(my_id)

    def forge(self, r: FrameRecipe) -> bytes:
        echo = None
        if r.seq[0] == "echo" and self.heartbeats:
            echo = self.heartbeats[r.seq[1] % len(self.heartbeats)]
        kind, value = r.my
        if kind == "pool":
            my_id = IDENTITIES[value % len(IDENTITIES)]
            if echo is not None and echo.your_id:
                my_id = echo.your_id  # answer as the one it was talking to
        elif kind == "peer":
            my_id = self.peer_ids[value % len(self.peer_ids)] if self.peer_ids else IDENTITIES[0]
        elif kind == "local":  # the code's own identifier: its frames, reflected
            my_id = self.local_ids[value % len(self.local_ids)] if self.local_ids else 1
        else:
            my_id = value
        kind, value = r.your
        if kind == "local":
            your_id = self.local_ids[value % len(self.local_ids)] if self.local_ids else 0
            if echo is not None:
                your_id = echo.my_id
        elif kind == "learned":  # whoever last talked to my_id, as a peer would answer it
            fallback = self.local_ids[-1] if value and self.local_ids else 0
            your_id = self.learned.get(my_id, fallback)
        else:
            your_id = value
        if r.state < 0:  # a well-behaved peer: DOWN until it has heard, INIT, then UP
            heard = self.states.get(my_id, 1)
            r = replace(r, state=1 if not your_id else 2 if heard == 1 else 3)
        if echo is not None:
            return assemble(r, my_id, your_id, echo.seq, echo.timestamp)
        kind, value = r.seq
        top = self.seqs.get(my_id, 1000 + my_id % 7919)
        if kind in ("next", "echo"):
            seq = top
            self.seqs[my_id] = (top + 1) & MASK32
        elif kind == "back":
            seq = top - 1 - value
        else:
            seq = value
        return assemble(r, my_id, your_id, seq, r.timestamp)


def _ids(seed: int) -> Callable[[], int]:
    """A repeatable source of session identifiers, so that a saved vector replays exactly."""
    rng = Random(seed)
    return lambda: rng.getrandbits(32)


def split_stream(data: bytes) -> list[bytes]:
    """Frames that the core wrote on a stream, cut by their Length fields."""
    frames: list[bytes] = []
    pos = 0
    while pos < len(data):
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        require(length >= MIN_FRAME, f"the core wrote a Length of {length}")
        frames.append(data[pos : pos + length])
        pos += length
    require(pos == len(data), "the core wrote a truncated frame")
    return frames


def check_own_frame(data: bytes, auth: AuthKeys | None, max_frame: int) -> Frame:
    """A frame the code under test sent: valid, within the size limit, signed if it must be."""
    require(len(data) <= max_frame, f"sent a frame of {len(data)} bytes > {max_frame}")
    try:
        frame = decode(data, max_frame)
    except FrameError as exc:
        raise Finding(f"sent an invalid frame ({exc.reason}): {data.hex()}") from None
    if auth is None:
        require(frame.auth is None, "sent a signed frame without authentication")
    else:
        require(auth.verify(data), "sent a frame that its own keys do not verify")
    return frame


# --- Harnesses ----------------------------------------------------------------------------------


class Harness:
    """Applies concrete operations to the code under test and checks its invariants."""

    target: ClassVar[str]

    def __init__(self, setup: dict[str, Any]) -> None:
        self.setup = setup
        self.ops: list[Op] = []
        self.inputs = 0  # byte strings fed to the code under test

    def run(self, op: Op) -> None:
        """Record ``op`` (so that a finding can be replayed), then apply it."""
        self.ops.append(op)
        self.apply(op)

    def apply(self, op: Op) -> None:
        raise NotImplementedError

    def step(self, recipe: tuple[Any, ...]) -> None:
        """Resolve one generated recipe into concrete operations and run them."""
        raise NotImplementedError

    def start(self) -> None:
        """Operations every scenario begins with."""

    def vector(self) -> dict[str, Any]:
        """What ran, as JSON-ready data that :func:`replay` runs again."""
        return {"target": self.target, "setup": self.setup, "ops": self.ops}


class DecodeHarness(Harness):
    """``decode``: only :class:`FrameError` escapes; what decodes re-encodes to the same frame."""

    target = "decode"

    def apply(self, op: Op) -> None:
        data = bytes.fromhex(op[1])
        max_size = self.setup["max_size"]
        self.inputs += 1
        try:
            frame = decode(data, max_size)
        except FrameError as exc:
            require(exc.reason in DROP_COUNTERS, f"unnamed drop reason {exc.reason!r}")
            return
        require(frame.size == len(data) <= max_size, "decoded a frame of the wrong size")
        try:
            again = encode(frame)
        except LocalProtocolError as exc:
            raise Finding(f"decode accepted a frame that encode refuses: {exc}") from None
        require(decode(again) == frame, "re-encoding changed the frame")

    def step(self, recipe: tuple[Any, ...]) -> None:
        kind = recipe[0]
        forger = Forger()
        if kind == "bytes":
            data = recipe[1]
        elif kind == "frame":
            data = forger.forge(recipe[1])
        else:
            data = mutate(forger.forge(recipe[1]), recipe[2], fix=recipe[3])
        self.run(["bytes", data.hex()])


class StreamHarness(Harness):
    """Shared by the stream targets: a buffer of generated bytes delivered in arbitrary cuts."""

    def __init__(self, setup: dict[str, Any]) -> None:
        super().__init__(setup)
        self.pending = b""
        self.forger = Forger()

    def segment(self, recipe: tuple[Any, ...]) -> bool:
        """Add a generated segment to the bytes waiting to be delivered; False if ``recipe``
        is not a segment."""
        kind = recipe[0]
        if kind == "frame":
            data = self.forger.forge(recipe[1])
        elif kind == "mutated":
            data = mutate(self.forger.forge(recipe[1]), recipe[2], fix=recipe[3])
        elif kind == "lie":  # a header whose Length promises more (or less) than follows
            length, fill = recipe[1], recipe[2]
            data = bytes((0x11, 0x43)) + length.to_bytes(2, "big") + bytes(fill)
        elif kind == "garbage":
            data = recipe[1]
        elif kind == "big":  # a DATA frame near the largest size, valid in shape
            big = replace(
                recipe[1],
                ftype=3,
                state=3,
                poll=False,
                final=False,
                tlvs=((1, bytes(recipe[2]), None),),
            )
            data = self.forger.forge(big)
        else:
            return False
        self.pending += data
        return True

    def take(self, amount: int) -> bytes:
        cut = len(self.pending) if amount == 0 else min(amount, len(self.pending))
        chunk, self.pending = self.pending[:cut], self.pending[cut:]
        return chunk


class DeframerHarness(StreamHarness):
    """``StreamDeframer``: frames come out intact and in order, only the three fatal errors
    escape (and keep escaping), and the buffer never holds more than one incomplete frame."""

    target = "deframer"

    def __init__(self, setup: dict[str, Any]) -> None:
        super().__init__(setup)
        self.deframer = StreamDeframer(setup["max_frame"])
        self.unmatched = b""  # bytes received and not yet returned in a frame
        self.failed: type[FrameError] | None = None
        self.now = 0.0

    def apply(self, op: Op) -> None:
        data = bytes.fromhex(op[1])
        self.now = float(op[2])
        self.inputs += 1
        d = self.deframer
        try:
            d.receive_data(data, self.now)
        except FrameError as exc:
            require(type(exc) is self.failed, f"receive_data raised {exc!r} on a live stream")
            require(d.buffered == 0, "a dead stream kept its buffer")
            return
        require(self.failed is None, "a dead stream accepted bytes")
        self.unmatched += data
        while True:
            try:
                frame = d.next_frame()
            except STREAM_FATAL as exc:
                self.failed = type(exc)
                require(d.buffered == 0, "a dead stream kept its buffer")
                require(d.partial_since is None, "a dead stream kept a partial-frame clock")
                try:
                    d.next_frame()
                except STREAM_FATAL as again:
                    require(type(again) is type(exc), "the fatal error changed")
                else:
                    raise Finding("the fatal error did not repeat") from None
                return
            if frame is None:
                break
            length = int.from_bytes(frame[2:4], "big")
            require(frame[0] >> 4 == 1, "a frame with another version came out")
            require(length == len(frame), "a frame came out whose Length disagrees")
            require(MIN_FRAME <= length <= d.max_frame_size, "a frame out of bounds came out")
            require(self.unmatched.startswith(frame), "a frame came out that was not sent")
            self.unmatched = self.unmatched[len(frame) :]
        require(d.buffered == len(self.unmatched), "the buffer lost or invented bytes")
        require(d.buffered < max(d.max_frame_size, 4), f"{d.buffered} bytes left buffered")
        require(len(d._arrivals) <= 16, "the arrival record grew")
        require((d.partial_since is None) == (d.buffered == 0), "partial_since is wrong")

    def step(self, recipe: tuple[Any, ...]) -> None:
        if self.segment(recipe):
            return
        if recipe[0] == "flush" and self.pending:
            self.run(["chunk", self.take(recipe[1]).hex(), self.now + 1.0])


class ConnectionHarness(StreamHarness):
    """``Connection``: any byte stream, cut anywhere, with time passing and application calls."""

    target = "connection"

    def __init__(self, setup: dict[str, Any]) -> None:
        super().__init__(setup)
        self.now = 0.0
        config = Config(
            interval=0.1,
            min_rx=setup["min_rx"],
            multiplier=setup["mult"],
            handshake_timeout=2.0,
            auth=KEYSETS[0] if setup["auth"] else None,
        )
        self.conn = Connection(
            config,
            initiator=setup["initiator"],
            now=0.0,
            rng=Random(setup["seed"] + 1),
            id_source=_ids(setup["seed"]),
            max_frame=setup["max_frame"],
        )
        self.settle(ended_before=False)

    def settle(self, *, ended_before: bool) -> None:
        conn = self.conn
        out = conn.data_to_send()
        events = list(iter(conn.next_event, None))
        require(not (ended_before and (out or events)), "an ended connection went on")
        for raw in split_stream(out):
            self.forger.learn(check_own_frame(raw, conn.config.auth, MAX_FRAME))
            self.forger.own.append(raw)
        if conn.config.auth is not None and not self.setup.get("insider", True):
            # Nobody else holds the key: no frame the connection did not send itself can
            # verify, so it must never come up (its own frames, reflected, must not do it).
            require(not any(isinstance(e, PeerUp) for e in events), "UP with nobody keyed")
        ends = [e for e in events if isinstance(e, ConnectionEnded)]
        require(len(ends) == conn.ended - ended_before, "ConnectionEnded does not match ended")
        require(set(conn.counters) <= KNOWN_COUNTERS, f"unknown counters {set(conn.counters)}")
        d = conn._deframer
        require(len(d._arrivals) <= 16, "the arrival record grew")
        if conn.ended:
            require(conn.get_timer() is None, "an ended connection wants a timer")
            return
        require(d.buffered < max(conn.max_frame, 4), f"{d.buffered} bytes left buffered")
        if d.partial_since is not None:
            require(conn.get_timer() is not None, "an incomplete frame has no deadline")

    def apply(self, op: Op) -> None:
        conn = self.conn
        ended_before = conn.ended
        kind = op[0]
        if kind == "rx":
            self.inputs += 1
            conn.receive_data(bytes.fromhex(op[1]), self.now)
        elif kind == "echo":
            # One of the connection's own frames sent back (an echo service, or an attacker),
            # kept symbolic so that a shrunk vector can only echo what was sent in it.
            own = self.forger.own
            if own:
                self.inputs += 1
                conn.receive_data(own[op[1] % len(own)], self.now)
        elif kind == "eof":
            conn.receive_data(b"", self.now)
        elif kind == "time":
            self.now = float(op[1])
            timer = conn.get_timer()
            if timer is not None and timer <= self.now:
                conn.handle_timer(self.now)
                timer = conn.get_timer()
                require(timer is None or timer > self.now, f"timer {timer} not after {self.now}")
        else:
            with suppress(LocalProtocolError):
                _verb(conn, op, self.now)
        self.settle(ended_before=ended_before)

    def step(self, recipe: tuple[Any, ...]) -> None:
        if self.segment(recipe):
            return
        kind = recipe[0]
        if kind == "flush":
            if self.pending:
                self.run(["rx", self.take(recipe[1]).hex()])
        elif kind == "echo":
            if self.pending:  # what came before it on the stream first
                self.run(["rx", self.take(0).hex()])
            self.run(["echo", recipe[1]])
        elif kind == "time":
            self.run(["time", self.now + recipe[1]])
        else:
            self.run(list(recipe))


def _verb(target: Connection, op: Op, now: float) -> None:
    """An application call on a connection; may raise only :class:`LocalProtocolError`."""
    kind = op[0]
    if kind == "send":
        target.send(bytes.fromhex(op[1]), now)
    elif kind == "close":
        target.close(now, op[1], op[2])
    elif kind == "params":
        target.set_parameters(now, interval=op[1], min_rx=op[2], multiplier=op[3])
    elif kind == "piggyback":
        target.set_piggyback(None if op[1] is None else bytes.fromhex(op[1]))
    elif kind == "rekey":
        target.set_auth(KEYSETS[op[1]])
    else:
        raise Finding(f"unknown operation {op!r}")


class WorldHarness(Harness):
    """Endpoints on a hostile datagram network.

    ``endpoint``: a responder (that may also connect out) receives what an attacker sends from
    many addresses. ``pair``: an initiator ``a`` and a responder ``b`` talk through a network
    the attacker controls: it delivers, duplicates, replays, mutates and spoofs their
    datagrams and injects its own.
    """

    target = "endpoint"

    def __init__(self, setup: dict[str, Any]) -> None:
        super().__init__(setup)
        self.now = 0.0
        self.blind = bool(setup.get("blind"))
        self.keys = KEYSETS[0] if setup["auth"] else None
        config = Config(
            interval=0.1,
            min_rx=setup["min_rx"],
            multiplier=setup["mult"],
            handshake_timeout=2.0,
            auth=self.keys,
        )
        limits = Limits(*setup["limits"])
        self.eps: dict[str, Endpoint] = {}
        self.addrs: dict[str, Addr] = {}
        for name, accept, addr in (("b", True, B_ADDR), ("a", False, A_ADDR)):
            if name == "a" and self.target != "pair":
                continue
            self.eps[name] = Endpoint(
                config,
                accept=accept,
                limits=limits,
                rng=Random(setup["seed"] + 10 + len(self.eps)),
                id_source=_ids(setup["seed"] + len(self.eps)),
            )
            self.addrs[name] = addr
        self.forger = Forger()
        self.flights: deque[tuple[bytes, Addr, Any]] = deque(maxlen=48)
        self.heard: dict[str, set[Hashable]] = {name: set() for name in self.eps}
        self.targets: dict[str, set[Hashable]] = {name: set() for name in self.eps}
        self.bytes_in: Counter[Hashable] = Counter()
        self.bytes_out: Counter[Hashable] = Counter()
        # What each endpoint really did, for the authenticity checks between a and b.
        self.used_ids: dict[str, set[int]] = {name: set() for name in self.eps}
        self.closes_to: dict[str, set[int]] = {name: set() for name in self.eps}
        self.sent: dict[str, Counter[bytes]] = {name: Counter() for name in self.eps}
        self.delivered: dict[str, Counter[bytes]] = {name: Counter() for name in self.eps}
        self.piggybacks: dict[str, set[bytes]] = {name: set() for name in self.eps}

    def start(self) -> None:
        if "a" in self.eps:
            self.run(["connect", "a", *B_ADDR])

    # -- concrete operations --

    def apply(self, op: Op) -> None:
        kind = op[0]
        if kind == "time":
            self.now = float(op[1])
        elif kind == "rx":
            self._receive(op[1], bytes.fromhex(op[2]), (op[3], op[4]))
        elif kind == "deliver":
            # What an endpoint really sent, by its place among the latest datagrams: kept
            # symbolic, so that a shrunk vector can only ever deliver what was sent in it.
            data, src, dest = self.flights[op[1] % len(self.flights)]
            receivers = [n for n, a in self.addrs.items() if a == dest]
            if receivers:
                to = receivers[0]
            else:  # sent to the attacker: it reflects it at the sender
                to, src = next(n for n, a in self.addrs.items() if a == src), dest
            if op[2] == "spoof":
                src = self._addr(op[3], to)
            elif op[2] == "mutate":
                data = mutate(data, [tuple(e) for e in op[4]], fix=op[1] % 2 == 0)
            self._receive(to, data, src)
        elif kind == "connect":
            addr = (op[2], op[3])
            self.targets[op[1]].add(addr)
            with suppress(LocalProtocolError):
                self.eps[op[1]].connect(addr, self.now)
        else:
            self._verb(op)
        for name in self.eps:
            self.settle(name)

    def _receive(self, name: str, data: bytes, addr: Addr) -> None:
        self.inputs += 1
        self.heard[name].add(addr)
        self.bytes_in[addr] += len(data)
        self.eps[name].receive_datagram(data, addr, self.now)

    def _verb(self, op: Op) -> None:
        kind, name = op[0], op[1]
        ep = self.eps[name]
        try:
            if kind == "send":
                data = bytes.fromhex(op[3])
                ep.send(op[2], data, self.now)
                self.sent[name][data] += 1
            elif kind == "close":
                ep.close(op[2], self.now, op[3], op[4])
            elif kind == "params":
                ep.set_parameters(op[2], self.now, interval=op[3], min_rx=op[4], multiplier=op[5])
            elif kind == "piggyback":
                piggyback = None if op[3] is None else bytes.fromhex(op[3])
                if piggyback is not None:
                    self.piggybacks[name].add(piggyback)
                ep.set_piggyback(op[2], piggyback)
            elif kind == "rekey":
                ep.set_auth(KEYSETS[op[2]])
            else:
                raise Finding(f"unknown operation {op!r}")
        except LocalProtocolError:
            pass

    def settle(self, name: str) -> None:
        """Run what is due, check what the endpoint sent and reported, and its tables."""
        ep, now = self.eps[name], self.now
        for data, dest in ep.datagrams_to_send(now):
            require(
                dest in self.heard[name] or dest in self.targets[name],
                f"{name} sent to {dest!r}, an address it was never given nor heard from",
            )
            frame = check_own_frame(data, ep.config.auth, ep.limits.max_frame)
            self.forger.learn(frame)
            self.used_ids[name].add(frame.my_id)
            if frame.type is FrameType.CLOSE:
                self.closes_to[name].add(frame.your_id)
            self.bytes_out[dest] += len(data)
            self.flights.append((data, self.addrs[name], dest))
            if self.blind and dest not in self.targets[name]:
                require(
                    self.bytes_out[dest] <= self.bytes_in[dest],
                    f"{self.bytes_out[dest]} bytes sent to {dest!r}, which sent only "
                    f"{self.bytes_in[dest]} (SPEC 12.1)",
                )
        timer = ep.get_timer()
        require(timer is None or timer > now, f"{name}: timer {timer} is not after {now}")
        for event in iter(ep.next_event, None):
            self._check_event(name, event)
        check_endpoint(ep)

    def _check_event(self, name: str, event: Event) -> None:
        others = [other for other in self.eps if other != name]
        if isinstance(event, PeerUp):
            require(event.remote_id != 0, "PeerUp with remote identifier 0")
            self.forger.learn_peer(event.remote_id)
        if not (others and self.keys is not None):
            return
        # Two authenticating endpoints: the attacker holds no key, so every event must have
        # been caused by something the other endpoint really sent [HB-AUTH-4], SPEC 12.3.
        other = others[0]
        if isinstance(event, PeerUp):
            require(
                event.remote_id not in self.eps[name].sessions,
                f"{name} came UP with one of its own sessions, {event.remote_id:#x} (reflected)",
            )
            require(
                event.remote_id in self.used_ids[other],
                f"{name} brought up a session with {event.remote_id:#x}, which {other} never used",
            )
        elif isinstance(event, MessageReceived):
            self.delivered[name][event.data] += 1
            require(
                self.delivered[name][event.data] <= self.sent[other][event.data],
                f"{name} received a message {other} did not send (or not that often)",
            )
        elif isinstance(event, PiggybackReceived):
            require(event.data in self.piggybacks[other], f"{name}: a forged piggyback")
        elif isinstance(event, SessionClosed) and event.by_peer:
            require(
                event.session in self.closes_to[other],
                f"{name}'s session {event.session:#x} closed by a CLOSE {other} never sent",
            )

    # -- recipes --

    def _addr(self, src: tuple[Any, ...], to: str) -> Addr:
        if src[0] == "peer":  # the address of the other endpoint, or of a connect target
            for name, addr in self.addrs.items():
                if name != to:
                    return addr
            targets = sorted(self.targets[to], key=repr)
            if targets:
                return targets[src[1] % len(targets)]  # type: ignore[no-any-return]
            return ("198.51.100.0", PORTS[0])
        return (f"198.51.100.{src[1]}", PORTS[src[2] % len(PORTS)])

    def _to(self, name: str) -> str:
        return name if name in self.eps else "b"

    def _handle(self, name: str, pick: int) -> int:
        handles = sorted(self.eps[name].sessions)
        return handles[pick % len(handles)] if handles and pick < 1000 else 0xDEADBEEF

    def step(self, recipe: tuple[Any, ...]) -> None:
        kind = recipe[0]
        if kind == "time":
            self.run(["time", self.now + recipe[1]])
        elif kind in ("forge", "mutated", "garbage"):
            to = self._to(recipe[1])
            if kind == "forge":
                data = self.forger.forge(recipe[2])
            elif kind == "mutated":
                data = mutate(self.forger.forge(recipe[2]), recipe[3], fix=recipe[4])
            else:
                data = recipe[2]
            self.run(["rx", to, data.hex(), *self._addr(recipe[-1], to)])
        elif kind == "peer":  # a well-behaved peer's next HEARTBEAT, from its own address
            k = recipe[2]
            frame = peer_frame(recipe[3], ("learned", 0), identity=k)
            to = self._to(recipe[1])
            self.run(["rx", to, self.forger.forge(frame).hex(), *self._addr(("host", k, 1), to)])
        elif kind == "deliver":
            if self.flights:
                self.run(["deliver", recipe[1], recipe[2], list(recipe[3]), recipe[4]])
        elif kind == "connect":
            to = self._to(recipe[1])
            self.run(["connect", to, *self._addr(recipe[2], to)])
        elif kind == "rekey":
            if self.keys is not None:
                self.run(["rekey", self._to(recipe[1]), recipe[2]])
        else:
            name = self._to(recipe[1])
            self.run([kind, name, self._handle(name, recipe[2]), *recipe[3:]])


class PairHarness(WorldHarness):
    target = "pair"


def check_endpoint(ep: Endpoint) -> None:
    """The bounds of [HB-SES-3] and SPEC 12.5, and bookkeeping that refers only to live
    sessions: a leak in any of these tables is a slow denial of service."""
    limits = ep.limits
    sessions = ep.sessions
    require(len(sessions) <= limits.max_sessions, f"{len(sessions)} sessions")
    half_open = [s for s in sessions.values() if s.source is not None and not s.was_up]
    require(ep._half_open == len(half_open), "the half-open count drifted")
    require(len(half_open) <= limits.max_half_open, f"{len(half_open)} half-open sessions")
    per_source = Counter(s.source for s in sessions.values() if s.source is not None)
    require(+ep.source_counts() == per_source, "the per-source table drifted")
    require(
        all(n <= limits.max_per_source for n in per_source.values()), "per-source limit exceeded"
    )
    live = {id(s) for s in sessions.values()}
    require(all(id(s) in live for s in ep._pending_by_remote.values()), "pending leak")
    require(all(w and all(id(s) in live for s in w) for w in ep._unbound.values()), "unbound leak")
    require(all(id(s) in live for _, s in ep._bound.values()), "bound leak")
    require(len(ep._openings) <= limits.max_half_open, "the opening-frame memory grew")
    require(len(ep._rate_floor) <= _PEERS_KEPT, "the rate-floor table grew")
    require(len(ep._refusals) <= _PEERS_KEPT, "the refusal table grew")
    require(len(ep._heap) <= 4 * len(sessions) + 16, f"timer heap of {len(ep._heap)}")
    require(set(ep.counters) <= KNOWN_COUNTERS, f"unknown counters {set(ep.counters)}")


# --- Scenarios ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A harness's setup and the recipes a run resolves, in order."""

    setup: dict[str, Any]
    recipes: tuple[tuple[Any, ...], ...]


def draw_segment(d: Draw, *, insider: bool = True) -> tuple[Any, ...]:
    """Bytes to put on a stream: a forged frame, a mutated one, a header whose Length lies,
    garbage, or a frame near the largest size."""
    kind = d.pick(("frame",) * 3 + ("peer",) * 5 + ("mutated", "lie", "garbage", "big"))
    if kind == "peer":  # the next HEARTBEAT of a well-behaved peer
        sign = d.pick(("right1", "none") if insider else ("wrong", "none"))
        return ("frame", peer_frame(sign, ("learned", 1)))
    if kind == "frame":
        return ("frame", draw_frame(d, insider=insider))
    if kind == "mutated":
        return ("mutated", draw_frame(d, insider=insider), draw_edits(d), bool(d.integer(0, 1)))
    if kind == "lie":
        return ("lie", d.integer(0, 0xFFFF), d.integer(0, 300))
    if kind == "garbage":
        return ("garbage", d.binary(64) or b"\x00")
    return ("big", draw_frame(d, insider=insider), d.integer(1000, 65_000))


def draw_flush(d: Draw) -> tuple[Any, ...]:
    """Deliver what is waiting: all of it (0), a few bytes, or a cut somewhere inside."""
    return ("flush", d.pick((0, 0, d.integer(1, 3), d.integer(4, 200), d.integer(200, 70_000))))


def decode_scenario(d: Draw) -> Scenario:
    items: list[tuple[Any, ...]] = []
    for _ in range(d.integer(1, 16)):
        kind = d.pick(("bytes", "frame", "mutated", "mutated"))
        if kind == "bytes":
            items.append(("bytes", d.binary(80)))
        elif kind == "frame":
            items.append(("frame", draw_frame(d)))
        else:
            items.append(("mutated", draw_frame(d), draw_edits(d), bool(d.integer(0, 1))))
    setup = {"max_size": d.pick((MIN_FRAME, 100, UDP_MAX_FRAME, MAX_FRAME))}
    return Scenario(setup, tuple(items))


def deframer_scenario(d: Draw) -> Scenario:
    items: list[tuple[Any, ...]] = []
    for _ in range(d.integer(1, 24)):
        items.append(draw_segment(d))
        if d.integer(0, 1):
            items.append(draw_flush(d))
    items.append(("flush", 0))
    setup = {"max_frame": d.pick((MIN_FRAME, 64, UDP_MAX_FRAME, MAX_FRAME))}
    return Scenario(setup, tuple(items))


TIME_STEPS = (0.0, 0.001, 0.05, 0.1, 0.3, 1.0, 2.5, 10.0)
INTERVALS = (None, 0.05, 0.1, 0.3)
MIN_RXS = (None, 0, 0.05, 0.2)


def draw_time(d: Draw) -> float:
    return d.pick(TIME_STEPS) if d.integer(0, 2) else d.integer(0, 500) / 1000


def draw_verb(d: Draw, *who: str) -> tuple[Any, ...]:
    """An application call, on endpoint ``who`` (none for a connection) and a session chosen
    by index (1000: a handle that does not exist)."""
    kind = d.pick(("send", "send", "close", "params", "piggyback", "rekey"))
    if kind == "rekey":
        return ("rekey", *who, d.integer(0, len(KEYSETS) - 1))
    pick = (d.pick((d.integer(0, 7), 1000)),) if who else ()
    if kind == "send":
        args: tuple[Any, ...] = (d.binary(300 if not who else 64).hex(),)
    elif kind == "close":
        text = None if d.integer(0, 1) else d.binary(20).decode("utf-8", "replace")
        args = (d.integer(0, 8) if d.integer(0, 3) else d.integer(0, MASK32), text)
    elif kind == "params":
        args = (d.pick(INTERVALS), d.pick(MIN_RXS), d.pick((1, 3, 5)))
    else:
        args = (None if d.integer(0, 2) == 0 else d.binary(140).hex(),)
    return (kind, *who, *pick, *args)


def connection_scenario(d: Draw) -> Scenario:
    insider = bool(d.integer(0, 2))  # the peer holds the key (else nobody else does)
    setup = {
        "initiator": bool(d.integer(0, 1)),
        "auth": bool(d.integer(0, 1)),
        "insider": insider,
        "max_frame": d.pick((MAX_FRAME, MAX_FRAME, 4096, MIN_FRAME)),
        "seed": d.integer(0, 1000),
        "min_rx": d.pick(MIN_RXS),
        "mult": d.pick((1, 3)),
    }
    items: list[tuple[Any, ...]] = []
    for _ in range(d.integer(1, 40)):
        kind = d.pick(("segment", "segment", "segment", "time", "time", "verb", "echo", "eof"))
        if kind == "echo":
            items.append(("echo", d.integer(0, 15)))
        elif kind == "segment":
            items.append(draw_segment(d, insider=insider))
            if d.integer(0, 2):
                items.append(draw_flush(d))
        elif kind == "time":
            items.append(("time", draw_time(d)))
        elif kind == "verb":
            items.append(draw_verb(d))
        elif d.integer(0, 3) == 0:
            items.append(("eof",))
    return Scenario(setup, tuple(items))


def _draw_source(d: Draw) -> tuple[Any, ...]:
    if d.integer(0, 3) == 0:
        return ("peer", d.integer(0, 3))
    return ("host", d.integer(0, 63), d.integer(0, 3))


def world_scenario(d: Draw, *, pair: bool) -> Scenario:
    names = ("a", "b") if pair else ("b",)
    blind = not pair and bool(d.integer(0, 1))
    kinds = ["forge", "forge", "forge", "mutated", "garbage", "time", "time", "connect", "verb"]
    if not blind:
        kinds += ["deliver"] * 4 if pair else ["deliver", "peer", "peer", "peer"]
    items: list[tuple[Any, ...]] = []
    for _ in range(d.integer(1, 40)):
        kind = d.pick(kinds)
        who = d.pick(names)
        if kind == "forge":
            frame = draw_frame(d, blind=blind, insider=not pair)
            items.append(("forge", who, frame, _draw_source(d)))
        elif kind == "mutated":
            frame = draw_frame(d, blind=blind, insider=not pair)
            fix = bool(d.integer(0, 1))
            items.append(("mutated", who, frame, draw_edits(d), fix, _draw_source(d)))
        elif kind == "garbage":
            items.append(("garbage", who, d.binary(64), _draw_source(d)))
        elif kind == "time":
            items.append(("time", draw_time(d)))
        elif kind == "connect":
            items.append(("connect", who, _draw_source(d)))
        elif kind == "verb":
            items.append(draw_verb(d, who))
        elif kind == "peer":
            sign = d.pick(("right1", "right1", "right2", "none"))
            items.append(("peer", who, d.integer(0, len(IDENTITIES) - 1), sign))
        else:
            how = d.pick(("as_is", "as_is", "as_is", "spoof", "mutate"))
            items.append(("deliver", d.integer(0, 47), how, _draw_source(d), draw_edits(d)))
    setup = {
        "auth": bool(d.integer(0, 1)),
        "blind": blind,
        "limits": d.pick(((8, 3, 3), (4, 2, 4), (64, 16, 2), (2, 1, 1))),
        "min_rx": d.pick(MIN_RXS),
        "mult": d.pick((1, 3)),
        "seed": d.integer(0, 1000),
    }
    return Scenario(setup, tuple(items))


@dataclass(frozen=True)
class Target:
    """One fuzz target: its harness and the scenarios hypothesis draws for it."""

    name: str
    harness: type[Harness]
    generate: Callable[[Draw], Scenario]
    last: list[Harness] = field(default_factory=list, compare=False)

    def run_hypothesis(self, data: st.DataObject) -> Harness:
        """Draw one scenario from hypothesis (inside a ``@given(st.data())`` test) and run it."""
        return self.execute(self.generate(HypothesisDraw(data)))

    def run_random(self, rng: Random) -> Harness:
        """Draw one scenario from a seeded generator and run it."""
        return self.execute(self.generate(RandomDraw(rng)))

    def execute(self, scenario: Scenario) -> Harness:
        """Run one scenario; the harness stays in :attr:`last` (what a finding replays)."""
        harness = self.harness(dict(scenario.setup))
        self.last[:] = [harness]
        harness.start()
        for recipe in scenario.recipes:
            harness.step(recipe)
        return harness


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("decode", DecodeHarness, decode_scenario),
        Target("deframer", DeframerHarness, deframer_scenario),
        Target("connection", ConnectionHarness, connection_scenario),
        Target("endpoint", WorldHarness, partial(world_scenario, pair=False)),
        Target("pair", PairHarness, partial(world_scenario, pair=True)),
    )
}


def replay(vector: dict[str, Any]) -> Harness:
    """Run a saved vector's operations again; raises what the original run raised."""
    harness = TARGETS[vector["target"]].harness(dict(vector["setup"]))
    for op in vector["ops"]:
        harness.run(op)
    return harness
