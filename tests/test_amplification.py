"""Amplification (SPEC 12.1): what an unknown source can make a responder send.

SPEC 12.1 promises two things. Per frame: a frame that answers another (an ACK, a lingering or
refusing CLOSE) is never larger than the frame it answers, invalid frames are never answered,
and nothing but such answers goes to an address that has not proved it receives the traffic.
In sum: an attacker who does not know a session's identifiers and spoofs a victim's address
gets at most one byte towards the victim for each byte it sends.

Each case below is what such an attacker sends from the victim's address: opening HEARTBEATs
(bare, polling, with a piggyback, padded to the largest datagram, repeated, with fresh
identifiers beyond every limit), frames of every other type with guessed identifiers,
garbage and frames of odd sizes. Against a responder :class:`~hbproto.Endpoint` and against the
UDP server on an in-memory network, with time run on past HANDSHAKE_TIMEOUT so that anything
sent later counts too, each answer is at most the size of the frame it answers, and the bytes
towards the victim over the bytes from it are at most 1.0.
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import trio

from hbproto import AuthKeys, Config, Endpoint, Limits
from hbproto.frame import (
    UDP_MAX_FRAME,
    CloseCode,
    Frame,
    FrameType,
    State,
    Tlv,
    TlvType,
    decode,
    encode,
    pack_tlv,
)
from hbproto.session import Session
from transports import serve
from transports.testing import MemoryNetwork

VICTIM = ("192.0.2.99", 5353)
SERVER = ("10.0.0.2", 7373)
CONFIG = Config(interval=0.1, multiplier=3, handshake_timeout=2.0)
LIMITS = Limits(max_sessions=1000, max_half_open=20, max_per_source=10)
HB, ACK, DATA, CLOSE = FrameType.HEARTBEAT, FrameType.ACK, FrameType.DATA, FrameType.CLOSE
DOWN, INIT, UP = State.DOWN, State.INIT, State.UP
R = random.Random(1)


def frame(
    ftype: FrameType,
    state: State,
    your_id: int = 0,
    *,
    my_id: int = 0x0A0A0A0A,
    seq: int = 1000,
    timestamp: int = 77,
    poll: bool = False,
    final: bool = False,
    tlvs: tuple[Tlv, ...] = (),
) -> bytes:
    """A frame as an initiator at 100 ms would send it, with the fields given."""
    return encode(
        Frame(
            ftype,
            state,
            my_id,
            your_id,
            seq,
            timestamp,
            100_000,
            100_000,
            poll=poll,
            final=final,
            tlvs=tlvs,
        )
    )


def padded(size: int) -> tuple[Tlv, ...]:
    """An unknown, non-critical TLV that brings a frame to ``size`` bytes."""
    return (Tlv(0x70, bytes(size - 28 - 3)),)


def opening(
    my_id: int = 0x0A0A0A0A, seq: int = 1000, *, poll: bool = False, tlvs: tuple[Tlv, ...] = ()
) -> bytes:
    """A HEARTBEAT that opens a session: Sta DOWN, Your Identifier 0."""
    return frame(HB, DOWN, my_id=my_id, seq=seq, poll=poll, tlvs=tlvs)


def patched(data: bytes, offset: int, new: bytes) -> bytes:
    """``data`` with bytes replaced at ``offset`` and the CRC-32 made to match again: a frame
    that breaks a field rule but reaches the check for it."""
    out = bytearray(data)
    out[offset : offset + len(new)] = new
    out[-4:] = zlib.crc32(bytes(out[:-4])).to_bytes(4, "big")
    return bytes(out)


def guess() -> int:
    return R.getrandbits(32) | 1


CASES: dict[str, Callable[[], list[bytes]]] = {
    "opening HEARTBEAT": lambda: [opening()],
    "opening HEARTBEAT, repeated 20 times": lambda: [opening(seq=1000 + i) for i in range(20)],
    "the same opening HEARTBEAT 20 times": lambda: [opening()] * 20,
    "opening HEARTBEAT with Poll": lambda: [opening(poll=True)],
    "opening HEARTBEAT with a 128-byte piggyback": lambda: [
        opening(tlvs=(Tlv(TlvType.PAYLOAD, bytes(128)),))
    ],
    "opening HEARTBEAT of 1200 bytes": lambda: [opening(tlvs=padded(UDP_MAX_FRAME))],
    "opening HEARTBEAT of 29 bytes": lambda: [opening(tlvs=(Tlv(0x70, b""),))[:29]],
    "opening HEARTBEATs, fresh identifiers beyond every limit": lambda: [
        opening(my_id=0x100 + i) for i in range(100)
    ],
    "opening then UP with a guessed identifier": lambda: [
        opening(),
        *[frame(HB, UP, your_id=guess(), seq=1001 + i) for i in range(10)],
    ],
    "HEARTBEAT INIT and UP with Your Identifier 0": lambda: [
        patched(frame(HB, INIT, your_id=1), 8, bytes(4)),
        patched(frame(HB, UP, your_id=1), 8, bytes(4)),
    ],
    "HEARTBEAT to a guessed session": lambda: [frame(HB, UP, your_id=guess()) for _ in range(10)],
    "ACK to a guessed session": lambda: [frame(ACK, UP, your_id=guess()) for _ in range(10)],
    "ACK of the opening HEARTBEAT's answer, guessed": lambda: [
        opening(),
        *[frame(ACK, INIT, your_id=guess(), final=True) for _ in range(10)],
    ],
    "DATA to a guessed session": lambda: [
        frame(DATA, UP, your_id=guess(), tlvs=(Tlv(TlvType.PAYLOAD, bytes(1000)),))
        for _ in range(10)
    ],
    "CLOSE to a guessed session": lambda: [
        frame(CLOSE, State.CLOSED, your_id=guess(), timestamp=CloseCode.SHUTDOWN) for _ in range(10)
    ],
    "opening then CLOSE and DATA with Your Identifier 0": lambda: [
        opening(),
        patched(frame(CLOSE, State.CLOSED, 1, timestamp=CloseCode.SHUTDOWN), 8, bytes(4)),
        patched(frame(DATA, UP, 1, tlvs=(Tlv(TlvType.PAYLOAD, b"x"),)), 8, bytes(4)),
    ],
    "garbage of odd sizes": lambda: [
        R.randbytes(n) for n in (0, 1, 3, 4, 27, 28, 29, 100, 1199, 1200, 1201, 9000)
    ],
    "frames whose Length lies": lambda: [
        opening()[:2] + (n).to_bytes(2, "big") + opening()[4:] for n in (0, 27, 29, 1200, 65535)
    ],
    "a valid frame cut short or extended": lambda: [
        opening()[:27],
        opening() + b"\x00",
        opening(tlvs=padded(200))[:150],
    ],
}


class Tally:
    """Bytes towards and from the victim, and the frames that answered too much."""

    def __init__(self) -> None:
        self.into = 0
        self.out = 0
        self.oversized: list[tuple[int, int]] = []
        self.per_type: Counter[str] = Counter()

    def sent(self, data: bytes) -> None:
        self.into += len(data)

    def answered(self, answers: list[bytes], to: bytes) -> None:
        for data in answers:
            self.out += len(data)
            self.per_type[decode(data).type.name] += 1
            if len(data) > len(to):
                self.oversized.append((len(data), len(to)))

    @property
    def ratio(self) -> float:
        return self.out / self.into if self.into else 0.0


RATIOS: dict[str, float] = {}


def _responder(auth: bool) -> Endpoint:
    keys = AuthKeys({1: bytes(range(32))}, active=1) if auth else None
    config = Config(interval=0.1, multiplier=3, handshake_timeout=2.0, auth=keys)
    return Endpoint(config, accept=True, limits=LIMITS, rng=random.Random(2))


@pytest.mark.parametrize("auth", [False, True], ids=["plain", "authenticating"])
@pytest.mark.parametrize("case", list(CASES))
def test_endpoint_never_amplifies(case: str, auth: bool) -> None:
    ep = _responder(auth)
    tally = Tally()
    now = 0.0
    for data in CASES[case]():
        tally.sent(data)
        ep.receive_datagram(data, VICTIM, now)
        answers = [d for d, to in ep.datagrams_to_send(now) if to == VICTIM]
        assert len(answers) <= 1  # one ACK per HEARTBEAT at most [HB-HB-1]
        tally.answered(answers, data)
        now += 0.01
    end = now + CONFIG.handshake_timeout + 1.0
    while (timer := ep.get_timer()) is not None and timer <= end:
        now = timer
        later = [d for d, to in ep.datagrams_to_send(now) if to == VICTIM]
        assert later == [], "an unverified address got something that answers nothing"
    assert not ep.sessions  # every half-open session gone [HB-SES-4]
    assert tally.oversized == [], "oversized answers"
    assert tally.ratio <= 1.0
    if auth:
        assert tally.out == 0  # nothing unauthenticated is answered [HB-AUTH-6]
    else:
        RATIOS[case] = tally.ratio
    assert set(tally.per_type) <= {"ACK"}


def test_the_largest_ratio_is_one_and_it_is_reached() -> None:
    """Run after the cases above (or alone): the bound is tight, met by a bare opening
    HEARTBEAT answered by a bare ACK of the same 28 bytes, and never exceeded."""
    if not RATIOS:
        for case in CASES:
            test_endpoint_never_amplifies(case, auth=False)
    assert max(RATIOS.values()) == 1.0
    assert RATIOS["opening HEARTBEAT"] == 1.0
    assert RATIOS["opening HEARTBEAT of 1200 bytes"] == pytest.approx(28 / 1200)
    assert RATIOS["opening HEARTBEAT with a 128-byte piggyback"] == pytest.approx(28 / 159)
    assert RATIOS["garbage of odd sizes"] == 0.0


def test_an_amplifying_responder_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The measurement has teeth: ACKs that carried a 100-byte piggyback would answer a 28-byte
    opening HEARTBEAT with 131 bytes, and the test above would fail."""
    real = Session._frame

    def padded_ack(self: Session, ftype: FrameType, *args: Any, **kw: Any) -> bytes:
        if ftype is ACK:
            kw["tlvs"] = pack_tlv(TlvType.PAYLOAD, bytes(100))
        return real(self, ftype, *args, **kw)

    monkeypatch.setattr(Session, "_frame", padded_ack)
    with pytest.raises(AssertionError, match="oversized"):
        test_endpoint_never_amplifies("opening HEARTBEAT", auth=False)


@pytest.mark.parametrize("case", list(CASES))
async def test_udp_server_never_amplifies(case: str, autojump_clock: object) -> None:
    """The same on the wire: the UDP server on an in-memory network, the bytes counted as the
    network carries them, and HANDSHAKE_TIMEOUT waited out after the attack."""
    net = MemoryNetwork(queue_limit=100_000)
    carried: Counter[tuple[tuple[str, int], tuple[str, int]]] = Counter()

    def count(data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> bool:
        carried[src, dst] += len(data)
        if src == SERVER and dst == VICTIM:
            answered.append(len(data))
        return False

    answered: list[int] = []
    net.drop = count
    victim = net.socket(VICTIM)  # the spoofed address: the attacker sends "from" it
    async with serve("udp://10.0.0.2:7373", CONFIG, sock=net.socket(SERVER), limits=LIMITS) as s:
        for data in CASES[case]():
            before = len(answered)
            victim.send_nowait(data, SERVER)
            await trio.sleep(0.01)
            assert all(size <= len(data) for size in answered[before:])
            assert len(answered) - before <= 1
        await trio.sleep(CONFIG.handshake_timeout + 1.0)
        assert s.sessions() == []
    into, out = carried[VICTIM, SERVER], carried[SERVER, VICTIM]
    assert out <= into
    if case in RATIOS:
        assert out / into == pytest.approx(RATIOS[case])
