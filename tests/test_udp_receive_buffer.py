"""A UDP responder asks for a receive buffer large enough for bursts from many peers."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from transports.address import parse_address
from transports.datagram import SERVER_RCVBUF, KernelDatagramSocket


@pytest.mark.skipif(sys.platform != "linux", reason="reads net.core.rmem_max")
async def test_a_bound_socket_gets_the_larger_receive_buffer() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
        default = plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    cap = int(Path("/proc/sys/net/core/rmem_max").read_text())
    bound = await KernelDatagramSocket.bind(parse_address("udp://127.0.0.1:0"))
    try:
        got = bound.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    finally:
        bound.close()
    # Linux reports twice what was granted (bookkeeping included): the request, or the cap.
    assert got == 2 * min(SERVER_RCVBUF, cap)
    if cap > default:
        assert got > default
