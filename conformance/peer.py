"""The scripted peer: the suite's end of one session, built from the codec, driven by a case.

It keeps what a peer keeps (its identifier, the target's, a send counter, its state, the
intervals it advertises) and turns a case's intent into frames: ``heartbeat()``, ``ack()``,
``close()``. Waiting for the target (:meth:`ScriptedPeer.expect`) can keep the session alive on
the way, answering the target's HEARTBEATs and sending the suite's own on time, unless the case
is testing silence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from random import Random

import trio

from hbproto import AuthKeys, FrameError, decode, encode
from hbproto.auth import check as check_auth
from hbproto.frame import CloseCode, Frame, FrameType, State, Tlv, TlvType

from .model import Failed
from .wire import Wire

__all__ = ["Received", "ScriptedPeer", "is_opening"]

_MASK32 = 0xFFFFFFFF


class Received:
    """A frame from the target, its bytes, and when it arrived (seconds on the trio clock)."""

    __slots__ = ("frame", "raw", "time")

    def __init__(self, time: float, frame: Frame, raw: bytes = b"") -> None:
        self.time = time
        self.frame = frame
        self.raw = raw


class ScriptedPeer:
    """One session's worth of state on the suite's side. Intervals are microseconds.

    With ``auth`` (the target's keys) every frame the peer sends is signed with the active key,
    and a frame from the target that does not verify counts as invalid [HB-AUTH-4].
    """

    def __init__(
        self,
        wire: Wire,
        rng: Random,
        *,
        desired_tx: int | None = 100_000,
        required_rx: int | None = 100_000,
        mult: int = 3,
        auth: AuthKeys | None = None,
    ) -> None:
        self.wire = wire
        self.rng = rng
        self.auth = auth
        self.my_id = rng.randrange(1, 1 << 32)
        self.your_id = 0
        self.seq = rng.randrange(1 << 32)
        self.timestamp = rng.randrange(1 << 32)
        self.state = State.DOWN
        self.desired_tx = desired_tx
        self.required_rx = required_rx
        self.mult = mult
        self.received: list[Received] = []  # every valid frame from the target, in order
        self.invalid: list[tuple[float, str]] = []  # what arrived and did not decode
        self.auto_ack = True  # answer the target's HEARTBEATs while waiting
        self.heartbeat_every: float | None = None  # send our own HEARTBEATs while waiting
        self._next_heartbeat = math.inf
        self.last_sent = -math.inf  # when the suite last sent a frame in this session
        self._last_heartbeat = -math.inf
        self.remote_rx: int | None = None  # the target's Required Min RX, from its latest frame

    # --- Frames ---------------------------------------------------------------------------

    def frame(
        self,
        ftype: FrameType,
        *,
        state: State | None = None,
        seq: int | None = None,
        timestamp: int | None = None,
        your_id: int | None = None,
        my_id: int | None = None,
        poll: bool = False,
        final: bool = False,
        tlvs: tuple[Tlv, ...] = (),
    ) -> Frame:
        """A frame from the suite. Without ``seq``, the send counter's next value [HB-SEQ-1]."""
        if seq is None:
            seq = self.seq = (self.seq + 1) & _MASK32
        if timestamp is None:
            timestamp = self.timestamp = (self.timestamp + 1) & _MASK32
        return Frame(
            type=ftype,
            state=self.state if state is None else state,
            my_id=self.my_id if my_id is None else my_id,
            your_id=self.your_id if your_id is None else your_id,
            seq=seq,
            timestamp=timestamp,
            desired_tx=self.desired_tx,
            required_rx=self.required_rx,
            mult=self.mult,
            poll=poll,
            final=final,
            tlvs=tlvs,
        )

    def ack_for(self, heartbeat: Frame) -> Frame:
        """The ACK answering one of the target's HEARTBEATs [HB-ACK-1]."""
        return self.frame(
            FrameType.ACK,
            seq=heartbeat.seq,
            timestamp=heartbeat.timestamp,
            your_id=heartbeat.my_id,
            final=heartbeat.poll,
        )

    def close_frame(self, code: int = CloseCode.SHUTDOWN, text: str | None = None) -> Frame:
        tlvs = () if text is None else (Tlv(TlvType.CLOSE_TEXT, text.encode()),)
        return self.frame(FrameType.CLOSE, state=State.CLOSED, timestamp=code, tlvs=tlvs)

    def data_frame(self, payload: bytes) -> Frame:
        return self.frame(FrameType.DATA, state=State.UP, tlvs=(Tlv(TlvType.PAYLOAD, payload),))

    # --- Sending --------------------------------------------------------------------------

    def encoded(self, frame: Frame) -> bytes:
        """``frame``'s bytes as this peer sends them: signed under ``auth``."""
        raw = encode(frame)
        return raw if self.auth is None else self.auth.sign(raw)

    async def send(self, frame: Frame | bytes, *, note: str = "", sign: bool = True) -> None:
        """Send a frame, or bytes as they are. Under ``auth`` a frame, and bytes that decode
        to a valid frame without AUTH, are signed unless ``sign`` is false; defective bytes go
        out as crafted."""
        raw = encode(frame) if isinstance(frame, Frame) else frame
        if sign and self.auth is not None and _signable(raw):
            raw = self.auth.sign(raw)
        self.last_sent = trio.current_time()
        await self.wire.send(raw, note=note)

    async def heartbeat(self, *, paced: bool = True, **kw: object) -> Frame:
        """Send a HEARTBEAT. ``paced``: not sooner than one advertised interval after the
        previous one (it then replaces the next keep-alive HEARTBEAT), so that a target
        enforcing its minimum [HB-FREQ-1] has no reason to leave it unanswered."""
        if paced and self.desired_tx:
            await self.wait_until(self._last_heartbeat + self.interval)
        frame = self.frame(FrameType.HEARTBEAT, **kw)  # type: ignore[arg-type]
        await self.send(frame)
        self._last_heartbeat = trio.current_time()
        if self.heartbeat_every is not None:
            self._next_heartbeat = self._last_heartbeat + self.heartbeat_every
        return frame

    @property
    def interval(self) -> float:
        """Seconds between the suite's HEARTBEATs: its TxInterval, max(own D, the target's R)
        [HB-NEG-1], or the default 1 s; towards a target whose R is 0, the slow-start pace the
        target judges by [HB-FREQ-6]. A suite sending faster than the target's R would be
        struck and closed [HB-FREQ-1]."""
        own, remote = self.desired_tx or 0, self.remote_rx
        if remote == 0:
            return max(own, 1_000_000) / 1e6
        return (max(own, remote or 0) or 1_000_000) / 1e6

    async def wait_until(self, until: float) -> None:
        """Wait until ``until``, sending no HEARTBEAT but still answering the target's (as
        configured by ``auto_ack``): a target whose R is 0 hears the suite only in those ACKs.
        What arrives meanwhile goes to :attr:`received`."""
        every, due = self.heartbeat_every, self._next_heartbeat
        self.heartbeat_every, self._next_heartbeat = None, math.inf
        try:
            while trio.current_time() < until:
                await self.next(until)
        finally:
            self.heartbeat_every, self._next_heartbeat = every, due

    def keep_alive(self, every: float | None) -> None:
        """Send the suite's HEARTBEATs every ``every`` seconds while waiting (None: silence)."""
        self.heartbeat_every = every
        self._next_heartbeat = -math.inf if every is not None else math.inf

    # --- Receiving ------------------------------------------------------------------------

    async def next(self, deadline: float) -> Received | None:
        """The next valid frame from the target before ``deadline``, keeping the session alive
        on the way as configured; ``None`` at the deadline."""
        while True:
            now = trio.current_time()
            if self.heartbeat_every is not None and now >= self._next_heartbeat:
                await self.heartbeat(paced=False)
            wake = min(deadline, self._next_heartbeat)
            try:
                raw = await self.wire.receive(wake)
            except FrameError as exc:  # a TCP stream the suite can no longer cut into frames
                raise Failed(
                    "frames delimited by their Length field [HB-TCP-1]",
                    f"a byte stream that cannot be framed ({exc.reason})",
                ) from None
            if raw is None:
                if trio.current_time() >= deadline:
                    return None
                continue
            try:
                frame = decode(raw)
            except FrameError as exc:
                self.invalid.append((trio.current_time(), exc.reason))
                continue
            if self.auth is not None:
                verdict = check_auth(self.auth, frame, raw)
                if verdict is not None:
                    self.invalid.append((trio.current_time(), verdict))
                    continue
            got = Received(trio.current_time(), frame, raw)
            self.received.append(got)
            if frame.your_id == self.my_id:
                self.remote_rx = frame.required_rx
            if not self.your_id and frame.your_id == self.my_id and frame.my_id:
                self.your_id = frame.my_id
            if (
                self.auto_ack
                and frame.type is FrameType.HEARTBEAT
                and frame.your_id
                in (
                    0,
                    self.my_id,
                )
            ):
                await self.send(self.ack_for(frame))
            return got

    async def expect(self, what: str, match: Callable[[Frame], bool], within: float) -> Received:
        """The first frame from the target matching ``match`` within ``within`` seconds;
        :class:`Failed` naming ``what`` if none comes."""
        deadline = trio.current_time() + within
        seen: list[str] = []
        while (got := await self.next(deadline)) is not None:
            if match(got.frame):
                return got
            seen.append(f"{got.frame.type.name} {got.frame.state.name}")
        actual = "nothing" if not seen else ", ".join(seen[-6:])
        raise Failed(f"{what} within {within:.3g} s", actual)

    async def expect_nothing(
        self, what: str, match: Callable[[Frame], bool], within: float
    ) -> None:
        """Fail if a frame matching ``match`` arrives within ``within`` seconds."""
        deadline = trio.current_time() + within
        while (got := await self.next(deadline)) is not None:
            if match(got.frame):
                raise Failed(f"no {what} for {within:.3g} s", _one_line(got.frame))

    # --- Whole exchanges ------------------------------------------------------------------

    async def handshake(self, within: float) -> Frame:
        """Bring a session up with a responder target: the three-way handshake of SPEC 3."""
        self.state, self.your_id = State.DOWN, 0
        await self.heartbeat()
        got = await self.expect(
            "a frame with Sta INIT or UP answering our DOWN HEARTBEAT",
            lambda f: f.your_id == self.my_id and f.state in (State.INIT, State.UP),
            within,
        )
        self.your_id = got.frame.my_id
        self.state = State.UP
        await self.heartbeat()
        up = await self.expect(
            "a frame with Sta UP once we sent UP",
            lambda f: f.your_id == self.my_id and f.state is State.UP,
            within,
        )
        return up.frame

    async def answer_opening(self, opening: Frame, within: float) -> Frame:
        """Bring a session up with an initiator target, from its opening HEARTBEAT: answer it
        as a responder does (an ACK with Sta INIT), then answer the target's HEARTBEAT with
        Sta UP with Sta UP (the three-way handshake of SPEC 3). Returns that HEARTBEAT."""
        self.your_id, self.state = opening.my_id, State.INIT
        await self.send(self.ack_for(opening))
        auto, self.auto_ack = self.auto_ack, False  # the answers below depend on the state
        deadline = trio.current_time() + within
        seen: list[str] = []
        try:
            while (got := await self.next(deadline)) is not None:
                frame = got.frame
                if frame.type is FrameType.HEARTBEAT and frame.my_id == opening.my_id:
                    if frame.state is State.UP and frame.your_id == self.my_id:
                        self.state = State.UP
                        await self.send(self.ack_for(frame))
                        return frame
                    if frame.state is State.DOWN and frame.your_id in (0, self.my_id):
                        await self.send(self.ack_for(frame))  # a repeat: our ACK went astray
                        continue
                seen.append(_one_line(frame))
        finally:
            self.auto_ack = auto
        raise Failed(
            f"a HEARTBEAT with Sta UP answering our Sta INIT within {within:.3g} s",
            ", ".join(seen[-6:]) or "nothing",
        )

    def refusal_for(self, opening: Frame) -> Frame:
        """A CLOSE refusing the session ``opening`` would open [HB-CLOSE-5]: its Your
        Identifier the opening's My Identifier, a fresh My Identifier and Sequence Number,
        Mult 1, no interval preference, reason ``refused``."""
        return Frame(
            type=FrameType.CLOSE,
            state=State.CLOSED,
            my_id=self.rng.randrange(1, 1 << 32),
            your_id=opening.my_id,
            seq=self.rng.randrange(1 << 32),
            timestamp=CloseCode.REFUSED,
            mult=1,
        )


def _signable(raw: bytes) -> bool:
    try:
        frame = decode(raw)
    except FrameError:
        return False
    return not frame.tlvs or frame.tlvs[-1].type != TlvType.AUTH


def is_opening(frame: Frame) -> bool:
    """A HEARTBEAT that opens a session: Sta DOWN and Your Identifier 0 [HB-SES-2]."""
    return frame.type is FrameType.HEARTBEAT and frame.state is State.DOWN and not frame.your_id


def _one_line(frame: Frame) -> str:
    return f"{frame.type.name} {frame.state.name} seq={frame.seq} your={frame.your_id:08x}"
