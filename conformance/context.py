"""What a case works with: the target, fresh sessions to it, timing tolerance, and checks."""

from __future__ import annotations

from random import Random
from typing import NoReturn

import trio

from hbproto.frame import Frame, FrameType, State

from .model import Failed, FrameRecord, Inconclusive, Role, TargetUnusable
from .peer import ScriptedPeer
from .wire import TcpWire, UdpWire, Wire

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
    ) -> None:
        self.target = target
        self.transport = transport
        self.role = role
        self.tolerance = tolerance
        self.rng = rng
        self.start = trio.current_time()
        self.timings: dict[str, float] = {}
        self._wires: list[Wire] = []

    @property
    def frames(self) -> list[FrameRecord]:
        records = [r for wire in self._wires for r in wire.log]
        return sorted(records, key=lambda r: r.time)

    async def wire(self) -> Wire:
        """A fresh socket or connection to the target."""
        if self.transport == "udp":
            wire: Wire = await UdpWire.open(self.target, self.start)
        else:
            wire = await TcpWire.open(self.target, self.start)
        self._wires.append(wire)
        return wire

    async def peer(self, **intervals: int | None) -> ScriptedPeer:
        """A scripted peer on a fresh wire, session not yet opened. ``desired_tx``,
        ``required_rx`` (microseconds) and ``mult`` override the suite's defaults."""
        peer = ScriptedPeer(await self.wire(), self.rng)
        for name, value in intervals.items():
            setattr(peer, name, value)
        return peer

    async def session(self, *, keep_alive: bool = True, **intervals: int | None) -> ScriptedPeer:
        """A scripted peer with its session UP; it keeps the session alive while waiting unless
        ``keep_alive`` is false."""
        peer = await self.peer(**intervals)
        try:
            await peer.handshake(HANDSHAKE_WITHIN)
        except Failed as failure:  # 8.3/handshake judges this; here it only blocks the case
            raise TargetUnusable(
                f"no session came up with the target (expected {failure.expected}; "
                f"actual {failure.actual})"
            ) from None
        if keep_alive:
            peer.keep_alive((peer.desired_tx or 100_000) / 1e6)
        return peer

    async def aclose(self) -> None:
        for wire in self._wires:
            await wire.aclose()

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


def is_heartbeat(frame: Frame) -> bool:
    return frame.type is FrameType.HEARTBEAT


def state_of(frame: Frame) -> State:
    return frame.state
