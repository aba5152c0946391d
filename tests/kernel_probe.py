"""Run inside a network namespace by test_kernel.py: one TCP session on loopback, then iptables
drops its packets, and the client reports which mechanism noticed first, as one JSON line.

``keepalive``: the heartbeat is slow (10 s x 3) and kernel keepalive at its minimum, so the
kernel's probes go unanswered first. ``user-timeout``: the heartbeat runs every 0.5 s, so data
is in flight and keepalive cannot probe; TCP_USER_TIMEOUT (1 s) ends the connection first.
"""

from __future__ import annotations

import json
import subprocess
import sys

import trio

from hbproto import Config, PeerDown, RttSample
from transports import KernelTimeouts, Server, connect, serve

MODES = {
    "keepalive": (Config(interval=10.0, multiplier=3), KernelTimeouts.minimum()),
    "user-timeout": (Config(interval=0.5, multiplier=15), KernelTimeouts(user_timeout=1.0)),
}


async def main(mode: str) -> None:
    config, kernel = MODES[mode]
    async with serve("tcp://127.0.0.1:0", config) as server, trio.open_nursery() as nursery:
        nursery.start_soon(_drain, server)
        port = server.local_address[1]
        async with connect(f"tcp://127.0.0.1:{port}", config, kernel=kernel) as peer:
            samples = 0
            async for event in peer:
                samples += isinstance(event, RttSample)
                if samples == 2:
                    # The second exchange just completed: the first ACK brought the session
                    # UP and drew a HEARTBEAT that may still have been queued then; the answer
                    # to that one leaves nothing in flight, so the connection is idle now.
                    break
            for direction in ("--dport", "--sport"):
                subprocess.run(
                    ["iptables", "-A", "INPUT", "-p", "tcp", direction, str(port), "-j", "DROP"],
                    check=True,
                )
            cut = trio.current_time()
            async for event in peer:
                if isinstance(event, PeerDown):
                    print(
                        json.dumps(
                            {"reason": event.reason.value, "after": trio.current_time() - cut}
                        ),
                        flush=True,
                    )
                    break
        nursery.cancel_scope.cancel()


async def _drain(server: Server) -> None:
    async for _ in server:
        pass


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
