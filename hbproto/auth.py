"""Authentication (SPEC.md section 10): keys, the MAC, and receive check V-11.

An endpoint that authenticates is given an :class:`AuthKeys` as ``Config(auth=...)``. Every
frame of its sessions then ends in an AUTH TLV (Key ID and MAC) just before the CRC-32 trailer,
and a received frame whose AUTH is missing, names a key this end does not have, or does not
verify is discarded by :func:`check` with no effect at all.

Because the AUTH TLV is always last [HB-TLV-6] and always 20 bytes, a frame's signed region,
Key ID and MAC sit at fixed offsets from its end: signing and verifying work on bytes and need
no TLV parsing.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .errors import LocalProtocolError
from .frame import (
    AUTH_MAC_SIZE,
    AUTH_TLV_SIZE,
    AUTH_VALUE_SIZE,
    CRC_SIZE,
    MAX_FRAME,
    MIN_FRAME,
    Frame,
    TlvType,
)

__all__ = ["AuthKeys", "check", "compute_mac"]

KEY_ID_MAX = 0xFF
_AUTH_HEAD = bytes((TlvType.AUTH, 0, AUTH_VALUE_SIZE))  # Type and Value Length of AUTH
_TAIL = AUTH_MAC_SIZE + CRC_SIZE  # what follows the signed bytes: the MAC, then the CRC


def compute_mac(key: bytes, data: bytes) -> bytes:
    """The MAC of [HB-AUTH-2]: HMAC-SHA-256 of ``data`` under ``key``, first 16 bytes.

    ``data`` is the frame from offset 0 through the AUTH TLV's Key ID. (The core uses
    precomputed key states instead; this is the plain statement of the rule.)
    """
    return hmac.digest(key, data, hashlib.sha256)[:AUTH_MAC_SIZE]


@dataclass(frozen=True, slots=True, repr=False)
class AuthKeys:
    """An endpoint's authentication keys (SPEC section 10): ``keys`` maps each Key ID (0 to
    255) to its secret, and ``active`` is the Key ID this end signs with.

    A receiver accepts every key in ``keys``, whichever is active [HB-AUTH-7], so keys rotate
    without a flap: add the new key at both ends, then make it active at each end, then remove
    the old key, each step a new :class:`AuthKeys` given to ``set_auth`` of the endpoint or
    connection.

    Each key SHOULD be at least 32 bytes of random data [HB-AUTH-8], for example
    ``secrets.token_bytes(32)``; shorter keys are accepted, as the SPEC allows. The keys never
    appear in ``repr``.
    """

    keys: Mapping[int, bytes] = field(hash=False)
    active: int
    # HMAC states with each key already absorbed: a MAC then costs a copy and one update.
    _macs: Mapping[int, hmac.HMAC] = field(init=False, compare=False, hash=False)
    _head: bytes = field(init=False, compare=False, hash=False)  # AUTH Type, Length, Key ID

    def __post_init__(self) -> None:
        if not isinstance(self.keys, Mapping):
            raise LocalProtocolError(f"keys must map Key IDs to bytes, not {type(self.keys)}")
        keys: dict[int, bytes] = {}
        for key_id, key in self.keys.items():
            if not _is_key_id(key_id):
                raise LocalProtocolError(f"Key ID {key_id!r} is not an integer in 0..255")
            if not isinstance(key, bytes | bytearray | memoryview) or not len(key):
                raise LocalProtocolError(f"key {key_id} must be non-empty bytes")
            keys[key_id] = bytes(key)
        if not _is_key_id(self.active) or self.active not in keys:
            raise LocalProtocolError(
                f"active Key ID {self.active!r} is not among the keys {sorted(keys)}"
            )
        object.__setattr__(self, "keys", MappingProxyType(keys))
        macs = {key_id: hmac.new(key, digestmod=hashlib.sha256) for key_id, key in keys.items()}
        object.__setattr__(self, "_macs", MappingProxyType(macs))
        object.__setattr__(self, "_head", _AUTH_HEAD + bytes((self.active,)))

    def __repr__(self) -> str:
        return f"AuthKeys(key_ids={sorted(self.keys)}, active={self.active})"

    def __reduce__(self) -> tuple[type[AuthKeys], tuple[dict[int, bytes], int]]:
        # Rebuilt from the keys, for copy and pickle: the HMAC states themselves cannot be.
        return AuthKeys, (dict(self.keys), self.active)

    def seal(self, body: bytes) -> bytes:
        """``body`` (a frame without its CRC, whose Length already counts the AUTH TLV) with
        the AUTH TLV appended: Type, Value Length, the active Key ID and the MAC over all of
        that [HB-AUTH-1], [HB-AUTH-2]. The caller appends the CRC-32 [HB-AUTH-3]."""
        body += self._head
        mac = self._macs[self.active].copy()
        mac.update(body)
        return body + mac.digest()[:AUTH_MAC_SIZE]

    def sign(self, frame: bytes) -> bytes:
        """An encoded frame that has no AUTH TLV, signed with the active key: the AUTH TLV
        appended, then Length, MAC and CRC-32 made to match. The frame is not checked."""
        n = len(frame)
        if n < MIN_FRAME or n + AUTH_TLV_SIZE > MAX_FRAME:
            raise LocalProtocolError(f"cannot sign a frame of {n} bytes")
        length = (n + AUTH_TLV_SIZE).to_bytes(2, "big")
        body = self.seal(bytes(frame[:2]) + length + bytes(frame[4 : n - CRC_SIZE]))
        return body + zlib.crc32(body).to_bytes(CRC_SIZE, "big")

    def verify(self, data: bytes) -> bool:
        """True if ``data``, a whole frame, ends in an AUTH TLV whose Key ID is one of these
        keys and whose MAC is the one that key gives [HB-AUTH-4]. The CRC is not looked at.

        MACs are compared in time that does not depend on where they differ. Whether a Key ID
        is known is not secret, and is answered at once.
        """
        if len(data) < MIN_FRAME + AUTH_TLV_SIZE:
            return False
        end = len(data) - _TAIL  # where the MAC starts
        if data[end - 4 : end - 1] != _AUTH_HEAD:
            return False
        state = self._macs.get(data[end - 1])
        if state is None:
            return False
        mac = state.copy()
        mac.update(memoryview(data)[:end])
        return hmac.compare_digest(mac.digest()[:AUTH_MAC_SIZE], data[end : end + AUTH_MAC_SIZE])


def _is_key_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= KEY_ID_MAX


def check(auth: AuthKeys | None, frame: Frame, data: bytes) -> str | None:
    """Check V-11 (SPEC section 7) for ``frame``, decoded from ``data``, under a policy of
    ``auth`` (``None``: no authentication). ``None`` if it passes, else the counter to add to.
    """
    tlvs = frame.tlvs
    signed = bool(tlvs) and tlvs[-1].type == TlvType.AUTH  # AUTH is last when present
    if auth is None:
        return "auth_unexpected" if signed else None  # [HB-AUTH-5]
    if not signed:
        return "auth_missing"  # [HB-AUTH-4]
    return None if auth.verify(data) else "auth_failed"  # unknown Key ID or wrong MAC
