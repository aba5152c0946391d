"""The suite's side of the wire: one UDP socket or TCP connection per case, every frame logged.

The suite is itself the peer, so it owns the bytes: it sends exactly what a case scripts
(valid frames, broken ones, one byte at a time) and records everything that crosses, with the
time, for the report's timeline.
"""

from __future__ import annotations

import socket
from typing import Any

import trio

from hbproto import FrameError, StreamDeframer, decode
from hbproto.frame import MAX_FRAME

from .model import FrameRecord

__all__ = ["TcpWire", "UdpServerWire", "UdpWire", "Wire", "WireClosed", "describe"]


class WireClosed(Exception):
    """The target ended the TCP connection: ``how`` is ``"eof"`` or ``"reset"``."""

    def __init__(self, how: str) -> None:
        super().__init__(f"the target ended the connection ({how})")
        self.how = how


def describe(raw: bytes) -> str:
    """A frame's fields in one line, or why it does not decode."""
    try:
        f = decode(raw, MAX_FRAME)
    except FrameError as exc:
        return f"invalid ({exc.reason}): {raw[:32].hex()}{'...' if len(raw) > 32 else ''}"
    parts = [
        f.type.name,
        f.state.name,
        f"my={f.my_id:08x}",
        f"your={f.your_id:08x}",
        f"seq={f.seq}",
        f"ts={f.timestamp:08x}",
    ]
    if f.poll:
        parts.append("P")
    if f.final:
        parts.append("F")
    parts.append(f"tx={f.desired_tx} rx={f.required_rx} mult={f.mult}")
    if f.tlvs:
        parts.append("tlvs=" + ",".join(f"{t.type:#04x}:{len(t.value)}" for t in f.tlvs))
    return " ".join(parts)


class Wire:
    """Raw frames to and from the target, with a log. Subclasses move the bytes."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.log: list[FrameRecord] = []
        self.opened = trio.current_time()  # when the socket was bound or the connection made

    def record(self, direction: str, raw: bytes, note: str = "") -> None:
        now = trio.current_time() - self.start
        self.log.append(FrameRecord(now, direction, bytes(raw), describe(raw), note))

    async def send(self, raw: bytes, *, note: str = "") -> None:
        self.record("out", raw, note)
        await self._send(raw)

    async def receive(self, deadline: float) -> bytes | None:
        """The next frame from the target (raw), or ``None`` at ``deadline``."""
        raw = await self._receive(deadline)
        if raw is not None:
            self.record("in", raw)
        return raw

    async def _send(self, raw: bytes) -> None:
        raise NotImplementedError

    async def _receive(self, deadline: float) -> bytes | None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class UdpWire(Wire):
    """A fresh UDP socket, so that each case is a new source address to the target."""

    def __init__(self, sock: trio.socket.SocketType, target: tuple[str, int], start: float):
        super().__init__(start)
        self.sock = sock
        self.target = target

    @classmethod
    async def open(cls, target: tuple[str, int], start: float) -> UdpWire:
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_DGRAM)
        await sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        return cls(sock, target, start)

    async def _send(self, raw: bytes) -> None:
        await self.sock.sendto(raw, self.target)

    async def _receive(self, deadline: float) -> bytes | None:
        with trio.move_on_at(deadline):
            while True:
                try:
                    data, source = await self.sock.recvfrom(65535)
                except ConnectionRefusedError:
                    continue  # ICMP for an earlier datagram: the target will say more, or not
                if source[0] == self.target[0] and source[1] == self.target[1]:
                    return bytes(data)
        return None

    async def aclose(self) -> None:
        self.sock.close()
        await trio.lowlevel.checkpoint()


class UdpServerWire(Wire):
    """The suite's UDP socket in the initiator role: it waits for the target's frames, from
    wherever they come, and sends to where the target last sent from [HB-UDP-4]."""

    def __init__(self, sock: trio.socket.SocketType, start: float) -> None:
        super().__init__(start)
        self.sock = sock
        self.target: tuple[Any, ...] | None = None

    @classmethod
    async def listen(cls, host: str, start: float) -> UdpServerWire:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_DGRAM)
        try:
            await sock.bind((host, 0))
        except OSError:
            sock.close()
            raise
        return cls(sock, start)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def _send(self, raw: bytes) -> None:
        if self.target is None:
            raise RuntimeError("nothing to answer: the target has sent nothing yet")
        await self.sock.sendto(raw, self.target)

    async def _receive(self, deadline: float) -> bytes | None:
        with trio.move_on_at(deadline):
            while True:
                try:
                    data, source = await self.sock.recvfrom(65535)
                except ConnectionRefusedError:
                    continue  # ICMP for an earlier datagram
                self.target = tuple(source)
                return bytes(data)
        return None

    async def aclose(self) -> None:
        self.sock.close()
        await trio.lowlevel.checkpoint()


class TcpWire(Wire):
    """A fresh TCP connection; frames are cut out of the stream by their Length field."""

    def __init__(self, stream: trio.SocketStream, start: float) -> None:
        super().__init__(start)
        self.stream = stream
        self.deframer = StreamDeframer()
        self.closed: str | None = None

    @classmethod
    async def open(cls, target: tuple[str, int], start: float) -> TcpWire:
        return cls(await trio.open_tcp_stream(*target), start)

    async def _send(self, raw: bytes) -> None:
        try:
            await self.stream.send_all(raw)
        except trio.BrokenResourceError:
            raise WireClosed("reset") from None

    async def send_slowly(self, raw: bytes, *, gap: float, note: str = "") -> None:
        """Send ``raw`` one byte at a time, ``gap`` seconds apart (the log shows one frame)."""
        self.record("out", raw, note or "sent one byte at a time")
        for i in range(len(raw)):
            await self._send(raw[i : i + 1])
            await trio.sleep(gap)

    async def _receive(self, deadline: float) -> bytes | None:
        while True:
            frame = self.deframer.next_frame()
            if frame is not None:
                return frame
            if self.closed is not None:
                raise WireClosed(self.closed)
            with trio.move_on_at(deadline):
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    self.closed = "reset"
                    continue
                if not data:
                    self.closed = "eof"
                    continue
                self.deframer.receive_data(bytes(data), trio.current_time())
                continue
            return None

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
