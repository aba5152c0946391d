"""hbproto over UDP with trio: one socket, one :class:`~hbproto.Endpoint`, one task.

:class:`UdpDriver` is the whole loop. It waits until the socket is readable or the core's next
deadline (:meth:`~hbproto.Endpoint.get_timer`) comes, drains every waiting datagram without
blocking, sends what the core says, hands the core's events to the application, and waits again.
When the application acts (sends, closes, changes parameters) the driver sends at once and
re-arms its wait, because the deadline may have moved. No task per peer: an idle session costs
one entry in the core's timer heap.

A busy driver coalesces its wake-ups, as a network card moderates its interrupts: once it has
moved more than ``BUSY_RATE`` datagrams a second (in and out) over the last second, it wakes at
most once every ``COALESCE`` seconds and serves every datagram and every timer that came due
meanwhile in that one wake-up. With thousands of sessions most of the loop's cost is waking up,
not the protocol; this adds at most ``COALESCE`` to a timer's lateness and to an ACK's delay,
well inside the SPEC's allowance ([HB-DET-3] lets a down come 10 ms late). A loop with a few
sessions never gets busy and wakes for each datagram and each timer, as before.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable
from random import Random
from typing import cast

import trio

from hbproto import (
    CloseCode,
    Config,
    DownReason,
    Endpoint,
    Event,
    Limits,
    LocalProtocolError,
    PeerDown,
    PeerUp,
    SessionClosed,
    SessionInfo,
    State,
)

from ._base import NOTABLE, Backoff, Observer, Peer, Server, close_reason, describe_reason
from .address import Address, SockAddr
from .datagram import DatagramSocket
from .errors import ConnectFailed, NotConnected, os_reason
from .events import Reconnecting

__all__ = ["UdpDriver", "UdpPeer", "UdpServer"]

_BATCH = 512  # datagrams taken per wake-up before the core's timers and events get a turn
COALESCE = 0.001  # seconds: a busy loop's shortest gap between wake-ups
BUSY_RATE = 2_000  # datagrams a second, in and out, above which a loop is busy


class UdpDriver:
    """Drives one :class:`~hbproto.Endpoint` over one datagram socket from one task."""

    def __init__(
        self,
        sock: DatagramSocket,
        endpoint: Endpoint,
        emit: Callable[[Event], Awaitable[None]],
        counters: Counter[str],
        *,
        on_socket_error: Callable[[OSError], None] | None = None,
        on_new_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.sock = sock
        self.endpoint = endpoint
        self._emit = emit
        self.counters = counters
        self._on_socket_error = on_socket_error
        self._on_new_event = on_new_event
        self._wait: trio.CancelScope | None = None

    def flush(self) -> None:
        """Send what the core has to send now and re-arm the wait (the deadline may have moved).

        Call it after every verb on the endpoint.
        """
        now = trio.current_time()
        for data, addr in self.endpoint.datagrams_to_send(now):
            self._send(data, addr)
        wait = self._wait
        if wait is not None:
            if self.endpoint.events:
                wait.deadline = -math.inf  # events to hand over: wake up now
            else:  # only ever earlier: a coalescing wait must still end on time
                timer = self.endpoint.get_timer()
                if timer is not None and timer < wait.deadline:
                    wait.deadline = timer

    async def run(self) -> None:
        """Run until cancelled."""
        endpoint = self.endpoint
        sock = self.sock
        busy = False
        woke = window_start = trio.current_time()
        moved = 0  # datagrams in and out since window_start
        drained = True  # the last wake-up emptied the socket
        while True:
            now = trio.current_time()
            out = endpoint.datagrams_to_send(now)
            for data, addr in out:
                self._send(data, addr)
            moved += len(out)
            while (event := endpoint.next_event()) is not None:
                await self._emit(event)
            timer = endpoint.get_timer()
            now = trio.current_time()
            if timer is not None and timer <= now:
                await trio.lowlevel.checkpoint()  # behind: still let the application run
                continue
            if now - window_start >= 1.0:
                busy = moved > BUSY_RATE * (now - window_start)
                window_start, moved = now, 0
            deadline = math.inf if timer is None else timer
            with trio.CancelScope(deadline=deadline) as wait:
                self._wait = wait
                if busy and drained and now < woke + COALESCE:
                    wait.deadline = woke + COALESCE  # let datagrams and timers gather
                    await trio.sleep_forever()
                else:
                    await sock.wait_readable()
            self._wait = None
            now = woke = trio.current_time()
            events = endpoint.events
            seen = len(events)
            drained = False
            for _ in range(_BATCH):
                try:
                    got = sock.recv_nowait()
                except OSError as exc:  # an ICMP error about an earlier send
                    self._socket_error(exc)
                    continue
                if got is None:
                    drained = True
                    break
                moved += 1
                endpoint.receive_datagram(got[0], got[1], now)
                if len(events) > seen and self._on_new_event is not None:
                    # Shown while its session still exists: a CLOSE later in this batch may
                    # delete it before the event reaches the application.
                    for i in range(seen, len(events)):
                        self._on_new_event(events[i])
                    seen = len(events)

    def _send(self, data: bytes, addr: Hashable) -> None:
        try:
            sent = self.sock.send_nowait(data, cast(SockAddr, addr))  # what recv_nowait gave
        except OSError as exc:
            self._socket_error(exc)
            return
        if not sent:
            self.counters["send_buffer_full"] += 1  # lost like any datagram: the SPEC copes

    def _socket_error(self, exc: OSError) -> None:
        self.counters["socket_error"] += 1
        if self._on_socket_error is not None:
            self._on_socket_error(exc)


class UdpServer(Server):
    """A UDP responder: every peer's session on one socket."""

    def __init__(
        self,
        address: Address,
        sock: DatagramSocket,
        config: Config,
        *,
        limits: Limits | None = None,
        observer: Observer,
        max_events: int = 1024,
        rng: Random | None = None,
    ) -> None:
        super().__init__(address, config, observer=observer, max_events=max_events)
        self.endpoint = Endpoint(config, accept=True, limits=limits, rng=rng)
        self.sock = sock
        self.driver = UdpDriver(
            sock,
            self.endpoint,
            self._emit,
            self.transport_counters,
            on_new_event=self._note_session,
        )
        self._closed = False

    @property
    def local_address(self) -> SockAddr:
        return self.sock.local_address

    @property
    def counters(self) -> Counter[str]:
        return self.endpoint.counters + self.transport_counters

    def _live_address(self, session: int) -> SockAddr | None:
        held = self.endpoint.sessions.get(session)
        return None if held is None else cast(SockAddr, held.addr)

    def _note_session(self, event: Event) -> None:
        if isinstance(event, NOTABLE):  # not per RTT sample: those come by the thousand
            session = self.endpoint.sessions.get(getattr(event, "session", 0))
            if session is not None:
                self._note_address(session.local_id, cast(SockAddr, session.addr))

    async def _emit(self, event: Event) -> None:
        self._note_session(event)
        await self._pipe.emit(event)

    async def run(self) -> None:
        try:
            await self.driver.run()
        finally:
            self.sock.close()
            self._pipe.finish()

    async def send(self, session: int, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        try:
            self.endpoint.send(session, data, trio.current_time())
        except LocalProtocolError as exc:
            raise NotConnected(str(exc)) from None
        self.driver.flush()

    async def close_session(
        self, session: int, code: int = CloseCode.SHUTDOWN, text: str | None = None
    ) -> None:
        await trio.lowlevel.checkpoint()
        try:
            self.endpoint.close(session, trio.current_time(), code, text)
        except LocalProtocolError as exc:
            raise NotConnected(str(exc)) from None
        self.driver.flush()

    def snapshot(self, session: int) -> SessionInfo:
        try:
            return self.endpoint.snapshot(session, trio.current_time())
        except LocalProtocolError as exc:
            raise NotConnected(str(exc)) from None

    def set_piggyback(self, session: int, data: bytes | None) -> None:
        try:
            self.endpoint.set_piggyback(session, data)
        except LocalProtocolError as exc:
            raise NotConnected(str(exc)) from None

    def sessions(self) -> list[SessionInfo]:
        now = trio.current_time()
        return [s.info(now) for s in self.endpoint.sessions.values()]

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        now = trio.current_time()
        for session in list(self.endpoint.sessions.values()):
            if session.state is not State.CLOSED:
                self.endpoint.close(session.local_id, now)
        self.driver.flush()
        await trio.lowlevel.checkpoint()


class UdpPeer(Peer):
    """A UDP initiator: one session to one remote address, on a socket of its own.

    Without ``reconnect`` the peer finishes when its session leaves UP or never gets there.
    With it, a session that went DOWN keeps trying by itself, as the SPEC says, and a session
    the remote closed is opened again after a back-off; each is reported as
    :class:`~transports.events.Reconnecting`.
    """

    def __init__(
        self,
        address: Address,
        sock: DatagramSocket,
        remote: SockAddr,
        config: Config,
        *,
        reconnect: Backoff | None = None,
        observer: Observer,
        max_events: int = 1024,
        rng: Random | None = None,
    ) -> None:
        super().__init__(address, config, observer=observer, max_events=max_events)
        self.rng = rng or Random()
        self.endpoint = Endpoint(config, rng=self.rng)
        self.sock = sock
        self.remote = remote
        self.reconnect = reconnect
        self.driver = UdpDriver(
            sock,
            self.endpoint,
            self._on_event,
            self.transport_counters,
            on_socket_error=self._socket_error,
        )
        self._session: int | None = None
        self._attempt = 0
        self._piggyback: bytes | None = None
        self._nursery: trio.Nursery | None = None
        self._ever_up = False

    # --- Peer interface -----------------------------------------------------------------------

    @property
    def session(self) -> int | None:
        return self._session

    @property
    def local_address(self) -> SockAddr:
        return self.sock.local_address

    @property
    def counters(self) -> Counter[str]:
        return self.endpoint.counters + self.transport_counters

    async def send(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        if self._session is None or not self._up:
            raise NotConnected(f"no session is up with {self.address}")
        now = trio.current_time()
        self.endpoint.send(self._session, data, now)
        self.endpoint.note_activity(self._session, now)
        self.driver.flush()

    async def close(self, code: int = CloseCode.SHUTDOWN, text: str | None = None) -> None:
        await trio.lowlevel.checkpoint()
        self._finish("closed", code, text)

    def snapshot(self) -> SessionInfo | None:
        if self._session not in self.endpoint.sessions:
            return None
        return self.endpoint.snapshot(self._session, trio.current_time())

    def set_piggyback(self, data: bytes | None) -> None:
        self._piggyback = data
        for session in self.endpoint.sessions:
            self.endpoint.set_piggyback(session, data)

    # --- The task -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the peer until it finishes (see :attr:`failure` if it never came up)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._open()
                nursery.start_soon(self.driver.run)
                await self._finished.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.sock.close()
            self._pipe.finish()

    def _open(self) -> None:
        if self._finished.is_set():
            return
        self._session = self.endpoint.connect(self.remote, trio.current_time())
        if self._piggyback is not None:
            self.endpoint.set_piggyback(self._session, self._piggyback)
        self.driver.flush()

    async def _reopen_after(self, delay: float) -> None:
        await trio.sleep(delay)
        self._open()

    async def _on_event(self, event: Event) -> None:
        # The endpoint holds only this peer's sessions: every event is about it. A session the
        # core replaced after a long outage [HB-SM-8] comes up under a new handle. The state
        # changes before the application sees the event, so that it can act on it at once.
        if isinstance(event, PeerUp):
            self._session, self._up, self._attempt = event.session, True, 0
            self._ever_up = True
            self._signal()
        elif isinstance(event, PeerDown | SessionClosed):
            self._up = False
        await self._pipe.emit(event)
        if isinstance(event, PeerDown):
            await self._lost(describe_reason(event.reason), reopen=False)
        elif isinstance(event, SessionClosed) and event.by_peer:
            await self._lost(f"closed by the peer ({close_reason(event.code)})", reopen=True)

    async def _lost(self, reason: str, *, reopen: bool) -> None:
        if self.reconnect is None:
            if reason == describe_reason(DownReason.HANDSHAKE_TIMEOUT):
                self.failure = ConnectFailed(
                    f"no hbproto peer answered at {self.address} within "
                    f"{self.config.handshake_timeout:g} s"
                )
                self._finish(str(self.failure), send=False)
            elif not self._ever_up:
                self.failure = ConnectFailed(f"cannot open a session with {self.address}: {reason}")
                self._finish(str(self.failure), send=False)
            else:
                self._finish(reason, CloseCode.TIMEOUT)
            return
        self._attempt += 1
        delay = None
        if reopen and self._nursery is not None:  # the old session is gone: open a new one
            now = trio.current_time()
            delay = self.reconnect.delay(self._attempt, self.rng)
            # A refusal holds the next session back longer [HB-CLOSE-6]: say so.
            refused_until = self.endpoint.refused_until(self.remote, now)
            if refused_until is not None:
                delay = max(delay, refused_until - now)
            self._nursery.start_soon(self._reopen_after, delay)
        await self._pipe.emit(Reconnecting(self._attempt, delay, reason))

    def _socket_error(self, exc: OSError) -> None:
        if not self._up and self.reconnect is None and self._attempt == 0:
            self.failure = ConnectFailed(f"cannot reach {self.address}: {os_reason(exc)}")
            self._finish(str(self.failure), send=False)

    def _finish(
        self,
        reason: str,
        code: int = CloseCode.SHUTDOWN,
        text: str | None = None,
        *,
        send: bool = True,
    ) -> None:
        if self._finished.is_set():
            return
        if send:
            now = trio.current_time()
            for session in [
                s for s, v in self.endpoint.sessions.items() if v.state is not State.CLOSED
            ]:
                self.endpoint.close(session, now, code, text)
            self.driver.flush()
        self._up = False
        if self.end_reason is None:
            self.end_reason = reason
        self._finished.set()
        self._signal()
