"""A scripted fake peer: builds frames with the codec, feeds them to the core as bytes.

The peer keeps its own identifier, the identifier it learned from the core, its send counter
and a timestamp counter, and decodes everything the core sends back. It never reads a clock
and never looks inside the core: tests see only bytes, events and counters.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TypedDict, Unpack

from hbproto import Connection, Endpoint
from hbproto.events import Event
from hbproto.frame import CloseCode, Frame, FrameType, State, Tlv, TlvType, decode, encode

__all__ = [
    "DROP_COUNTERS",
    "FrameOptions",
    "Peer",
    "collect",
    "deliver",
    "deliver_stream",
    "drain",
    "handshake",
    "split_stream",
]

Address = Hashable

# SPEC section 7 (and 13.5): every way a frame can be discarded.
DROP_COUNTERS = (
    "truncated",
    "bad_version",
    "too_large",
    "bad_length",
    "bad_checksum",
    "unknown_type",
    "bad_field",
    "bad_tlv",
    "unknown_session",
    "wrong_peer",
    "auth_missing",
    "auth_unexpected",
    "auth_failed",
    "replay",
    "unsolicited_ack",
    "closed_session",
)

_MASK32 = 0xFFFFFFFF


class FrameOptions(TypedDict, total=False):
    """Fields a test may override in one frame (see :meth:`Peer.frame`)."""

    state: State
    seq: int
    timestamp: int
    your_id: int
    my_id: int
    poll: bool
    tlvs: tuple[Tlv, ...]


@dataclass
class Peer:
    """One end of a session, scripted by a test. Intervals are microseconds, as on the wire."""

    my_id: int = 0x0A0A0A0A
    addr: Address = ("192.0.2.1", 40000)
    your_id: int = 0
    seq: int = 1000
    state: State = State.DOWN
    desired_tx: int | None = 100_000
    required_rx: int | None = 100_000
    mult: int = 3
    timestamp: int = 0x1000
    inbox: list[Frame] = field(default_factory=list)

    def frame(
        self,
        ftype: FrameType,
        *,
        state: State | None = None,
        seq: int | None = None,
        timestamp: int | None = None,
        your_id: int | None = None,
        my_id: int | None = None,
        poll: bool = False,
        final: bool = False,
        tlvs: tuple[Tlv, ...] = (),
    ) -> Frame:
        """A frame from this peer. Without ``seq``, HEARTBEAT, DATA and CLOSE take the next
        number of the send counter [HB-SEQ-1]; an explicit ``seq`` leaves the counter alone."""
        if seq is None:
            seq = self.seq
            self.seq = (self.seq + 1) & _MASK32
        if timestamp is None:
            timestamp = self.timestamp
            self.timestamp = (self.timestamp + 1) & _MASK32
        return Frame(
            type=ftype,
            state=self.state if state is None else state,
            my_id=self.my_id if my_id is None else my_id,
            your_id=self.your_id if your_id is None else your_id,
            seq=seq,
            timestamp=timestamp,
            desired_tx=self.desired_tx,
            required_rx=self.required_rx,
            mult=self.mult,
            poll=poll,
            final=final,
            tlvs=tlvs,
        )

    def heartbeat(self, **kw: Unpack[FrameOptions]) -> bytes:
        return encode(self.frame(FrameType.HEARTBEAT, **kw))

    def ack(self, heartbeat: Frame, *, state: State | None = None) -> bytes:
        """The ACK answering ``heartbeat`` (a frame the core sent) [HB-ACK-1]."""
        return encode(
            self.frame(
                FrameType.ACK,
                state=state,
                seq=heartbeat.seq,
                timestamp=heartbeat.timestamp,
                your_id=heartbeat.my_id,
                final=heartbeat.poll,
            )
        )

    def data(self, payload: bytes, *, seq: int | None = None) -> bytes:
        tlvs = (Tlv(TlvType.PAYLOAD, payload),)
        return encode(self.frame(FrameType.DATA, state=State.UP, seq=seq, tlvs=tlvs))

    def close(self, code: int = CloseCode.SHUTDOWN, text: str | None = None) -> bytes:
        tlvs = () if text is None else (Tlv(TlvType.CLOSE_TEXT, text.encode()),)
        return encode(self.frame(FrameType.CLOSE, state=State.CLOSED, timestamp=code, tlvs=tlvs))

    def learn(self, frame: Frame) -> None:
        """Take in a frame the core sent to this peer; learn the core's identifier from it."""
        self.inbox.append(frame)
        if not self.your_id and frame.your_id == self.my_id:
            self.your_id = frame.my_id

    def heartbeats(self) -> list[Frame]:
        """Every HEARTBEAT the core has sent this peer, oldest first."""
        return [f for f in self.inbox if f.type is FrameType.HEARTBEAT]


def collect(ep: Endpoint, now: float, *peers: Peer) -> list[Frame]:
    """Every frame ``ep`` sends at ``now`` (running timers already due), decoded; each peer
    learns the ones addressed to it."""
    out: list[Frame] = []
    for raw, addr in ep.datagrams_to_send(now):
        frame = decode(raw)
        assert frame.size == len(raw)
        out.append(frame)
        for peer in peers:
            if addr == peer.addr:
                peer.learn(frame)
    return out


def deliver(ep: Endpoint, peer: Peer, data: bytes, now: float) -> list[Frame]:
    """Feed ``data`` from ``peer`` to ``ep``; return every frame ``ep`` sends at ``now``."""
    ep.receive_datagram(data, peer.addr, now)
    return collect(ep, now, peer)


def split_stream(data: bytes) -> list[Frame]:
    """Cut a byte stream the core wrote into frames, using each frame's Length field."""
    frames: list[Frame] = []
    pos = 0
    while pos < len(data):
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        frames.append(decode(data[pos : pos + length]))
        pos += length
    return frames


def deliver_stream(conn: Connection, peer: Peer, data: bytes, now: float) -> list[Frame]:
    """Feed stream bytes to ``conn``; return the frames it writes back."""
    conn.receive_data(data, now)
    out = split_stream(conn.data_to_send())
    for frame in out:
        peer.learn(frame)
    return out


def drain(source: Endpoint | Connection) -> list[Event]:
    """Every pending event, oldest first."""
    events: list[Event] = []
    while (event := source.next_event()) is not None:
        events.append(event)
    return events


def handshake(ep: Endpoint, peer: Peer, now: float) -> int:
    """Bring up a session with a responder ``ep`` (SPEC section 3); return its handle."""
    peer.your_id = 0
    peer.state = State.DOWN
    (ack,) = deliver(ep, peer, peer.heartbeat(), now)
    assert (ack.type, ack.state) == (FrameType.ACK, State.INIT)
    peer.state = State.UP
    (ack,) = deliver(ep, peer, peer.heartbeat(), now)
    assert (ack.type, ack.state) == (FrameType.ACK, State.UP)
    return peer.your_id
