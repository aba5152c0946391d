"""hbproto over TCP with trio: one :class:`~hbproto.Connection` per connection.

:class:`StreamDriver` runs one connection with two tasks. The reader waits for bytes or for the
core's next deadline, whichever comes first, feeds the core, runs its timers and hands its
events to the application. The writer sends what the core produced, so a peer that stops
reading can block only the writer: the reader's timers still run, and a write that stays blocked
for longer than the detection time ends the connection [HB-TCP-9]. Kernel keepalive and
TCP_USER_TIMEOUT can be set on the socket as well [HB-TCP-10]; whichever mechanism ends the
connection first is the one :class:`~hbproto.PeerDown` names.
"""

from __future__ import annotations

import errno
import math
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from random import Random
from typing import Any

import trio

from hbproto import (
    CloseCode,
    Config,
    Connection,
    ConnectionEnded,
    DownReason,
    Event,
    Limits,
    LocalProtocolError,
    PeerDown,
    PeerUp,
    SessionClosed,
    SessionInfo,
)

from ._base import Backoff, Observer, Peer, Server, close_reason, describe_reason
from .address import Address, SockAddr
from .errors import ConnectFailed, NotConnected, os_reason
from .events import Reconnecting, TransportOpened
from .kernel import KernelTimeouts, classify_failure

__all__ = ["DEFAULT_TCP_LIMITS", "StreamDriver", "TcpPeer", "TcpServer"]

_RECEIVE_SIZE = 65536
_HIGH_WATER = 1 << 20  # bytes queued for the writer before send() makes the application wait
_LINGER_MAX = 1.0  # longest wait for the peer's end of stream after our CLOSE [HB-TCP-6]
_ACCEPT_PAUSE = 0.1  # after the kernel could not accept for lack of descriptors or memory
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_REFUSALS_LOGGED_EVERY = 10.0  # seconds between log lines while one limit keeps refusing

DEFAULT_TCP_LIMITS = Limits(max_sessions=10_000, max_half_open=1_000, max_per_source=100)
"""What a TCP server holds unless ``serve(..., limits=...)`` says otherwise [HB-SES-3],
[HB-SEC-3]: 10,000 connections, of which 1,000 whose session is not yet UP and 100 from any one
source host. Each connection costs a descriptor and up to one incomplete frame of buffer
(64 KiB), for at most HANDSHAKE_TIMEOUT before its session is UP ([HB-TCP-4], [HB-TCP-11]).
``max_frame`` does not apply: TCP carries frames of up to 65535 bytes [HB-RX-3]."""


def _socket_of(stream: trio.abc.Stream) -> Any:
    return stream.socket if isinstance(stream, trio.SocketStream) else None


def _addresses(stream: trio.abc.Stream) -> tuple[SockAddr, SockAddr]:
    sock = _socket_of(stream)
    if sock is None:
        return ("memory", 0), ("memory", 0)
    local, remote = sock.getsockname(), sock.getpeername()
    return (str(local[0]), int(local[1])), (str(remote[0]), int(remote[1]))


class StreamDriver:
    """Drives one :class:`~hbproto.Connection` over one trio stream until it ends."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: Connection,
        emit: Callable[[Event], Awaitable[None]],
        counters: Counter[str],
    ) -> None:
        self.stream = stream
        self.conn = conn
        self._emit = emit
        self.counters = counters
        self._out = bytearray()
        self._out_ready = trio.Event()
        self._room = trio.Event()
        self._room.set()
        self._wait: trio.CancelScope | None = None
        self._writing_since: float | None = None
        self._idle = trio.Event()  # set while the writer has nothing queued or in flight
        self._idle.set()
        self._broken = False

    # --- For the application's verbs ----------------------------------------------------------

    def flush(self) -> None:
        """Queue what the core has to send, wake the writer, and re-arm the reader's wait."""
        data = self.conn.data_to_send()
        if data:
            self._out += data
            self._out_ready.set()
            if self._idle.is_set():
                self._idle = trio.Event()
            if len(self._out) > _HIGH_WATER and self._room.is_set():
                self._room = trio.Event()
        self._rearm()

    async def wait_for_room(self) -> None:
        """Wait until the writer's queue is below the high-water mark (back-pressure)."""
        await self._room.wait()

    def _rearm(self) -> None:
        wait = self._wait
        if wait is not None:
            wait.deadline = -math.inf if self.conn.events else self._deadline()

    def _deadline(self) -> float:
        timer = self.conn.get_timer()
        deadline = math.inf if timer is None else timer
        stalled = self._stall_deadline()
        return deadline if stalled is None else min(deadline, stalled)

    def _stall_deadline(self) -> float | None:
        """[HB-TCP-9]: when a blocked write means the peer is not reading."""
        if self._writing_since is None:
            return None
        dt = self.conn.session.dt_us
        if dt is None:  # [HB-DET-9]
            return self._writing_since + self.conn.config.handshake_timeout
        return self._writing_since + dt / 1_000_000

    # --- The tasks ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until the connection ends; then flush, shut down and close the stream."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                await self._reader()
                await self._finish()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    async def _reader(self) -> None:
        conn = self.conn
        while True:
            self.flush()
            while (event := conn.next_event()) is not None:
                await self._emit(event)
            if conn.ended:
                return
            now = trio.current_time()
            timer = conn.get_timer()
            if timer is not None and timer <= now:
                conn.handle_timer(now)
                await trio.lowlevel.checkpoint()  # let the application take what it caused
                continue
            stalled = self._stall_deadline()
            if stalled is not None and stalled <= now:
                exp = conn.session.exp_us
                since = self._writing_since
                if since is not None and exp is not None and now - stalled > exp / 1_000_000:
                    # Found this late, the deadline passed while this process was stalled, not
                    # while the peer refused to read: as [HB-STALL-1] does for the detection
                    # timer, give the write ExpectedRemote more before judging the peer.
                    self._writing_since = since + (now - stalled) + exp / 1_000_000
                    continue
                self.counters["send_blocked"] += 1
                conn.transport_failed(DownReason.SEND_BLOCKED, now)
                continue
            with trio.CancelScope(deadline=self._deadline()) as wait:
                self._wait = wait
                try:
                    data = await self.stream.receive_some(_RECEIVE_SIZE)
                except trio.BrokenResourceError as exc:
                    self._failed(exc)
                else:
                    conn.receive_data(bytes(data), trio.current_time())
            self._wait = None

    async def _writer(self) -> None:
        while True:
            if not self._out:
                self._idle.set()
                self._out_ready = trio.Event()
                await self._out_ready.wait()
                continue
            chunk = bytes(self._out)
            self._out.clear()
            self._writing_since = trio.current_time()
            self._rearm()
            try:
                await self.stream.send_all(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._failed(exc)
                self._idle.set()
                return
            finally:
                self._writing_since = None
            if len(self._out) <= _HIGH_WATER:
                self._room.set()

    def _failed(self, exc: BaseException) -> None:
        """The kernel reported an error: name the mechanism and end the connection."""
        self._broken = True
        cause = exc.__cause__ or exc.__context__
        reason = classify_failure(cause, _socket_of(self.stream))
        self.counters[reason.value] += 1
        self.conn.transport_failed(reason, trio.current_time())
        self._rearm()

    async def _finish(self) -> None:
        """Send the CLOSE still queued, shut down our side, and give the peer a moment to read
        it before the socket closes, so that a reset cannot destroy it [HB-TCP-6]."""
        if self._broken:
            return
        session = self.conn.session
        if session.srtt is not None:
            linger = max(4 * session.srtt, 0.05)
        else:  # a responder measures no RTT: a detection time is long enough for anyone
            linger = _LINGER_MAX if session.dt_us is None else session.dt_us / 1_000_000
        with trio.move_on_after(min(linger, _LINGER_MAX)):
            await self._idle.wait()
            if self._broken:
                return
            try:
                if isinstance(self.stream, trio.abc.HalfCloseableStream):
                    await self.stream.send_eof()
                while await self.stream.receive_some(_RECEIVE_SIZE):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # a reset now costs nothing: the session has already ended


class _Links:
    """The connections a TCP endpoint holds, by session handle (unique within it)."""

    def __init__(self) -> None:
        self.by_session: dict[int, StreamDriver] = {}

    def new_id(self) -> int:
        while True:
            candidate = secrets.randbits(32)
            if candidate and candidate not in self.by_session:
                return candidate

    def get(self, session: int) -> StreamDriver:
        try:
            return self.by_session[session]
        except KeyError:
            raise NotConnected(f"no session {session:#010x}") from None


async def _send_on(driver: StreamDriver, data: bytes) -> None:
    try:
        driver.conn.send(data, trio.current_time())
    except LocalProtocolError as exc:
        raise NotConnected(str(exc)) from None
    driver.conn.note_activity(trio.current_time())
    driver.flush()
    await driver.wait_for_room()
    await trio.lowlevel.checkpoint()


class TcpServer(Server):
    """A TCP responder: one connection, one session, per peer [HB-TCP-2].

    ``limits`` bounds the connections it holds: in all (``max_sessions``), whose session is not
    yet UP (``max_half_open``), and from one source host (``max_per_source``); default
    :data:`DEFAULT_TCP_LIMITS`. A connection beyond them is closed at once and counted
    (``refused``); a limit that starts refusing is logged, and then every 10 s while it goes on
    refusing. A connection whose session does not
    come up within HANDSHAKE_TIMEOUT is closed by its core ([HB-TCP-11]; counted
    ``handshake_timeout``), and so is one that leaves a frame unfinished ([HB-TCP-4];
    ``partial_frame_timeout``).
    """

    def __init__(
        self,
        address: Address,
        listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
        config: Config,
        *,
        kernel: KernelTimeouts | None = None,
        limits: Limits | None = None,
        observer: Observer,
        max_events: int = 1024,
        rng: Random | None = None,
    ) -> None:
        super().__init__(address, config, observer=observer, max_events=max_events)
        self.listeners = listeners
        self.kernel = kernel
        self.limits = limits or DEFAULT_TCP_LIMITS
        self.rng = rng or Random()
        self._links = _Links()
        self._remotes: dict[int, SockAddr] = {}
        self._half_open: set[int] = set()  # sessions whose connection is not yet UP
        self._per_host: Counter[str] = Counter()
        self._refusing: str | None = None  # the limit named in the latest refusal log line
        self._refusals_logged_at = -math.inf
        self._refused_unlogged = 0
        self._all_gone = trio.Event()
        self._core_counters: Counter[str] = Counter()
        self._nursery: trio.Nursery | None = None
        self._closed = False

    @property
    def local_address(self) -> SockAddr:
        first = self.listeners[0] if self.listeners else None
        if not isinstance(first, trio.SocketListener):
            return ("memory", 0)
        name = first.socket.getsockname()
        return (str(name[0]), int(name[1]))

    @property
    def counters(self) -> Counter[str]:
        total = self._core_counters + self.transport_counters
        for driver in self._links.by_session.values():
            total += driver.conn.counters
        return total

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for listener in self.listeners:
                    nursery.start_soon(self._accept, listener)
        finally:
            self._pipe.finish()

    async def _accept(self, listener: trio.abc.Listener[trio.abc.Stream]) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in _RESOURCE_ERRNOS:
                        raise
                    # Out of descriptors or memory: connections wait in the kernel's backlog
                    # until some close; the server goes on serving those it holds.
                    self.transport_counters["accept_failed"] += 1
                    self._note_refusal(f"the kernel cannot accept ({os_reason(exc)})", None)
                    await trio.sleep(_ACCEPT_PAUSE)
                    continue
                assert self._nursery is not None
                self._nursery.start_soon(self.handle_stream, stream)

    def _refusal(self, host: str) -> str | None:
        """The limit that refuses a new connection from ``host``, if one does [HB-SES-3]."""
        limits = self.limits
        if self._closed:
            return "the server is closing"
        if len(self._links.by_session) >= limits.max_sessions:
            return f"max_sessions={limits.max_sessions} connections"
        if len(self._half_open) >= limits.max_half_open:
            return f"max_half_open={limits.max_half_open} connections not yet UP"
        if self._per_host[host] >= limits.max_per_source:
            return f"max_per_source={limits.max_per_source} connections from {host}"
        return None

    def _note_refusal(self, why: str, remote: SockAddr | None) -> None:
        """Log a refusal when a limit starts refusing, and then at most every 10 s with the
        number refused meanwhile: a flood must not flood the log."""
        self._refused_unlogged += 1
        now = trio.current_time()
        if why == self._refusing and now < self._refusals_logged_at + _REFUSALS_LOGGED_EVERY:
            return
        count, self._refused_unlogged = self._refused_unlogged, 0
        self._refusing, self._refusals_logged_at = why, now
        record = {"event": "Refusing", "why": why, "refused": count, "remote": remote}
        record["peer"] = str(self.address)
        self.observer.logger.warning(
            "refusing TCP connections: %s (%d since the last such line)",
            why,
            count,
            extra={"hbproto": record},
        )

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one accepted stream until its connection ends (the accept loop calls this;
        tests call it with in-memory streams). A stream beyond :attr:`limits` is closed."""
        try:
            local, remote = _addresses(stream)
        except OSError:  # reset before it was served: nothing to serve, and no reason to fail
            self.transport_counters["accept_failed"] += 1
            await trio.aclose_forcefully(stream)
            return
        host = remote[0]
        refusal = self._refusal(host)
        if refusal is not None:
            self.transport_counters["refused"] += 1
            self._note_refusal(refusal, remote)
            await trio.aclose_forcefully(stream)
            return
        kernel = KernelTimeouts()
        sock = _socket_of(stream)
        if sock is not None:
            kernel = (self.kernel or KernelTimeouts()).apply(sock)
        conn = Connection(
            self.config,
            initiator=False,
            now=trio.current_time(),
            rng=self.rng,
            id_source=self._links.new_id,
        )
        session = conn.session_id

        async def emit(event: Event) -> None:
            if isinstance(event, PeerUp):
                self._half_open.discard(session)
            elif (
                isinstance(event, ConnectionEnded) and event.reason is DownReason.HANDSHAKE_TIMEOUT
            ):
                self.transport_counters["handshake_timeout"] += 1
            await self._pipe.emit(event)

        driver = StreamDriver(stream, conn, emit, self.transport_counters)
        self._links.by_session[session] = driver
        self._half_open.add(session)
        self._per_host[host] += 1
        self._remotes[session] = remote
        self._note_address(session, remote)
        try:
            await self._pipe.emit(TransportOpened(session, local, remote, kernel))
            await driver.run()
        finally:
            del self._links.by_session[session]
            del self._remotes[session]
            self._half_open.discard(session)
            self._per_host[host] -= 1
            if not self._per_host[host]:
                del self._per_host[host]
            self._core_counters += conn.counters
            if not self._links.by_session:
                self._all_gone.set()

    async def send(self, session: int, data: bytes) -> None:
        await _send_on(self._links.get(session), data)

    async def close_session(
        self, session: int, code: int = CloseCode.SHUTDOWN, text: str | None = None
    ) -> None:
        driver = self._links.get(session)
        driver.conn.close(trio.current_time(), code, text)
        driver.flush()
        await trio.lowlevel.checkpoint()

    def _live_address(self, session: int) -> SockAddr | None:
        return self._remotes.get(session)

    def snapshot(self, session: int) -> SessionInfo:
        info = self._links.get(session).conn.snapshot(trio.current_time())
        info.address = self._remotes.get(session)
        return info

    def set_piggyback(self, session: int, data: bytes | None) -> None:
        self._links.get(session).conn.set_piggyback(data)

    def sessions(self) -> list[SessionInfo]:
        return [self.snapshot(session) for session in list(self._links.by_session)]

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        now = trio.current_time()
        for driver in list(self._links.by_session.values()):
            driver.conn.close(now)
            driver.flush()
        if self._links.by_session:
            self._all_gone = trio.Event()
            with trio.move_on_after(2 * _LINGER_MAX):
                await self._all_gone.wait()


StreamOpener = Callable[[], Awaitable[trio.abc.Stream]]


class TcpPeer(Peer):
    """A TCP initiator: one connection, one session, to one server.

    ``open_stream`` makes the connection (default: ``trio.open_tcp_stream`` to ``address``).
    Without ``reconnect`` the peer finishes when its connection ends; with it, the peer opens a
    new connection after a back-off with jitter, reported as :class:`Reconnecting`.
    """

    def __init__(
        self,
        address: Address,
        config: Config,
        *,
        kernel: KernelTimeouts | None = None,
        reconnect: Backoff | None = None,
        observer: Observer,
        max_events: int = 1024,
        rng: Random | None = None,
        open_stream: StreamOpener | None = None,
    ) -> None:
        super().__init__(address, config, observer=observer, max_events=max_events)
        self.kernel = kernel
        self.reconnect = reconnect
        self.rng = rng or Random()
        self._open_stream = open_stream or self._open_tcp
        self._driver: StreamDriver | None = None
        self._piggyback: bytes | None = None
        self._local: SockAddr | None = None
        self._core_counters: Counter[str] = Counter()
        self._close_request: tuple[int, str | None] | None = None
        self._up_once = False  # the current connection's session came up
        self._refusals = 0  # refusals since a session last came up [HB-CLOSE-6]
        self._refused_until: float | None = None
        self._ended_reason = ""

    # --- Peer interface -----------------------------------------------------------------------

    @property
    def session(self) -> int | None:
        return None if self._driver is None else self._driver.conn.session_id

    @property
    def local_address(self) -> SockAddr | None:
        return self._local

    @property
    def counters(self) -> Counter[str]:
        total = self._core_counters + self.transport_counters
        if self._driver is not None:
            total += self._driver.conn.counters
        return total

    async def send(self, data: bytes) -> None:
        if self._driver is None or not self._up:
            await trio.lowlevel.checkpoint()
            raise NotConnected(f"no session is up with {self.address}")
        await _send_on(self._driver, data)

    async def close(self, code: int = CloseCode.SHUTDOWN, text: str | None = None) -> None:
        await trio.lowlevel.checkpoint()
        if self._finished.is_set() or self._close_request is not None:
            return
        self._close_request = (code, text)
        if self.end_reason is None:
            self.end_reason = "closed"
        driver = self._driver
        if driver is not None and not driver.conn.ended:
            driver.conn.close(trio.current_time(), code, text)
            driver.flush()
        else:
            self._finish()

    def snapshot(self) -> SessionInfo | None:
        if self._driver is None:
            return None
        return self._driver.conn.snapshot(trio.current_time())

    def set_piggyback(self, data: bytes | None) -> None:
        self._piggyback = data
        if self._driver is not None:
            self._driver.conn.set_piggyback(data)

    # --- The task -----------------------------------------------------------------------------

    async def _open_tcp(self) -> trio.abc.Stream:
        try:
            return await trio.open_tcp_stream(self.address.host, self.address.port)
        except OSError as exc:
            # trio tries every address and wraps the failures in a group: report the first.
            group = exc.__cause__
            if isinstance(group, BaseExceptionGroup):
                first = group.exceptions[0]
                if isinstance(first, OSError):
                    raise first from None
            raise

    async def run(self) -> None:
        """Connect, serve the connection, and reconnect if asked, until the peer finishes."""
        attempt = 0
        try:
            while self._close_request is None:
                reason = await self._one_connection()
                if self._close_request is not None:
                    break
                if self._up_once:
                    attempt = 0
                if self.reconnect is None:
                    if not self._up_once:
                        self.failure = ConnectFailed(
                            f"cannot open a session with {self.address}: {reason}"
                        )
                    self.end_reason = reason
                    break
                attempt += 1
                delay = self.reconnect.delay(attempt, self.rng)
                if self._refused_until is not None:  # [HB-CLOSE-6]
                    delay = max(delay, self._refused_until - trio.current_time())
                await self._pipe.emit(Reconnecting(attempt, delay, reason))
                await trio.sleep(delay)
        finally:
            self._finish()
            self._pipe.finish()

    async def _one_connection(self) -> str:
        """Open one connection and serve it until it ends; say why it ended."""
        self._up_once = False
        try:
            with trio.fail_after(self.config.handshake_timeout):
                stream = await self._open_stream()
        except OSError as exc:
            return os_reason(exc)
        except trio.TooSlowError:
            return f"no connection within {self.config.handshake_timeout:g} s"
        try:
            self._local, remote = _addresses(stream)
        except OSError as exc:  # reset as soon as it opened
            await trio.aclose_forcefully(stream)
            return os_reason(exc)
        kernel = KernelTimeouts()
        sock = _socket_of(stream)
        if sock is not None:
            kernel = (self.kernel or KernelTimeouts()).apply(sock)
        conn = Connection(self.config, initiator=True, now=trio.current_time(), rng=self.rng)
        if self._piggyback is not None:
            conn.set_piggyback(self._piggyback)
        driver = StreamDriver(stream, conn, self._on_event, self.transport_counters)
        self._driver = driver
        self._ended_reason = ""
        try:
            await self._pipe.emit(TransportOpened(conn.session_id, self._local, remote, kernel))
            await driver.run()
        finally:
            self._core_counters += conn.counters
            self._driver = None
            self._up = False
        return self._ended_reason or "the connection ended"

    async def _on_event(self, event: Event) -> None:
        # The state changes before the application sees the event, so it can act on it at once.
        if isinstance(event, PeerUp):
            self._up = self._up_once = True
            self._refusals, self._refused_until = 0, None
            self._signal()
        elif isinstance(event, PeerDown):
            self._up = False
            self._ended_reason = describe_reason(event.reason)
        elif isinstance(event, SessionClosed):
            self._up = False
        if isinstance(event, SessionClosed) and event.by_peer:
            self._ended_reason = f"closed by the peer ({close_reason(event.code)})"
            if event.code == CloseCode.REFUSED:
                # [HB-CLOSE-6]: 2 s, 4 s, ... up to 60 s after the n-th refusal, plus up to 25 %.
                self._refusals += 1
                wait = min(2.0**self._refusals, 60.0) * (1 + 0.25 * self.rng.random())
                self._refused_until = trio.current_time() + wait
        elif isinstance(event, ConnectionEnded) and event.reason is not None:
            # The reason of a PeerDown or CLOSE before it says more; else this one does.
            self._ended_reason = self._ended_reason or describe_reason(event.reason)
        await self._pipe.emit(event)

    def _finish(self) -> None:
        if not self._finished.is_set():
            if self.end_reason is None:
                self.end_reason = "closed"
            self._finished.set()
            self._signal()
