"""Kernel keepalive and TCP_USER_TIMEOUT beside the heartbeat [HB-TCP-10].

Unit tests pin down the settings and how a kernel error is attributed; then, in a network
namespace of their own with iptables dropping the connection's packets, each kernel mechanism
is made to fire first and the client's PeerDown must name it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from hbproto import Config, DownReason
from transports import KernelTimeouts
from transports.kernel import classify_failure

ROOT = Path(__file__).resolve().parent.parent


class FakeSocket:
    """Answers TCP_INFO and TCP_USER_TIMEOUT the way Linux does after a connection died."""

    def __init__(self, retransmits: int, probes: int, user_timeout_ms: int = 0) -> None:
        self.info = struct.pack("BBBBB", 7, 0, retransmits, probes, 0)
        self.user_timeout_ms = user_timeout_ms

    def getsockopt(self, level: int, option: int, size: int = 0) -> bytes | int:
        if option == socket.TCP_INFO:
            return self.info[:size]
        return self.user_timeout_ms


@pytest.mark.parametrize(
    ("code", "sock", "reason"),
    [
        (errno.ECONNRESET, None, DownReason.CONNECTION_RESET),
        (errno.EPIPE, None, DownReason.CONNECTION_RESET),
        (errno.ETIMEDOUT, FakeSocket(retransmits=0, probes=1), DownReason.KERNEL_KEEPALIVE),
        (errno.ETIMEDOUT, FakeSocket(retransmits=3, probes=0), DownReason.KERNEL_USER_TIMEOUT),
        (errno.ETIMEDOUT, FakeSocket(0, 0, user_timeout_ms=0), DownReason.KERNEL_KEEPALIVE),
        (errno.ETIMEDOUT, FakeSocket(0, 0, user_timeout_ms=900), DownReason.KERNEL_USER_TIMEOUT),
        (errno.EHOSTUNREACH, None, DownReason.TRANSPORT_CLOSED),
    ],
)
def test_a_kernel_error_names_its_mechanism(
    code: int, sock: FakeSocket | None, reason: DownReason
) -> None:
    assert classify_failure(OSError(code, os.strerror(code)), sock) is reason  # type: ignore[arg-type]


def test_settings_match_the_heartbeat_and_are_read_back() -> None:
    matching = KernelTimeouts.matching(Config(interval=0.25, multiplier=4))
    assert matching == KernelTimeouts(1, 1, 4, user_timeout=1.0)
    assert KernelTimeouts.minimum().keepalive_bound == 2.0
    assert KernelTimeouts().describe() == "keepalive off"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert KernelTimeouts(5, 2, 3, user_timeout=2.5).apply(sock) == KernelTimeouts(
            5, 2, 3, user_timeout=2.5
        )
    for bad in ({"keepalive_idle": 0}, {"keepalive_count": 0}, {"user_timeout": 0.0}):
        with pytest.raises(ValueError, match="must be"):
            KernelTimeouts(**bad)


def _can_make_namespaces() -> bool:
    return (
        sys.platform == "linux"
        and os.geteuid() == 0
        and shutil.which("ip") is not None
        and shutil.which("iptables") is not None
    )


# CI installs what these need: there, a missing tool fails the test rather than skipping it.
@pytest.mark.skipif(
    not (_can_make_namespaces() or os.environ.get("CI")), reason="needs Linux, root, ip, iptables"
)
@pytest.mark.parametrize(
    ("mode", "reason", "latest"),
    [
        # 1 s idle + 1 probe 1 s later: about 2 s after the last exchange.
        ("keepalive", DownReason.KERNEL_KEEPALIVE, 4.0),
        # The next heartbeat within 0.5 s, then 1 s unacknowledged.
        ("user-timeout", DownReason.KERNEL_USER_TIMEOUT, 3.5),
    ],
)
def test_the_kernel_mechanism_that_fires_first_is_the_one_reported(
    mode: str, reason: DownReason, latest: float
) -> None:
    namespace = f"hbproto-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        subprocess.run(
            ["ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up"], check=True
        )
        run = subprocess.run(
            ["ip", "netns", "exec", namespace, sys.executable, "tests/kernel_probe.py", mode],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["reason"] == reason.value
    assert 1.0 <= result["after"] <= latest
