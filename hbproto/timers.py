"""The timer rules of SPEC.md section 9, as pure functions.

Intervals are integer microseconds, as on the wire; ``None`` in a Desired TX or Required Min
RX value means "no preference", and a computed interval of ``None`` means "no periodic
traffic". Nothing here reads a clock: callers pass times in.
"""

from __future__ import annotations

import math
from functools import lru_cache
from random import Random

__all__ = [
    "ACK_BEYOND",
    "ACK_WINDOW",
    "BACKOFF_CAP_US",
    "DEFAULT_INTERVAL_US",
    "DEFAULT_REMOTE_MULT",
    "MAX_EXEMPT",
    "MAX_STRIKES_DEFAULT",
    "REPLAY_WINDOW",
    "SLOW_START_INTERVAL_US",
    "detection_time_us",
    "expected_remote_us",
    "interarrival_seed",
    "interarrival_update",
    "is_premature",
    "jitter_factor",
    "judged_interval_us",
    "negotiate",
    "phi",
    "rtt_update",
    "tx_interval_us",
]

DEFAULT_INTERVAL_US = 1_000_000  # [HB-NEG-1] when neither side states a rate
SLOW_START_INTERVAL_US = 1_000_000  # [HB-TX-2] floor on the periodic interval before UP
REPLAY_WINDOW = 64  # [HB-SEQ-3]
ACK_WINDOW = 1024  # [HB-ACK-5]: how far back an ACK may reach, in our sequence numbers
ACK_BEYOND = 16  # [HB-ACK-5]: unacknowledged HEARTBEATs still remembered past that window
BACKOFF_CAP_US = 60_000_000  # [HB-TX-7]
DEFAULT_REMOTE_MULT = 3  # [HB-NEG-6]
MAX_EXEMPT = 2  # [HB-FREQ-6]
MAX_STRIKES_DEFAULT = 3  # [HB-FREQ-1]
MIN_STRIKES = 2


def tx_interval_us(local_d: int | None, remote_r: int | None) -> int | None:
    """TxInterval once UP [HB-NEG-1]; ``None`` if the peer asked for no periodic HEARTBEATs."""
    if remote_r == 0:
        return None
    return max(local_d or 0, remote_r or 0) or DEFAULT_INTERVAL_US


def expected_remote_us(
    remote_d: int | None, local_r: int | None, local_tx: int | None
) -> int | None:
    """The longest gap expected between the peer's frames [HB-NEG-2]; ``None``: no detection."""
    if local_r == 0:
        # The peer only answers our HEARTBEATs; allow a quarter for jitter and RTT changes.
        # None when we send nothing periodic either [HB-NEG-3].
        return None if local_tx is None else local_tx * 5 // 4
    return max(remote_d or 0, local_r or 0) or DEFAULT_INTERVAL_US


def detection_time_us(
    remote_mult: int, expected_remote: int | None, slow_start: bool
) -> int | None:
    """DetectionTime [HB-DET-8], with the slow-start floor while ``slow_start`` holds."""
    if expected_remote is None:
        return None
    if slow_start:
        expected_remote = max(expected_remote, SLOW_START_INTERVAL_US)
    return remote_mult * expected_remote


@lru_cache(maxsize=4096)
def negotiate(  # noqa: PLR0917 - positional: it is an lru_cache key
    local_d: int | None,
    local_r: int | None,
    remote_d: int | None,
    remote_r: int | None,
    remote_mult: int,
    slow_start: bool,
    min_tx: int = 0,
) -> tuple[int | None, int | None, int | None]:
    """(TxInterval, ExpectedRemote, DetectionTime) for one session's inputs.

    Cached: the many sessions of one endpoint have few distinct inputs, so they share the
    resulting ints instead of holding copies.
    """
    tx = tx_interval_us(local_d, remote_r)
    if tx is not None and tx < min_tx:
        tx = min_tx  # [HB-NEG-7]: no peer can make us send faster than our floor
    exp = expected_remote_us(remote_d, local_r, tx)
    return tx, exp, detection_time_us(remote_mult, exp, slow_start)


def jitter_factor(rng: Random, own_mult: int) -> float:
    """The factor J of [HB-TX-1]: uniform in [0.75, 1.0], or [0.75, 0.9] when Mult is 1."""
    return rng.uniform(0.75, 0.9 if own_mult == 1 else 1.0)


def judged_interval_us(peer_d: int | None, local_r: int | None) -> int:
    """The interval a peer's HEARTBEATs are judged against [HB-FREQ-6].

    With a local R of 0 a conforming peer sends HEARTBEATs only at the slow-start pace (a
    repeated UP, a repeated poll, a handshake) [HB-NEG-1], [HB-POLL-7], [HB-TX-2].
    """
    if local_r == 0:
        return max(peer_d or 0, SLOW_START_INTERVAL_US)
    return max(peer_d or 0, local_r or 0) or DEFAULT_INTERVAL_US


def is_premature(gap_us: float, expected_remote: int | None) -> bool:
    """Whether a non-triggered HEARTBEAT ``gap_us`` after the previous one is premature."""
    if expected_remote is None:
        return True  # we asked for no periodic HEARTBEATs at all
    return gap_us < expected_remote / 2


def rtt_update(srtt: float | None, rttvar: float, sample: float) -> tuple[float, float]:
    """New (SRTT, RTTVAR) after one sample, as RFC 6298 computes them [HB-RTT-2]."""
    if srtt is None:
        return sample, sample / 2
    return 0.875 * srtt + 0.125 * sample, 0.75 * rttvar + 0.25 * abs(srtt - sample)


# Suspicion (phi accrual) [HB-DET-7]. Inter-arrival times are summarised by an exponentially
# weighted mean and variance (two floats per session, not a history buffer). phi is -log10 of
# the probability, under a normal model, that the next frame is still to come after the current
# silence: phi 1, 2, 3 mean roughly a 10 %, 1 %, 0.1 % chance that suspecting the peer now is a
# mistake. It is for the application to read; it never decides that a peer is down.

_PHI_ALPHA = 0.125
_PHI_MIN_STD = 0.1  # floor on sigma relative to the mean, so phi stays finite
_LN10 = math.log(10)


def interarrival_seed(expected: float) -> tuple[float, float]:
    """Initial (mean, variance): the expected interval, +- a quarter of it (as Akka seeds)."""
    return expected, (expected / 4) ** 2


def interarrival_update(mean: float, var: float, gap: float) -> tuple[float, float]:
    """Fold one inter-arrival gap into (mean, variance)."""
    if gap > 4 * mean:
        return mean, var  # an outage, not the distribution being modelled
    delta = gap - mean
    return mean + _PHI_ALPHA * delta, (1 - _PHI_ALPHA) * (var + _PHI_ALPHA * delta * delta)


def phi(mean: float, var: float, silent_for: float) -> float:
    """The suspicion level after ``silent_for`` seconds without a valid frame."""
    std = max(math.sqrt(var), mean * _PHI_MIN_STD)
    y = (silent_for - mean) / std
    # Logistic approximation of the normal tail (as Akka's detector uses), computed in log
    # space so a long silence gives a large finite value instead of overflowing.
    z = y * (1.5976 + 0.070566 * y * y)
    if z > 0:
        return (z + math.log1p(math.exp(-z))) / _LN10
    return math.log1p(math.exp(z)) / _LN10
