"""Session parameters, validated, with presets for common paths.

One number matters most: ``interval``, in seconds. Everything else has a default derived from it
or from the SPEC. Impossible combinations are refused with a message that says what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from .auth import AuthKeys
from .errors import LocalProtocolError
from .frame import INTERVAL_MAX_US, MULT_MAX
from .timers import MAX_STRIKES_DEFAULT, MIN_STRIKES

__all__ = ["Config"]

_US = 1_000_000


@lru_cache(maxsize=1024)  # configurations repeat; sessions then share the resulting ints
def _to_us(seconds: float | None, name: str, *, zero_ok: bool) -> int | None:
    if seconds is None:
        return None
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise LocalProtocolError(f"{name} must be a number of seconds, not {seconds!r}")
    us = round(seconds * _US)
    if us == 0 and seconds != 0:
        raise LocalProtocolError(f"{name}={seconds} s is below the 1 us resolution")
    if us < 0 or (us == 0 and not zero_ok):
        raise LocalProtocolError(f"{name} must be positive, not {seconds}")
    if us > INTERVAL_MAX_US:
        raise LocalProtocolError(f"{name}={seconds} s exceeds the largest interval, 163820 s")
    return us


@dataclass(frozen=True, slots=True)
class Config:
    """What one endpoint asks of its sessions (SPEC 9.1).

    ``interval``: how often this endpoint wants to send (its Desired TX Interval), seconds.
    ``None`` means "no preference": send at whatever rate the peer requires.

    ``min_rx``: the shortest interval at which this endpoint accepts the peer's heartbeats
    (its Required Min RX Interval). ``None`` (the default) means no minimum; ``0`` asks the
    peer to send no periodic heartbeats at all, so this endpoint detects the peer through the
    ACKs to its own heartbeats.

    ``multiplier``: how many of its own intervals the peer may miss before declaring this
    endpoint down (1 to 15).

    ``idle_only``: suppress heartbeats while other frames flow [HB-TX-3].

    ``max_strikes``: enforce ``min_rx`` against peers that send too often, closing after this
    many premature heartbeats in a row [HB-FREQ-1]; ``None`` to not enforce.

    ``min_tx``: the shortest interval at which this endpoint will ever send periodic
    heartbeats, whatever a peer asks for [HB-NEG-7] (seconds, default 1 ms).

    ``handshake_timeout``: HANDSHAKE_TIMEOUT of SPEC 8.2, seconds: how long a session may take to
    come up before a responder drops it, and after which an initiator reports that nothing
    answers and starts backing off [HB-SES-4], [HB-TX-7].

    ``auth``: the keys of SPEC section 10, or ``None`` (the default) for no authentication.
    Whether a session authenticates is fixed by the config it is created with [HB-AUTH-9]; an
    :class:`~hbproto.Endpoint`'s own config is the policy for the sessions peers open. Keys
    rotate with ``set_auth`` on the endpoint or connection.
    """

    interval: float | None = 1.0
    min_rx: float | None = None
    multiplier: int = 3
    idle_only: bool = False
    max_strikes: int | None = MAX_STRIKES_DEFAULT
    handshake_timeout: float = 10.0
    min_tx: float = 0.001
    auth: AuthKeys | None = None

    def __post_init__(self) -> None:
        if self.auth is not None and not isinstance(self.auth, AuthKeys):
            raise LocalProtocolError(f"auth must be an AuthKeys or None, not {self.auth!r}")
        _to_us(self.interval, "interval", zero_ok=False)
        _to_us(self.min_rx, "min_rx", zero_ok=True)
        _to_us(self.min_tx, "min_tx", zero_ok=False)
        if self.idle_only and self.min_rx == 0:
            raise LocalProtocolError(
                "idle_only needs heartbeats to detect the peer by, but min_rx=0 asks the peer "
                "for none: with both, steady DATA from this side would leave nothing to hear"
            )
        if not isinstance(self.multiplier, int) or not 1 <= self.multiplier <= MULT_MAX:
            raise LocalProtocolError(f"multiplier must be 1..{MULT_MAX}, not {self.multiplier}")
        if not isinstance(self.handshake_timeout, int | float) or not (
            math.isfinite(self.handshake_timeout) and self.handshake_timeout > 0
        ):
            raise LocalProtocolError(
                f"handshake_timeout must be a positive number of seconds, not "
                f"{self.handshake_timeout!r}"
            )
        if self.max_strikes is not None and self.max_strikes < MIN_STRIKES:
            raise LocalProtocolError(
                f"max_strikes must be at least {MIN_STRIKES} (or None to not enforce)"
            )

    @property
    def desired_tx_us(self) -> int | None:
        """``interval`` in microseconds, as Desired TX carries it."""
        return _to_us(self.interval, "interval", zero_ok=False)

    @property
    def required_rx_us(self) -> int | None:
        """``min_rx`` in microseconds, as Required Min RX carries it (``None``: no limit)."""
        return _to_us(self.min_rx, "min_rx", zero_ok=True)

    @property
    def min_tx_us(self) -> int:
        """``min_tx`` (MIN_TX, [HB-NEG-7]) in microseconds."""
        us = _to_us(self.min_tx, "min_tx", zero_ok=False)
        assert us is not None  # validated in __post_init__
        return us

    # --- Presets ------------------------------------------------------------------------------

    @classmethod
    def lan(cls) -> Config:
        """A data-centre or LAN link: 100 ms x 3, down within about 0.3-0.4 s."""
        return cls(interval=0.1, min_rx=0.01, multiplier=3)

    @classmethod
    def wan(cls) -> Config:
        """An Internet path: 1 s x 5, tolerant of loss bursts; down within about 5-6 s."""
        return cls(interval=1.0, min_rx=0.25, multiplier=5)

    @classmethod
    def nat_keepalive(cls) -> Config:
        """Keep UDP NAT bindings alive: 25 s x 3 (bindings commonly expire after 30 s)."""
        return cls(interval=25.0, min_rx=15.0, multiplier=3, idle_only=True)

    @classmethod
    def mobile(cls) -> Config:
        """A phone on battery: 4.5 min, and the peer sends nothing periodic of its own.

        With ``min_rx=0`` this device heartbeats rarely and detects the peer through the ACKs,
        so the radio wakes once per interval.
        """
        return cls(interval=270.0, min_rx=0, multiplier=2)
