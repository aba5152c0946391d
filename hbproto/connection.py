"""One session over a byte stream (the TCP binding, SPEC.md section 11.2), sans-IO.

Feed what the socket delivered to :meth:`Connection.receive_data` (``b""`` at end of stream),
write what :meth:`Connection.data_to_send` returns, and drive time with :meth:`get_timer` and
:meth:`handle_timer`, as with :class:`~hbproto.endpoint.Endpoint`. When the connection is
finished, for whatever reason, a :class:`~hbproto.events.ConnectionEnded` event comes last and
:attr:`Connection.ended` is true: send what :meth:`data_to_send` still holds, then close the
socket. A stream carries exactly one session [HB-TCP-2]; a new session needs a new connection.
"""

from __future__ import annotations

import secrets
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from random import Random
from typing import Any

from .auth import AuthKeys
from .config import Config
from .errors import FrameError, LocalProtocolError
from .events import (
    ConnectionEnded,
    DetectedBy,
    DownReason,
    Event,
    LocalStall,
    PeerDown,
)
from .frame import MAX_FRAME, PIGGYBACK_MAX, CloseCode, State, decode
from .session import Session, SessionInfo
from .stream import StreamDeframer

__all__ = ["Connection"]

_US = 1_000_000


class Connection:
    """A sans-IO hbproto endpoint for one byte-stream connection.

    ``initiator`` is true on the connecting side, which sends the first frame [HB-TCP-1].
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        initiator: bool,
        now: float,
        rng: Random | None = None,
        id_source: Callable[[], int] | None = None,
        max_frame: int = MAX_FRAME,
    ) -> None:
        self.config = config or Config()
        self.rng = rng or Random()
        self.events: deque[Event] = deque()
        self.counters: Counter[str] = Counter()
        self.max_frame = max_frame
        self.rate_floor_us: int | None = None
        self.ended = False
        self.ends_on_down = True
        self.ts_secret = self.rng.getrandbits(32)
        self._out = bytearray()
        self._deframer = StreamDeframer(max_frame)
        local_id = 0
        source = id_source or (lambda: secrets.randbits(32))
        while not local_id:
            local_id = source() & 0xFFFFFFFF
        # A stream needs no address verification: TCP's own handshake did that.
        self.session = Session(
            self, self.config, local_id, None, now, initiator=initiator, verified=True
        )
        # [HB-TCP-11]: the session must come up within min(DetectionTime, HANDSHAKE_TIMEOUT).
        self._handshake_deadline: float | None = now + self.config.handshake_timeout
        # Established (SPEC section 2): the peer has used our identifier. Addresses need no
        # verification here, so this is tracked apart from the session's ``verified``.
        self._established = False

    @property
    def session_id(self) -> int:
        return self.session.local_id

    def _slow_detection(self) -> int:
        s = self.session
        if s.exp_us is None:  # nothing periodic expected: no finite detection time [HB-DET-9]
            return round(self.config.handshake_timeout * _US)
        return (s.remote_mult or 3) * max(s.exp_us, 1_000_000)

    # --- Verbs --------------------------------------------------------------------------------

    def send(self, data: bytes, now: float) -> None:
        """Send an application message in a DATA frame; the session must be UP."""
        self._check_open()
        self.session.send_data(bytes(data), now, self.max_frame)

    def close(self, now: float, code: int = CloseCode.SHUTDOWN, text: str | None = None) -> None:
        """Close the session with a reason and end the connection [HB-CLOSE-1]."""
        if self.ended:
            return
        self.session.close(code, text, now, linger=False)
        self._end(None)

    def set_parameters(
        self, now: float, *, interval: float | None, min_rx: float | None, multiplier: int
    ) -> None:
        """Change the session's parameters (a Poll, SPEC 9.4)."""
        self._check_open()
        new = replace(self.config, interval=interval, min_rx=min_rx, multiplier=multiplier)
        self.config = self.session.config = new
        self.session.set_parameters(new.desired_tx_us, new.required_rx_us, multiplier, now)

    def set_auth(self, auth: AuthKeys) -> None:
        """Change the session's authentication keys while it runs, to rotate them
        [HB-AUTH-7]: frames are signed with the new active key from now on, and received
        frames verify against every key in ``auth``.

        Whether the session authenticates at all is fixed before it exists [HB-AUTH-9]: a
        connection created without ``Config(auth=...)`` raises
        :class:`~hbproto.errors.LocalProtocolError`.
        """
        if not isinstance(auth, AuthKeys):
            raise LocalProtocolError(f"set_auth needs an AuthKeys, not {auth!r} [HB-AUTH-9]")
        if self.config.auth is None:
            raise LocalProtocolError(
                "this connection does not authenticate, and cannot start: give Config(auth=...) "
                "when creating it [HB-AUTH-9]"
            )
        self.config = self.session.config = replace(self.config, auth=auth)

    def set_piggyback(self, data: bytes | None) -> None:
        """Carry ``data`` (at most 128 bytes) in the session's HEARTBEATs from now on."""
        if data is not None and len(data) > PIGGYBACK_MAX:
            raise LocalProtocolError(f"piggyback is {len(data)} bytes; at most {PIGGYBACK_MAX}")
        self.session.piggyback = None if data is None else bytes(data)

    def note_activity(self, now: float) -> None:
        """Tell an idle-only session that the application sent traffic [HB-TX-3]."""
        session = self.session
        if session.config.idle_only and session.next_tx is not None:
            session.last_tx = now
            session._schedule_tx(now)

    def snapshot(self, now: float) -> SessionInfo:
        """State, RTT, last seen, misses, suspicion and negotiated values of the session."""
        return self.session.info(now)

    def _check_open(self) -> None:
        if self.ended:
            raise LocalProtocolError("the connection has ended")

    # --- Input --------------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the stream; ``b""`` means the peer closed it. Never raises for bad input."""
        if self.ended:
            return
        if not data:
            self.transport_failed(DownReason.TRANSPORT_CLOSED, now)
            return
        deframer = self._deframer
        try:
            deframer.receive_data(data, now)
            while (raw := deframer.next_frame()) is not None:
                self._receive_frame(raw, now)
                if self.ended:
                    return
        except FrameError as exc:  # the stream cannot be framed any more [HB-TCP-3]
            self.counters[exc.reason] += 1
            self.session.close(CloseCode.PROTOCOL_ERROR, exc.reason, now, linger=False)
            self._end(DownReason.PROTOCOL_ERROR)

    def _receive_frame(self, raw: bytes, now: float) -> None:
        try:
            frame = decode(raw, self.max_frame)
        except FrameError as exc:  # delimited correctly but invalid: drop it [HB-TCP-5]
            self.counters[exc.reason] += 1
            return
        session = self.session
        # V-9; a frame from our own identifier is our own, reflected back (an echo service or
        # an attacker): taking it would bring the session UP talking to itself.
        if frame.your_id not in (0, session.local_id) or frame.my_id == session.local_id:
            self.counters["unknown_session"] += 1
            return
        if not frame.your_id and self._established and frame.my_id == session.remote_id:
            session.discard_opening_copy(frame, raw)  # [HB-TCP-2]: as on UDP, [HB-SES-7]
            return
        was_up = session.state is State.UP
        session.receive(frame, None, now, raw)
        if frame.your_id and frame.my_id == session.remote_id:
            self._established = True
        self._after(was_up, now)

    def transport_failed(self, reason: DownReason, now: float) -> None:
        """The byte stream ended without a CLOSE: at end of stream (``TRANSPORT_CLOSED``), or by
        an error the kernel reported, such as a reset or an expired kernel keepalive.

        A session that was UP is reported down for ``reason`` [HB-TCP-7]; the connection ends.
        """
        if self.ended:
            return
        session = self.session
        if session.state is State.UP:
            last = session.last_rx
            # An end of stream is the peer's doing; an error, the local kernel's finding.
            closed = reason is DownReason.TRANSPORT_CLOSED
            self.events.append(
                PeerDown(
                    session.local_id,
                    reason,
                    DetectedBy.REMOTE if closed else DetectedBy.LOCAL,
                    0.0 if last is None else max(0.0, now - last),
                    None if session.dt_us is None else session.dt_us / _US,
                )
            )
        self._end(reason)

    # --- Output and time ----------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes to write to the stream now."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | None:
        """The oldest event not yet taken, or ``None``."""
        return self.events.popleft() if self.events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (the owner's clock), or ``None``."""
        if self.ended:
            return None
        deadlines = [
            t
            for t in (
                self.session.next_tx,
                self.session.detect_at,
                self._handshake_deadline,
                self._partial_deadline(),
            )
            if t is not None
        ]
        return min(deadlines) if deadlines else None

    def _partial_deadline(self) -> float | None:
        since = self._deframer.partial_since
        if since is None:
            return None
        session = self.session
        limit = self.config.handshake_timeout * _US
        if session.state is State.UP:
            dt = limit if session.dt_us is None else session.dt_us  # [HB-TCP-4]
        else:
            dt = min(self._slow_detection(), limit)
        return since + dt / _US

    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now``: HEARTBEATs, detection, the handshake and
        partial-frame deadlines. Frames it produces wait in :meth:`data_to_send`."""
        if self.ended:
            return
        partial = self._partial_deadline()
        if partial is not None and now >= partial:  # [HB-TCP-4]
            self.counters["partial_frame_timeout"] += 1
            self.session.close(CloseCode.TIMEOUT, "a frame never finished", now, linger=False)
            self._end(DownReason.PARTIAL_FRAME_TIMEOUT)
            return
        if self._handshake_deadline is not None and now >= self._handshake_deadline:
            self.session.close(CloseCode.TIMEOUT, "the session did not come up", now, linger=False)
            self._end(DownReason.HANDSHAKE_TIMEOUT)
            return
        was_up = self.session.state is State.UP
        self.session.on_timer(now)
        self._after(was_up, now)

    # --- Internals ----------------------------------------------------------------------------

    def _after(self, was_up: bool, now: float) -> None:
        session = self.session
        state = session.state
        if state is State.UP:
            self._handshake_deadline = None
        elif self._handshake_deadline is not None and session.remote_mult:
            self._handshake_deadline = min(
                self._handshake_deadline, session.last_tx + self._slow_detection() / _US
            )
        if state is State.CLOSED:
            self._end(None)
        elif was_up and state is State.DOWN:
            # [HB-TCP-6]: on a stream, leaving UP ends the connection.
            reason = next(
                (e.reason for e in reversed(self.events) if isinstance(e, PeerDown)),
                DownReason.DETECTION_TIMEOUT,
            )
            code = (
                CloseCode.TIMEOUT
                if reason is DownReason.DETECTION_TIMEOUT
                else CloseCode.UNSPECIFIED
            )
            session.close(code, None, now, linger=False)
            self._end(reason)

    def _end(self, reason: DownReason | None) -> None:
        if not self.ended:
            self.ended = True
            self.events.append(ConnectionEnded(self.session.local_id, reason))

    # --- Owner interface for Session ----------------------------------------------------------

    def _transmit(self, session: Session, data: bytes, addr: Any) -> None:
        self._out += data

    def _session_up(self, session: Session, now: float, *, first: bool) -> None:
        pass  # one session per connection: nothing to correlate here

    def _verified(self, session: Session) -> None:
        pass  # a stream is verified from the start

    def _stalled(self, session: Session, late_by: float) -> None:
        self.events.append(LocalStall(late_by, 1))

    def _too_frequent(self, session: Session, floor_us: int) -> None:
        self.rate_floor_us = max(floor_us, self.rate_floor_us or 0)

    def _closed_by_peer(self, session: Session) -> None:
        pass  # the connection ends right after: see _after

    def _restart(self, session: Session, now: float) -> None:
        pass  # a new session needs a new connection [HB-TCP-6]: the application opens it
