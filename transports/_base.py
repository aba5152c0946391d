"""What the UDP and TCP transports share: the event pipe, observability, back-off, the peer and
server interfaces, and turning a nursery's exception group back into one clear exception."""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from random import Random
from typing import Any

import trio

from hbproto import (
    CloseCode,
    Config,
    DownReason,
    Event,
    LocalStall,
    PeerDown,
    PeerRestarted,
    PeerUp,
    SessionClosed,
    SessionInfo,
)

from .address import Address, SockAddr
from .errors import ConnectFailed
from .events import Reconnecting

__all__ = ["NOTABLE", "Backoff", "Observer", "Peer", "Server", "event_fields"]

LOGGER = logging.getLogger("hbproto")

NOTABLE = (PeerUp, PeerDown, PeerRestarted, SessionClosed, LocalStall, Reconnecting)
"""The events logged at INFO: the ones that change what a session is, not routine samples."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential back-off with jitter between reconnection attempts.

    Attempt ``n`` waits between half and all of ``min(maximum, initial * factor**(n-1))``
    seconds, chosen at random, so that clients that lost one server together do not return to
    it together.
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum or self.factor < 1:
            raise ValueError("back-off needs 0 < initial <= maximum and factor >= 1")

    def delay(self, attempt: int, rng: Random) -> float:
        """Seconds to wait before reconnection ``attempt`` (1, 2, ...): half the backed-off
        delay, plus up to as much again at random."""
        base = min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))
        return base / 2 + rng.uniform(0, base / 2)


_REASONS = {
    DownReason.DETECTION_TIMEOUT: "heartbeats stopped",
    DownReason.PEER_REPORTED_DOWN: "the peer reported us down",
    DownReason.HANDSHAKE_TIMEOUT: "nothing answered the handshake",
    DownReason.TRANSPORT_CLOSED: "the connection closed without a CLOSE",
    DownReason.PROTOCOL_ERROR: "the peer does not speak hbproto (its bytes could not be framed)",
    DownReason.PARTIAL_FRAME_TIMEOUT: "a frame never finished arriving",
    DownReason.CONNECTION_RESET: "the connection was reset",
    DownReason.KERNEL_KEEPALIVE: "kernel keepalive probes went unanswered",
    DownReason.KERNEL_USER_TIMEOUT: "TCP_USER_TIMEOUT: sent data went unacknowledged",
    DownReason.SEND_BLOCKED: "the peer stopped reading",
}


def close_reason(code: int) -> str:
    """A CLOSE's reason code by its registered name (SPEC 13.4), or its number."""
    try:
        return CloseCode(code).name.lower()
    except ValueError:
        return f"code {code}"


def describe_reason(reason: DownReason) -> str:
    """Why a session went down, in words."""
    return _REASONS.get(reason, reason.value)


def event_fields(event: Event) -> dict[str, Any]:
    """An event as plain JSON-ready fields, with its type under ``event``."""
    out: dict[str, Any] = {"event": type(event).__name__}
    for f in fields(event):  # type: ignore[arg-type]
        out[f.name] = _plain(getattr(event, f.name))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value if not isinstance(value.value, int) else value.name.lower()
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value.hex()
    if isinstance(value, float):
        return None if math.isinf(value) else round(value, 6)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


class Observer:
    """Counts every event by type and logs it with structured fields.

    Up, down, restart, close, stall and reconnect events log at INFO, the rest (RTT samples,
    messages) at DEBUG, on ``logger`` (default: ``logging.getLogger("hbproto")``). The fields are
    in the record's ``hbproto`` attribute. ``on_event``, when given, is called with each event.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        on_event: Callable[[Event], None] | None = None,
        *,
        name: str = "",
    ) -> None:
        self.logger = logger or LOGGER
        self.on_event = on_event
        self.name = name
        self.counts: Counter[str] = Counter()

    def __call__(self, event: Event) -> None:
        kind = type(event).__name__
        self.counts[kind] += 1
        level = logging.INFO if isinstance(event, NOTABLE) else logging.DEBUG
        if self.logger.isEnabledFor(level):
            record = event_fields(event)
            if self.name:
                record["peer"] = self.name
            self.logger.log(level, "%s %s", kind, record, extra={"hbproto": record})
        if self.on_event is not None:
            self.on_event(event)


@contextmanager
def one_error() -> Iterator[None]:
    """Re-raise a nursery's exception group as its single real error [trio's strict groups].

    Cancellations from the nursery's own shutdown are dropped; if exactly one error remains it
    is raised alone, with its own traceback. Several distinct errors stay a group.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        real = [e for e in leaves if not isinstance(e, trio.Cancelled)]
        if len(real) == 1:
            raise real[0] from None
        if not real:
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


_YIELD_EVERY = 64  # events the application may take in a row without a checkpoint


class _EventPipe:
    """A bounded queue of events from the transport's task to the application.

    When it is full the transport waits: an application that stops taking events stops its own
    heartbeat, which is what a heartbeat in the business loop means. ``max_events`` bounds it.
    """

    def __init__(self, observer: Observer, max_events: int) -> None:
        self.observer = observer
        self._send, self._receive = trio.open_memory_channel[Event](max_events)
        self._taken = 0

    async def emit(self, event: Event) -> None:
        """Queue one event; wait only while the queue is full. Not a checkpoint otherwise:
        yielding per event would cost a task switch per RTT sample, and the driver's loop
        yields once per wake-up anyway."""
        self.observer(event)
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            with suppress(trio.BrokenResourceError):
                await self._send.send(event)
        except trio.BrokenResourceError:  # the application stopped listening
            pass

    def finish(self) -> None:
        self._send.close()

    async def next(self) -> Event:
        """The next event. A waiting event is taken without a checkpoint, except every
        ``_YIELD_EVERY``-th: a busy server's RTT samples would otherwise cost the application
        a trip through the scheduler each, and cancellation is still seen promptly."""
        self._taken += 1
        if self._taken % _YIELD_EVERY:
            try:
                return self._receive.receive_nowait()
            except trio.WouldBlock:
                pass
            except trio.EndOfChannel:
                raise StopAsyncIteration from None
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


class _Common(ABC):
    """The parts of :class:`Peer` and :class:`Server` that are the same."""

    def __init__(
        self,
        address: Address,
        config: Config,
        *,
        observer: Observer,
        max_events: int,
    ) -> None:
        self.address = address
        self.config = config
        self.observer = observer
        self._pipe = _EventPipe(observer, max_events)
        self.transport_counters: Counter[str] = Counter()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        return await self._pipe.next()

    @property
    def event_counts(self) -> Counter[str]:
        """How many events of each type were reported."""
        return self.observer.counts

    @property
    @abstractmethod
    def counters(self) -> Counter[str]:
        """The core's drop and protocol counters (SPEC 13.5) plus the transport's own."""


class Peer(_Common):
    """One session to a remote endpoint, over UDP or TCP, as initiator.

    Iterate it (``async for event in peer``) for the core's events and the transport's; the
    iteration ends when the peer is finished: closed, or its session ended and it was not asked
    to reconnect. :attr:`end_reason` then says why, and :attr:`failure` if it never came up.
    """

    end_reason: str | None = None
    failure: ConnectFailed | None = None
    """Why the peer never got a session, when it finished that way (also raised by
    :meth:`wait_up`)."""

    def __init__(
        self, address: Address, config: Config, *, observer: Observer, max_events: int
    ) -> None:
        super().__init__(address, config, observer=observer, max_events=max_events)
        self._up = False
        self._finished = trio.Event()
        self._changed = trio.Event()  # replaced after each change of _up or _finished

    @property
    def is_up(self) -> bool:
        """Whether the session is UP now."""
        return self._up

    @property
    def finished(self) -> bool:
        """True once the peer is closed, or lost its session and was not asked to reconnect."""
        return self._finished.is_set()

    async def wait_up(self) -> None:
        """Return once the session is UP; raise :class:`ConnectFailed` if the peer finished."""
        while not self._up:
            if self._finished.is_set():
                raise self.failure or ConnectFailed(f"{self.address}: {self.end_reason}")
            await self._changed.wait()

    async def wait_finished(self) -> None:
        """Wait until the peer has stopped for good (closed, or out of reconnection)."""
        await self._finished.wait()

    def _signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @property
    @abstractmethod
    def session(self) -> int | None:
        """The handle of the current session, if one is open."""

    @property
    @abstractmethod
    def local_address(self) -> SockAddr | None:
        """The local address of the socket or connection, once there is one."""

    @abstractmethod
    async def send(self, data: bytes) -> None:
        """Send an application message on the session (a DATA frame); it must be UP."""

    @abstractmethod
    async def close(self, code: int = CloseCode.SHUTDOWN, text: str | None = None) -> None:
        """Close the session with a reason and finish the peer. Idempotent."""

    @abstractmethod
    def snapshot(self) -> SessionInfo | None:
        """State, RTT, last seen, misses and negotiated values of the current session."""

    @abstractmethod
    def set_piggyback(self, data: bytes | None) -> None:
        """Carry ``data`` (at most 128 bytes) in every HEARTBEAT from now on."""


class Server(_Common):
    """A responder: accepts sessions from many peers on one address."""

    _ADDRESSES_KEPT = 10_000

    def __init__(
        self, address: Address, config: Config, *, observer: Observer, max_events: int
    ) -> None:
        super().__init__(address, config, observer=observer, max_events=max_events)
        self._addresses: OrderedDict[int, SockAddr] = OrderedDict()

    def address_of(self, session: int) -> SockAddr | None:
        """The peer's address: where the session is now, or, for a session that has ended
        since, where it was at its latest up, down, restart or close event (kept for the latest
        10,000 sessions)."""
        live = self._live_address(session)
        return live if live is not None else self._addresses.get(session)

    @abstractmethod
    def _live_address(self, session: int) -> SockAddr | None:
        """The address of a session the transport still holds."""

    def _note_address(self, session: int, address: SockAddr) -> None:
        addresses = self._addresses
        if addresses.get(session) != address:
            addresses[session] = address
            addresses.move_to_end(session)
            if len(addresses) > self._ADDRESSES_KEPT:
                addresses.popitem(last=False)  # the oldest: this map stays bounded

    @property
    @abstractmethod
    def local_address(self) -> SockAddr:
        """The address actually bound (with the port chosen, when 0 was asked for)."""

    @abstractmethod
    async def send(self, session: int, data: bytes) -> None:
        """Send an application message to one peer's session; it must be UP."""

    @abstractmethod
    async def close_session(
        self, session: int, code: int = CloseCode.SHUTDOWN, text: str | None = None
    ) -> None:
        """Close one peer's session with a reason."""

    @abstractmethod
    def snapshot(self, session: int) -> SessionInfo:
        """State, RTT, last seen, misses and negotiated values of one session."""

    @abstractmethod
    def set_piggyback(self, session: int, data: bytes | None) -> None:
        """Carry ``data`` (at most 128 bytes) in one session's HEARTBEATs from now on."""

    @abstractmethod
    def sessions(self) -> list[SessionInfo]:
        """A snapshot of every session held."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close every session with ``shutdown`` and stop serving. Idempotent."""
