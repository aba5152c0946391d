"""Authentication (SPEC.md section 10), through the core's own interfaces.

A scripted peer (tests/peer.py) signs its frames with the keys of the session or forges them
without; whole deployments run on the simulated network (tests/simnet.py). Each test names the
requirements it checks. Keys here are fixed test values, never random, so runs repeat.
"""

from __future__ import annotations

import copy
import hmac
import pickle
import random
import zlib
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from functools import partial
from typing import Unpack

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbproto import AuthKeys, Config, Connection, Endpoint, Limits
from hbproto.auth import check, compute_mac
from hbproto.errors import FrameError, LocalProtocolError
from hbproto.events import (
    Event,
    MessageReceived,
    PeerDown,
    PeerRestarted,
    PeerUp,
    SessionClosed,
)
from hbproto.frame import (
    AUTH_TLV_SIZE,
    MIN_FRAME,
    CloseCode,
    Frame,
    FrameType,
    State,
    TlvType,
    decode,
    encode,
    pack,
    pack_tlv,
)
from hbproto.session import SEQ_BUDGET, Session
from tests.peer import (
    DROP_COUNTERS,
    FrameOptions,
    Peer,
    collect,
    deliver,
    deliver_stream,
    drain,
    handshake,
    split_stream,
)
from tests.simnet import Network
from tests.test_codec_properties import valid_frames

HB, ACK, DATA, CLOSE = FrameType.HEARTBEAT, FrameType.ACK, FrameType.DATA, FrameType.CLOSE
CLOSED, DOWN, INIT, UP = State.CLOSED, State.DOWN, State.INIT, State.UP

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(100, 132))
KEY_OTHER = b"not the key: " + bytes(19)
KEYS = AuthKeys({1: KEY_1}, active=1)
# Same setting as tests/test_session_rules.py: once UP, TxInterval = ExpectedRemote = 100 ms,
# DetectionTime = 300 ms.
CONFIG = Config(interval=0.1, min_rx=0.1, multiplier=3, auth=KEYS)
DT = 0.3
EXPECTED = 0.1
OTHER_ADDR = ("203.0.113.66", 666)


# --- Helpers ----------------------------------------------------------------------------------


@dataclass
class AuthPeer(Peer):
    """A scripted peer whose every frame is signed with ``keys`` (``None``: sent unsigned)."""

    keys: AuthKeys | None = KEYS

    def _sign(self, data: bytes) -> bytes:
        return data if self.keys is None else self.keys.sign(data)

    def heartbeat(self, **kw: Unpack[FrameOptions]) -> bytes:
        return self._sign(super().heartbeat(**kw))

    def ack(self, heartbeat: Frame, *, state: State | None = None) -> bytes:
        return self._sign(super().ack(heartbeat, state=state))

    def data(self, payload: bytes, *, seq: int | None = None) -> bytes:
        return self._sign(super().data(payload, seq=seq))

    def close(self, code: int = CloseCode.SHUTDOWN, text: str | None = None) -> bytes:
        return self._sign(super().close(code, text))

    def unsigned(self) -> Peer:
        """A view of this peer that sends the same frames unsigned, sharing its identifiers
        and counters: what an attacker who knows all of those, but not the key, can send."""
        return _Unsigned(self)


class _Unsigned(Peer):
    def __init__(self, signed: AuthPeer) -> None:
        self.__dict__ = signed.__dict__


def _fix_crc(data: bytes | bytearray) -> bytes:
    body = bytes(data[:-4])
    return body + zlib.crc32(body).to_bytes(4, "big")


def _flip(data: bytes, bit: int) -> bytes:
    """``data`` with one bit flipped and the CRC made to match again, so the frame reaches
    the checks after V-5."""
    out = bytearray(data)
    out[bit // 8] ^= 0x80 >> (bit % 8)
    return _fix_crc(out)


def _strip_auth(data: bytes) -> bytes:
    """A signed frame with its AUTH TLV cut off, Length and CRC made to match."""
    body = bytearray(data[: -AUTH_TLV_SIZE - 4])
    body[2:4] = (len(body) + 4).to_bytes(2, "big")
    return _fix_crc(body + bytes(4))


def _ids(seed: int) -> Callable[[], int]:
    rng = random.Random(seed)
    return lambda: rng.getrandbits(32)


def _responder(config: Config = CONFIG, limits: Limits | None = None) -> Endpoint:
    return Endpoint(config, accept=True, limits=limits, rng=random.Random(3), id_source=_ids(4))


def _drops(source: Endpoint | Connection) -> Counter[str]:
    return Counter({n: source.counters[n] for n in DROP_COUNTERS if source.counters[n]})


def _sent(ep: Endpoint, now: float) -> list[tuple[bytes, object]]:
    return ep.datagrams_to_send(now)


def _inject(ep: Endpoint, frames: list[bytes], addr: Hashable, now: float) -> list[bytes]:
    """Run the core's timers up to ``now``, then feed it ``frames``; what it sends in answer."""
    ep.datagrams_to_send(now)
    for frame in frames:
        ep.receive_datagram(frame, addr, now)
    return [raw for raw, _ in ep.datagrams_to_send(now)]


def _assert_signed(data: bytes, keys: AuthKeys = KEYS) -> Frame:
    """[HB-AUTH-1] to [HB-AUTH-3]: AUTH last, the active key, a MAC that verifies, CRC last."""
    frame = decode(data)
    assert frame.tlvs[-1].type == TlvType.AUTH
    assert frame.auth is not None
    key_id, mac = frame.auth
    assert key_id == keys.active
    assert mac == compute_mac(keys.keys[key_id], data[:-20])  # all but the MAC and the CRC
    assert keys.verify(data)
    assert check(keys, frame, data) is None
    return frame


@dataclass
class Scene:
    """An authenticated session, UP since t = 0; its last valid frame arrived at 0.1 s."""

    ep: Endpoint
    peer: AuthPeer
    sid: int
    acked: Frame  # a HEARTBEAT of the core, acknowledged once
    recorded: list[bytes]  # every signed frame the peer sent, for replays
    last_valid: float = 0.1


def _scene() -> Scene:
    ep = _responder()
    peer = AuthPeer()
    recorded: list[bytes] = []
    sid = _auth_handshake(ep, peer, 0.0, recorded)
    drain(ep)
    data = peer.data(b"x")
    recorded.append(data)
    deliver(ep, peer, data, 0.05)
    assert [type(e) for e in drain(ep)] == [MessageReceived]
    _run(ep, 0.1, peer)
    acked = peer.heartbeats()[0]
    ack = peer.ack(acked)
    recorded.append(ack)
    assert deliver(ep, peer, ack, 0.1) == []
    drain(ep)
    return Scene(ep, peer, sid, acked, recorded)


def _auth_handshake(ep: Endpoint, peer: AuthPeer, now: float, recorded: list[bytes]) -> int:
    """The three-way handshake of SPEC section 3 with signed frames; returns the session."""
    peer.your_id, peer.state = 0, DOWN
    for expected in (INIT, UP):
        frame = peer.heartbeat()
        recorded.append(frame)
        ep.receive_datagram(frame, peer.addr, now)
        ((raw, addr),) = _sent(ep, now)
        assert addr == peer.addr
        ack = _assert_signed(raw, peer.keys or KEYS)
        peer.learn(ack)
        assert (ack.type, ack.state) == (ACK, expected)
        peer.state = UP
    return peer.your_id


def _run(ep: Endpoint, until: float, *peers: Peer) -> list[tuple[float, Frame]]:
    out: list[tuple[float, Frame]] = []
    while (at := ep.get_timer()) is not None and at <= until:
        out.extend((at, f) for f in collect(ep, at, *peers))
    return out


def _run_with(
    ep: Endpoint,
    peer: Peer,
    until: float,
    inject: Callable[[], bytes] | None = None,
    *,
    start: float = 0.0,
    every: float = 0.06,
) -> tuple[float | None, list[Event], list[bytes]]:
    """Run the core's timers up to ``until`` while ``inject()`` arrives from the peer's address
    every ``every`` seconds from ``start`` on. Returns when PeerDown came (or ``None``), every
    event, and every datagram the core sent in answer to an injected frame."""
    events: list[Event] = []
    answers: list[bytes] = []
    down: float | None = None
    next_inject = start
    while True:
        at = ep.get_timer()
        if inject is not None and next_inject <= until and (at is None or next_inject < at):
            ep.receive_datagram(inject(), peer.addr, next_inject)
            answers += [raw for raw, _ in ep.datagrams_to_send(next_inject)]
            next_inject += every
            new = drain(ep)
        elif at is not None and at <= until:
            for raw, _ in ep.datagrams_to_send(at):
                peer.learn(decode(raw))
            new = drain(ep)
            if down is None and any(isinstance(e, PeerDown) for e in new):
                down = at
        else:
            return down, events, answers
        events += new


# --- AuthKeys: the configuration -------------------------------------------------------------


def test_auth_keys_hold_validated_immutable_secrets() -> None:
    """[HB-AUTH-9]: the keys are local configuration, fixed once given: the object is frozen,
    its mapping read-only and copied (a caller changing its dict changes nothing), byte-like
    keys are stored as bytes, and ``repr`` never shows a secret."""
    mutable = bytearray(KEY_1)
    source: dict[int, bytes | bytearray] = {3: mutable, 250: KEY_2}
    keys = AuthKeys(source, active=250)  # type: ignore[arg-type]
    mutable[0] ^= 0xFF
    source[9] = KEY_OTHER
    assert dict(keys.keys) == {3: KEY_1, 250: KEY_2}
    assert all(type(k) is bytes for k in keys.keys.values())
    with pytest.raises(TypeError):
        keys.keys[4] = KEY_1  # type: ignore[index]
    with pytest.raises(AttributeError):
        keys.active = 3  # type: ignore[misc]
    assert KEY_1.hex() not in repr(keys)
    assert str(KEY_1) not in repr(keys)
    assert repr(keys) == "AuthKeys(key_ids=[3, 250], active=250)"
    assert repr(KEY_2) not in repr(Config(auth=keys))
    # Equal keys are equal configuration, and usable as dict keys like the rest of a Config.
    assert keys == AuthKeys({3: KEY_1, 250: KEY_2}, active=250)
    assert keys != AuthKeys({3: KEY_1, 250: KEY_2}, active=3)
    assert hash(Config(auth=keys)) == hash(Config(auth=AuthKeys({3: KEY_1, 250: KEY_2}, 250)))
    assert replace(keys, active=3).active == 3
    assert Config().auth is None  # no authentication unless configured
    # A config with keys copies and pickles (to hand to another process, say), keys working.
    for clone in (copy.deepcopy(Config(auth=keys)), pickle.loads(pickle.dumps(Config(auth=keys)))):
        assert clone.auth == keys
        assert clone.auth is not None
        assert clone.auth.verify(keys.sign(AuthPeer(keys=None).heartbeat()))


@pytest.mark.parametrize(
    ("keys", "active"),
    [
        pytest.param({}, 0, id="no-keys"),
        pytest.param({1: KEY_1}, 2, id="active-missing"),
        pytest.param({-1: KEY_1}, -1, id="id-negative"),
        pytest.param({256: KEY_1}, 256, id="id-too-large"),
        pytest.param({True: KEY_1}, True, id="id-bool"),
        pytest.param({"1": KEY_1}, "1", id="id-str"),
        pytest.param({1: b""}, 1, id="key-empty"),
        pytest.param({1: "secret"}, 1, id="key-str"),
        pytest.param({1: 12345}, 1, id="key-int"),
        pytest.param([(1, KEY_1)], 1, id="not-a-mapping"),
    ],
)
def test_auth_keys_refuse_what_the_spec_cannot_carry(keys: object, active: object) -> None:
    """SPEC section 10: Key IDs are 0 to 255, keys are secret byte strings, and the active
    key is one of them; anything else is refused when configured, not when a frame is sent."""
    with pytest.raises(LocalProtocolError):
        AuthKeys(keys, active)  # type: ignore[arg-type]


def test_short_keys_are_accepted() -> None:
    """[HB-AUTH-8] is a SHOULD (at least 32 random bytes): a one-byte key still works."""
    keys = AuthKeys({0: b"k"}, active=0)
    assert keys.verify(keys.sign(AuthPeer(keys=None).heartbeat()))


def test_config_refuses_anything_but_auth_keys() -> None:
    with pytest.raises(LocalProtocolError):
        Config(auth={1: KEY_1})  # type: ignore[arg-type]


# --- Signing and verifying --------------------------------------------------------------------


def test_mac_is_truncated_hmac_sha256_over_everything_before_it() -> None:
    """[HB-AUTH-2], [HB-AUTH-3]: the MAC is HMAC-SHA-256 truncated to 16 bytes, over the frame
    from offset 0 through the Key ID with the final Length; the CRC-32 covers the MAC."""
    unsigned = AuthPeer(keys=None, your_id=0x0B0B0B0B).data(b"hello")
    signed = KEYS.sign(unsigned)
    assert len(signed) == len(unsigned) + AUTH_TLV_SIZE == len(unsigned) + 20
    assert int.from_bytes(signed[2:4], "big") == len(signed)
    signed_region = signed[:-20]
    assert signed_region[-4:] == bytes([0x80, 0x00, 0x11, 1])  # Type, Value Length, Key ID
    assert signed[:2] == unsigned[:2]
    assert signed[4:-24] == unsigned[4:-4]
    expected = hmac.new(KEY_1, signed_region, "sha256").digest()[:16]
    assert signed[-20:-4] == expected == compute_mac(KEY_1, signed_region)
    assert int.from_bytes(signed[-4:], "big") == zlib.crc32(signed[:-4])
    assert decode(signed).payload == b"hello"


def test_core_encoder_and_sign_agree() -> None:
    """The core signs its own frames inside :func:`pack`; the same frame signed afterwards
    with :meth:`AuthKeys.sign` is byte-identical."""
    tlvs = pack_tlv(TlvType.PAYLOAD, b"load=3")
    fields = (HB, UP, True, False, 3, 0x0C0C0C0C, 0x0D0D0D0D, 42, 7, 0x40C8, 0x1388)
    assert pack(*fields, tlvs, KEYS) == KEYS.sign(pack(*fields, tlvs))
    assert pack(*fields, b"", KEYS) == KEYS.sign(pack(*fields))


def test_verify_uses_a_constant_time_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    """[HB-AUTH-4]: MACs are compared with :func:`hmac.compare_digest`, whose time does not
    depend on where the MACs differ. (The time itself is not testable here: SPEC Table 17.)"""
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    signed = KEYS.sign(AuthPeer(keys=None).heartbeat())
    assert KEYS.verify(signed)
    assert not KEYS.verify(_flip(signed, (len(signed) - 5) * 8))  # last MAC byte
    assert len(calls) == 2


def test_every_configured_key_is_accepted_whichever_is_active() -> None:
    """[HB-AUTH-7]: a receiver accepts every Key ID it has, not only its active one; one it
    does not have fails even when the secret is right (``auth_failed``, [HB-AUTH-4])."""
    both = AuthKeys({1: KEY_1, 2: KEY_2}, active=1)
    frame = AuthPeer(keys=None).heartbeat()
    for signer in (AuthKeys({1: KEY_1}, 1), AuthKeys({2: KEY_2}, 2), replace(both, active=2)):
        assert both.verify(signer.sign(frame))
    for signer in (AuthKeys({9: KEY_1}, 9), AuthKeys({2: KEY_1}, 2), AuthKeys({1: KEY_2}, 1)):
        signed = signer.sign(frame)
        assert not both.verify(signed)
        assert check(both, decode(signed), signed) == "auth_failed"


def test_check_names_the_counter_of_v11() -> None:
    """Check V-11 and its three counters (SPEC section 7, 13.5)."""
    plain = AuthPeer(keys=None).heartbeat()
    signed = KEYS.sign(plain)
    assert check(None, decode(plain), plain) is None
    assert check(None, decode(signed), signed) == "auth_unexpected"  # [HB-AUTH-5]
    assert check(KEYS, decode(plain), plain) == "auth_missing"  # [HB-AUTH-4]
    assert check(KEYS, decode(signed), signed) is None
    tampered = _flip(signed, 8 * 20)  # a bit of Desired TX Interval
    assert check(KEYS, decode(tampered), tampered) == "auth_failed"
    assert not KEYS.verify(plain)
    assert not KEYS.verify(b"")
    assert not KEYS.verify(bytes(48))


_PROPERTY = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
key_sets = st.dictionaries(
    st.integers(0, 255), st.binary(min_size=1, max_size=80), min_size=1, max_size=4
)


@st.composite
def signed_frames(draw: st.DrawFn) -> tuple[AuthKeys, bytes]:
    keys = draw(key_sets)
    auth = AuthKeys(keys, active=draw(st.sampled_from(sorted(keys))))
    frame = draw(valid_frames())
    frame = replace(frame, tlvs=tuple(t for t in frame.tlvs if t.type != TlvType.AUTH))
    return auth, auth.sign(encode(frame))


@_PROPERTY
@given(signed_frames(), st.data())
def test_property_sign_verifies_and_any_bit_flip_fails(
    signed: tuple[AuthKeys, bytes], data: st.DataObject
) -> None:
    """[HB-AUTH-2], [HB-AUTH-4]: for random frames and keys, a signed frame decodes and
    verifies; flipping any one bit of the signed region or of the MAC (CRC made to match
    again) never verifies, and such a frame is never accepted: it fails decoding or V-11."""
    keys, frame = signed
    decoded = decode(frame)
    assert check(keys, decoded, frame) is None
    key = keys.keys[keys.active]
    assert frame[-20:-4] == compute_mac(key, frame[:-20])
    bit = data.draw(st.integers(0, (len(frame) - 4) * 8 - 1), label="bit")
    flipped = _flip(frame, bit)
    assert not keys.verify(flipped)
    try:
        tampered = decode(flipped)
    except FrameError:
        return
    assert check(keys, tampered, flipped) in ("auth_failed", "auth_missing")


@_PROPERTY
@given(signed_frames(), key_sets)
def test_property_other_keys_never_verify(
    signed: tuple[AuthKeys, bytes], other: dict[int, bytes]
) -> None:
    """[HB-AUTH-4]: keys that do not include the signing key (same Key ID, other secret; or
    other Key IDs) reject the frame."""
    keys, frame = signed
    secret = keys.keys[keys.active]
    other = {k: v for k, v in other.items() if v != secret or k != keys.active}
    if other:
        assert not AuthKeys(other, active=min(other)).verify(frame)


# --- Sending: every frame of an authenticated session is signed ---------------------------------


def test_every_frame_of_a_session_is_signed() -> None:
    """[HB-AUTH-1], [HB-AUTH-2], [HB-AUTH-3]: the initiator's first HEARTBEAT (Your
    Identifier 0), periodic HEARTBEATs, ACKs, DATA and CLOSE all carry AUTH last, with the
    active key, and the MAC verifies. An ACK is no larger than its HEARTBEAT [HB-ACK-2]."""
    ep = Endpoint(CONFIG, rng=random.Random(1), id_source=_ids(2))
    peer = AuthPeer(my_id=0x0B0B0B0B, addr=("192.0.2.9", 7373))
    sid = ep.connect(peer.addr, 0.0)
    sent: list[bytes] = []
    ((opener, _),) = _sent(ep, 0.0)
    sent.append(opener)
    first = _assert_signed(opener)
    assert (first.type, first.state, first.your_id) == (HB, DOWN, 0)
    peer.learn(first)
    peer.your_id = first.my_id
    peer.state = INIT
    ep.receive_datagram(peer.ack(first), peer.addr, 0.01)  # INIT: the initiator goes UP
    sent += [raw for raw, _ in _sent(ep, 0.01)]
    assert any(isinstance(e, PeerUp) for e in drain(ep))
    peer.state = UP
    beat = peer.heartbeat()
    ep.receive_datagram(beat, peer.addr, 0.02)
    answer = _sent(ep, 0.02)
    assert len(answer) == 1
    assert len(answer[0][0]) <= len(beat)
    sent += [raw for raw, _ in answer]
    ep.set_piggyback(sid, b"load=1")
    ep.send(sid, b"message", 0.03)
    sent += [raw for raw, _ in _sent(ep, 0.03)]
    sent += [raw for raw, _ in _sent(ep, ep.get_timer() or 0.0)]  # a periodic HEARTBEAT
    ep.close(sid, 0.2, text="bye")
    sent += [raw for raw, _ in _sent(ep, 0.2)]
    frames = [_assert_signed(raw) for raw in sent]
    kinds = {(f.type, f.payload is not None or f.close_text is not None) for f in frames}
    assert kinds >= {(HB, False), (HB, True), (ACK, False), (DATA, True), (CLOSE, True)}


def test_message_size_limit_counts_the_auth_tlv() -> None:
    """[HB-DATA-4]: a message that fits in 1200 bytes without AUTH but not with it is
    refused; the largest message that fits is sent as a 1200-byte frame."""
    scene = _scene()
    room = 1200 - MIN_FRAME - 3 - AUTH_TLV_SIZE
    _run(scene.ep, 0.15)
    with pytest.raises(LocalProtocolError):
        scene.ep.send(scene.sid, bytes(room + 1), 0.15)
    scene.ep.send(scene.sid, bytes(room), 0.15)
    ((raw, _),) = _sent(scene.ep, 0.15)
    assert len(raw) == 1200
    _assert_signed(raw)


# --- Receiving: check V-11 ----------------------------------------------------------------------


def _forge_bare(s: Scene) -> bytes:
    """A bare 28-byte HEARTBEAT with the right identifiers and the next sequence number: what
    the fast path of an unauthenticated session takes [HB-AUTH-4]."""
    return s.peer.unsigned().heartbeat()


FORGERIES: list[tuple[str, Callable[[Scene], bytes], str]] = [
    ("missing-auth", _forge_bare, "auth_missing"),
    (
        "missing-auth-data",
        lambda s: s.peer.unsigned().data(b"forged"),
        "auth_missing",
    ),
    ("wrong-key", lambda s: AuthKeys({1: KEY_OTHER}, 1).sign(_forge_bare(s)), "auth_failed"),
    ("unknown-key-id", lambda s: AuthKeys({9: KEY_1}, 9).sign(_forge_bare(s)), "auth_failed"),
    ("tampered-mac", lambda s: _flip(s.peer.heartbeat(), 8 * 37), "auth_failed"),
    ("tampered-field", lambda s: _flip(s.peer.heartbeat(), 8 * 12 + 31), "auth_failed"),
    ("stripped-auth", lambda s: _strip_auth(s.peer.heartbeat()), "auth_missing"),
    (
        "down-wrong-key",
        lambda s: AuthKeys({1: KEY_OTHER}, 1).sign(s.peer.unsigned().heartbeat(state=DOWN)),
        "auth_failed",
    ),
    ("close-unsigned", lambda s: s.peer.unsigned().close(), "auth_missing"),
    (
        "close-wrong-key",
        lambda s: AuthKeys({1: KEY_2}, 1).sign(s.peer.unsigned().close()),
        "auth_failed",
    ),
]


@pytest.mark.parametrize(
    ("forge", "counter"),
    [pytest.param(forge, counter, id=name) for name, forge, counter in FORGERIES],
)
def test_frame_failing_authentication_has_no_effect(
    forge: Callable[[Scene], bytes], counter: str
) -> None:
    """[HB-RX-11], [HB-AUTH-4], [HB-RX-14], [HB-DET-1], [HB-SM-7]: a frame without AUTH, with
    a key this end does not have, or whose MAC does not match is counted under its SPEC name
    and does nothing else: no answer (not even to a HEARTBEAT), no event, no state change
    (a forged CLOSE closes nothing, a forged Sta DOWN brings nothing down), and the detection
    timer keeps running from the last valid frame."""
    scene = _scene()
    ep = scene.ep
    _run(ep, 0.3, scene.peer)
    before = _drops(ep)
    assert _inject(ep, [forge(scene)], scene.peer.addr, 0.3) == []
    assert _drops(ep) - before == Counter({counter: 1})
    assert drain(ep) == []
    info = ep.snapshot(scene.sid, 0.3)
    assert (info.state, info.last_rx, info.remote_id) == (UP, 0.1, scene.peer.my_id)
    down, events, _ = _run_with(ep, scene.peer, 1.0)
    assert down is not None
    assert scene.last_valid + DT <= down <= scene.last_valid + DT + EXPECTED
    assert not any(isinstance(e, SessionClosed) for e in events)


@pytest.mark.parametrize(
    ("forge", "counter"),
    [pytest.param(forge, counter, id=name) for name, forge, counter in FORGERIES[:7]],
)
def test_only_forged_frames_cannot_keep_a_session_alive(
    forge: Callable[[Scene], bytes], counter: str
) -> None:
    """[HB-AUTH-4], [HB-DET-1], [HB-DET-2], [HB-DET-3]: the peer falls silent after 0.1 s and
    an attacker who knows the identifiers and the sequence numbers, but not the key, sends a
    fresh forgery every 60 ms (the pace the control below needs to stay clear of the
    too-frequent rule). None is answered, and the session goes DOWN within
    [last + DetectionTime, last + DetectionTime + ExpectedRemote]."""
    scene = _scene()
    down, events, answers = _run_with(scene.ep, scene.peer, 1.0, lambda: forge(scene), start=0.11)
    assert answers == []
    assert down is not None
    assert scene.last_valid + DT <= down <= scene.last_valid + DT + EXPECTED
    assert scene.ep.counters[counter] >= 10
    assert [type(e) for e in events if not isinstance(e, PeerDown)] == []


def test_forged_bare_heartbeats_do_keep_an_unauthenticated_session_alive() -> None:
    """The control for the test above: without authentication the same forgeries (bare
    HEARTBEATs, taken by the fast path) are valid frames and keep the session UP. So the
    authenticated session went DOWN because of V-11, not because the forgeries were wrong."""
    ep = _responder(replace(CONFIG, auth=None))
    peer = Peer()
    handshake(ep, peer, 0.0)
    drain(ep)
    down, _, answers = _run_with(ep, peer, 1.0, peer.heartbeat, start=0.11)
    assert down is None
    assert len(answers) >= 10
    assert _drops(ep) == Counter()


def test_responder_verifies_before_creating_a_session() -> None:
    """[HB-AUTH-6], [HB-SES-6], [HB-RX-18]: an opening HEARTBEAT (Your Identifier 0) that
    fails V-11 against the endpoint's policy creates nothing (no identifier is even drawn),
    gets no answer and is counted; a signed one creates the session and is answered."""
    drawn: list[int] = []
    source = _ids(5)

    def ids() -> int:
        drawn.append(source())
        return drawn[-1]

    ep = Endpoint(CONFIG, accept=True, rng=random.Random(3), id_source=ids)
    peer = AuthPeer()
    openers = {
        "auth_missing": peer.unsigned().heartbeat(),
        "auth_failed": AuthKeys({1: KEY_OTHER}, 1).sign(peer.unsigned().heartbeat()),
    }
    for counter, opener in openers.items():
        ep.receive_datagram(opener, peer.addr, 0.0)
        assert ep.datagrams_to_send(0.0) == []
        assert ep.counters[counter] == 1
    ep.receive_datagram(_flip(peer.heartbeat(), 8 * 4), peer.addr, 0.0)  # My Identifier
    assert ep.counters["auth_failed"] == 2
    assert ep.sessions == {}
    assert drawn == []
    assert drain(ep) == []
    assert ep.get_timer() is None
    ep.receive_datagram(peer.heartbeat(), peer.addr, 0.0)
    ((raw, _),) = ep.datagrams_to_send(0.0)
    assert _assert_signed(raw).state is INIT
    assert len(ep.sessions) == 1
    assert len(drawn) == 1


def test_refused_opening_frame_fails_v9_whatever_its_auth() -> None:
    """[HB-RX-18]: when the endpoint would not create a session anyway (a limit is reached),
    an opening frame fails V-9 (``unknown_session``) before its AUTH is looked at."""
    ep = _responder(limits=Limits(max_half_open=0))
    peer = AuthPeer()
    for opener in (peer.heartbeat(), peer.unsigned().heartbeat()):
        ep.receive_datagram(opener, peer.addr, 0.0)
    assert _drops(ep) == Counter(unknown_session=2)


def test_unauthenticated_endpoint_discards_signed_frames() -> None:
    """[HB-AUTH-5]: an endpoint without keys discards a frame that carries AUTH, correctly
    signed or not, as ``auth_unexpected``: no session is created for a signed opener."""
    ep = _responder(replace(CONFIG, auth=None))
    peer = AuthPeer()
    ep.receive_datagram(peer.heartbeat(), peer.addr, 0.0)
    assert ep.datagrams_to_send(0.0) == []
    assert ep.sessions == {}
    assert _drops(ep) == Counter(auth_unexpected=1)


def test_copy_of_the_opening_frame_is_checked_before_it_is_a_replay() -> None:
    """[HB-SES-7]: a copy of an opening frame for an established session goes through V-11
    and then fails V-12: signed, it is a ``replay``; forged, it fails authentication."""
    scene = _scene()
    opener = scene.recorded[0]
    assert decode(opener).your_id == 0
    forged = AuthKeys({1: KEY_OTHER}, 1).sign(
        scene.peer.unsigned().heartbeat(your_id=0, state=DOWN)
    )
    frames = [opener, _strip_auth(opener), forged]
    assert _inject(scene.ep, frames, scene.peer.addr, 0.2) == []
    assert _drops(scene.ep) == Counter(replay=1, auth_missing=1, auth_failed=1)


# --- An attacker who can only inject -----------------------------------------------------------


def test_injected_frames_cannot_bring_a_session_up() -> None:
    """SPEC 12.2, [HB-AUTH-4], [HB-AUTH-6]: an attacker on the path without the key replays
    the genuine initiator's opening HEARTBEAT from its own address (creating a half-open
    session, as SPEC section 10 says it can) and sees the ACK, but cannot sign the frame that
    would bring the session UP. The session never comes up and is deleted silently within
    HANDSHAKE_TIMEOUT [HB-SES-4]."""
    ep = _responder()
    genuine = AuthPeer()
    opener = genuine.heartbeat()
    attacker = AuthPeer(my_id=genuine.my_id, addr=OTHER_ADDR, keys=None)
    ep.receive_datagram(opener, OTHER_ADDR, 0.0)
    ((raw, addr),) = ep.datagrams_to_send(0.0)
    ack = decode(raw)
    assert addr == OTHER_ADDR
    assert ack.state is INIT
    assert len(raw) <= len(opener)
    attacker.learn(ack)
    attacker.state = UP
    for k in range(1, 25):
        forgeries = [
            attacker.heartbeat(),
            AuthKeys({1: KEY_OTHER}, 1).sign(attacker.heartbeat()),
            _flip(KEYS.sign(attacker.heartbeat()), 8 * 30),  # a MAC that does not match
        ]
        assert _inject(ep, forgeries, OTHER_ADDR, 0.1 * k) == []
    assert _drops(ep) == Counter(auth_missing=24, auth_failed=48)
    _run(ep, 10.0)
    assert ep.sessions == {}
    assert drain(ep) == []  # never up, so nothing to report


def test_injected_ack_cannot_bring_an_initiator_up() -> None:
    """[HB-AUTH-4]: an initiator's opening HEARTBEAT shows its identifier, sequence number
    and timestamp to an attacker on the path; an ACK built from them without the key (Sta
    INIT, which would take the session UP) is discarded and the session stays DOWN."""
    ep = Endpoint(CONFIG, rng=random.Random(1), id_source=_ids(2))
    target = ("192.0.2.9", 7373)
    sid = ep.connect(target, 0.0)
    ((raw, _),) = ep.datagrams_to_send(0.0)
    seen = decode(raw)
    attacker = AuthPeer(my_id=0x66666666, addr=target, keys=None, state=INIT)
    forgeries = [
        attacker.ack(seen),
        AuthKeys({1: KEY_OTHER}, 1).sign(attacker.ack(seen)),
        _flip(KEYS.sign(attacker.ack(seen)), 8 * 40),  # a MAC that does not match
    ]
    assert _inject(ep, forgeries, target, 0.01) == []
    assert drain(ep) == []
    info = ep.snapshot(sid, 0.01)
    assert (info.state, info.remote_id, info.last_rx) == (DOWN, 0, None)
    assert _drops(ep) == Counter(auth_missing=1, auth_failed=2)


def test_injected_close_cannot_close_a_session() -> None:
    """[HB-AUTH-4], [HB-CLOSE-3]: a forged CLOSE (unsigned, with another key, or a genuine
    signature on different bytes) is ignored; the genuine signed CLOSE closes the session."""
    scene = _scene()
    ep, peer = scene.ep, scene.peer
    forged = [
        peer.unsigned().close(CloseCode.SHUTDOWN, "bye"),
        AuthKeys({1: KEY_OTHER}, 1).sign(peer.unsigned().close()),
        _flip(peer.close(CloseCode.TIMEOUT), 8 * 19 + 7),  # reason code TIMEOUT -> 3
    ]
    assert _inject(ep, forged, peer.addr, 0.15) == []
    assert drain(ep) == []
    assert _drops(ep) == Counter(auth_missing=1, auth_failed=2)
    assert ep.snapshot(scene.sid, 0.15).state is UP
    ep.receive_datagram(peer.close(CloseCode.SHUTDOWN), peer.addr, 0.2)
    (closed,) = drain(ep)
    assert isinstance(closed, SessionClosed)
    assert closed.by_peer
    assert closed.code == CloseCode.SHUTDOWN
    assert scene.sid not in ep.sessions


# --- Replays ------------------------------------------------------------------------------------


def test_replays_inside_the_window_are_duplicates() -> None:
    """[HB-SEQ-3], [HB-RX-12], [HB-DATA-3], SPEC 12.3: a recorded authenticated frame that
    already arrived is a duplicate: it is discarded (``replay``) and a DATA message is not
    delivered twice; a replayed ACK answers nothing (``unsolicited_ack``, [HB-ACK-5])."""
    scene = _scene()
    ep, peer = scene.ep, scene.peer
    message = peer.data(b"once")
    deliver(ep, peer, message, 0.12)
    assert [type(e) for e in drain(ep)] == [MessageReceived]
    # The message again; then the opener (a copy of an opening frame, [HB-SES-7]), the UP
    # HEARTBEAT, the first message and the ACK the peer sent before.
    assert _inject(ep, [message, *scene.recorded], peer.addr, 0.13) == []
    assert drain(ep) == []
    assert _drops(ep) == Counter(replay=4, unsolicited_ack=1)
    assert ep.snapshot(scene.sid, 0.13).last_rx == 0.12


def test_replays_older_than_the_window_are_dropped_even_if_never_seen() -> None:
    """[HB-SEQ-3]: a signed frame 64 or more sequence numbers older than the newest accepted
    is discarded although it never arrived: it cannot be told from a replay."""
    scene = _scene()
    ep, peer = scene.ep, scene.peer
    held_back = [peer.data(b"late"), peer.heartbeat()]
    for k in range(70):  # DATA, which is never premature, moves the window on
        ep.receive_datagram(peer.data(b"%d" % k), peer.addr, 0.11 + k * 0.001)
    drain(ep)
    assert _inject(ep, held_back, peer.addr, 0.2) == []
    assert drain(ep) == []
    assert _drops(ep) == Counter(replay=2)


def test_replays_cannot_keep_a_session_alive() -> None:
    """[HB-DET-1], [HB-AUTH-4], SPEC 12.3: the peer falls silent and an attacker replays every
    authenticated frame it recorded, over and over; none is valid and the session goes DOWN
    on time."""
    scene = _scene()
    frames = iter(scene.recorded * 100)
    down, _, answers = _run_with(
        scene.ep, scene.peer, 1.0, lambda: next(frames), start=0.11, every=0.01
    )
    assert answers == []
    assert down is not None
    assert scene.last_valid + DT <= down <= scene.last_valid + DT + EXPECTED


def test_recorded_frame_cannot_be_moved_to_another_session() -> None:
    """SPEC section 10: the MAC covers both identifiers, so a frame recorded in one session and
    readdressed to another (Your Identifier rewritten, CRC fixed) fails V-11; left as it is, it
    belongs to its own session, where it fails V-12."""
    scene = _scene()
    ep = scene.ep
    other = AuthPeer(my_id=0x0E0E0E0E, addr=("192.0.2.77", 5000))
    _run(ep, 0.11)
    other_sid = _auth_handshake(ep, other, 0.11, [])
    drain(ep)
    recorded = scene.peer.heartbeat()
    assert _inject(ep, [recorded], scene.peer.addr, 0.12) != []  # valid: answered
    moved = bytearray(recorded)
    moved[8:12] = other_sid.to_bytes(4, "big")
    moved[4:8] = other.my_id.to_bytes(4, "big")  # V-10 would catch the Your Identifier alone
    assert _inject(ep, [_fix_crc(moved), recorded], other.addr, 0.13) == []
    assert _drops(ep) == Counter(auth_failed=1, replay=1)


# --- End to end: two endpoints, two connections -------------------------------------------------


def _udp_pair(
    config_a: Config, config_b: Config, *, seed: int = 1, delay: float = 0.005
) -> tuple[Network, int]:
    net = Network(seed=seed)
    net.add_endpoint("a", ("10.0.0.1", 7373), config_a)
    net.add_endpoint("b", ("10.0.0.2", 7373), config_b, accept=True)
    net.set_link("a", "b", delay=delay, jitter=delay / 2, both=True)
    return net, net.connect("a", "b")


def _tcp_pair(config_a: Config, config_b: Config, *, seed: int = 1) -> Network:
    net = Network(seed=seed)
    net.add_stream_pair("a", "b", config_a, config_b)
    net.set_link("a", "b", delay=0.005, both=True)
    return net


def _key_ids_on_wire(net: Network, src: str, since: float, until: float) -> set[int]:
    ids: set[int] = set()
    for rec in net.frames(src, since=since, until=until):
        auth = rec.frame.auth
        assert auth is not None, rec
        ids.add(auth[0])
    return ids


FAST = Config(interval=0.05, min_rx=0.05, multiplier=3, auth=KEYS)


def test_round_trip_over_udp() -> None:
    """[HB-AUTH-1] to [HB-AUTH-4] end to end: two authenticated endpoints come UP, exchange a
    message and stay UP; every frame on the wire is signed and nothing is discarded."""
    net, sid = _udp_pair(FAST, FAST)
    net.at(1.0, lambda: net.endpoint("a").send(sid, b"ping", net.now))
    net.run_until(3.0)
    net.log.expect(PeerUp, "a")
    net.log.expect(PeerUp, "b")
    assert net.log.expect(MessageReceived, "b").event.data == b"ping"
    assert not net.log.select(PeerDown)
    for rec in net.wire:
        _assert_signed(rec.data)
    for host in "ab":
        assert _drops(net.endpoint(host)) == Counter()
    assert net.endpoint("a").snapshot(sid, 3.0).state is UP


def test_round_trip_over_tcp() -> None:
    """The same over one TCP connection (SPEC 11.2): UP, a message, every frame signed."""
    net = _tcp_pair(FAST, FAST)
    net.at(1.0, lambda: net.connection("a").send(b"ping", net.now))
    net.run_until(3.0)
    net.log.expect(PeerUp, "a")
    net.log.expect(PeerUp, "b")
    assert net.log.expect(MessageReceived, "b").event.data == b"ping"
    assert not net.log.select(PeerDown)
    assert len(net.wire) > 50
    for rec in net.wire:
        _assert_signed(rec.data)
    for host in "ab":
        assert _drops(net.connection(host)) == Counter()


@pytest.mark.parametrize("initiator_signs", [True, False], ids=["signing-initiator", "plain"])
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_one_sided_authentication_never_comes_up(transport: str, initiator_signs: bool) -> None:
    """[HB-AUTH-4], [HB-AUTH-5], [HB-AUTH-9]: a peer's frames never switch authentication on
    or off. With keys at one end only, the responder discards every opening frame
    (``auth_missing`` if it has keys, ``auth_unexpected`` if not), answers none, and no
    session comes up."""
    plain = replace(FAST, auth=None)
    configs = (FAST, plain) if initiator_signs else (plain, FAST)
    if transport == "udp":
        net, _ = _udp_pair(*configs)
        initiator: Endpoint | Connection = net.endpoint("a")
        responder: Endpoint | Connection = net.endpoint("b")
    else:
        net = _tcp_pair(*configs)
        initiator, responder = net.connection("a"), net.connection("b")
    net.run_until(3.0)
    assert not net.log.select(PeerUp)
    counter = "auth_unexpected" if initiator_signs else "auth_missing"
    assert set(_drops(responder)) == {counter}
    assert _drops(initiator) == Counter()
    assert all(rec.src == "a" for rec in net.wire)


def test_forged_frames_on_a_tcp_stream_are_dropped_and_the_stream_goes_on() -> None:
    """[HB-TCP-5], [HB-AUTH-4]: on a stream, a forged frame (here an unsigned CLOSE and a
    HEARTBEAT signed with another key) is discarded and counted; the connection continues
    and the session stays UP."""
    net = _tcp_pair(FAST, FAST)
    net.run_until(1.0)
    client = net.connection("a")
    server = net.connection("b")
    forger = Peer(my_id=client.session_id, your_id=server.session_id, state=CLOSED)
    net.inject_stream("a", forger.close())
    forger.state = UP
    net.inject_stream("a", AuthKeys({1: KEY_OTHER}, 1).sign(forger.heartbeat()))
    net.run_until(3.0)
    assert _drops(server) == Counter(auth_missing=1, auth_failed=1)
    assert not server.ended
    assert server.snapshot(3.0).state is UP
    assert not net.log.select(SessionClosed)
    assert not net.log.select(PeerDown)


def test_connection_discards_frames_failing_auth_before_the_session_sees_them() -> None:
    """[HB-SES-6] on a stream: the responder side of a connection discards an unsigned
    opening HEARTBEAT without learning the remote identifier or answering."""
    conn = Connection(CONFIG, initiator=False, now=0.0, rng=random.Random(1), id_source=_ids(3))
    peer = AuthPeer()
    assert deliver_stream(conn, peer, peer.unsigned().heartbeat(), 0.0) == []
    assert conn.snapshot(0.0).remote_id == 0
    assert _drops(conn) == Counter(auth_missing=1)
    (ack,) = deliver_stream(conn, peer, peer.heartbeat(), 0.1)
    assert (ack.type, ack.state, ack.your_id) == (ACK, INIT, peer.my_id)


# --- Key rotation [HB-AUTH-7] ---------------------------------------------------------------------

BOTH_OLD_ACTIVE = AuthKeys({1: KEY_1, 2: KEY_2}, active=1)
BOTH_NEW_ACTIVE = AuthKeys({1: KEY_1, 2: KEY_2}, active=2)
NEW = AuthKeys({2: KEY_2}, active=2)
# Each end takes each step at its own time, in the order of [HB-AUTH-7]: the new key is added
# at both ends, then made active at each end, then the old key is removed.
ROTATION = [
    (2.0, "a", BOTH_OLD_ACTIVE),
    (2.5, "b", BOTH_OLD_ACTIVE),
    (3.0, "a", BOTH_NEW_ACTIVE),  # from here to 3.5, a signs with key 2 and b with key 1
    (3.5, "b", BOTH_NEW_ACTIVE),
    (4.0, "a", NEW),
    (4.5, "b", NEW),
]


def _check_rotation(net: Network, drops: Callable[[str], Counter[str]]) -> None:
    assert _key_ids_on_wire(net, "a", 0.0, 2.99) == {1}
    assert _key_ids_on_wire(net, "b", 0.0, 3.49) == {1}
    # Both keys in use at once, and both accepted by both ends.
    assert _key_ids_on_wire(net, "a", 3.01, 3.49) == {2}
    assert _key_ids_on_wire(net, "b", 3.01, 3.49) == {1}
    assert _key_ids_on_wire(net, "a", 3.51, 6.0) == {2}
    assert _key_ids_on_wire(net, "b", 3.51, 6.0) == {2}
    assert len(net.log.select(PeerUp)) == 2  # one per end, never again
    assert not net.log.select(PeerDown)
    assert not net.log.select(SessionClosed)
    for host in "ab":
        assert drops(host) == Counter(), host


def test_key_rotation_over_udp_without_a_flap() -> None:
    """[HB-AUTH-7]: keys rotate on running endpoints with ``Endpoint.set_auth``, each end at
    its own time, in the SPEC's order. The session stays UP throughout, no frame is
    discarded, and during the changeover each end accepts the other's frames under either
    key."""
    net, sid = _udp_pair(FAST, FAST)
    for when, host, keys in ROTATION:
        net.at(when, partial(net.endpoint(host).set_auth, keys))
    net.run_until(6.0)
    _check_rotation(net, lambda host: _drops(net.endpoint(host)))
    assert net.endpoint("a").snapshot(sid, 6.0).state is UP
    assert net.endpoint("b").config.auth == NEW  # the policy for sessions opened from now on


def test_key_rotation_over_tcp_without_a_flap() -> None:
    """[HB-AUTH-7] on a connection, with ``Connection.set_auth``."""
    net = _tcp_pair(FAST, FAST)
    for when, host, keys in ROTATION:
        net.at(when, partial(net.connection(host).set_auth, keys))
    net.run_until(6.0)
    _check_rotation(net, lambda host: _drops(net.connection(host)))
    assert not net.connection("a").ended
    assert net.connection("a").snapshot(6.0).state is UP


def test_rotation_in_the_wrong_order_fails_authentication() -> None:
    """The order of [HB-AUTH-7] matters: an end that signs with a key the other does not yet
    have sees its frames discarded (``auth_failed``), and the session goes DOWN."""
    net, _ = _udp_pair(FAST, FAST)
    net.at(2.0, lambda: net.endpoint("a").set_auth(NEW))
    net.run_until(4.0)
    assert net.endpoint("b").counters["auth_failed"] > 0
    assert net.log.select(PeerDown, "b")
    assert net.log.select(PeerDown, "a")


def test_set_auth_follows_the_endpoint_policy_or_one_session() -> None:
    """``Endpoint.set_auth`` changes the endpoint's keys and those of the sessions that use
    them, leaving sessions given their own keys alone; with ``session`` it changes one
    session's keys only. Sessions keep their other settings."""
    ep = Endpoint(FAST, accept=True, rng=random.Random(1), id_source=_ids(2))
    own = AuthKeys({7: KEY_2}, active=7)
    sid_default = ep.connect(("192.0.2.1", 1), 0.0)
    sid_own = ep.connect(("192.0.2.2", 1), 0.0, replace(FAST, auth=own))
    ep.set_parameters(sid_default, 0.0, interval=0.2)
    ep.datagrams_to_send(0.0)  # signed with the keys of the time
    ep.set_auth(BOTH_NEW_ACTIVE)
    assert ep.config.auth == BOTH_NEW_ACTIVE
    assert ep.sessions[sid_default].config.auth == BOTH_NEW_ACTIVE
    assert ep.sessions[sid_default].config.interval == 0.2
    assert ep.sessions[sid_own].config.auth == own
    ep.set_auth(replace(own, active=7), session=sid_own)
    ep.set_auth(NEW, session=sid_default)
    assert ep.sessions[sid_default].config.auth == NEW
    assert ep.config.auth == BOTH_NEW_ACTIVE
    for raw, _ in ep.datagrams_to_send(1.0):
        frame = decode(raw)
        assert frame.auth is not None
        assert frame.auth[0] == (2 if frame.my_id == sid_default else 7)


def test_sessions_sharing_a_config_share_the_rotated_one() -> None:
    """Rotation replaces each distinct config once: sessions that shared one still do, so
    100,000 sessions do not become 100,000 configs."""
    ep = Endpoint(FAST, accept=True, rng=random.Random(1), id_source=_ids(2))
    sids = [ep.connect(("192.0.2.1", port), 0.0) for port in range(1, 20)]
    ep.set_auth(NEW)
    assert all(ep.sessions[sid].config is ep.config for sid in sids)
    assert ep.config.auth == NEW


def test_authentication_cannot_be_switched_on_or_off_by_set_auth() -> None:
    """[HB-AUTH-9]: whether a session authenticates is fixed before it exists; ``set_auth``
    only changes keys where there are keys."""
    plain = Endpoint(replace(FAST, auth=None), rng=random.Random(1))
    plain_sid = plain.connect(("192.0.2.1", 1), 0.0)
    with pytest.raises(LocalProtocolError):
        plain.set_auth(KEYS)
    with pytest.raises(LocalProtocolError):
        plain.set_auth(KEYS, session=plain_sid)
    signed = Endpoint(FAST, rng=random.Random(1))
    with pytest.raises(LocalProtocolError):
        signed.set_auth(None)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        signed.set_auth(KEYS, session=0x1234)
    conn = Connection(replace(FAST, auth=None), initiator=True, now=0.0)
    with pytest.raises(LocalProtocolError):
        conn.set_auth(KEYS)
    conn = Connection(FAST, initiator=True, now=0.0)
    with pytest.raises(LocalProtocolError):
        conn.set_auth(None)  # type: ignore[arg-type]


def test_connection_set_parameters_keeps_the_keys() -> None:
    """A poll on a connection changes intervals only: the keys, and every other setting of
    the connection's config, stay."""
    config = replace(FAST, handshake_timeout=4.0, min_tx=0.002)
    conn = Connection(config, initiator=True, now=0.0)
    conn.set_parameters(0.0, interval=0.2, min_rx=0.1, multiplier=4)
    assert conn.config == replace(config, interval=0.2, min_rx=0.1, multiplier=4)
    assert conn.session.config is conn.config
    frames = split_stream(conn.data_to_send())
    assert frames
    assert all(f.auth is not None and f.desired_tx == 200_000 for f in frames)


# --- The send counter of an authenticated session [HB-SEQ-5] -----------------------------------


def _spend_counter(session: Session) -> None:
    """Move a session's send counter to a few numbers short of the budget of [HB-SEQ-5], as if
    it had sent about 2^31 frames. (The peer sees a jump far ahead, which its window allows.)"""
    assert session.seq_start is not None
    session.tx_seq = (session.seq_start + SEQ_BUDGET - 3) & 0xFFFFFFFF
    session.ack_mask = 0  # the HEARTBEATs it waited for are 2^31 numbers back now


@pytest.mark.parametrize("spender", ["a", "b"], ids=["initiator-spends", "responder-spends"])
def test_spent_counter_closes_with_restart_and_the_initiator_reopens(spender: str) -> None:
    """[HB-SEQ-5]: an authenticated session whose send counter is about to have advanced
    2^31 times closes with reason ``restart``, whichever end it is, with its last number well
    inside the limit; the initiator (having closed, or having received the CLOSE) opens a new
    session at once, which comes up and names the old one; no restart of the peer is
    reported."""
    net, sid_a = _udp_pair(FAST, FAST)
    net.run_until(1.0)
    sessions = {"a": net.endpoint("a").sessions[sid_a]}
    sessions["b"] = next(iter(net.endpoint("b").sessions.values()))
    start = sessions[spender].seq_start
    assert start is not None
    net.at(1.0, partial(_spend_counter, sessions[spender]))
    net.run_until(3.0)
    (close,) = net.frames(spender, ftype=CLOSE)
    assert close.frame.close_code == CloseCode.RESTART
    assert 0 < (close.frame.seq - start) & 0xFFFFFFFF < 1 << 31
    closed = net.log.select(SessionClosed)
    assert {(c.host, c.event.code, c.event.by_peer) for c in closed} == {
        (spender, CloseCode.RESTART, False),
        ("b" if spender == "a" else "a", CloseCode.RESTART, True),
    }
    ups = net.log.select(PeerUp, "a")
    assert len(ups) == 2
    assert ups[1].event.replaces == sid_a
    assert ups[1].time - close.time < 0.1  # at once, without the back-off of [HB-CLOSE-6]
    assert not net.log.select(PeerRestarted)
    assert not net.log.select(PeerDown)
    assert _drops(net.endpoint("a"))["auth_failed"] == 0


def test_spent_counter_ends_a_connection() -> None:
    """[HB-SEQ-5] on a stream: the CLOSE with reason ``restart`` ends the connection; a new
    session needs a new connection [HB-TCP-6], which is the application's to open."""
    net = _tcp_pair(FAST, FAST)
    net.run_until(1.0)
    net.at(1.0, partial(_spend_counter, net.connection("a").session))
    net.run_until(2.0)
    assert net.connection("a").ended
    (close,) = net.frames("a", ftype=CLOSE)
    assert close.frame.close_code == CloseCode.RESTART
    closed = net.log.expect(SessionClosed, "b").event
    assert (closed.code, closed.by_peer) == (CloseCode.RESTART, True)


def test_unauthenticated_sessions_do_not_count() -> None:
    """[HB-SEQ-5] applies to authenticated sessions only: others keep no counter budget."""
    ep = Endpoint(replace(FAST, auth=None), rng=random.Random(1))
    sid = ep.connect(("192.0.2.1", 1), 0.0)
    assert ep.sessions[sid].seq_start is None


def test_one_recorded_opening_frame_takes_one_half_open_slot_whatever_the_addresses() -> None:
    """[HB-SES-9]: a signed opening HEARTBEAT replayed from many addresses creates one
    half-open session, not one per address; the genuine initiator's next HEARTBEAT (a new
    sequence number) is not mistaken for it, and the memory lasts HANDSHAKE_TIMEOUT."""
    ep = _responder()
    genuine = AuthPeer()
    opener = genuine.heartbeat()
    for i in range(50):
        ep.receive_datagram(opener, (f"198.51.100.{i}", 4000 + i), 0.0)
    assert len(ep.sessions) == 1
    assert _drops(ep) == Counter(replay=49)
    again = genuine.heartbeat()  # the initiator's retry, from an address of its own
    ep.receive_datagram(again, ("192.0.2.200", 5000), 0.5)
    assert len(ep.sessions) == 2
    later = CONFIG.handshake_timeout + 1
    ep.datagrams_to_send(later)  # the half-open sessions expire meanwhile [HB-SES-4]
    ep.receive_datagram(opener, ("198.51.100.77", 7777), later)
    assert _drops(ep)["replay"] == 49  # forgotten after HANDSHAKE_TIMEOUT: a session again
    assert len(ep.sessions) == 1
