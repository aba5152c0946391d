"""Section 7: every invalid test vector is discarded, and the target survives it.

The vectors are conformance/vectors.json's invalid ones, grouped by the check that rejects
them. Each group is sent inside a session that is UP; then a valid HEARTBEAT must still get its
ACK with Sta UP: the target neither crashed nor let an invalid frame touch the session
([HB-RX-14]). Over TCP only frames the stream still delimits are sent ([HB-TCP-5]); a stream
that can no longer be framed is section 11.2's case.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from conformance.context import Context
from conformance.model import Category
from conformance.registry import BOTH, case
from conformance.wire import WireClosed
from hbproto.frame import FrameType, State

_VECTORS = Path(__file__).resolve().parent.parent / "vectors.json"

# The check of SPEC section 7 that rejects each error, with its requirement.
_CHECKS = {
    "bad_version": ("V-1", "HB-RX-1"),
    "truncated": ("V-2", "HB-RX-2"),  # an empty frame is V-1's, counted truncated all the same
    "bad_length": ("V-4", "HB-RX-4"),
    "bad_checksum": ("V-5", "HB-RX-5"),
    "unknown_type": ("V-6", "HB-RX-6"),
    "bad_field": ("V-7", "HB-RX-7"),
    "bad_tlv": ("V-8", "HB-RX-8"),
}
# Errors after which a TCP stream still finds the next frame.
_FRAMED_ON_TCP = {"bad_checksum", "unknown_type", "bad_field", "bad_tlv"}


@cache
def _vector_tests(error: str) -> list[dict[str, Any]]:
    data = json.loads(_VECTORS.read_text(encoding="utf-8"))
    return [
        t
        for group in data["testGroups"]
        for t in group["tests"]
        if t["result"] == "invalid" and t["error"] == error and "maxSize" not in t
    ]


def invalid_vectors(error: str) -> list[tuple[int, bytes]]:
    """``(tcId, frame)`` of every invalid vector counted under ``error`` (those judged against
    a receiver's own size limit are left out: the target's limit is its own)."""
    return [(int(t["tcId"]), bytes.fromhex(t["hex"])) for t in _vector_tests(error)]


def _exercised(error: str) -> tuple[str, ...]:
    """The requirements the vectors of ``error`` exercise, as vectors.json lists them."""
    found = {str(r) for t in _vector_tests(error) for r in t["requirements"]}
    return tuple(sorted(found))


def _register(error: str, check: str, requirement: str) -> None:
    transports = BOTH if error in _FRAMED_ON_TCP else frozenset({"udp"})

    @case(
        f"7/{check}-{error.replace('_', '-')}",
        f"Invalid frames rejected by {check} ({error}) are discarded and change nothing",
        requires=(
            requirement,
            "HB-RX-14",
            *(r for r in _exercised(error) if r not in (requirement, "HB-RX-14")),
        ),
        category=Category.MALFORMED,
        transports=transports,
    )
    async def run(ctx: Context) -> None:
        peer = await ctx.session()
        vectors = invalid_vectors(error)
        for tc_id, raw in vectors:
            if ctx.transport == "tcp" and len(raw) >= 4:
                length = int.from_bytes(raw[2:4], "big")
                if length != len(raw):
                    continue  # the stream would not delimit it: section 11.2's concern
            await peer.send(raw, note=f"vector {tc_id}")
        try:
            probe = await peer.heartbeat()
        except WireClosed:
            return  # [HB-TCP-5]: a receiver MAY close after repeated invalid frames
        got = await peer.expect(
            f"an ACK to a valid HEARTBEAT after {len(vectors)} invalid frames",
            lambda f: f.type is FrameType.ACK and f.seq == probe.seq,
            2.0,
        )
        ctx.check(
            got.frame.state is State.UP,
            "the session still UP",
            f"Sta {got.frame.state.name}",
        )


for _error, (_check, _requirement) in _CHECKS.items():
    _register(_error, _check, _requirement)
