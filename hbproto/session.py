"""One session: the SPEC's per-peer behaviour, with no I/O.

A :class:`Session` is driven by its owner (an :class:`~hbproto.endpoint.Endpoint` for UDP, a
:class:`~hbproto.connection.Connection` for a byte stream). The owner decodes frames, finds the
session (SPEC 8.2, checks V-1 to V-9), and calls :meth:`Session.receive`; it calls
:meth:`Session.on_timer` when :meth:`Session.deadline` has passed. The session writes frames
and events through the owner. State changes go through :mod:`hbproto.state`, timer arithmetic
through :mod:`hbproto.timers`.

Times are floats in the caller's clock (seconds); intervals are integer microseconds, as on the
wire. Sessions are numerous (100,000 in one endpoint is a design point), so the class keeps
its state in slots and derives what it can.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from random import Random
from typing import TYPE_CHECKING, Any, Protocol

from .errors import LocalProtocolError
from .events import (
    DetectedBy,
    DownReason,
    Event,
    LivenessInactive,
    MessageReceived,
    Negotiated,
    ParametersChanged,
    PeerDown,
    PeerUp,
    PiggybackReceived,
    RttSample,
    SessionClosed,
)
from .frame import (
    CLOSE_TEXT_MAX,
    MIN_FRAME,
    TLV_HEADER_SIZE,
    CloseCode,
    Frame,
    FrameType,
    State,
    TlvType,
    encode_interval,
    pack,
    pack_tlv,
)
from .state import LocalEvent, on_local, on_receive
from .timers import (
    ACK_OUTSTANDING,
    REPLAY_WINDOW,
    detection_time_us,
    expected_remote_us,
    interarrival_seed,
    interarrival_update,
    is_premature,
    jitter_factor,
    phi,
    rtt_update,
    tx_interval_us,
)

if TYPE_CHECKING:
    from collections import Counter

    from .config import Config

__all__ = ["Session", "SessionInfo"]

_MASK32 = 0xFFFFFFFF
_HALF32 = 1 << 31
_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1
_US = 1_000_000
_CLOSED, _DOWN, _INIT, _UP = State.CLOSED, State.DOWN, State.INIT, State.UP
_HEARTBEAT, _ACK, _DATA, _CLOSE = (
    FrameType.HEARTBEAT,
    FrameType.ACK,
    FrameType.DATA,
    FrameType.CLOSE,
)


class Owner(Protocol):
    """What a session needs from the endpoint or connection that holds it."""

    rng: Random
    events: deque[Event]
    counters: Counter[str]

    def _transmit(self, session: Session, data: bytes, addr: Any) -> None: ...
    def _session_up(self, session: Session) -> None: ...
    def _stalled(self, session: Session, late_by: float) -> None: ...
    def _too_frequent(self, session: Session, floor_us: int) -> None: ...


@dataclass(slots=True)
class SessionInfo:
    """A snapshot of one session, for monitoring (``Endpoint.snapshot``)."""

    session: int
    remote_id: int
    address: Any
    state: State
    initiator: bool
    negotiated: Negotiated
    last_rx: float | None
    silent_for: float | None
    misses: int
    phi: float
    srtt: float | None
    rttvar: float | None
    strikes: int
    polling: bool


class Session:
    """The state of one session and the SPEC's rules for it."""

    __slots__ = (
        "_ia_mean",
        "_ia_var",
        "_pending",
        "addr",
        "close_code",
        "config",
        "d_adv",
        "d_code",
        "d_eff",
        "detect_at",
        "dt_us",
        "exp_us",
        "expire_at",
        "heap_at",
        "initiator",
        "last_hb_rx",
        "last_hb_sig",
        "last_rx",
        "last_tx",
        "local_id",
        "mult",
        "next_tx",
        "outstanding",
        "owner",
        "piggyback",
        "poll_seq",
        "r_adv",
        "r_code",
        "r_eff",
        "remote_d",
        "remote_id",
        "remote_mult",
        "remote_r",
        "replaces",
        "rttvar",
        "rx_mask",
        "rx_top",
        "srtt",
        "state",
        "strikes",
        "ts_offset",
        "tx_seq",
        "tx_us",
        "was_up",
    )

    def __init__(
        self,
        owner: Owner,
        config: Config,
        local_id: int,
        addr: Any,
        now: float,
        *,
        initiator: bool,
    ) -> None:
        rng = owner.rng
        self.owner = owner
        self.config = config
        self.local_id = local_id
        self.remote_id = 0
        self.addr = addr
        self.initiator = initiator
        self.state = _DOWN
        self.was_up = False
        self.replaces: tuple[int, int] | None = None  # (old session, old remote id) [HB-SM-8]
        # Our parameters: advertised, and in effect (they differ during a poll, [HB-POLL-4]).
        self.d_adv = self.d_eff = config.desired_tx_us
        self.r_adv = self.r_eff = config.required_rx_us
        self.d_code = encode_interval(self.d_adv)
        self.r_code = encode_interval(self.r_adv)
        self.mult = config.multiplier
        self.poll_seq: int | None = None
        self._pending: tuple[int | None, int | None] | None = None
        # The peer's parameters, from its most recent valid frame.
        self.remote_d: int | None = None
        self.remote_r: int | None = None
        self.remote_mult = 0
        # Negotiated values (us), recomputed by _renegotiate.
        self.tx_us: int | None = None
        self.exp_us: int | None = None
        self.dt_us: int | None = None
        # Sequence numbers [HB-SEQ-1..4] and outstanding HEARTBEATs [HB-ACK-5].
        self.tx_seq = rng.getrandbits(32)
        self.ts_offset = rng.getrandbits(32)  # [HB-SEC-5]
        self.rx_top: int | None = None
        self.rx_mask = 0
        self.outstanding: list[int] | None = None
        # Timers (absolute times) and their bookkeeping.
        self.last_rx: float | None = None
        self.last_tx = now
        self.next_tx: float | None = now if initiator else None  # [HB-TX-5]
        self.detect_at: float | None = None
        self.expire_at: float | None = None
        self.heap_at = float("inf")  # owned by the endpoint's timer heap
        # Too-frequent protection [HB-FREQ-1].
        self.last_hb_rx: float | None = None
        self.last_hb_sig = 0
        self.strikes = 0
        # RTT [HB-RTT-2] and suspicion [HB-DET-7].
        self.srtt: float | None = None
        self.rttvar = 0.0
        self._ia_mean = 0.0
        self._ia_var = 0.0
        self.piggyback: bytes | None = None
        self.close_code = 0
        self._renegotiate()

    # --- Derived values ---------------------------------------------------------------------

    def negotiated(self) -> Negotiated:
        return Negotiated(
            None if self.tx_us is None else self.tx_us / _US,
            None if self.exp_us is None else self.exp_us / _US,
            None if self.dt_us is None else self.dt_us / _US,
            self.mult,
            self.remote_mult,
        )

    def _renegotiate(self) -> bool:
        """Recompute TxInterval, ExpectedRemote and DetectionTime; True if any changed."""
        tx = tx_interval_us(self.d_eff, self.remote_r)
        exp = expected_remote_us(self.remote_d, self.r_eff, tx)
        dt = detection_time_us(self.remote_mult or 1, exp, self.state is _UP)
        changed = (tx, exp, dt) != (self.tx_us, self.exp_us, self.dt_us)
        self.tx_us, self.exp_us, self.dt_us = tx, exp, dt
        return changed

    def deadline(self) -> float:
        """The earliest time this session needs :meth:`on_timer`; ``inf`` if none."""
        earliest = float("inf")
        for t in (self.next_tx, self.detect_at, self.expire_at):
            if t is not None and t < earliest:
                earliest = t
        return earliest

    def _periodic_us(self) -> int | None:
        """The interval used to schedule periodic HEARTBEATs, with slow start [HB-TX-2]."""
        tx = self.tx_us
        if tx is None:
            return None
        return tx if self.state is _UP else max(tx, 1_000_000)

    def _schedule_tx(self, now: float) -> None:
        period = self._periodic_us()
        self.next_tx = (
            None
            if period is None
            else now + jitter_factor(self.owner.rng, self.mult) * period / _US
        )

    def _rearm_detection(self) -> None:
        """[HB-DET-1]/[HB-DET-5]: detection runs in INIT and UP, from the last valid frame."""
        if self.state in (_INIT, _UP) and self.dt_us is not None and self.last_rx is not None:
            self.detect_at = self.last_rx + self.dt_us / _US
        else:
            self.detect_at = None

    # --- Sending ------------------------------------------------------------------------------

    def _timestamp(self, now: float) -> int:
        return (int(now * _US) + self.ts_offset) & _MASK32

    def _next_seq(self) -> int:
        seq = self.tx_seq
        self.tx_seq = (seq + 1) & _MASK32
        return seq

    def _sent(self, data: bytes, now: float, *, heartbeat: bool) -> None:
        self.owner._transmit(self, data, self.addr)
        if heartbeat or self.config.idle_only:  # [HB-TX-1], [HB-TX-3]
            self.last_tx = now
            self._schedule_tx(now)

    def send_heartbeat(self, now: float) -> None:
        """Send a HEARTBEAT now (periodic or triggered)."""
        seq = self._next_seq()
        tlvs = b"" if self.piggyback is None else pack_tlv(TlvType.PAYLOAD, self.piggyback)
        data = pack(
            _HEARTBEAT,
            self.state,
            self.poll_seq is not None,
            False,
            self.mult,
            self.local_id,
            self.remote_id,
            seq,
            self._timestamp(now),
            self.d_code,
            self.r_code,
            tlvs,
        )
        out = self.outstanding
        if out is None:
            self.outstanding = [seq]
        else:
            out.append(seq)
            if len(out) > ACK_OUTSTANDING:
                del out[0]
        self._sent(data, now, heartbeat=True)

    def _send_ack(self, frame: Frame, now: float) -> None:
        data = pack(
            _ACK,
            self.state,
            False,
            frame.poll,  # [HB-ACK-1]: F answers P
            self.mult,
            self.local_id,
            frame.my_id,
            frame.seq,
            frame.timestamp,
            self.d_code,
            self.r_code,
        )
        self._sent(data, now, heartbeat=False)

    def send_data(self, payload: bytes, now: float, max_frame: int) -> None:
        """Send one application message in a DATA frame [HB-DATA-1], [HB-DATA-4]."""
        if self.state is not _UP:
            raise LocalProtocolError(f"cannot send DATA: session is {self.state.name}, not UP")
        size = MIN_FRAME + TLV_HEADER_SIZE + len(payload)
        if size > max_frame:
            raise LocalProtocolError(
                f"message of {len(payload)} bytes makes a {size}-byte frame; "
                f"this transport carries at most {max_frame}"
            )
        data = pack(
            _DATA,
            _UP,
            False,
            False,
            self.mult,
            self.local_id,
            self.remote_id,
            self._next_seq(),
            self._timestamp(now),
            self.d_code,
            self.r_code,
            pack_tlv(TlvType.PAYLOAD, payload),
        )
        self._sent(data, now, heartbeat=False)

    def _close_frame(self, code: int, text: str | None, now: float, limit: int | None) -> bytes:
        tlvs = b""
        if text:
            raw = text.encode("utf-8")[:CLOSE_TEXT_MAX].decode("utf-8", "ignore").encode("utf-8")
            tlvs = pack_tlv(TlvType.CLOSE_TEXT, raw)
            if limit is not None and MIN_FRAME + len(tlvs) > limit:
                tlvs = b""  # never answer with more bytes than arrived [HB-CLOSE-2]
        return pack(
            _CLOSE,
            _CLOSED,
            False,
            False,
            self.mult,
            self.local_id,
            self.remote_id,
            self._next_seq(),
            code,
            self.d_code,
            self.r_code,
            tlvs,
        )

    def close(self, code: int, text: str | None, now: float, *, linger: bool) -> None:
        """End the session with a CLOSE [HB-CLOSE-1]."""
        if self.state is _CLOSED:
            return
        self.state = on_local(self.state, LocalEvent.CLOSE)
        if self.remote_id:
            self.owner._transmit(self, self._close_frame(code, text, now, None), self.addr)
        self.close_code = code
        self.next_tx = self.detect_at = None
        # Linger for a detection time to answer stragglers with CLOSE [HB-CLOSE-2].
        self.expire_at = now + (self.dt_us or 1_000_000) / _US if linger else now
        self.owner.events.append(SessionClosed(self.local_id, code, text, by_peer=False))

    # --- Changing parameters [HB-POLL-*] ------------------------------------------------------

    def set_parameters(
        self, desired_tx: int | None, required_rx: int | None, mult: int, now: float
    ) -> None:
        if self.state is _CLOSED:
            raise LocalProtocolError("the session is closed")
        changed = mult != self.mult or (desired_tx, required_rx) != (self.d_adv, self.r_adv)
        if not changed:
            return
        self.mult = mult  # [HB-POLL-5]: no poll; the peer applies it on receipt
        if (desired_tx, required_rx) != (self.d_adv, self.r_adv):
            if self.state is not _UP:
                self._adopt(desired_tx, required_rx)
                self.d_eff, self.r_eff = desired_tx, required_rx
            elif self.poll_seq is not None:
                self._pending = (desired_tx, required_rx)  # [HB-POLL-2]
            else:
                self._start_poll(desired_tx, required_rx)
        self._after_parameter_change(now)
        self.send_heartbeat(now)  # a frame whose contents changed goes out at once

    def _adopt(self, d: int | None, r: int | None) -> None:
        self.d_adv, self.r_adv = d, r
        self.d_code, self.r_code = encode_interval(d), encode_interval(r)

    def _start_poll(self, d: int | None, r: int | None) -> None:
        old_d, old_r = self.d_eff, self.r_eff
        self._adopt(d, r)
        # [HB-POLL-4]: the safe halves apply now, the others when the poll ends.
        if (d or 0) < (old_d or 0):
            self.d_eff = d
        if (r or 0) > (old_r or 0) and old_r != 0:
            self.r_eff = r
        self.poll_seq = self.tx_seq  # the HEARTBEAT about to be sent carries the new values

    def _end_poll(self, now: float) -> None:
        self.poll_seq = None
        self.d_eff, self.r_eff = self.d_adv, self.r_adv
        self._after_parameter_change(now)
        if self._pending is not None:
            d, r = self._pending
            self._pending = None
            if (d, r) != (self.d_adv, self.r_adv):
                self._start_poll(d, r)
                self._after_parameter_change(now)
                self.send_heartbeat(now)

    def _after_parameter_change(self, now: float) -> None:
        if self._renegotiate():
            self._rearm_detection()
            if self.next_tx is not None:
                period = self._periodic_us()
                self.next_tx = (
                    None
                    if period is None
                    else self.last_tx + jitter_factor(self.owner.rng, self.mult) * period / _US
                )
            elif self.tx_us is not None and self.state is not _CLOSED:
                self._schedule_tx(now)
            if self.state is _UP:
                self.owner.events.append(ParametersChanged(self.local_id, self.negotiated()))

    # --- Receiving ----------------------------------------------------------------------------

    def _accept_seq(self, seq: int) -> int:
        """[HB-SEQ-3]: 0 to discard, 1 to accept, 2 to accept as the newest so far."""
        top = self.rx_top
        if top is None:
            self.rx_top, self.rx_mask = seq, 1
            return 2
        ahead = (seq - top) & _MASK32
        if ahead == 0:
            return 0
        if ahead < _HALF32:
            self.rx_mask = ((self.rx_mask << ahead) | 1) & _WINDOW_MASK if ahead < 64 else 1
            self.rx_top = seq
            return 2
        back = (top - seq) & _MASK32
        if back >= REPLAY_WINDOW:
            return 0
        bit = 1 << back
        if self.rx_mask & bit:
            return 0
        self.rx_mask |= bit
        return 1

    def _take_outstanding(self, seq: int) -> bool:
        """[HB-ACK-5]: is ``seq`` an unacknowledged HEARTBEAT of ours? Consumes it if so."""
        out = self.outstanding
        if out is None or seq not in out:
            return False
        out.remove(seq)
        if not out:
            self.outstanding = None
        return True

    def receive(self, frame: Frame, addr: Any, now: float, size: int) -> None:
        """Process a frame that passed checks V-1 to V-9 for this session."""
        counters = self.owner.counters
        ftype = frame.type
        if self.state is _CLOSED:  # V-14
            counters["closed_session"] += 1
            if ftype is not _CLOSE and self.remote_id:
                self.owner._transmit(
                    self, self._close_frame(self.close_code, None, now, size), addr
                )
            return
        if self.remote_id and frame.my_id != self.remote_id:  # V-10
            counters["wrong_peer"] += 1
            return
        if frame.auth is not None:  # V-11: this endpoint has no keys configured
            counters["auth_unexpected"] += 1
            return
        if ftype is _ACK:  # V-13
            if not self._take_outstanding(frame.seq):
                counters["unsolicited_ack"] += 1
                return
            newest = False
        else:  # V-12
            verdict = self._accept_seq(frame.seq)
            if not verdict:
                counters["replay"] += 1
                return
            newest = verdict == 2
        # The frame is valid.
        if not self.remote_id:
            self.remote_id = frame.my_id  # [HB-SES-5]
        if newest:
            self.addr = addr  # [HB-UDP-5]
        self._on_valid(frame, addr, now)

    def _on_valid(self, frame: Frame, addr: Any, now: float) -> None:
        ftype = frame.type
        events = self.owner.events
        # Proof of life [HB-DET-1] and the suspicion statistics.
        if self.last_rx is not None:
            self._ia_mean, self._ia_var = interarrival_update(
                self._ia_mean, self._ia_var, now - self.last_rx
            )
        self.last_rx = now
        # The peer's parameters apply at once [HB-POLL-3].
        params_changed = (frame.desired_tx, frame.required_rx, frame.mult) != (
            self.remote_d,
            self.remote_r,
            self.remote_mult,
        )
        if params_changed:
            first = self.remote_mult == 0
            self.remote_d, self.remote_r, self.remote_mult = (
                frame.desired_tx,
                frame.required_rx,
                frame.mult,
            )
            if self._renegotiate():
                if self.exp_us is not None and first:
                    self._ia_mean, self._ia_var = interarrival_seed(self.exp_us / _US)
                self._reschedule_after_remote_change(now)
                if self.state is _UP and not first:
                    events.append(ParametersChanged(self.local_id, self.negotiated()))
        # The state machine runs on every valid frame before its contents [HB-SM-1].
        old = self.state
        new = on_receive(old, frame.state)
        if new is not old:
            self._transition(old, new, frame, now)
            if self.state is _CLOSED:
                return
        self._rearm_detection()
        if ftype is _HEARTBEAT:
            if frame.payload is not None:
                events.append(PiggybackReceived(self.local_id, frame.payload))
            if self._premature(frame, now):
                return  # [HB-FREQ-3]: valid and proof of life, but not answered
            self._send_ack(frame, now)
        elif ftype is _ACK:
            sample = (((int(now * _US) + self.ts_offset) - frame.timestamp) & _MASK32) / _US
            self.srtt, self.rttvar = rtt_update(self.srtt, self.rttvar, sample)
            events.append(RttSample(self.local_id, sample, self.srtt, self.rttvar))
            if frame.payload is not None:
                events.append(PiggybackReceived(self.local_id, frame.payload))
            if (
                frame.final
                and self.poll_seq is not None
                and ((frame.seq - self.poll_seq) & _MASK32) < _HALF32
            ):
                self._end_poll(now)
        elif ftype is _DATA:
            payload = frame.payload
            if self.state is _UP and payload is not None:
                events.append(MessageReceived(self.local_id, payload))
            else:
                self.owner.counters["data_not_up"] += 1  # [HB-DATA-2]
        if new is not old and ftype is not _HEARTBEAT and self.state is not _CLOSED:
            self.send_heartbeat(now)  # [HB-HB-2]: tell the peer our new state at once

    def _reschedule_after_remote_change(self, now: float) -> None:
        period = self._periodic_us()
        if period is None:
            self.next_tx = None
        elif self.next_tx is None:
            self._schedule_tx(now)
        else:
            # [HB-TX-4]: a longer interval applies to the pending HEARTBEAT too.
            self.next_tx = self.last_tx + jitter_factor(self.owner.rng, self.mult) * period / _US

    def _premature(self, frame: Frame, now: float) -> bool:
        """Track strikes [HB-FREQ-1]; True if the HEARTBEAT is premature."""
        sig = hash((frame.state, frame.poll, frame.mult, frame.desired_tx, frame.required_rx))
        last = self.last_hb_rx
        self.last_hb_rx = now
        triggered = sig != self.last_hb_sig
        self.last_hb_sig = sig
        if last is None or triggered or self.state is not _UP:
            return False
        expected = None if self.r_eff == 0 else self.exp_us
        if not is_premature((now - last) * _US, expected):
            self.strikes = 0
            return False
        max_strikes = self.config.max_strikes
        if max_strikes is None:
            return False
        self.strikes += 1
        self.owner.counters["premature"] += 1
        if self.strikes >= max_strikes:
            self.close(
                CloseCode.TOO_FREQUENT, "heartbeats more often than min_rx allows", now, linger=True
            )
        return True

    def _transition(self, old: State, new: State, frame: Frame, now: float) -> None:
        events = self.owner.events
        self.state = new
        if new is _CLOSED:  # a CLOSE from the peer [HB-CLOSE-3]
            self.next_tx = self.detect_at = None
            self.expire_at = now
            events.append(
                SessionClosed(self.local_id, frame.close_code, frame.close_text, by_peer=True)
            )
            if frame.close_code == CloseCode.TOO_FREQUENT:
                # [HB-FREQ-4]: back off to twice our rate, or the peer's minimum if larger.
                floor = max(2 * (self.tx_us or 0), frame.required_rx or 0)
                self.owner._too_frequent(self, floor)
            return
        self._renegotiate()  # DetectionTime loses its slow-start floor at UP, regains it after
        if new is _UP:
            self.expire_at = None
            again = self.was_up
            self.was_up = True
            self._schedule_tx(now)  # leave the slow-start schedule
            events.append(
                PeerUp(
                    self.local_id,
                    self.remote_id,
                    self.negotiated(),
                    again,
                    None if self.replaces is None else self.replaces[0],
                )
            )
            if self.tx_us is None and self.exp_us is None:
                events.append(LivenessInactive(self.local_id))
            self.owner._session_up(self)
        elif old is _UP:  # UP -> DOWN: the peer says it lost us [HB-SM-4]
            events.append(
                PeerDown(
                    self.local_id,
                    DownReason.PEER_REPORTED_DOWN,
                    DetectedBy.REMOTE,
                    0.0,
                    None if self.dt_us is None else self.dt_us / _US,
                )
            )
            self._went_down(now)

    def _went_down(self, now: float) -> None:
        self.poll_seq = None
        self.strikes = 0
        self.last_hb_rx = None
        self._schedule_tx(now)  # back to the slow-start pace
        # If the session does not come back within a (slow-start) detection time, the owner
        # replaces it (an initiator, [HB-SM-8]) or deletes it (a responder, [HB-SES-4]).
        dt = detection_time_us(self.remote_mult or 1, self.exp_us, False) or 1_000_000
        self.expire_at = now + dt / _US

    # --- Timers -------------------------------------------------------------------------------

    def on_timer(self, now: float) -> None:
        """Run whatever is due at ``now``. The owner handles ``expire_at`` itself."""
        detect_at = self.detect_at
        if detect_at is not None and now >= detect_at:
            exp = self.exp_us
            late = now - detect_at
            if exp is not None and late > exp / _US:
                # [HB-STALL-1]: we were stalled, not the peer; wait for fresh evidence.
                self.detect_at = now + exp / _US
                self.owner._stalled(self, late)
            else:
                self._detection_timeout(now)
        if self.next_tx is not None and now >= self.next_tx and self.state is not _CLOSED:
            self.send_heartbeat(now)

    def _detection_timeout(self, now: float) -> None:
        old = self.state
        self.state = on_local(old, LocalEvent.DETECTION_TIMEOUT)
        silent = 0.0 if self.last_rx is None else now - self.last_rx
        dt = None if self.dt_us is None else self.dt_us / _US
        self.detect_at = None
        self._renegotiate()
        if old is _UP:
            self.owner.events.append(
                PeerDown(self.local_id, DownReason.DETECTION_TIMEOUT, DetectedBy.LOCAL, silent, dt)
            )
        else:
            self.owner.counters["handshake_timeout"] += 1
        self._went_down(now)
        self.send_heartbeat(now)  # the triggered HEARTBEAT with Sta DOWN

    # --- Monitoring ---------------------------------------------------------------------------

    def info(self, now: float) -> SessionInfo:
        silent = None if self.last_rx is None else now - self.last_rx
        misses = 0
        if silent is not None and self.exp_us:
            misses = int(silent * _US // self.exp_us)  # [HB-DET-4]
        suspicion = 0.0
        if silent is not None and self._ia_mean > 0:
            suspicion = phi(self._ia_mean, self._ia_var, silent)
        return SessionInfo(
            self.local_id,
            self.remote_id,
            self.addr,
            self.state,
            self.initiator,
            self.negotiated(),
            self.last_rx,
            silent,
            misses,
            suspicion,
            self.srtt,
            None if self.srtt is None else self.rttvar,
            self.strikes,
            self.poll_seq is not None,
        )
