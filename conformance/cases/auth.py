"""Section 10: authentication, for a target that claims the ``auth`` feature.

The suite learns the target's keys from ``--auth-key`` (as many as the target accepts); every
frame it then sends is signed with the first, and every frame it receives must verify. Without
keys these cases are UNSUPPORTED: the target does not claim the feature.
"""

from __future__ import annotations

import secrets
import zlib

from conformance.context import Context
from conformance.model import Category, Unsupported
from conformance.peer import ScriptedPeer
from conformance.registry import case
from hbproto import encode
from hbproto.auth import AuthKeys, compute_mac
from hbproto.frame import AUTH_MAC_SIZE, CRC_SIZE, Frame, FrameType, State, TlvType

from ._common import is_ack_for, still_up

_SIGNED_TAIL = AUTH_MAC_SIZE + CRC_SIZE  # the MAC and the CRC after the signed bytes


def _keys(ctx: Context) -> AuthKeys:
    if ctx.auth is None:
        raise Unsupported("no --auth-key given: the target does not claim the auth feature")
    return ctx.auth


def _resealed(body: bytes) -> bytes:
    """``body`` (a frame without its CRC) with a correct CRC: a defect only the MAC shows."""
    return body + zlib.crc32(body).to_bytes(CRC_SIZE, "big")


def _bad_mac(signed: bytes) -> bytes:
    """A signed frame with one bit of its MAC flipped and its CRC made right again."""
    body = bytearray(signed[:-CRC_SIZE])
    body[-1] ^= 0x01
    return _resealed(bytes(body))


def _heartbeat(peer: ScriptedPeer, **kw: object) -> tuple[Frame, bytes]:
    frame = peer.frame(FrameType.HEARTBEAT, **kw)  # type: ignore[arg-type]
    return frame, encode(frame)


async def _unanswered(
    ctx: Context, peer: ScriptedPeer, frame: Frame, raw: bytes, what: str
) -> None:
    """Send ``raw`` (the encoding of ``frame``, altered); it must draw no ACK, and the
    session must stay UP."""
    await peer.send(raw, note=what, sign=False)
    await peer.expect_nothing(f"ACK to {what}", is_ack_for(frame), 3 * peer.interval)
    await still_up(ctx, peer, what)


@case(
    "10/every-frame-signed",
    "Every frame the target sends in the session ends in an AUTH TLV whose MAC verifies",
    requires=("HB-AUTH-1", "HB-AUTH-2", "HB-AUTH-3", "HB-TLV-6"),
    category=Category.VALID,
)
async def every_frame_signed(ctx: Context) -> None:
    keys = _keys(ctx)
    peer = await ctx.session()
    hb = await peer.heartbeat()
    await peer.expect("an ACK to the HEARTBEAT", is_ack_for(hb), 1.0)
    await peer.wait_until(peer.received[-1].time + 2 * peer.interval)
    ctx.check(not peer.invalid, "no frame failing authentication", str(peer.invalid[:4]))
    for got in peer.received:
        raw = got.raw
        key_id = raw[-_SIGNED_TAIL - 1]
        last = got.frame.tlvs[-1] if got.frame.tlvs else None
        ctx.check(
            last is not None and last.type == TlvType.AUTH,
            "AUTH as the last TLV of every frame [HB-AUTH-1]",
            f"{got.frame.type.name} without it",
        )
        ctx.check(key_id in keys.keys, f"a Key ID among {sorted(keys.keys)}", f"Key ID {key_id}")
        mac = compute_mac(keys.keys[key_id], raw[:-_SIGNED_TAIL])  # [HB-AUTH-2], by the rule
        ctx.check(
            raw[-_SIGNED_TAIL:-CRC_SIZE] == mac,
            "the MAC of HMAC-SHA-256 over the frame up to the MAC, first 16 bytes",
            f"{raw[-_SIGNED_TAIL:-CRC_SIZE].hex()} where {mac.hex()} was due",
        )
    kinds = {got.frame.type for got in peer.received}
    ctx.check(
        {FrameType.ACK, FrameType.HEARTBEAT} <= kinds,
        "signed ACKs and HEARTBEATs seen",
        ", ".join(sorted(k.name for k in kinds)),
    )


@case(
    "10/bad-mac",
    "A HEARTBEAT of the session whose MAC does not verify gets no answer and changes nothing",
    requires=("HB-AUTH-4", "HB-RX-11", "HB-RX-14"),
    category=Category.MALFORMED,
)
async def bad_mac(ctx: Context) -> None:
    keys = _keys(ctx)
    peer = await ctx.session()
    frame, raw = _heartbeat(peer, state=State.DOWN)
    await _unanswered(ctx, peer, frame, _bad_mac(keys.sign(raw)), "a HEARTBEAT with a bad MAC")


@case(
    "10/unsigned",
    "A HEARTBEAT of the session without AUTH gets no answer and changes nothing",
    requires=("HB-AUTH-4", "HB-RX-11", "HB-RX-14"),
    category=Category.MALFORMED,
)
async def unsigned(ctx: Context) -> None:
    _keys(ctx)
    peer = await ctx.session()
    frame, raw = _heartbeat(peer, state=State.DOWN)
    await _unanswered(ctx, peer, frame, raw, "a HEARTBEAT without AUTH")


@case(
    "10/unknown-key",
    "A HEARTBEAT signed with a Key ID the target does not have gets no answer",
    requires=("HB-AUTH-4", "HB-RX-11", "HB-RX-14"),
    category=Category.MALFORMED,
)
async def unknown_key(ctx: Context) -> None:
    keys = _keys(ctx)
    stranger = min(set(range(256)) - set(keys.keys))
    other = AuthKeys({stranger: secrets.token_bytes(32)}, stranger)
    peer = await ctx.session()
    frame, raw = _heartbeat(peer, state=State.DOWN)
    await _unanswered(ctx, peer, frame, other.sign(raw), f"a HEARTBEAT signed with key {stranger}")


@case(
    "10/opening-verified",
    "An opening HEARTBEAT whose MAC does not verify opens no session and gets no answer",
    requires=("HB-AUTH-6", "HB-SES-6", "HB-RX-18", "HB-AUTH-4"),
    category=Category.MALFORMED,
)
async def opening_verified(ctx: Context) -> None:
    keys = _keys(ctx)
    peer = await ctx.peer()
    _, raw = _heartbeat(peer, state=State.DOWN)
    await peer.send(
        _bad_mac(keys.sign(raw)), note="an opening HEARTBEAT with a bad MAC", sign=False
    )
    await peer.expect_nothing(
        "answer to an opening HEARTBEAT with a bad MAC", lambda f: f.your_id == peer.my_id, 1.0
    )
    await peer.handshake(3.0)  # the same identifiers, signed: the session comes up


@case(
    "10/any-configured-key",
    "HEARTBEATs signed with each of the target's keys are all answered",
    requires=("HB-AUTH-7", "HB-AUTH-4"),
    category=Category.VALID,
)
async def any_configured_key(ctx: Context) -> None:
    keys = _keys(ctx)
    if len(keys.keys) < 2:
        raise Unsupported("give every key the target accepts (--auth-key twice or more)")
    peer = await ctx.session()
    for key_id, key in sorted(keys.keys.items()):
        await peer.wait_until(peer.last_sent + peer.interval)
        frame, raw = _heartbeat(peer)
        signer = AuthKeys({key_id: key}, key_id)
        await peer.send(signer.sign(raw), note=f"signed with key {key_id}", sign=False)
        got = await peer.expect(
            f"an ACK to a HEARTBEAT signed with key {key_id}", is_ack_for(frame), 1.0
        )
        ctx.check(got.frame.state is State.UP, "Sta UP", got.frame.state.name)
