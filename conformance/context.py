"""What a case works with: the target, fresh sessions to it, timing tolerance, and checks.

The same calls serve both roles. With a responder target the suite connects and opens
sessions; with an initiator target (:mod:`conformance.client`) it listens, launches the
command, and answers the sessions the target opens. :meth:`Context.session` gives a session
that is UP either way; :meth:`Context.accept` and :meth:`Context.event` are the initiator
role's own.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random
from typing import Any, NoReturn

import trio

from hbproto import AuthKeys, encode

from .client import STARTUP_WITHIN, Client, ClientCommand, format_target
from .model import Failed, FrameRecord, Inconclusive, Role, TargetUnusable, Unsupported
from .peer import Received, ScriptedPeer, is_opening
from .wire import TcpWire, UdpServerWire, UdpWire, Wire, WireClosed, describe

__all__ = ["Context"]

SLOW_START = 1.0  # SLOW_START_INTERVAL of SPEC 9.8: the pace before UP
HANDSHAKE_WITHIN = 3.0  # the target answers a handshake step within this (slow start + slack)


class Context:
    """One run of one case against one target over one transport.

    A case opens sessions with :meth:`session` (UP) or :meth:`peer` (not yet opened), sends
    and expects frames through them, and judges with :meth:`check`, :meth:`fail` and
    :meth:`within_bound`. Every frame crossing the wire goes into :attr:`frames`.
    """

    def __init__(
        self,
        target: tuple[str, int],
        transport: str,
        role: Role,
        *,
        tolerance: float,
        rng: Random,
        auth: AuthKeys | None = None,
    ) -> None:
        self.target = target
        self.auth = auth  # the target's keys, when it claims the auth feature
        self.transport = transport
        self.role = role
        self.tolerance = tolerance
        self.rng = rng
        self.start = trio.current_time()
        self.timings: dict[str, float] = {}
        self._wires: list[Wire] = []
        self.client: Client | None = None  # the launched command, in the initiator role
        self._udp: UdpServerWire | None = None
        self._listener: trio.SocketListener | None = None
        self._closed = False

    @property
    def frames(self) -> list[FrameRecord]:
        records = [r for wire in self._wires for r in wire.log]
        return sorted(records, key=lambda r: r.time)

    async def wire(self) -> Wire:
        """A fresh socket or connection to the target; in the initiator role, the suite's
        socket (UDP) or the target's next connection (TCP)."""
        if self.role is Role.INITIATOR:
            return await self._next_wire(trio.current_time() + STARTUP_WITHIN)
        if self.transport == "udp":
            wire: Wire = await UdpWire.open(self.target, self.start)
        else:
            wire = await TcpWire.open(self.target, self.start)
        self._wires.append(wire)
        return wire

    async def peer(self, **intervals: int | None) -> ScriptedPeer:
        """A scripted peer on a fresh wire, session not yet opened. ``desired_tx``,
        ``required_rx`` (microseconds) and ``mult`` override the suite's defaults."""
        peer = ScriptedPeer(await self.wire(), self.rng, auth=self.auth)
        for name, value in intervals.items():
            setattr(peer, name, value)
        return peer

    async def session(self, *, keep_alive: bool = True, **intervals: int | None) -> ScriptedPeer:
        """A scripted peer with its session UP; it keeps the session alive while waiting unless
        ``keep_alive`` is false. In the initiator role the session is the one the target opens
        next, answered as a responder answers."""
        try:
            if self.role is Role.INITIATOR:
                peer, first = await self.accept(**intervals)
                if not is_opening(first.frame):
                    raise Failed(
                        "an opening HEARTBEAT (Sta DOWN, Your Identifier 0)", describe_frame(first)
                    )
                await peer.answer_opening(first.frame, HANDSHAKE_WITHIN)
                peer.auto_ack = True
            else:
                peer = await self.peer(**intervals)
                await peer.handshake(HANDSHAKE_WITHIN)
        except Failed as failure:  # 8.3/handshake judges this; here it only blocks the case
            raise TargetUnusable(
                f"no session came up with the target (expected {failure.expected}; "
                f"actual {failure.actual})"
            ) from None
        except WireClosed as closed:
            raise TargetUnusable(f"no session came up with the target: {closed}") from None
        if keep_alive:
            peer.keep_alive(peer.interval)
        return peer

    async def aclose(self) -> None:
        """Close every wire; in the initiator role also the listener, then stop the command."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            if self._listener is not None:
                await trio.aclose_forcefully(self._listener)
            for wire in self._wires:
                await wire.aclose()
            if self.client is not None:
                await self.client.stop()

    # --- The initiator role ---------------------------------------------------------------

    async def launch(self, command: ClientCommand, case_id: str, nursery: trio.Nursery) -> None:
        """Listen on a fresh port of ``command.listen`` and launch ``command`` against it
        (:class:`~conformance.client.LaunchFailed` if it cannot start). ``nursery`` runs the
        task that notices the command's exit while the case runs."""
        host = command.listen
        if self.transport == "udp":
            self._udp = await UdpServerWire.listen(host, self.start)
            self._wires.append(self._udp)
            port = self._udp.port
        else:
            self._listener = (await trio.open_tcp_listeners(0, host=host))[0]
            port = int(self._listener.socket.getsockname()[1])
        self.target = (host, port)
        self.client = Client(
            command, format_target(self.transport, host, port), self.transport, case_id
        )
        await self.client.start()
        nursery.start_soon(self.client.watch)

    def _launched(self) -> Client:
        if self.client is None:
            raise Unsupported("the case needs the initiator role (run with --client-cmd)")
        return self.client

    async def _next_wire(self, deadline: float) -> Wire:
        if self._udp is not None:
            return self._udp
        assert self._listener is not None
        with trio.move_on_at(deadline):
            stream = await self._listener.accept()
            wire = TcpWire(stream, self.start)
            self._wires.append(wire)
            return wire
        raise Failed("a connection from the target", "none")

    async def accept(
        self, *, within: float | None = None, **intervals: int | None
    ) -> tuple[ScriptedPeer, Received]:
        """A scripted peer on the target's next connection (TCP) or on the suite's socket
        (UDP), and the first valid frame the target sends there, unanswered; the peer does
        not answer HEARTBEATs by itself (``auto_ack``) until the case says so. ``within``
        defaults to what is left of the start-up allowance since the launch, and at least
        ``HANDSHAKE_WITHIN``. :class:`Failed` if no frame comes in time, or if the command
        exits first."""
        client = self._launched()
        now = trio.current_time()
        if within is None:
            within = max(HANDSHAKE_WITHIN, client.started + STARTUP_WITHIN - now)
        deadline = now + within
        what = f"a frame opening a session from the target within {within:.3g} s"
        with client.unless_exited():
            try:
                peer = ScriptedPeer(await self._next_wire(deadline), self.rng, auth=self.auth)
            except Failed:
                raise Failed(what, "no connection") from None
            for name, value in intervals.items():
                setattr(peer, name, value)
            peer.auto_ack = False  # the case decides how to answer an opening
            try:
                got = await peer.next(max(deadline, trio.current_time() + HANDSHAKE_WITHIN))
            except WireClosed as closed:
                raise Failed(what, f"the target ended the connection ({closed.how})") from None
            if got is not None:
                return peer, got
            raise Failed(what, _invalid(peer) or "nothing")
        code = client.returncode
        raise Failed(what, f"the command exited with status {code} before sending one")

    async def event(
        self, what: str, match: Callable[[dict[str, Any]], bool], within: float
    ) -> dict[str, Any]:
        """The first record in the command's event log matching ``match`` within ``within``
        seconds (the wire is not read meanwhile). :class:`Unsupported` if the command reports
        no events at all (the log is optional), :class:`Failed` naming ``what`` if it reports
        others."""
        client = self._launched()
        deadline = trio.current_time() + within
        while True:
            exited = client.returncode is not None  # then what it wrote is all there will be
            records = client.events()
            for record in records:
                if match(record):
                    return record
            if exited or trio.current_time() >= deadline:
                break
            await trio.sleep(0.02)
        if not records:
            raise Unsupported(
                "the command reported no events (HBPROTO_EVENT_LOG or JSON lines on stdout)"
            )
        names = ", ".join(str(r["event"]) for r in records[-8:])
        raise Failed(f"{what} in the event log within {within:.3g} s", f"events {names}")

    # --- Judging --------------------------------------------------------------------------

    @staticmethod
    def fail(expected: str, actual: str) -> NoReturn:
        raise Failed(expected, actual)

    @staticmethod
    def check(ok: bool, expected: str, actual: str) -> None:
        if not ok:
            raise Failed(expected, actual)

    def within_bound(self, name: str, value: float, low: float, high: float) -> None:
        """Judge a measured time against ``[low, high]`` with the measured tolerance: clearly
        out is a failure, out only by less than the tolerance is inconclusive."""
        self.timings[name] = value
        tol = self.tolerance
        if low - tol <= value <= high + tol:
            return
        where = f"{value:.4f} s, outside [{low:.4f}, {high:.4f}] s"
        if low - 2 * tol <= value <= high + 2 * tol:
            raise Inconclusive(f"{name}: {where}, within twice the tolerance ({tol:.4f} s)")
        raise Failed(f"{name} within [{low:.4f}, {high:.4f}] s (+/- {tol:.4f} s)", where)


def describe_frame(got: Received) -> str:
    return describe(encode(got.frame))


def _invalid(peer: ScriptedPeer) -> str:
    if not peer.invalid:
        return ""
    return "only invalid frames: " + ", ".join(reason for _, reason in peer.invalid[-4:])
