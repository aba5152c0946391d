"""The kernel's own liveness mechanisms on a TCP socket, set alongside hbproto [HB-TCP-10].

TCP keepalive (``SO_KEEPALIVE`` with ``TCP_KEEPIDLE``, ``TCP_KEEPINTVL``, ``TCP_KEEPCNT``) probes an
idle connection; ``TCP_USER_TIMEOUT`` bounds how long sent data may stay unacknowledged. Both
complement the heartbeat: the peer's kernel answers probes for a hung application, and keepalive
does not probe while data is in flight. :class:`KernelTimeouts` says what to set,
:meth:`KernelTimeouts.apply` sets it and reads back what the kernel accepted, and
:func:`classify_failure` names the mechanism behind a connection error.
"""

from __future__ import annotations

import errno
import math
import socket
import struct
from dataclasses import dataclass

from hbproto import Config, DownReason

__all__ = ["KernelTimeouts", "classify_failure"]

# Linux option numbers, where the socket module lacks a name for them.
_TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_TCP_INFO_HEAD = struct.Struct("BBBBB")  # state, ca_state, retransmits, probes, backoff


@dataclass(frozen=True, slots=True)
class KernelTimeouts:
    """Kernel keepalive and user-timeout settings for one TCP connection.

    ``keepalive_idle``: seconds of silence before the first probe (``None``: keepalive off).
    ``keepalive_interval``: seconds between probes; ``keepalive_count``: unanswered probes before
    the kernel gives up. ``user_timeout``: seconds sent data may stay unacknowledged (``None``:
    the system default, which retransmits for about 15 minutes). The kernel counts keepalive in
    whole seconds, 1 at least.
    """

    keepalive_idle: int | None = None
    keepalive_interval: int = 1
    keepalive_count: int = 1
    user_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in ("keepalive_interval", "keepalive_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.keepalive_idle is not None and self.keepalive_idle < 1:
            raise ValueError("keepalive_idle must be at least 1 s (the kernel's minimum)")
        if self.user_timeout is not None and not 0.001 <= self.user_timeout < 2**31 / 1000:
            raise ValueError("user_timeout must be at least 1 ms")

    @classmethod
    def minimum(cls) -> KernelTimeouts:
        """Keepalive as fast as the kernel allows: 1 s idle, 1 s interval, 1 probe."""
        return cls(keepalive_idle=1, keepalive_interval=1, keepalive_count=1)

    @classmethod
    def matching(cls, config: Config) -> KernelTimeouts:
        """Settings that mirror the heartbeat: keepalive probing at the heartbeat interval
        (rounded up to whole seconds), ``multiplier`` probes, and TCP_USER_TIMEOUT at about the
        detection time, as [HB-TCP-10] recommends."""
        interval = config.interval if config.interval is not None else 1.0
        seconds = max(1, math.ceil(interval))
        return cls(
            keepalive_idle=seconds,
            keepalive_interval=seconds,
            keepalive_count=config.multiplier,
            user_timeout=config.multiplier * interval,
        )

    @property
    def keepalive_bound(self) -> float | None:
        """The longest a dead, idle connection goes unnoticed by keepalive, in seconds."""
        if self.keepalive_idle is None:
            return None
        return float(self.keepalive_idle + self.keepalive_interval * self.keepalive_count)

    def describe(self) -> str:
        """The settings in one line, for logs and the command line."""
        parts = []
        if self.keepalive_idle is None:
            parts.append("keepalive off")
        else:
            parts.append(
                f"keepalive {self.keepalive_idle} s idle, {self.keepalive_interval} s apart, "
                f"{self.keepalive_count} probe{'s' if self.keepalive_count != 1 else ''}"
            )
        if self.user_timeout is not None:
            parts.append(f"TCP_USER_TIMEOUT {self.user_timeout:g} s")
        return ", ".join(parts)

    def apply(self, sock: socket.socket) -> KernelTimeouts:
        """Set these options on ``sock``; return what the kernel reports back in force."""
        if self.keepalive_idle is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, self.keepalive_idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, self.keepalive_interval)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, self.keepalive_count)
        if self.user_timeout is not None:
            ms = max(1, round(self.user_timeout * 1000))
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT, ms)
        return self.read(sock)

    @classmethod
    def read(cls, sock: socket.socket) -> KernelTimeouts:
        """What ``sock`` has in force now."""
        keepalive = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        user_ms = sock.getsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT)
        return cls(
            keepalive_idle=sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
            if keepalive
            else None,
            keepalive_interval=sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            keepalive_count=sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            user_timeout=user_ms / 1000 if user_ms else None,
        )


def classify_failure(exc: BaseException | None, sock: socket.socket | None) -> DownReason:
    """Which mechanism ended a connection, from the error the kernel returned [HB-TCP-10].

    ``ETIMEDOUT`` comes from keepalive or from TCP_USER_TIMEOUT; the kernel's TCP_INFO tells the
    two apart: keepalive probes were outstanding, or data retransmissions were.
    """
    code = exc.errno if isinstance(exc, OSError) else None
    if code in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
        return DownReason.CONNECTION_RESET
    if code != errno.ETIMEDOUT:
        return DownReason.TRANSPORT_CLOSED
    if sock is not None:
        try:
            head = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_HEAD.size)
            _, _, retransmits, probes, _ = _TCP_INFO_HEAD.unpack(head)
        except OSError:
            pass
        else:
            if probes and not retransmits:
                return DownReason.KERNEL_KEEPALIVE
            if retransmits:
                return DownReason.KERNEL_USER_TIMEOUT
        if not sock.getsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT):
            return DownReason.KERNEL_KEEPALIVE
    return DownReason.KERNEL_USER_TIMEOUT
