"""One session: the SPEC's per-peer behaviour, with no I/O.

A :class:`Session` is driven by its owner (an :class:`~hbproto.endpoint.Endpoint` for UDP, a
:class:`~hbproto.connection.Connection` for a byte stream). The owner decodes frames, finds the
session (SPEC 8.2, checks V-1 to V-9), and calls :meth:`Session.receive`; it calls
:meth:`Session.on_timer` when :meth:`Session.deadline` has passed and handles ``expire_at``
itself. The session writes frames and events through the owner. State changes go through
:mod:`hbproto.state`, timer arithmetic through :mod:`hbproto.timers`.

Times are floats in the caller's clock (seconds); intervals are integer microseconds, as on the
wire. Sessions are numerous (100,000 in one endpoint is a design point), so the class keeps its
state in slots and derives what it can.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from random import Random
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .auth import check as check_auth
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
    AUTH_TLV_SIZE,
    CLOSE_TEXT_MAX,
    MIN_FRAME,
    TLV_HEADER_SIZE,
    CloseCode,
    Frame,
    FrameType,
    State,
    TlvType,
    decode_interval,
    encode_interval,
    heartbeat_key,
    pack,
    pack_tlv,
    routine_ack_key,
)
from .state import LocalEvent, on_local, on_receive
from .timers import (
    ACK_BEYOND,
    ACK_WINDOW,
    BACKOFF_CAP_US,
    DEFAULT_INTERVAL_US,
    DEFAULT_REMOTE_MULT,
    REPLAY_WINDOW,
    SLOW_START_INTERVAL_US,
    interarrival_seed,
    interarrival_update,
    is_premature,
    jitter_factor,
    judged_interval_us,
    negotiate,
    phi,
    rtt_update,
)

if TYPE_CHECKING:
    from collections import Counter

    from .config import Config

__all__ = ["Owner", "Session", "SessionInfo"]

_MASK32 = 0xFFFFFFFF
_HALF32 = 1 << 31
_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1  # also the steady state: one shared object
_NEVER = float("-inf")
_NO_EXEMPT = (_NEVER, _NEVER)
_ACK_MASK = (1 << ACK_WINDOW) - 1
_US = 1_000_000
_CLOSED, _DOWN, _INIT, _UP = State.CLOSED, State.DOWN, State.INIT, State.UP
_HEARTBEAT, _ACK = FrameType.HEARTBEAT, FrameType.ACK
_DATA, _CLOSE = FrameType.DATA, FrameType.CLOSE
# The fast paths' view of a bare HEARTBEAT or ACK: head (version..Mult), Length, My Identifier,
# Your Identifier, Sequence Number, Timestamp, both interval codes as one field, CRC.
BARE_FRAME = struct.Struct(">HHIIIIII")
_HEAD_POLL = 1 << 5  # the P bit within that head (SPEC 4.1); a poll must be answered with F
_OFFSET_MIX = 0x9E3779B1  # odd, so distinct identifiers give distinct timestamp offsets
SEQ_BUDGET = (1 << 31) - (1 << 16)  # numbers an authenticated session uses [HB-SEQ-5]


@lru_cache(maxsize=1024)  # cached: sessions with one configuration share the resulting ints
def _on_wire(us: int | None) -> int | None:
    """An interval as its code says it: what both ends compute with [HB-FRAME-14]."""
    return decode_interval(encode_interval(us))


class Owner(Protocol):
    """What a session needs from the endpoint or connection that holds it."""

    rng: Random
    events: deque[Event]
    counters: Counter[str]
    ends_on_down: bool  # a byte stream ends when its session leaves UP [HB-TCP-6]
    ts_secret: int  # mixed with each session's identifier into its timestamp offset

    def _transmit(self, session: Session, data: bytes, addr: Any) -> None: ...
    def _session_up(self, session: Session, now: float, *, first: bool) -> None: ...
    def _verified(self, session: Session) -> None: ...
    def _stalled(self, session: Session, late_by: float) -> None: ...
    def _too_frequent(self, session: Session, floor_us: int) -> None: ...
    def _closed_by_peer(self, session: Session) -> None: ...
    def _restart(self, session: Session, now: float) -> None: ...


@dataclass(slots=True)
class SessionInfo:
    """A snapshot of one session, for monitoring."""

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


_Probe = tuple[Any, int, float, int]  # (address, sequence number, sent at, token) [HB-UDP-8]

_RARE_DEFAULTS: dict[str, Any] = {
    "replaces": None,
    "_pending": None,
    "backoff": 0,
    "strikes": 0,
    "last_strike": _NEVER,
    "exempt_at": _NO_EXEMPT,
    "probe": None,
    "piggyback": None,
    "close_code": 0,
    "late_acks": (),
    "seq_start": None,
}


class _Rare:
    """The fields of a session that only some sessions ever set, allocated on first use."""

    __slots__ = (
        "_pending",
        "backoff",
        "close_code",
        "exempt_at",
        "last_strike",
        "late_acks",
        "piggyback",
        "probe",
        "replaces",
        "seq_start",
        "strikes",
    )
    _pending: tuple[int | None, int | None] | None
    backoff: int
    close_code: int
    exempt_at: tuple[float, float]
    last_strike: float
    late_acks: tuple[int, ...]
    piggyback: bytes | None
    probe: _Probe | None
    replaces: tuple[int, int] | None
    seq_start: int | None
    strikes: int

    def __init__(self) -> None:
        for name, value in _RARE_DEFAULTS.items():
            setattr(self, name, value)


if set(_Rare.__slots__) != set(_RARE_DEFAULTS):
    raise ImportError("_Rare's slots and _RARE_DEFAULTS disagree")

_T = TypeVar("_T")


class _RareField(Generic[_T]):
    """A session attribute kept in the session's :class:`_Rare` holder.

    Reading it from a session without a holder gives the default; writing the default to such
    a session allocates nothing. So the many sessions in their steady state pay one slot for
    all of these fields instead of one each.
    """

    __slots__ = ("default", "name")

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.default = _RARE_DEFAULTS[name]

    def __get__(self, session: Session, owner: type | None = None) -> _T:
        rare = session._rare
        value: _T = self.default if rare is None else getattr(rare, self.name)
        return value

    def __set__(self, session: Session, value: _T) -> None:
        rare = session._rare
        if rare is None:
            if value is self.default or value == self.default:
                return
            rare = session._rare = _Rare()
        setattr(rare, self.name, value)


class Session:
    """The state of one session and the SPEC's rules for it."""

    __slots__ = (
        "_ia_mean",
        "_ia_var",
        "_rare",
        "ack_mask",
        "ack_sig",
        "ack_top",
        "addr",
        "config",
        "d_adv",
        "d_code",
        "d_eff",
        "detect_at",
        "dt_us",
        "exp_us",
        "expire_at",
        "freq_d",
        "heap_at",
        "initiator",
        "last_hb_rx",
        "last_hb_sig",
        "last_rx",
        "last_tx",
        "local_id",
        "mult",
        "next_tx",
        "owner",
        "peer_up",
        "poll_seq",
        "r_adv",
        "r_code",
        "r_eff",
        "remote_d",
        "remote_id",
        "remote_mult",
        "remote_r",
        "rttvar",
        "rx_mask",
        "rx_top",
        "source",
        "srtt",
        "state",
        "tx_seq",
        "tx_us",
        "verified",
        "was_up",
    )

    # Fields most sessions never set: idle sessions keep none of them (see _RareField).
    replaces = _RareField[tuple[int, int] | None]()  # (old session, old remote id) [HB-SM-8]
    _pending = _RareField[tuple[int | None, int | None] | None]()  # a change behind a poll
    backoff = _RareField[int]()  # doublings of the slow-start interval [HB-TX-7]
    strikes = _RareField[int]()  # [HB-FREQ-1]
    last_strike = _RareField[float]()
    exempt_at = _RareField[tuple[float, float]]()  # the last two exempt HEARTBEATs [HB-FREQ-6]
    probe = _RareField[_Probe | None]()  # the latest rebinding probe [HB-UDP-8]
    piggyback = _RareField[bytes | None]()
    close_code = _RareField[int]()
    late_acks = _RareField[tuple[int, ...]]()  # unacknowledged HEARTBEATs past the window
    seq_start = _RareField[int | None]()  # the first send counter value [HB-SEQ-5]

    def __init__(
        self,
        owner: Owner,
        config: Config,
        local_id: int,
        addr: Any,
        now: float,
        *,
        initiator: bool,
        verified: bool = False,
    ) -> None:
        rng = owner.rng
        self.owner = owner
        self.config = config
        self.local_id = local_id
        self.remote_id = 0
        self.addr = addr
        self.initiator = initiator
        # [HB-HB-4]: a session the network created is silent until the peer echoes our id.
        self.verified = verified
        self.state = _DOWN
        self.was_up = False
        self.peer_up = False  # a current frame with Sta UP arrived since we went UP [HB-DET-8]
        # Our parameters: advertised, and in effect (they differ during a poll, [HB-POLL-4]).
        self.d_adv = self.d_eff = _on_wire(config.desired_tx_us)
        self.r_adv = self.r_eff = _on_wire(config.required_rx_us)
        self.d_code = encode_interval(self.d_adv)
        self.r_code = encode_interval(self.r_adv)
        self.mult = config.multiplier
        self.poll_seq: int | None = None
        # The peer's parameters, from its most recent current frame; 0 = not heard yet.
        self.remote_d: int | None = None
        self.remote_r: int | None = None
        self.remote_mult = 0
        # Negotiated values (us), recomputed by _renegotiate.
        self.tx_us: int | None = None
        self.exp_us: int | None = None
        self.dt_us: int | None = None
        # Sequence numbers [HB-SEQ-1..4]; unacknowledged HEARTBEATs [HB-ACK-5] as a bitmap
        # over our recent sequence numbers (bit i: tx_seq - 1 - i).
        self.tx_seq = rng.getrandbits(32)
        self.rx_top: int | None = None
        self.rx_mask = 0
        self.ack_mask = 0
        self.ack_top: int | None = None  # the newest HEARTBEAT an applied ACK answered
        # Timers (absolute times) and their bookkeeping.
        self.last_rx: float | None = None
        self.last_tx = now
        self.next_tx: float | None = None
        self.detect_at: float | None = None
        self.expire_at: float | None = None
        self.heap_at = float("inf")  # owned by the endpoint's timer heap
        # Too-frequent protection [HB-FREQ-1], [HB-FREQ-6].
        self.last_hb_rx: float | None = None
        self.last_hb_sig = 0
        self.ack_sig = 0  # routine_ack_key of the peer's parameters: the ACK fast path's key
        self.freq_d: int | None = None  # the peer's D as judged [HB-FREQ-6]; None: no preference
        # RTT [HB-RTT-2] and suspicion [HB-DET-7].
        self.srtt: float | None = None
        self.rttvar = 0.0
        self._ia_mean = 0.0
        self._ia_var = 0.0
        self._rare: _Rare | None = None  # see _RareField
        if config.auth is not None:
            self.seq_start = self.tx_seq  # only authenticated sessions count [HB-SEQ-5]
        self.source: Any = None  # the host a peer-created session is counted under (endpoint)
        self._renegotiate()
        if initiator:
            self.next_tx = now  # [HB-TX-5]

    # --- Derived values ---------------------------------------------------------------------

    def negotiated(self) -> Negotiated:
        return Negotiated(
            None if self.tx_us is None else self.tx_us / _US,
            None if self.exp_us is None else self.exp_us / _US,
            None if self.dt_us is None else self.dt_us / _US,
            self.mult,
            self.remote_mult or DEFAULT_REMOTE_MULT,
        )

    def _renegotiate(self) -> bool:
        """Recompute TxInterval, ExpectedRemote and DetectionTime; True if any changed."""
        tx, exp, dt = negotiate(
            self.d_eff,
            self.r_eff,
            self.remote_d,
            self.remote_r,
            self.remote_mult or DEFAULT_REMOTE_MULT,
            not (self.state is _UP and self.peer_up),
            self.config.min_tx_us,
        )
        changed = (tx, exp, dt) != (self.tx_us, self.exp_us, self.dt_us)
        self.tx_us, self.exp_us, self.dt_us = tx, exp, dt
        return changed

    def deadline(self) -> float:
        """The earliest time this session needs its owner's attention; ``inf`` if none."""
        earliest = float("inf")
        for t in (self.next_tx, self.detect_at, self.expire_at):
            if t is not None and t < earliest:
                earliest = t
        return earliest

    def _periodic_us(self) -> int | None:
        """The interval between periodic HEARTBEATs now, or ``None`` for none [HB-TX-1..2]."""
        if not (self.verified or self.initiator):
            return None  # [HB-HB-4]
        tx = self.tx_us
        if self.state is _UP:
            if tx is not None:
                return tx
            if self.poll_seq is not None or not self.peer_up:
                # The peer asked for nothing periodic, but a poll must be repeated
                # [HB-POLL-7], and so must our UP until the peer's UP shows it arrived
                # [HB-NEG-1]: otherwise one lost frame would leave the handshake half done.
                return max(self.d_eff or DEFAULT_INTERVAL_US, SLOW_START_INTERVAL_US)
            return None
        slow = min(SLOW_START_INTERVAL_US << self.backoff, BACKOFF_CAP_US)
        base = tx if tx is not None else (self.d_eff or DEFAULT_INTERVAL_US)
        return max(base, slow)  # slow start, whatever the remote R [HB-TX-2]

    def _schedule_tx(self, start: float) -> None:
        """Schedule the next periodic HEARTBEAT ``J x T`` after ``start`` [HB-TX-1]."""
        period = self._periodic_us()
        self.next_tx = (
            None
            if period is None
            else start + jitter_factor(self.owner.rng, self.mult) * period / _US
        )

    def _rearm_detection(self) -> None:
        """[HB-DET-1], [HB-DET-5]: detection runs in INIT and UP, from the last valid frame."""
        if self.state in (_INIT, _UP) and self.dt_us is not None and self.last_rx is not None:
            self.detect_at = self.last_rx + self.dt_us / _US
        else:
            self.detect_at = None

    def _timers_changed(self) -> None:
        """Re-derive the negotiated values; re-arm what depends on them [HB-TX-6], [HB-DET-5]."""
        before = self.detect_at
        changed = self._renegotiate()
        self._rearm_detection()
        if (
            self.r_eff == 0
            and before is not None
            and self.detect_at is not None
            and self.detect_at < before
        ):
            # With R = 0 the peer's ACKs keep our old pace until HEARTBEATs go out at the new
            # one: a shorter TxInterval must not bring the running deadline earlier.
            self.detect_at = before
        if self.state is not _CLOSED:
            self._schedule_tx(self.last_tx)
        if changed and self.state is _UP:
            self.owner.events.append(ParametersChanged(self.local_id, self.negotiated()))

    # --- Sending ------------------------------------------------------------------------------

    @property
    def ts_offset(self) -> int:
        """A per-session offset on our timestamps [HB-SEC-5], derived rather than stored."""
        return (self.local_id * _OFFSET_MIX + self.owner.ts_secret) & _MASK32

    def _timestamp(self, now: float) -> int:
        return (int(now * _US) + self.ts_offset) & _MASK32

    def _next_seq(self, *, heartbeat: bool) -> int:
        seq = self.tx_seq
        self.tx_seq = (seq + 1) & _MASK32
        mask = self.ack_mask
        if mask >> (ACK_WINDOW - 1):
            # An unacknowledged HEARTBEAT leaves the window (many DATA frames went out since):
            # keep it among the 16 remembered beyond it [HB-ACK-5].
            older = (seq - ACK_WINDOW) & _MASK32
            self.late_acks = (*self.late_acks[1 - ACK_BEYOND :], older)
        self.ack_mask = ((mask << 1) | heartbeat) & _ACK_MASK
        return seq

    def _may_trigger(self) -> bool:
        return self.verified or self.initiator

    def _frame(
        self,
        ftype: FrameType,
        state: State,
        your_id: int,
        seq: int,
        timestamp: int,
        *,
        poll: bool = False,
        final: bool = False,
        tlvs: bytes = b"",
    ) -> bytes:
        """One of our own frames: our Mult, identifier and intervals, with the given rest;
        signed when the session authenticates, whatever the frame [HB-AUTH-1]."""
        return pack(
            ftype,
            state,
            poll,
            final,
            self.mult,
            self.local_id,
            your_id,
            seq,
            timestamp,
            self.d_code,
            self.r_code,
            tlvs,
            self.config.auth,
        )

    def _overhead(self) -> int:
        """Bytes every frame of this session carries beyond its fixed part, TLVs and CRC."""
        return 0 if self.config.auth is None else AUTH_TLV_SIZE

    def send_heartbeat(
        self, now: float, addr: Any = None, *, periodic: bool = True, timestamp: int | None = None
    ) -> int:
        """Send a HEARTBEAT now; returns its sequence number.

        A HEARTBEAT to another address than the session's (a rebinding probe) is always bare:
        that address is not verified, and gets nothing larger than what came from it.
        """
        seq = self._next_seq(heartbeat=True)
        tlvs = (
            b""
            if self.piggyback is None or addr is not None
            else pack_tlv(TlvType.PAYLOAD, self.piggyback)
        )
        data = self._frame(
            _HEARTBEAT,
            self.state,
            self.remote_id,
            seq,
            self._timestamp(now) if timestamp is None else timestamp,
            poll=self.poll_seq is not None,
            tlvs=tlvs,
        )
        self.owner._transmit(self, data, self.addr if addr is None else addr)
        if periodic:
            self.last_tx = now
            self._schedule_tx(now)
        return seq

    def _sent_other(self, now: float) -> None:
        if self.config.idle_only and self.next_tx is not None:  # [HB-TX-3]
            self.last_tx = now
            self._schedule_tx(now)

    def _send_ack(self, frame: Frame, addr: Any, now: float) -> None:
        # [HB-ACK-1]: echo Sequence Number and Timestamp; F answers P.
        data = self._frame(
            _ACK, self.state, frame.my_id, frame.seq, frame.timestamp, final=frame.poll
        )
        self.owner._transmit(self, data, addr)  # [HB-UDP-4]: to where the HEARTBEAT came from
        self._sent_other(now)

    def send_data(self, payload: bytes, now: float, max_frame: int) -> None:
        """Send one application message in a DATA frame [HB-DATA-1], [HB-DATA-4]."""
        if self.state is not _UP:
            raise LocalProtocolError(f"cannot send DATA: session is {self.state.name}, not UP")
        size = MIN_FRAME + TLV_HEADER_SIZE + len(payload) + self._overhead()
        if size > max_frame:
            raise LocalProtocolError(
                f"message of {len(payload)} bytes makes a {size}-byte frame; "
                f"this transport carries at most {max_frame}"
            )
        data = self._frame(
            _DATA,
            _UP,
            self.remote_id,
            self._next_seq(heartbeat=False),
            self._timestamp(now),
            tlvs=pack_tlv(TlvType.PAYLOAD, payload),
        )
        self.owner._transmit(self, data, self.addr)
        self._sent_other(now)
        if self.config.auth is not None:
            self._check_counter(now)

    def _close_frame(self, code: int, text: str | None, limit: int | None) -> bytes:
        tlvs = b""
        if text:
            raw = text.encode("utf-8")[:CLOSE_TEXT_MAX].decode("utf-8", "ignore").encode("utf-8")
            tlvs = pack_tlv(TlvType.CLOSE_TEXT, raw)
            if limit is not None and MIN_FRAME + len(tlvs) + self._overhead() > limit:
                tlvs = b""  # never answer with more bytes than arrived [HB-CLOSE-2]
        return self._frame(
            _CLOSE, _CLOSED, self.remote_id, self._next_seq(heartbeat=False), code, tlvs=tlvs
        )

    def close(self, code: int, text: str | None, now: float, *, linger: bool) -> None:
        """End the session with a CLOSE [HB-CLOSE-1]."""
        if self.state is _CLOSED:
            return
        self.state = on_local(self.state, LocalEvent.CLOSE)
        if self.remote_id and (self.verified or self.initiator):
            self.owner._transmit(self, self._close_frame(code, text, None), self.addr)
        self.close_code = code
        self.next_tx = self.detect_at = None
        # Linger for a detection time to answer stragglers with CLOSE [HB-CLOSE-2], [HB-DET-9].
        self.expire_at = now + self._detection_or_handshake() if linger else now
        self.owner.events.append(SessionClosed(self.local_id, code, text, by_peer=False))

    # --- Changing parameters [HB-POLL-*] ------------------------------------------------------

    def set_parameters(
        self, desired_tx: int | None, required_rx: int | None, mult: int, now: float
    ) -> None:
        if self.state is _CLOSED:
            raise LocalProtocolError("the session is closed")
        desired_tx, required_rx = _on_wire(desired_tx), _on_wire(required_rx)
        intervals_changed = (desired_tx, required_rx) != (self.d_adv, self.r_adv)
        if mult == self.mult and not intervals_changed:
            return
        self.mult = mult  # [HB-POLL-5]: no poll; the peer applies it on receipt
        if intervals_changed:
            if self.state is not _UP:  # [HB-POLL-8]
                self._adopt(desired_tx, required_rx)
                self.d_eff, self.r_eff = desired_tx, required_rx
            elif self.poll_seq is not None:
                self._pending = (desired_tx, required_rx)  # [HB-POLL-2]
            else:
                self._start_poll(desired_tx, required_rx)
        self._timers_changed()
        if self._may_trigger():
            self.send_heartbeat(now)  # a frame whose contents changed goes out at once
            if self.config.auth is not None:
                self._check_counter(now)

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
        pending, self._pending = self._pending, None
        if pending is not None and pending != (self.d_adv, self.r_adv):
            self._start_poll(*pending)
            self._timers_changed()
            self.send_heartbeat(now)
        else:
            self._timers_changed()

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
            mask = ((self.rx_mask << ahead) | 1) & _WINDOW_MASK if ahead < 64 else 1
            self.rx_mask = _WINDOW_MASK if mask == _WINDOW_MASK else mask
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

    def _accept_ack(self, seq: int) -> int:
        """[HB-ACK-5]: 0 to discard, 1 to accept, 2 to accept as current [HB-SM-1]."""
        back = (self.tx_seq - 1 - seq) & _MASK32
        if back < ACK_WINDOW and (self.ack_mask >> back) & 1:
            self.ack_mask &= ~(1 << back)
        elif seq in self.late_acks:
            self.late_acks = tuple(s for s in self.late_acks if s != seq)
        else:
            return 0
        top = self.ack_top
        if top is None or 0 < ((seq - top) & _MASK32) < _HALF32:
            self.ack_top = seq
            return 2
        return 1

    def fast_heartbeat(self, data: bytes, fields: tuple[int, ...], addr: Any, now: float) -> bool:
        """Handle a routine HEARTBEAT without building a :class:`Frame`, or return False.

        Routine means: a bare 28-byte HEARTBEAT without P whose first bytes and interval codes equal
        those of the peer's previous HEARTBEAT (so nothing about its state or parameters
        changed), to a session that is UP with the peer's UP seen, not polling, from the
        verified address, with the next sequence numbers and not premature, in a session
        without authentication. That is the steady state of every such session. What this does
        is exactly what the full path (:meth:`receive`) does for such a frame; anything else is
        left to the full path, and nothing is changed before that decision.
        """
        head, length, my_id, _, seq, ts, codes, crc = fields
        last = self.last_hb_rx
        if (
            last is None
            or self.config.auth is not None  # a bare frame has no AUTH: V-11 fails [HB-AUTH-4]
            or self.state is not _UP
            or not self.peer_up
            or self.poll_seq is not None
            or head & _HEAD_POLL
            or ((head << 32) | codes) != self.last_hb_sig
            or my_id != self.remote_id
            or length != MIN_FRAME
            or addr != self.addr
            or zlib.crc32(data[:24]) != crc
        ):
            return False
        rx_top = self.rx_top
        if rx_top is None:
            return False
        ahead = (seq - rx_top) & _MASK32
        if not 0 < ahead < REPLAY_WINDOW or self.r_eff == 0:
            return False
        judged = max(self.freq_d or 0, self.r_eff or 0) or DEFAULT_INTERVAL_US
        if (now - last) * _US < judged / 2:
            return False  # premature: the full path counts it
        # Commit: V-12, proof of life [HB-DET-1], suspicion, strikes [HB-FREQ-1], the ACK.
        mask = ((self.rx_mask << ahead) | 1) & _WINDOW_MASK
        self.rx_mask = _WINDOW_MASK if mask == _WINDOW_MASK else mask
        self.rx_top = seq
        self._alive(now)
        self.last_hb_rx = now
        dt = self.dt_us
        self.detect_at = None if dt is None else now + dt / _US
        rare = self._rare
        if rare is not None:
            rare.strikes = 0
        self.owner._transmit(
            self,
            pack(
                _ACK,
                _UP,
                False,
                False,
                self.mult,
                self.local_id,
                my_id,
                seq,
                ts,
                self.d_code,
                self.r_code,
            ),
            addr,
        )
        if self.config.idle_only and self.next_tx is not None:
            self.last_tx = now
            self._schedule_tx(now)
        return True

    def fast_ack(self, data: bytes, fields: tuple[int, ...], addr: Any, now: float) -> bool:
        """Handle a routine ACK without building a :class:`Frame`, or return False.

        Routine means: a bare 28-byte ACK with Sta UP, neither P nor F, and the Mult and interval
        codes the peer already advertises (canonically encoded), to a session that is UP with
        the peer's UP seen, verified, not polling and not probing, from the verified address,
        answering the newest HEARTBEAT not yet acknowledged, in a session without
        authentication. It is the other half of the steady state when both ends heartbeat. As
        with :meth:`fast_heartbeat`, the effect is exactly the full path's, and anything else
        is left to it with nothing changed.
        """
        head, length, my_id, _, seq, ts, codes, crc = fields
        if (
            ((head << 32) | codes) != self.ack_sig
            or self.config.auth is not None
            or self.state is not _UP
            or not self.peer_up
            or not self.verified
            or self.poll_seq is not None
            or self.probe is not None
            or my_id != self.remote_id
            or length != MIN_FRAME
            or addr != self.addr
            or zlib.crc32(data[:24]) != crc
        ):
            return False
        back = (self.tx_seq - 1 - seq) & _MASK32
        top = self.ack_top
        if (
            back >= ACK_WINDOW
            or not (self.ack_mask >> back) & 1
            or not (top is None or 0 < ((seq - top) & _MASK32) < _HALF32)
        ):
            return False  # not current [HB-SM-1], or not acceptable (V-13): the full path says
        # Commit: V-13, proof of life [HB-DET-1], suspicion, the RTT sample [HB-RTT-2].
        self.ack_mask &= ~(1 << back)
        self.ack_top = seq
        self._alive(now)
        dt = self.dt_us
        self.detect_at = None if dt is None else now + dt / _US
        sample = (((int(now * _US) + self.ts_offset) - ts) & _MASK32) / _US
        self.srtt, self.rttvar = srtt, rttvar = rtt_update(self.srtt, self.rttvar, sample)
        self.owner.events.append(RttSample(self.local_id, sample, srtt, rttvar))
        return True

    def discard_opening_copy(self, frame: Frame, data: bytes) -> None:
        """A frame with Your Identifier 0 for this established session [HB-SES-7].

        The peer stopped sending those when it learned our identifier, so this is a reordered,
        duplicated or replayed copy of an opening frame: checks V-10 and V-11 (V-10 holds, as
        the frame was found by its My Identifier), then V-12 discards it. It has no effect.
        """
        failure = check_auth(self.config.auth, frame, data)  # V-11
        self.owner.counters["replay" if failure is None else failure] += 1

    def receive(self, frame: Frame, addr: Any, now: float, data: bytes) -> None:
        """Process a frame, decoded from ``data``, that passed checks V-1 to V-9 for this
        session."""
        counters = self.owner.counters
        ftype = frame.type
        if self.remote_id and frame.my_id != self.remote_id:  # V-10
            counters["wrong_peer"] += 1
            return
        failure = check_auth(self.config.auth, frame, data)  # V-11 [HB-AUTH-4], [HB-AUTH-5]
        if failure is not None:
            counters[failure] += 1
            return
        if ftype is _ACK:  # V-13
            probe = self.probe
            if probe is not None and frame.seq == probe[1] and frame.timestamp != probe[3]:
                counters["unsolicited_ack"] += 1  # not the probe's answer [HB-UDP-9]
                return
            verdict = self._accept_ack(frame.seq)
            if not verdict:
                counters["unsolicited_ack"] += 1
                return
        else:  # V-12
            verdict = self._accept_seq(frame.seq)
            if not verdict:
                counters["replay"] += 1
                return
        if self.state is _CLOSED:  # V-14: lingering [HB-RX-17]
            counters["closed_session"] += 1
            if ftype in (_HEARTBEAT, _DATA) and self.remote_id:  # never a CLOSE or an ACK
                answer = self._close_frame(self.close_code, None, len(data))
                self.owner._transmit(self, answer, addr)
            return
        # The frame is valid.
        if not self.remote_id:
            self.remote_id = frame.my_id  # [HB-SES-5]
        if frame.your_id == self.local_id and not self.verified:
            self.verified = True  # the peer has heard us at this address [HB-HB-4]
            self.owner._verified(self)
            if self.next_tx is None and self.state is not _CLOSED:
                self._schedule_tx(now)
        self._on_valid(frame, addr, now, current=verdict == 2 or ftype is _CLOSE)
        if self.config.auth is not None:
            self._check_counter(now)  # a valid frame may have drawn HEARTBEATs

    def _alive(self, now: float) -> None:
        """A valid frame arrived: proof of life [HB-DET-1], and the suspicion statistics."""
        if self.last_rx is not None:
            self._ia_mean, self._ia_var = interarrival_update(
                self._ia_mean, self._ia_var, now - self.last_rx
            )
        self.last_rx = now
        self.backoff = 0

    def _on_valid(self, frame: Frame, addr: Any, now: float, *, current: bool) -> None:
        ftype = frame.type
        events = self.owner.events
        self._alive(now)
        old = self.state
        # The rebinding probe this frame answers, if any: captured before anything replaces it.
        probe = self.probe
        if probe is not None and (ftype is not _ACK or frame.seq != probe[1]):
            probe = None
        if current:  # only current frames carry the peer's state and parameters [HB-SM-9]
            if addr != self.addr and self.verified and (probe is None or addr != probe[0]):
                self._rebinding(addr, now)
            if ftype is not _CLOSE:  # a CLOSE's values matter only to [HB-FREQ-4]
                self._take_remote_parameters(frame)
            if frame.state is _UP and old is _UP and not self.peer_up:
                self.peer_up = True  # [HB-DET-8]: the slow-start floor ends
                self._timers_changed()
            new = on_receive(old, frame.state)
            if new is not old:
                self._transition(old, new, frame, now)
                if self.state is _CLOSED:
                    return
        self._rearm_detection()
        if ftype is _HEARTBEAT:
            if frame.payload is not None:
                events.append(PiggybackReceived(self.local_id, frame.payload))
            if current and self._premature(frame, now, found_up=old is _UP) and self.state is old:
                return  # [HB-FREQ-3]: valid and proof of life, but not answered
            if self.state is _CLOSED:
                return  # closed for too_frequent just now
            self._send_ack(frame, addr, now)
        elif ftype is _ACK:
            self._on_ack(frame, addr, now, probe)
        elif ftype is _DATA:
            payload = frame.payload
            if self.state is _UP and payload is not None:
                events.append(MessageReceived(self.local_id, payload))
            else:
                self.owner.counters["data_not_up"] += 1  # [HB-DATA-2]
        if (
            self.state is not old
            and ftype is not _HEARTBEAT
            and self._may_trigger()
            and not (self.state is _DOWN and self.owner.ends_on_down)  # a CLOSE instead
        ):
            self.send_heartbeat(now)  # [HB-HB-2]: tell the peer our new state at once

    def _on_ack(self, frame: Frame, addr: Any, now: float, probe: _Probe | None) -> None:
        events = self.owner.events
        if probe is not None:
            # [HB-UDP-8], [HB-UDP-9]: the probed address verifies only by echoing the probe's
            # random Timestamp from there (an answer from a third address verifies nothing);
            # the probe's Timestamp is no clock, so no RTT sample either way.
            if addr == probe[0] and frame.timestamp == probe[3] and self.probe is probe:
                self.addr = addr  # the probe stays, answered, to pace the next [HB-UDP-10]
        else:
            sample = (((int(now * _US) + self.ts_offset) - frame.timestamp) & _MASK32) / _US
            self.srtt, self.rttvar = rtt_update(self.srtt, self.rttvar, sample)
            events.append(RttSample(self.local_id, sample, self.srtt, self.rttvar))
        if frame.payload is not None:
            events.append(PiggybackReceived(self.local_id, frame.payload))
        poll_seq = self.poll_seq
        if frame.final and poll_seq is not None and ((frame.seq - poll_seq) & _MASK32) < _HALF32:
            self._end_poll(now)  # [HB-POLL-1], [HB-ACK-6]

    def _rebinding(self, addr: Any, now: float) -> None:
        """A current frame from an address that is not verified: probe it [HB-UDP-8]."""
        probe = self.probe
        if probe is not None:
            if now - probe[2] < self._probe_gap_us() / _US:
                return  # one probe per period, whichever address asks [HB-UDP-10]
            self._forget_heartbeat(probe[1])  # replaced: an answer to it now fails V-13
        token = self.owner.rng.getrandbits(32)
        seq = self.send_heartbeat(now, addr, periodic=False, timestamp=token)
        self.probe = (addr, seq, now, token)

    def _probe_gap_us(self) -> int:
        """[HB-UDP-10]: max(ExpectedRemote, TxInterval, SLOW_START_INTERVAL) between probes."""
        tx = self.tx_us
        if tx is None:  # the peer asked for nothing periodic: the pace of [HB-NEG-1]
            tx = max(self.d_eff or DEFAULT_INTERVAL_US, SLOW_START_INTERVAL_US)
        return max(self.exp_us or 0, tx, SLOW_START_INTERVAL_US)

    def _forget_heartbeat(self, seq: int) -> None:
        """Stop waiting for an ACK to one of our HEARTBEATs [HB-ACK-5]."""
        back = (self.tx_seq - 1 - seq) & _MASK32
        if back < ACK_WINDOW:
            self.ack_mask &= ~(1 << back)
        elif seq in self.late_acks:
            self.late_acks = tuple(s for s in self.late_acks if s != seq)

    def _take_remote_parameters(self, frame: Frame) -> None:
        first = self.remote_mult == 0
        if (frame.desired_tx, frame.required_rx, frame.mult) == (
            self.remote_d,
            self.remote_r,
            self.remote_mult,
        ):
            return
        self.remote_d, self.remote_r, self.remote_mult = (
            frame.desired_tx,
            frame.required_rx,
            frame.mult,
        )
        self.ack_sig = routine_ack_key(frame.mult, frame.desired_tx, frame.required_rx)
        self._timers_changed()
        if first and self.exp_us is not None:
            self._ia_mean, self._ia_var = interarrival_seed(self.exp_us / _US)

    def _premature(self, frame: Frame, now: float, *, found_up: bool) -> bool:
        """Track strikes [HB-FREQ-1], [HB-FREQ-6]; True if the HEARTBEAT is premature and
        goes unanswered [HB-FREQ-3]."""
        sig = heartbeat_key(frame)  # also the fast path's key: see fast_heartbeat
        last = self.last_hb_rx
        self.last_hb_rx = now
        changed = sig != self.last_hb_sig
        self.last_hb_sig = sig
        if not frame.poll or last is None:
            self.freq_d = frame.desired_tx
        else:  # while the peer polls, judge by the faster of its old and new pace
            self.freq_d = min(self.freq_d or 0, frame.desired_tx or 0)
        # [HB-FREQ-8]: only a HEARTBEAT that finds the session UP and leaves it UP, outside
        # our own poll, is judged at all; so exemptions are tracked only then too.
        if last is None or not found_up or self.state is not _UP or self.poll_seq is not None:
            return False
        judged = judged_interval_us(self.freq_d, self.r_eff)
        if changed:
            # At most two exempt in any judged interval: the older of the last two exempt ones
            # must be outside the window that ends now.
            older, newer = self.exempt_at
            if now - older >= judged / _US:
                self.exempt_at = (newer, now)
                self.strikes = 0  # [HB-FREQ-2]: exempt, so not premature
                return False
        if not is_premature((now - last) * _US, judged):
            self.strikes = 0
            return False
        max_strikes = self.config.max_strikes
        if max_strikes is None:
            return False
        counters = self.owner.counters
        counters["premature"] += 1
        if now - self.last_strike < judged / _US / 2:
            return True  # [HB-FREQ-7]: one burst, one strike
        self.last_strike = now
        self.strikes += 1
        counters["strikes"] += 1
        if self.strikes >= max_strikes:
            self.close(
                CloseCode.TOO_FREQUENT,
                "heartbeats more often than min_rx allows",
                now,
                linger=True,
            )
        # A first strike is answered: a conforming peer earns no more than one in a row (SPEC
        # 9.5), with a rebinding probe sent just after a HEARTBEAT, and it adopts our new
        # address only once the probe is answered [HB-UDP-8].
        return self.strikes > 1

    def _transition(self, old: State, new: State, frame: Frame, now: float) -> None:
        events = self.owner.events
        self.state = new
        if new is _CLOSED:  # a CLOSE from the peer [HB-CLOSE-3]: no linger
            self.next_tx = self.detect_at = None
            self.expire_at = now
            events.append(
                SessionClosed(self.local_id, frame.close_code, frame.close_text, by_peer=True)
            )
            if frame.close_code == CloseCode.TOO_FREQUENT:
                # [HB-FREQ-4]: back off to twice our rate, or the peer's minimum if larger.
                floor = max(2 * (self.tx_us or self.d_eff or 0), frame.required_rx or 0)
                self.owner._too_frequent(self, floor)
            self.close_code = frame.close_code  # the owner backs off a refusal [HB-CLOSE-6]
            self.owner._closed_by_peer(self)  # no linger [HB-CLOSE-3]
            return
        if new is _UP:
            self.expire_at = None
            self.peer_up = frame.state is _UP
            again = self.was_up
            self.was_up = True
            self._renegotiate()
            self._schedule_tx(now)  # leave the slow-start pace [HB-TX-6]
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
                events.append(LivenessInactive(self.local_id))  # [HB-NEG-3]
            self.owner._session_up(self, now, first=not again)
            return
        self._renegotiate()
        if old is _UP:  # UP -> DOWN: the peer says it lost us [HB-SM-4]
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
        # Polls exist only while UP [HB-POLL-8]: adopt whatever was in flight or queued.
        self.poll_seq = None
        if self._pending is not None:
            self._adopt(*self._pending)
            self._pending = None
        self.d_eff, self.r_eff = self.d_adv, self.r_adv
        self.peer_up = False
        self.strikes = 0
        self.last_strike = _NEVER
        self.exempt_at = _NO_EXEMPT
        self.last_hb_rx = None
        self._renegotiate()
        self._schedule_tx(now)  # back to the slow-start pace
        # If the session does not come back within a (slow-start) detection time, the owner
        # replaces it (an initiator, [HB-SM-8]) or deletes it (a responder, [HB-SES-4]).
        self.expire_at = now + self._detection_or_handshake()

    def _detection_or_handshake(self) -> float:
        """DetectionTime in seconds, HANDSHAKE_TIMEOUT when it is infinite [HB-DET-9]."""
        dt = self.dt_us
        return self.config.handshake_timeout if dt is None else dt / _US

    # --- Timers -------------------------------------------------------------------------------

    def on_timer(self, now: float) -> None:
        """Run whatever is due at ``now`` (the owner handles ``expire_at`` itself)."""
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
        if self.config.auth is not None:
            self._check_counter(now)

    def _check_counter(self, now: float) -> None:
        """[HB-SEQ-5]: an authenticated session closes with reason ``restart`` before its send
        counter has advanced 2^31 times, or serial arithmetic would make its oldest frames new
        again. Checked after every call that sends; none sends more than a few frames, so the
        margin below the limit is ample."""
        start = self.seq_start
        if (
            start is not None
            and ((self.tx_seq - start) & _MASK32) >= SEQ_BUDGET
            and self.state is not _CLOSED
        ):
            owner = self.owner
            self.close(
                CloseCode.RESTART, "send counter used up", now, linger=not owner.ends_on_down
            )
            owner._restart(self, now)

    def _detection_timeout(self, now: float) -> None:
        old = self.state
        self.state = on_local(old, LocalEvent.DETECTION_TIMEOUT)
        silent = 0.0 if self.last_rx is None else now - self.last_rx
        dt = None if self.dt_us is None else self.dt_us / _US
        self.detect_at = None
        if old is _UP:
            self.owner.events.append(
                PeerDown(self.local_id, DownReason.DETECTION_TIMEOUT, DetectedBy.LOCAL, silent, dt)
            )
        else:
            self.owner.counters["handshake_timeout"] += 1
        self._went_down(now)
        if self._may_trigger() and not self.owner.ends_on_down:  # a stream sends a CLOSE
            self.send_heartbeat(now)  # the triggered HEARTBEAT with Sta DOWN

    def handshake_overdue(self, now: float) -> bool:
        """No valid frame for a HANDSHAKE_TIMEOUT: back off [HB-TX-7]. True the first time."""
        first = self.backoff == 0
        if (SLOW_START_INTERVAL_US << self.backoff) < BACKOFF_CAP_US:
            self.backoff += 1
            self._schedule_tx(self.last_tx)  # [HB-TX-6]: the pending HEARTBEAT too
        self.expire_at = now + self.config.handshake_timeout
        return first

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
