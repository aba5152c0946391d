"""Many sessions over one datagram socket (the UDP binding, SPEC.md section 11.1), sans-IO.

The shape follows aioquic's ``QuicConnection``: bytes and ``now`` in through
:meth:`Endpoint.receive_datagram`, datagrams out through :meth:`Endpoint.datagrams_to_send`,
events out through :meth:`Endpoint.next_event`, and time through :meth:`Endpoint.get_timer`
(the absolute time the core next needs to run) and :meth:`Endpoint.handle_timer`. The core never
reads a clock and never raises because of what arrives from the network: bad frames are
dropped and counted in :attr:`Endpoint.counters` under the SPEC's names.

All sessions share one heap of deadlines. Each session has at most one live entry, placed at or
before its earliest deadline; when a deadline moves later (every received frame pushes the
detection timer back) nothing is touched, and the entry is re-pushed when it comes due. An idle
session therefore costs no work, and :meth:`get_timer` is O(1). Entries are ``(time, session
identifier)`` pairs, which the garbage collector does not need to track.

A routine HEARTBEAT (the steady state of every session) takes a fast path that builds no
:class:`~hbproto.frame.Frame`; see :meth:`~hbproto.session.Session.fast_heartbeat`.
"""

from __future__ import annotations

import heapq
import secrets
from collections import Counter, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from random import Random
from typing import Any

from .auth import AuthKeys
from .auth import check as check_auth
from .config import Config
from .errors import FrameError, LocalProtocolError
from .events import DetectedBy, DownReason, Event, LocalStall, PeerDown, PeerRestarted
from .frame import (
    PIGGYBACK_MAX,
    UDP_MAX_FRAME,
    CloseCode,
    Frame,
    State,
    decode,
    encode_interval,
)
from .session import BARE_FRAME, Session, SessionInfo
from .timers import BACKOFF_CAP_US, SLOW_START_INTERVAL_US

__all__ = ["UNCHANGED", "Endpoint", "Limits"]

Address = Hashable
_BARE_HEARTBEAT_START = 0x11  # version 1, HEARTBEAT
_BARE_ACK_START = 0x12  # version 1, ACK
_PEERS_KEPT = 4096  # peers remembered for the back-offs of [HB-FREQ-4] and [HB-CLOSE-6]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what the network can make a responder hold [HB-SES-3], [HB-SEC-3]."""

    max_sessions: int = 1_000_000
    max_half_open: int = 10_000  # sessions created by a peer that are not yet UP
    max_per_source: int = 1_000  # sessions per source host (the address without the port)
    max_frame: int = UDP_MAX_FRAME


class _Unchanged:
    """The type of :data:`UNCHANGED`."""


UNCHANGED = _Unchanged()
"""Default of :meth:`Endpoint.set_parameters` arguments: keep the current value."""


def _host(addr: Address) -> Hashable:
    return addr[0] if isinstance(addr, tuple) and addr else addr


class Endpoint:
    """A sans-IO hbproto endpoint for a datagram transport.

    ``accept``: create sessions for peers that open them (the responder role). ``config`` is
    the default for every session; :meth:`connect` can override it per session. ``rng`` drives
    jitter and sequence-number starts (pass a seeded :class:`random.Random` for reproducible
    tests); ``id_source`` returns candidate session identifiers (default: the ``secrets``
    module, as [HB-ID-1] recommends).
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        accept: bool = False,
        limits: Limits | None = None,
        rng: Random | None = None,
        id_source: Callable[[], int] | None = None,
    ) -> None:
        self.config = config or Config()
        self.accept = accept
        self.limits = limits or Limits()
        self.rng = rng or Random()
        self._id_source = id_source or (lambda: secrets.randbits(32))
        self.sessions: dict[int, Session] = {}
        self.events: deque[Event] = deque()
        self.counters: Counter[str] = Counter()
        self._out: list[tuple[bytes, Address]] = []
        self._heap: list[tuple[float, int]] = []
        self.ts_secret = self.rng.getrandbits(32)
        self.ends_on_down = False
        # Sessions a frame with Your Identifier 0 may still belong to [HB-SES-2]: those whose
        # address the peer has not yet verified, by (address, remote id), and initiators that
        # have not yet learned a remote identifier, by address, first opened first.
        self._pending_by_remote: dict[tuple[Address, int], Session] = {}
        self._unbound: dict[Address, list[Session]] = {}
        # Initiators that a frame with Your Identifier 0 bound (a simultaneous open), by remote
        # id, with the host that frame came from: copies of it are stale [HB-SES-7].
        self._bound: dict[int, tuple[Hashable, Session]] = {}
        self._half_open = 0
        # The sessions peers created, by source host: one identifier when the host has one
        # session (the common case, and one dict entry per session), a list when it has more.
        # It bounds sessions per source [HB-SES-3] and finds predecessors [HB-SM-6].
        self._by_source: dict[Hashable, int | list[int]] = {}
        self._stall_late = 0.0
        self._stall_spared = 0
        self._rate_floor: dict[Address, int] = {}
        self._refusals: dict[Address, tuple[int, float]] = {}  # (count, not before) [HB-CLOSE-6]
        self._openings: dict[tuple[int, int], float] = {}  # signed opening frames [HB-SES-9]

    # --- Verbs --------------------------------------------------------------------------------

    def connect(self, addr: Address, now: float, config: Config | None = None) -> int:
        """Open a session to ``addr`` as initiator; returns its handle (local identifier)."""
        config = config or self.config
        floor = self._rate_floor.get(addr)
        desired = config.desired_tx_us
        if floor is not None and (desired is None or desired < floor):
            # [HB-FREQ-4]: this peer closed us for sending too often; stay slower.
            config = replace(config, interval=floor / 1_000_000)
        session = self._open(config, addr, now)
        self._schedule(session)
        return session.local_id

    def send(self, session: int, data: bytes, now: float) -> None:
        """Send an application message in a DATA frame; the session must be UP."""
        s = self._get(session)
        s.send_data(bytes(data), now, self.limits.max_frame)
        self._schedule(s)

    def close(
        self, session: int, now: float, code: int = CloseCode.SHUTDOWN, text: str | None = None
    ) -> None:
        """Close a session with a reason [HB-CLOSE-1]. Closing a closed session does nothing."""
        s = self._get(session)
        if not 0 <= code <= 0xFFFFFFFF:
            raise LocalProtocolError(f"close code {code} does not fit in 32 bits")
        s.close(code, text, now, linger=True)
        self._unwait(s)  # a CLOSED session binds nothing [HB-SES-2]
        self._schedule(s)

    def set_parameters(
        self,
        session: int,
        now: float,
        *,
        interval: float | _Unchanged | None = UNCHANGED,
        min_rx: float | _Unchanged | None = UNCHANGED,
        multiplier: int | None = None,
    ) -> None:
        """Change a session's parameters mid-session (a Poll, SPEC 9.4). Omitted ones stay."""
        s = self._get(session)
        current = s.config
        new = replace(
            current,
            interval=current.interval if isinstance(interval, _Unchanged) else interval,
            min_rx=current.min_rx if isinstance(min_rx, _Unchanged) else min_rx,
            multiplier=s.mult if multiplier is None else multiplier,
        )
        s.config = new
        s.set_parameters(new.desired_tx_us, new.required_rx_us, new.multiplier, now)
        self._schedule(s)

    def set_auth(self, auth: AuthKeys, session: int | None = None) -> None:
        """Change authentication keys while sessions run, to rotate them [HB-AUTH-7].

        Without ``session``, the endpoint's own keys change (its policy for sessions that peers
        open from now on, and the default of :meth:`connect`), and so do the keys of every
        session that uses those keys; sessions given other keys through :meth:`connect` keep
        theirs. With ``session``, only that session's keys change. Sessions go on as they were:
        frames are signed with the new active key from now on, and received frames verify
        against every key in ``auth``.

        Whether a session authenticates at all is fixed before it exists [HB-AUTH-9], so this
        changes keys only where there are keys already; anywhere else it raises
        :class:`~hbproto.errors.LocalProtocolError`.
        """
        if not isinstance(auth, AuthKeys):
            raise LocalProtocolError(f"set_auth needs an AuthKeys, not {auth!r} [HB-AUTH-9]")
        if session is not None:
            s = self._get(session)
            if s.config.auth is None:
                raise LocalProtocolError(
                    f"session {session:#010x} does not authenticate, and cannot start [HB-AUTH-9]"
                )
            s.config = replace(s.config, auth=auth)
            return
        old = self.config.auth
        if old is None:
            raise LocalProtocolError(
                "this endpoint does not authenticate, and cannot start: give Config(auth=...) "
                "when creating it [HB-AUTH-9]"
            )
        previous, self.config = self.config, replace(self.config, auth=auth)
        # Sessions that shared a config still share one: rotation allocates per config.
        renewed: dict[Config, Config] = {previous: self.config}
        for s in self.sessions.values():
            config = s.config
            if config.auth == old:
                new = renewed.get(config)
                if new is None:
                    new = renewed[config] = replace(config, auth=auth)
                s.config = new

    def set_piggyback(self, session: int, data: bytes | None) -> None:
        """Carry ``data`` (at most 128 bytes) in this session's HEARTBEATs from now on."""
        if data is not None and len(data) > PIGGYBACK_MAX:
            raise LocalProtocolError(f"piggyback is {len(data)} bytes; at most {PIGGYBACK_MAX}")
        self._get(session).piggyback = None if data is None else bytes(data)

    def note_activity(self, session: int, now: float) -> None:
        """Tell an idle-only session that the application sent traffic [HB-TX-3]."""
        s = self._get(session)
        if s.config.idle_only and s.next_tx is not None:
            s.last_tx = now
            s._schedule_tx(now)

    def refused_until(self, addr: Address, now: float) -> float | None:
        """When a new session to ``addr`` may open, if the peer refused one lately and the
        back-off of [HB-CLOSE-6] has not yet passed (:meth:`connect` waits for it itself)."""
        refused = self._refusals.get(addr)
        return refused[1] if refused is not None and refused[1] > now else None

    def snapshot(self, session: int, now: float) -> SessionInfo:
        """State, RTT, last seen, misses, suspicion and negotiated values of one session."""
        return self._get(session).info(now)

    # --- Input --------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Process one datagram. Invalid input is dropped and counted; this never raises."""
        first = data[0] if len(data) == 28 else None
        if first in (_BARE_HEARTBEAT_START, _BARE_ACK_START):
            fields = BARE_FRAME.unpack(data)  # unpacked once, for both steps
            fast = self.sessions.get(fields[3])
            if fast is not None and (
                fast.fast_heartbeat(data, fields, addr, now)
                if first == _BARE_HEARTBEAT_START
                else fast.fast_ack(data, fields, addr, now)
            ):
                return  # only later deadlines moved: the heap needs nothing
        try:
            frame = decode(data, self.limits.max_frame)
        except FrameError as exc:
            self.counters[exc.reason] += 1
            return
        your_id = frame.your_id
        if your_id:
            session = self.sessions.get(your_id)  # [HB-SES-1]
            if session is None:
                self.counters["unknown_session"] += 1
                return
        else:
            if frame.my_id in self.sessions:
                # Our own opening frame, reflected back (by an echo service or an attacker):
                # binding it would make a session talk to itself, or to its sibling, and come
                # UP with nobody there. It belongs to no session (V-9).
                self.counters["unknown_session"] += 1
                return
            session = self._pending_by_remote.get((addr, frame.my_id))  # [HB-SES-2]
            if session is None:
                opened = self._opened_by(frame.my_id, addr)
                if opened is not None:
                    opened.discard_opening_copy(frame, data)  # [HB-SES-7]
                    return
                # A simultaneous open [HB-SES-2]: only an endpoint that accepts sessions binds,
                # so a spoofed opening frame can never capture a pure client's session.
                session = self._waiting(addr) if self.accept else None
                if session is None:
                    self._open_for(frame, data, addr, now)
                    return
                session.receive(frame, addr, now, data)
                if session.remote_id == frame.my_id:  # bound: the frame was valid
                    self._pending_by_remote[(addr, frame.my_id)] = session
                    self._bound[frame.my_id] = (_host(addr), session)
                    self._unwait(session)
                self._schedule(session)
                return
        session.receive(frame, addr, now, data)
        if self.sessions.get(session.local_id) is not session:
            return  # closed by the peer and deleted
        if session.remote_id and session.initiator and session.addr in self._unbound:
            self._unwait(session)
        self._schedule(session)

    def _open_for(self, frame: Frame, data: bytes, addr: Address, now: float) -> None:
        """Create a session for a frame with Your Identifier 0, if it may [HB-SES-2]."""
        session = self._accept(frame, data, addr, now)
        if session is None:
            return
        session.receive(frame, addr, now, data)
        if session.rx_top is None:
            self._delete(session)  # failed a session check: keep nothing [HB-SES-6]
            return
        # [HB-SES-4]: come up within min(DetectionTime, HANDSHAKE_TIMEOUT) [HB-DET-9].
        limit = session.config.handshake_timeout
        if session.dt_us is not None:
            limit = min(session.dt_us / 1_000_000, limit)
        session.expire_at = now + limit
        self._schedule(session)

    def _opened_by(self, remote_id: int, addr: Address) -> Session | None:
        """[HB-SES-7]: the established session that a frame with Your Identifier 0 from
        ``remote_id`` at this host created (as responder) or bound (as initiator), if any."""
        host = _host(addr)
        held = self._by_source.get(host)
        if held is not None:
            sessions = self.sessions
            for local_id in (held,) if isinstance(held, int) else held:
                session = sessions.get(local_id)
                if session is not None and session.remote_id == remote_id and session.verified:
                    return session
        bound = self._bound.get(remote_id)
        if bound is not None and bound[0] == host and bound[1].verified:
            return bound[1]
        return None

    def _waiting(self, addr: Address) -> Session | None:
        """[HB-SES-2]: the first-opened initiator session to ``addr`` that has not yet learned
        a remote identifier and is not CLOSED."""
        for session in self._unbound.get(addr, ()):
            if not session.remote_id and session.state is not State.CLOSED:
                return session
        return None

    def _unwait(self, session: Session) -> None:
        waiting = self._unbound.get(session.addr)
        if waiting is not None and session in waiting:
            waiting.remove(session)
            if not waiting:
                del self._unbound[session.addr]

    def _accept(self, frame: Frame, data: bytes, addr: Address, now: float) -> Session | None:
        """A new responder session for an opening frame, or ``None``: V-9 first, then V-11
        against this endpoint's policy, before anything exists [HB-RX-18], [HB-AUTH-6]."""
        limits = self.limits
        if not self.accept:
            self.counters["unknown_session"] += 1
            return None
        source = _host(addr)
        if (
            len(self.sessions) >= limits.max_sessions
            or self._half_open >= limits.max_half_open
            or self._source_count(source) >= limits.max_per_source
        ):
            self.counters["unknown_session"] += 1
            self.counters["refused"] += 1
            return None
        # V-10 holds for a session that takes its remote identifier from this very frame.
        failure = check_auth(self.config.auth, frame, data)
        if failure is not None:
            self.counters[failure] += 1
            return None
        if self.config.auth is not None and self._replayed_opening(frame, now):
            self.counters["replay"] += 1
            return None
        remote_id = frame.my_id
        session = self._new_session(self.config, addr, now, initiator=False)
        session.remote_id = remote_id
        self._pending_by_remote[(addr, remote_id)] = session
        session.source = source  # counted half-open until it first comes up
        self._half_open += 1
        held = self._by_source.get(source)
        if held is None:
            self._by_source[source] = session.local_id
        elif isinstance(held, int):
            self._by_source[source] = [held, session.local_id]
        else:
            held.append(session.local_id)
        return session

    def _replayed_opening(self, frame: Frame, now: float) -> bool:
        """[HB-SES-9]: whether this signed opening frame already created a session lately, from
        any address; if not, remember it. Only a copy repeats an initiator's (identifier,
        sequence number), so one recorded frame cannot take a half-open slot per address."""
        openings = self._openings
        forget_before = now - self.config.handshake_timeout
        while openings and next(iter(openings.values())) < forget_before:
            del openings[next(iter(openings))]  # oldest first: insertion order is time order
        key = (frame.my_id, frame.seq)
        if key in openings:
            return True
        openings[key] = now
        if len(openings) > self.limits.max_half_open:
            del openings[next(iter(openings))]
        return False

    # --- Output and time ----------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Datagrams to send now, as ``(data, address)`` pairs. Runs any timer already due."""
        timer = self.get_timer()
        if timer is not None and timer <= now:
            self.handle_timer(now)
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        """The next event, or ``None`` when there are none."""
        return self.events.popleft() if self.events else None

    def get_timer(self) -> float | None:
        """The absolute time at which :meth:`handle_timer` must next be called, or ``None``."""
        heap = self._heap
        sessions = self.sessions
        while heap:
            at, local_id = heap[0]
            session = sessions.get(local_id)
            if session is not None and session.heap_at == at:
                return at
            heapq.heappop(heap)  # superseded entry
        return None

    def handle_timer(self, now: float) -> None:
        """Run every deadline that is due at ``now``."""
        heap = self._heap
        sessions = self.sessions
        while heap and heap[0][0] <= now:
            at, local_id = heapq.heappop(heap)
            session = sessions.get(local_id)
            if session is None or session.heap_at != at:
                continue
            session.heap_at = float("inf")
            if session.expire_at is not None and now >= session.expire_at:
                self._expire(session, now)
                if sessions.get(session.local_id) is not session:
                    continue
            session.on_timer(now)
            self._schedule(session)
        self._flush_stall()

    # --- Internals ----------------------------------------------------------------------------

    def _get(self, session: int) -> Session:
        try:
            return self.sessions[session]
        except KeyError:
            raise LocalProtocolError(f"no session {session:#010x}") from None

    def _new_id(self) -> int:
        for _ in range(64):
            candidate = self._id_source() & 0xFFFFFFFF
            if candidate and candidate not in self.sessions:  # [HB-ID-1]
                return candidate
        raise LocalProtocolError("the identifier source keeps returning identifiers in use")

    def _new_session(
        self, config: Config, addr: Address, now: float, *, initiator: bool
    ) -> Session:
        if len(self.sessions) >= self.limits.max_sessions and initiator:
            raise LocalProtocolError(f"endpoint already holds {len(self.sessions)} sessions")
        session = Session(self, config, self._new_id(), addr, now, initiator=initiator)
        self.sessions[session.local_id] = session
        return session

    def _schedule(self, session: Session) -> None:
        at = session.deadline()
        if at < session.heap_at:
            session.heap_at = at
            heapq.heappush(self._heap, (at, session.local_id))

    def _transmit(self, session: Session, data: bytes, addr: Any) -> None:
        self._out.append((data, addr))

    def _verified(self, session: Session) -> None:
        key = (session.addr, session.remote_id)
        if self._pending_by_remote.get(key) is session:
            del self._pending_by_remote[key]
        self._unwait(session)

    def _session_up(self, session: Session, now: float, *, first: bool) -> None:
        if first and session.source is not None:
            self._half_open -= 1
        if session.initiator and self._refusals:
            self._refusals.pop(session.addr, None)  # [HB-CLOSE-6]: the count starts again
        replaced = session.replaces
        if replaced is not None:
            old_id, old_remote = replaced
            session.replaces = None
            if old_remote and old_remote != session.remote_id:
                self.events.append(
                    PeerRestarted(session.local_id, old_id, old_remote, session.remote_id)
                )
        held = self._by_source.get(session.source)
        if isinstance(held, list):
            # [HB-SM-6]: a new session from the address of a silent earlier one is a restart.
            for previous in list(held):
                old = self.sessions.get(previous)
                if (
                    old is not None
                    and old is not session
                    and old.was_up
                    and old.addr == session.addr
                    and old.remote_id != session.remote_id
                    and self._silent(old, now)
                ):
                    self.events.append(
                        PeerRestarted(
                            session.local_id, old.local_id, old.remote_id, session.remote_id
                        )
                    )
                    self._delete(old)

    def _source_count(self, source: Hashable) -> int:
        held = self._by_source.get(source)
        if held is None:
            return 0
        return 1 if isinstance(held, int) else len(held)

    def source_counts(self) -> Counter[Hashable]:
        """How many sessions each source host has created that are still held [HB-SES-3]."""
        return Counter({source: self._source_count(source) for source in self._by_source})

    @staticmethod
    def _silent(session: Session, now: float) -> bool:
        """[HB-SM-6]: only a session that has stopped hearing its peer can have been replaced."""
        if session.last_rx is None or session.exp_us is None:
            return True
        return now - session.last_rx >= session.exp_us / 1_000_000

    def _too_frequent(self, session: Session, floor_us: int) -> None:
        floors = self._rate_floor
        floors[session.addr] = max(floor_us, floors.pop(session.addr, 0))  # newest last
        while len(floors) > _PEERS_KEPT:
            del floors[next(iter(floors))]  # forget the oldest: this table must stay bounded

    def _closed_by_peer(self, session: Session) -> None:
        if session.initiator and session.close_code == CloseCode.REFUSED:
            self._refused(session)
        self._delete(session)
        if session.close_code == CloseCode.RESTART:
            self._restart(session, session.last_rx or 0.0)  # the CLOSE just arrived

    def _restart(self, session: Session, now: float) -> None:
        """[HB-SEQ-5]: a session closed with reason ``restart``, by either end, is replaced at
        once by its initiator, without back-off. The new session's PeerUp names the old one;
        the peer did not restart, so no PeerRestarted follows. Only a session that was UP is
        replaced so: one that never came up has nothing to resume, and a peer that closed it
        so cannot make this end reopen in a loop."""
        if not (session.initiator and session.was_up):
            return
        new = self._open(session.config, session.addr, now)
        new.replaces = (session.local_id, 0)  # 0: not a restart of the peer
        new.piggyback = session.piggyback
        self._schedule(new)

    def _refused(self, session: Session) -> None:
        """[HB-CLOSE-6]: no new session to a peer that refused one before the back-off ends:
        min(SLOW_START_INTERVAL x 2^n, 60 s) after the n-th refusal, plus up to 25 %."""
        refusals = self._refusals
        count = refusals.pop(session.addr, (0, 0.0))[0] + 1
        wait = min(SLOW_START_INTERVAL_US << min(count, 16), BACKOFF_CAP_US) / 1_000_000
        refused_at = session.last_rx or 0.0  # the refusing CLOSE just arrived
        refusals[session.addr] = (count, refused_at + wait * (1 + 0.25 * self.rng.random()))
        while len(refusals) > _PEERS_KEPT:
            del refusals[next(iter(refusals))]

    def _stalled(self, session: Session, late_by: float) -> None:
        self._stall_late = max(self._stall_late, late_by)
        self._stall_spared += 1

    def _flush_stall(self) -> None:
        if self._stall_spared:
            self.events.append(LocalStall(self._stall_late, self._stall_spared))
            self.counters["stall_spared"] += self._stall_spared
            self._stall_late, self._stall_spared = 0.0, 0

    def _expire(self, session: Session, now: float) -> None:
        state = session.state
        if state is State.CLOSED:
            self._delete(session)  # the linger period is over
        elif state is State.UP:
            session.expire_at = None
        elif session.initiator and session.was_up:
            self._replace(session, now)  # DOWN for a detection time [HB-SM-8]
        elif session.initiator and session.remote_id:
            self._replace(session, now, restart=False)  # stuck short of UP [HB-SM-8]
        elif session.initiator:
            # [HB-TX-7]: nothing from the peer within HANDSHAKE_TIMEOUT.
            if session.handshake_overdue(now) and session.last_rx is None:
                self.events.append(
                    PeerDown(
                        session.local_id,
                        DownReason.HANDSHAKE_TIMEOUT,
                        DetectedBy.LOCAL,
                        now - session.last_tx,
                        None,
                    )
                )
        else:
            self.counters["expired"] += 1  # a responder's session that did not come (back) up
            self._delete(session)

    def _replace(self, old: Session, now: float, *, restart: bool = True) -> None:
        self._delete(old)  # first, so that the replacement always has room
        new = self._open(old.config, old.addr, now)
        if restart:  # a session that was UP: report how the new one relates to it
            new.replaces = (old.local_id, old.remote_id)
        new.piggyback = old.piggyback
        if (old.d_adv, old.r_adv) != (new.d_adv, new.r_adv) or old.mult != new.mult:
            new.d_adv = new.d_eff = old.d_adv
            new.r_adv = new.r_eff = old.r_adv
            new.d_code, new.r_code = encode_interval(old.d_adv), encode_interval(old.r_adv)
            new.mult = old.mult
            new._renegotiate()
        self._schedule(new)

    def _open(self, config: Config, addr: Address, now: float) -> Session:
        """A new initiator session to ``addr``, its first HEARTBEAT due at once unless the peer
        refused a session lately [HB-CLOSE-6], [HB-TX-5]."""
        session = self._new_session(config, addr, now, initiator=True)
        self._unbound.setdefault(addr, []).append(session)
        start = now
        refused = self._refusals.get(addr)
        if refused is not None and refused[1] > now:
            start = session.next_tx = session.last_tx = refused[1]
        session.expire_at = start + config.handshake_timeout  # [HB-TX-7]
        return session

    def _delete(self, session: Session) -> None:
        sessions = self.sessions
        if sessions.get(session.local_id) is not session:
            return
        del sessions[session.local_id]
        key = (session.addr, session.remote_id)
        if self._pending_by_remote.get(key) is session:
            del self._pending_by_remote[key]
        self._unwait(session)
        bound = self._bound.get(session.remote_id)
        if bound is not None and bound[1] is session:
            del self._bound[session.remote_id]
        if session.source is not None and not session.was_up:
            self._half_open -= 1
        source = session.source  # the host it was counted under, wherever it moved since
        if source is not None:
            held = self._by_source.get(source)
            if isinstance(held, list):
                held.remove(session.local_id)
                if len(held) == 1:
                    self._by_source[source] = held[0]
            elif held == session.local_id:
                del self._by_source[source]
