"""What the case modules share: the SPEC's formulas applied to what the target advertises,
frames the codec would refuse to build, and listening on several sockets at once.

Every expected value is computed from the target's own advertised Desired TX, Required Min
RX and Mult (in its latest frame) and from what the suite advertises, so that the cases hold
for any conforming target, whatever its configuration.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass

import trio

from conformance.context import HANDSHAKE_WITHIN, SLOW_START, Context
from conformance.model import Failed
from conformance.peer import Received, ScriptedPeer
from conformance.wire import Wire, WireClosed
from hbproto import FrameError, decode, encode_interval
from hbproto.frame import CloseCode, Frame, FrameType, State

US = 1_000_000
TIMER_SLACK = 0.25  # a target's own timer granularity, for deadlines the SPEC gives no window
_FIXED = struct.Struct(">HHIIIIHH")


# --- The SPEC's formulas, from the target's side ----------------------------------------------


def seconds(us: int | None) -> float:
    """An interval in seconds, "no preference" counting as 0 [HB-NEG-5]."""
    return (us or 0) / US


def target_of(peer: ScriptedPeer) -> Frame:
    """The target's latest frame in this session: its current parameters."""
    for got in reversed(peer.received):
        if got.frame.your_id == peer.my_id:
            return got.frame
    raise Failed("a frame from the target", "none yet")


def tx_interval(peer: ScriptedPeer, target: Frame) -> float | None:
    """The target's TxInterval once UP [HB-NEG-1], [HB-NEG-5]; ``None`` when the suite's R is 0
    (no periodic HEARTBEATs)."""
    if peer.required_rx == 0:
        return None
    return max(seconds(target.desired_tx), seconds(peer.required_rx)) or 1.0


def expected_remote(peer: ScriptedPeer, target: Frame) -> float | None:
    """The target's ExpectedRemote for the suite [HB-NEG-2]; ``None`` if infinite."""
    if target.required_rx == 0:
        tx = tx_interval(peer, target)
        return None if tx is None else 1.25 * tx
    return max(seconds(peer.desired_tx), seconds(target.required_rx)) or 1.0


def detection_time(peer: ScriptedPeer, target: Frame, *, slow_start: bool = False) -> float:
    """The target's DetectionTime for the suite [HB-DET-8], with the slow-start floor when
    ``slow_start``; :class:`Failed` if the target advertises nothing to detect with."""
    er = expected_remote(peer, target)
    if er is None:
        raise Failed("a target that detects its peer", "Required Min RX 0 on both sides")
    return peer.mult * (max(er, SLOW_START) if slow_start else er)


def judged_interval(peer: ScriptedPeer, target: Frame) -> float:
    """The interval the target judges the suite's HEARTBEATs against [HB-FREQ-6]."""
    if target.required_rx == 0:
        return max(seconds(peer.desired_tx), SLOW_START)
    return max(seconds(peer.desired_tx), seconds(target.required_rx)) or 1.0


# --- Frames ------------------------------------------------------------------------------------


def is_ack_for(heartbeat: Frame) -> Callable[[Frame], bool]:
    return lambda f: f.type is FrameType.ACK and f.seq == heartbeat.seq


def answered_or_changed(peer: ScriptedPeer, seqs: Container[int]) -> Callable[[Frame], bool]:
    """A frame of the session that ACKs one of ``seqs``, or says the target left UP: what a
    frame the target must discard must not draw [HB-RX-14]."""
    return lambda f: (
        f.your_id == peer.my_id
        and (f.state is not State.UP or (f.type is FrameType.ACK and f.seq in seqs))
    )


async def acks_for(
    peer: ScriptedPeer, heartbeats: Sequence[Frame], within: float
) -> dict[int, Received]:
    """The target's ACK to each of ``heartbeats``, in whatever order they come (ones already
    received count); :class:`Failed` if any is missing after ``within`` seconds."""
    wanted = {hb.seq for hb in heartbeats}
    deadline = trio.current_time() + within
    found: dict[int, Received] = {}
    while True:
        for got in peer.received:
            if got.frame.type is FrameType.ACK and got.frame.seq in wanted:
                found.setdefault(got.frame.seq, got)
        if len(found) == len(wanted) or await peer.next(deadline) is None:
            break
    missing = sorted(wanted - found.keys())
    if missing:
        raise Failed(f"an ACK to each of {len(wanted)} HEARTBEATs", f"none for seq {missing}")
    return found


def tlv(tlv_type: int, value: bytes) -> bytes:
    return struct.pack(">BH", tlv_type, len(value)) + value


def craft(
    frame: Frame,
    *,
    version: int = 1,
    ftype: int | None = None,
    state: int | None = None,
    poll: bool | None = None,
    final: bool | None = None,
    mult: int | None = None,
    tx_code: int | None = None,
    rx_code: int | None = None,
    tlvs: bytes | None = None,
    length: int | None = None,
    flip_crc: bool = False,
) -> bytes:
    """``frame``'s bytes with any field replaced, valid or not, and a correct CRC unless
    ``flip_crc``: the suite's way of sending what :func:`hbproto.encode` refuses to build."""
    area = b"".join(tlv(t.type, t.value) for t in frame.tlvs) if tlvs is None else tlvs
    head = (
        (version << 12)
        | ((frame.type if ftype is None else ftype) << 8)
        | ((frame.state if state is None else state) << 6)
        | ((frame.poll if poll is None else poll) << 5)
        | ((frame.final if final is None else final) << 4)
        | (frame.mult if mult is None else mult)
    )
    body = _FIXED.pack(
        head,
        28 + len(area) if length is None else length,
        frame.my_id,
        frame.your_id,
        frame.seq,
        frame.timestamp,
        encode_interval(frame.desired_tx) if tx_code is None else tx_code,
        encode_interval(frame.required_rx) if rx_code is None else rx_code,
    )
    crc = zlib.crc32(body + area) ^ (1 if flip_crc else 0)
    return body + area + struct.pack(">I", crc)


# --- Getting the target to a point -------------------------------------------------------------


async def open_to_init(peer: ScriptedPeer) -> Frame:
    """Send an opening HEARTBEAT and return the target's answer with Sta INIT; the session is
    then INIT at the target, its address not yet verified [HB-HB-4]."""
    peer.state, peer.your_id = State.DOWN, 0
    await peer.heartbeat(state=State.DOWN, your_id=0)
    got = await peer.expect(
        "an answer with Sta INIT to our opening HEARTBEAT",
        lambda f: f.your_id == peer.my_id and f.state is State.INIT,
        HANDSHAKE_WITHIN,
    )
    peer.your_id = got.frame.my_id
    return got.frame


async def silence(peer: ScriptedPeer) -> None:
    """Stop every frame from the suite (no HEARTBEATs, no ACKs: any valid frame is life)."""
    peer.keep_alive(None)
    peer.auto_ack = False
    await trio.lowlevel.checkpoint()


async def down_or_close(ctx: Context, peer: ScriptedPeer, within: float) -> tuple[float, Frame]:
    """When and how the target declares the suite down: a frame with Sta DOWN on UDP
    [HB-HB-2], a CLOSE on TCP [HB-TCP-6]. :class:`Failed` if neither comes ``within``."""
    if ctx.transport == "tcp":
        got = await peer.expect(
            "a CLOSE [HB-TCP-6]",
            lambda f: f.type is FrameType.CLOSE and f.your_id == peer.my_id,
            within,
        )
        return got.time, got.frame
    got = await peer.expect(
        "a frame with Sta DOWN [HB-HB-2]",
        lambda f: f.your_id == peer.my_id and f.state in (State.DOWN, State.CLOSED),
        within,
    )
    return got.time, got.frame


async def pace(peer: ScriptedPeer) -> None:
    """Wait until one of the suite's intervals has passed since its last HEARTBEAT, however it
    was sent, so that the next one is not premature [HB-FREQ-6]."""
    mine = peer.my_id.to_bytes(4, "big")  # several sessions may share the wire
    for record in reversed(peer.wire.log):
        if record.direction == "out" and record.raw[:1] == b"\x11" and record.raw[4:8] == mine:
            await peer.wait_until(peer.wire.start + record.time + peer.interval)
            return


async def still_up(ctx: Context, peer: ScriptedPeer, what: str) -> None:
    """A paced HEARTBEAT gets an ACK with Sta UP: the session survived ``what``."""
    try:
        await pace(peer)
        probe = await peer.heartbeat()
        got = await peer.expect(f"an ACK to a HEARTBEAT after {what}", is_ack_for(probe), 2.0)
    except WireClosed as closed:
        raise Failed(
            f"the session still UP after {what}", f"connection ended ({closed.how})"
        ) from None
    ctx.check(
        got.frame.state is State.UP,
        f"the session still UP after {what}",
        f"Sta {got.frame.state.name}",
    )


def closed_by(peer: ScriptedPeer) -> int | None:
    """The reason code of the CLOSE the target sent in this session, if any."""
    for got in peer.received:
        if got.frame.type is FrameType.CLOSE and got.frame.your_id == peer.my_id:
            return got.frame.close_code
    return None


def stream_closed_for_protocol_error(ctx: Context, peer: ScriptedPeer) -> bool:
    """Whether the target closed the TCP connection with reason ``protocol_error``, which it
    MAY do after repeated invalid frames [HB-TCP-5]."""
    return ctx.transport == "tcp" and closed_by(peer) == CloseCode.PROTOCOL_ERROR


# --- Several sockets at once -------------------------------------------------------------------


@dataclass(slots=True)
class Heard:
    wire: int  # index into the wires listened on
    time: float
    raw: bytes
    frame: Frame | None  # None: it did not decode


async def listen(
    wires: Sequence[Wire], until: float, *, answer: Mapping[int, ScriptedPeer] | None = None
) -> list[Heard]:
    """Everything the target sends to any of ``wires`` until ``until``, in order of arrival.
    HEARTBEATs arriving on wire ``i`` for the session of ``answer[i]`` are ACKed there."""
    heard: list[Heard] = []
    answer = answer or {}

    async def read(index: int, wire: Wire) -> None:
        while (raw := await wire.receive(until)) is not None:
            try:
                frame: Frame | None = decode(raw)
            except FrameError:
                frame = None
            heard.append(Heard(index, trio.current_time(), raw, frame))
            peer = answer.get(index)
            if (
                peer is not None
                and frame is not None
                and frame.type is FrameType.HEARTBEAT
                and frame.your_id == peer.my_id
            ):
                await wire.send(peer.encoded(peer.ack_for(frame)))

    async with trio.open_nursery() as nursery:
        for index, wire in enumerate(wires):
            nursery.start_soon(read, index, wire)
    heard.sort(key=lambda h: h.time)
    return heard


async def run_together(
    peers: Sequence[ScriptedPeer], until: float, stop: Callable[[], bool] = lambda: False
) -> None:
    """Keep several sessions on one wire alive until ``until``, or until ``stop()`` holds
    after a frame: each peer's HEARTBEATs on its own schedule (:meth:`ScriptedPeer.keep_alive`),
    and each of the target's HEARTBEATs answered by the peer whose session it is. Frames land
    in each peer's ``received``."""
    wire = peers[0].wire
    due = {id(p): trio.current_time() for p in peers if p.heartbeat_every is not None}
    while True:
        now = trio.current_time()
        for p in peers:
            if p.heartbeat_every is not None and now >= due[id(p)]:
                await p.heartbeat(paced=False)
                due[id(p)] = now + p.heartbeat_every
        if now >= until:
            return
        wake = min([until, *due.values()])
        raw = await wire.receive(wake)
        if raw is None:
            continue
        try:
            frame = decode(raw)
        except FrameError:
            continue
        for p in peers:
            if frame.your_id == p.my_id:
                p.received.append(Received(trio.current_time(), frame))
                p.remote_rx = frame.required_rx
                if p.auto_ack and frame.type is FrameType.HEARTBEAT:
                    await p.send(p.ack_for(frame))
        if stop():
            return
