"""Deliberately broken variants of the reference implementation, to prove the conformance
suite has teeth.

Each mutant is the reference ``hbproto`` command with one fault patched into the core, and a
manifest (:mod:`tests.mutants.manifests`): for each transport it is judged on, the cases it
must fail. ``tests/test_mutants.py`` runs the whole catalogue against every mutant and checks
that exactly those cases do not pass (FAIL, NON-STRICT for a SHOULD, or ERROR when the fault
keeps a case from running at all) and that everything else passes, or is skipped or
unsupported.

Run one by hand, as a responder or (for the two initiator mutants) as the suite's client::

    python3 -m tests.mutants never-acks serve udp://127.0.0.1:9999 -i 0.1
    python3 -m conformance udp://127.0.0.1:9999
    python3 -m conformance --transport udp \
        --client-cmd 'python3 -m tests.mutants no-refusal-back-off connect {target} --reconnect'

``python3 -m tests.mutants --list`` lists them; ``python3 -m tests.mutants --coverage``
prints which MUST requirements no case checks (and why) and which no mutant's failures reach.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import hbproto.session
import hbproto.timers
from hbproto.auth import AuthKeys
from hbproto.connection import Connection
from hbproto.endpoint import Endpoint
from hbproto.errors import FrameError
from hbproto.events import DetectedBy, DownReason, PeerDown
from hbproto.frame import (
    AUTH_MAC_SIZE,
    AUTH_TLV_SIZE,
    CRC_SIZE,
    MIN_FRAME,
    CloseCode,
    Frame,
    FrameType,
    State,
    Tlv,
    decode,
    encode,
)
from hbproto.session import Session
from hbproto.stream import StreamDeframer

from .manifests import MANIFESTS

__all__ = ["MUTANTS", "REFERENCES", "TEST_KEYS", "Mutant"]

Patch = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Mutant:
    """One broken implementation: what it gets wrong, how, and the transports it is judged
    on (where the fault exists). Its manifest, the cases it must fail over each transport, is
    in :mod:`tests.mutants.manifests`."""

    name: str
    breaks: str
    patch: Patch
    transports: tuple[str, ...] = ("udp", "tcp")
    auth: bool = False  # judged with authentication on (TEST_KEYS at both ends)
    initiator: bool = False  # judged as an initiator (hbproto connect), not a responder

    @property
    def fails(self) -> dict[str, frozenset[str]]:
        listed = MANIFESTS.get(self.name, {})
        return {t: frozenset(listed.get(t, ())) for t in self.transports}


# Keys for the judgements with authentication: the target accepts both, signs with the first.
TEST_KEYS = ("1:" + "5a" * 32, "2:" + "c3" * 32)


# --- Ways to break the reference -------------------------------------------------------------


def _rewrite_sent(change: Callable[[Frame], Frame | None]) -> Patch:
    """Pass every frame the core sends through ``change`` (``None`` drops it)."""

    def patch() -> None:
        for owner in (Endpoint, Connection):
            original = owner._transmit

            def transmit(
                self: Any, session: Session, data: bytes, addr: Any, _send: Any = original
            ) -> None:
                changed = change(decode(data))
                if changed is not None:
                    _send(self, session, encode(changed), addr)

            owner._transmit = transmit  # type: ignore[method-assign]

    return patch


def _rewrite_received(change: Callable[[bytes], bytes | None], *, stream: bool = True) -> Patch:
    """Pass every datagram, and every frame cut from a stream, through ``change`` before the
    core sees it (``None`` ignores it)."""

    def patch() -> None:
        datagram = Endpoint.receive_datagram

        def receive_datagram(self: Endpoint, data: bytes, addr: Any, now: float) -> None:
            changed = change(data)
            if changed is not None:
                datagram(self, changed, addr, now)

        Endpoint.receive_datagram = receive_datagram  # type: ignore[method-assign]
        if not stream:
            return
        framed = Connection._receive_frame

        def receive_frame(self: Connection, raw: bytes, now: float) -> None:
            changed = change(raw)
            if changed is not None:
                framed(self, changed, now)

        Connection._receive_frame = receive_frame  # type: ignore[method-assign]

    return patch


def _sealed(body: bytes) -> bytes:
    """``body`` (a frame without its trailer) with a correct CRC-32 trailer."""
    return body + zlib.crc32(body).to_bytes(4, "big")


def _reseal(data: bytes) -> bytes:
    return _sealed(data[:-4]) if len(data) >= MIN_FRAME else data


def _as_version_1(data: bytes) -> bytes:
    if not data or data[0] >> 4 == 1 or len(data) < MIN_FRAME:
        return data
    if zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "big"):
        return data  # a corrupt frame stays corrupt
    return _sealed(bytes([0x10 | (data[0] & 0x0F)]) + data[1:-4])


def _any_version_on_the_stream() -> None:
    original = StreamDeframer.next_frame

    def next_frame(self: StreamDeframer) -> bytes | None:
        buf, pos = self._buf, self._pos
        if len(buf) <= pos or buf[pos] >> 4 == 1:
            return original(self)
        first = buf[pos]
        buf[pos] = 0x10 | (first & 0x0F)  # past the version check...
        frame = original(self)
        if frame is None:
            buf[pos] = first
            return None
        return bytes([first]) + frame[1:]  # ...then as sent, for _as_version_1 to take

    StreamDeframer.next_frame = next_frame  # type: ignore[method-assign]


def _both(*patches: Patch) -> Patch:
    def patch() -> None:
        for one in patches:
            one()

    return patch


def _deaf_after_truncated() -> None:
    """Stop answering a source for good once it sent a datagram too short to be a frame."""
    deaf: set[Any] = set()
    original = Endpoint.receive_datagram

    def receive_datagram(self: Endpoint, data: bytes, addr: Any, now: float) -> None:
        if len(data) < MIN_FRAME:
            deaf.add(addr)
        if addr not in deaf:
            original(self, data, addr, now)

    Endpoint.receive_datagram = receive_datagram  # type: ignore[method-assign]


def _trust_length(data: bytes) -> bytes | None:
    """Frame by the Length field instead of the datagram's size."""
    if len(data) < 4:
        return data
    length = int.from_bytes(data[2:4], "big")
    return data[:length] if length <= len(data) else None


def _set_timer_rule(name: str, rule: Callable[..., Any]) -> Patch:
    def patch() -> None:
        setattr(hbproto.timers, name, rule)
        hbproto.timers.negotiate.cache_clear()

    return patch


def _jitter(value: float) -> Patch:
    def patch() -> None:
        setattr(hbproto.session, "jitter_factor", lambda rng, own_mult: value)  # noqa: B010

    return patch


def _early_detection(remote_mult: int, expected: int | None, slow_start: bool) -> int | None:
    if expected is None:
        return None
    if slow_start:
        expected = max(expected, hbproto.timers.SLOW_START_INTERVAL_US)
    return max(1, remote_mult - 1) * expected if remote_mult > 1 else expected // 2


def _never_detect() -> None:
    original = Session.on_timer

    def on_timer(self: Session, now: float) -> None:
        self.detect_at = None  # whatever armed it
        original(self, now)

    Session.on_timer = on_timer  # type: ignore[method-assign]


def _detection_from_the_first_frame() -> None:
    """Arm the detection timer once and never push it back: misses add up across frames."""
    original = Session._rearm_detection

    def rearm(self: Session) -> None:
        if self.detect_at is None or self.state is not State.UP:
            original(self)

    Session._rearm_detection = rearm  # type: ignore[method-assign]
    # The fast paths for routine HEARTBEATs and ACKs set the timer themselves: route every
    # frame past them.
    Session.fast_heartbeat = lambda *args: False  # type: ignore[method-assign]
    Session.fast_ack = lambda *args: False  # type: ignore[method-assign]


def _accept_replays() -> None:
    original = Session._accept_seq

    def accept(self: Session, seq: int) -> int:
        return original(self, seq) or 1

    Session._accept_seq = accept  # type: ignore[method-assign]


def _accept_any_mac() -> None:
    def verify(self: AuthKeys, data: bytes) -> bool:
        return len(data) >= MIN_FRAME + AUTH_TLV_SIZE

    AuthKeys.verify = verify  # type: ignore[method-assign]


def _accept_only_the_active_key() -> None:
    original = AuthKeys.verify

    def verify(self: AuthKeys, data: bytes) -> bool:
        key_id = data[-AUTH_MAC_SIZE - CRC_SIZE - 1] if len(data) > AUTH_TLV_SIZE else None
        return key_id == self.active and original(self, data)

    AuthKeys.verify = verify  # type: ignore[method-assign]


def _bad_mac_on_heartbeats(data: bytes) -> bytes:
    """Spoil the MAC of every HEARTBEAT sent (and mend its CRC): ACKs stay right."""
    if data[0] & 0x0F != FrameType.HEARTBEAT:
        return data
    body = bytearray(data[:-CRC_SIZE])
    body[-1] ^= 0x01
    return _sealed(bytes(body))


def _mangle_sent_bytes(change: Callable[[bytes], bytes]) -> Patch:
    def patch() -> None:
        for owner in (Endpoint, Connection):
            original = owner._transmit

            def transmit(
                self: Any, session: Session, data: bytes, addr: Any, _send: Any = original
            ) -> None:
                _send(self, session, change(data), addr)

            owner._transmit = transmit  # type: ignore[method-assign]

    return patch


def _closes_only_for_known_reasons(data: bytes) -> bytes | None:
    try:
        frame = decode(data)
    except FrameError:
        return data
    known = frame.type is not FrameType.CLOSE or frame.close_code in set(CloseCode)
    return data if known else None


def _replace_live_sessions() -> None:
    Endpoint._silent = staticmethod(lambda session, now: True)  # type: ignore[method-assign]


def _no_reflection_check() -> None:
    """Take an opening frame carrying one of our own identifiers for a stranger's."""
    original = Endpoint.receive_datagram

    def receive_datagram(self: Endpoint, data: bytes, addr: Any, now: float) -> None:
        mine = int.from_bytes(data[4:8], "big")
        if (
            len(data) >= MIN_FRAME
            and not int.from_bytes(data[8:12], "big")
            and mine in self.sessions
        ):
            stranger = (mine ^ 0x5A5A_5A5A) or 1
            data = _sealed(data[:4] + stranger.to_bytes(4, "big") + data[8:-CRC_SIZE])
        original(self, data, addr, now)

    Endpoint.receive_datagram = receive_datagram  # type: ignore[method-assign]


def _no_refusal_back_off() -> None:
    Endpoint._refused = lambda self, session: None  # type: ignore[method-assign]


def _down_blamed_on_the_peer() -> None:
    """Report the detection timer's verdict as the peer's own report."""

    def peer_down(
        session: int, reason: DownReason, by: DetectedBy, silent: float, dt: float | None
    ) -> PeerDown:
        return PeerDown(session, reason, DetectedBy.REMOTE, silent, dt)

    setattr(hbproto.session, "PeerDown", peer_down)  # noqa: B010


def _no_handshake_deadline() -> None:
    original = Connection.__init__

    def init(self: Connection, *args: Any, **kw: Any) -> None:
        original(self, *args, **kw)
        self._handshake_deadline = None

    Connection.__init__ = init  # type: ignore[method-assign]


def _no_slow_start() -> None:
    original = Session._periodic_us

    def periodic(self: Session) -> int | None:
        period = original(self)
        if period is None or self.state is State.UP:
            return period
        return self.tx_us or self.d_eff or period

    Session._periodic_us = periodic  # type: ignore[method-assign]


def _trust_new_addresses() -> None:
    """Move a session to any address a frame of it comes from, without a probe."""

    def rebinding(self: Session, addr: Any, now: float) -> None:
        self.addr = addr

    Session._rebinding = rebinding  # type: ignore[method-assign]


def _close_on_bad_frames() -> None:
    """End a TCP connection on any invalid frame instead of discarding it."""
    original = Connection._receive_frame

    def receive_frame(self: Connection, raw: bytes, now: float) -> None:
        try:
            decode(raw, self.max_frame)
        except FrameError:
            self.transport_failed(DownReason.PROTOCOL_ERROR, now)
            return
        original(self, raw, now)

    Connection._receive_frame = receive_frame  # type: ignore[method-assign]


# --- Frame rewrites -----------------------------------------------------------------------------


def _acks(change: Callable[[Frame], Frame | None]) -> Callable[[Frame], Frame | None]:
    return lambda f: change(f) if f.type is FrameType.ACK else f


_PADDING = Tlv(0x7E, bytes(8))  # an unknown, non-critical TLV: valid, and 12 bytes larger


def _nothing() -> None:
    pass


def _by_name(*mutants: Mutant) -> dict[str, Mutant]:
    return {m.name: m for m in mutants}


# The reference itself, judged beside the mutants: it must fail nothing, with and without
# authentication.
REFERENCES = _by_name(
    Mutant("reference", "nothing", _nothing),
    Mutant("reference-auth", "nothing, with authentication", _nothing, auth=True),
)

_ACK_NOT_WHEN_UP = _rewrite_sent(_acks(lambda f: None if f.state is State.UP else f))
_ACK_SEQ_PLUS_ONE = _rewrite_sent(_acks(lambda f: replace(f, seq=(f.seq + 1) & 0xFFFFFFFF)))
_ACK_OTHER_TIMESTAMP = _rewrite_sent(_acks(lambda f: replace(f, timestamp=f.timestamp ^ 0x5A5A)))
_ACK_PADDED = _rewrite_sent(_acks(lambda f: replace(f, tlvs=(*f.tlvs, _PADDING))))
_ACK_NO_FINAL = _rewrite_sent(_acks(lambda f: replace(f, final=False)))
_UP_FOR_INIT = _rewrite_sent(lambda f: replace(f, state=State.UP) if f.state is State.INIT else f)
_NO_CLOSE = _rewrite_sent(lambda f: None if f.type is FrameType.CLOSE else f)
_ANY_VERSION = _both(_rewrite_received(_as_version_1), _any_version_on_the_stream)
_TRUST_LENGTH = _rewrite_received(_trust_length, stream=False)
_NO_UNKNOWN_REASON = _rewrite_received(_closes_only_for_known_reasons)
_OWN_D_ONLY = _set_timer_rule("tx_interval_us", lambda d, r: None if r == 0 else d or 1_000_000)
_UDP, _TCP = ("udp",), ("tcp",)

MUTANTS = _by_name(
    Mutant("never-acks", "answers no HEARTBEAT once the session is UP", _ACK_NOT_WHEN_UP),
    Mutant("ack-wrong-sequence", "echoes the sequence number plus one", _ACK_SEQ_PLUS_ONE),
    Mutant("ack-wrong-timestamp", "echoes a different Timestamp", _ACK_OTHER_TIMESTAMP),
    Mutant("ack-larger", "pads every ACK with a 12-byte TLV", _ACK_PADDED),
    Mutant("ack-without-final", "never sets F, even answering a poll", _ACK_NO_FINAL),
    Mutant("skips-init", "says UP in every frame it would send in INIT", _UP_FOR_INIT),
    Mutant("skips-close", "ends sessions without sending a CLOSE", _NO_CLOSE),
    Mutant("no-jitter", "sends HEARTBEATs exactly one interval apart", _jitter(1.0)),
    Mutant("interval-too-fast", "sends HEARTBEATs at 0.3 of the interval", _jitter(0.3)),
    Mutant("ignores-peer-minimum", "sends at its own D, ignoring the peer's R", _OWN_D_ONLY),
    Mutant("no-slow-start", "sends at the full rate before the session is UP", _no_slow_start),
    Mutant(
        "down-too-early",
        "declares the peer down one interval before DetectionTime",
        _set_timer_rule("detection_time_us", _early_detection),
    ),
    Mutant(
        "misses-add-up",
        "never pushes its detection timer back once UP: misses add up across frames",
        _detection_from_the_first_frame,
    ),
    Mutant("never-down", "never runs the detection timer", _never_detect),
    Mutant("accepts-bad-checksum", "does not check the CRC-32", _rewrite_received(_reseal)),
    Mutant("ignores-version", "takes frames of any version for version 1", _ANY_VERSION),
    Mutant("accepts-replays", "has no replay window", _accept_replays),
    Mutant(
        "deaf-after-truncated",
        "stops answering a peer for good after a datagram too short to be a frame",
        _deaf_after_truncated,
        _UDP,
    ),
    Mutant("trusts-length", "frames a datagram by its Length field", _TRUST_LENGTH, _UDP),
    Mutant("trusts-new-address", "moves a session without a probe", _trust_new_addresses, _UDP),
    Mutant("accepts-bad-mac", "checks no Key ID or MAC", _accept_any_mac, auth=True),
    Mutant(
        "only-active-key",
        "accepts frames signed with its active key only, not every configured key",
        _accept_only_the_active_key,
        auth=True,
    ),
    Mutant(
        "heartbeats-badly-signed",
        "sends HEARTBEATs whose MAC does not verify (its ACKs are signed right)",
        _mangle_sent_bytes(_bad_mac_on_heartbeats),
        auth=True,
    ),
    Mutant("ignores-unknown-reason", "ignores a CLOSE with an unknown reason", _NO_UNKNOWN_REASON),
    Mutant(
        "replaces-live-sessions",
        "lets a new session from an address end the one already there, even if alive",
        _replace_live_sessions,
        _UDP,
    ),
    Mutant(
        "answers-reflections",
        "opens a session for a frame carrying its own identifier",
        _no_reflection_check,
        _UDP,
    ),
    Mutant(
        "no-handshake-deadline",
        "keeps a TCP connection whose session never comes up",
        _no_handshake_deadline,
        _TCP,
    ),
    Mutant(
        "no-refusal-back-off",
        "an initiator that opens a new session at once after a refusal",
        _no_refusal_back_off,
        _UDP,
        initiator=True,
    ),
    Mutant(
        "down-blamed-on-the-peer",
        "an initiator that reports its own detection timeout as detected by the peer",
        _down_blamed_on_the_peer,
        initiator=True,
    ),
    Mutant(
        "closes-on-bad-frame",
        "ends the connection on an invalid frame it could have discarded",
        _close_on_bad_frames,
        _TCP,
    ),
)
