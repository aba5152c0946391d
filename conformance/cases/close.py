"""Section 6.4: CLOSE, the end of a session on purpose, with a reason."""

from __future__ import annotations

from conformance.context import Context
from conformance.model import Category
from conformance.registry import case
from conformance.wire import WireClosed
from hbproto.frame import CloseCode, FrameType


@case(
    "6.4/close-ends-the-session",
    "After the suite's CLOSE the target answers nothing and sends nothing more in the session",
    requires=("HB-CLOSE-3",),
    category=Category.VALID,
)
async def close_ends_the_session(ctx: Context) -> None:
    peer = await ctx.session()
    peer.keep_alive(None)
    peer.auto_ack = False
    await peer.send(peer.close_frame(CloseCode.SHUTDOWN, "conformance"))
    try:
        await peer.expect_nothing(
            "frame for the closed session",
            lambda f: f.your_id == peer.my_id,
            2.0,
        )
    except WireClosed:
        if ctx.transport != "tcp":
            raise
        # On TCP the target ends the connection too: nothing more can come.


@case(
    "6.4/unknown-reason",
    "A CLOSE with a reason code the target does not know still closes the session",
    requires=("HB-CLOSE-3", "HB-CLOSE-4"),
    category=Category.INOPPORTUNE,
)
async def unknown_reason(ctx: Context) -> None:
    peer = await ctx.session()
    peer.keep_alive(None)
    peer.auto_ack = False
    await peer.send(peer.close_frame(0xDEAD_BEEF))
    try:
        await peer.expect_nothing(
            "HEARTBEAT for the closed session",
            lambda f: f.type is FrameType.HEARTBEAT and f.your_id == peer.my_id,
            2.0,
        )
    except WireClosed:
        if ctx.transport != "tcp":
            raise
