"""``hbproto demo``: both ends in one process, over UDP and TCP on loopback, and a hang caught.

The responder runs in a thread with its own trio loop: the "other process". The demo hangs that
loop with a blocking call, the way an application hangs in a deadlock or a stuck system call.
Its sockets stay open, so its kernel keeps answering TCP, including keepalive probes. The
initiators, driven by this loop, detect the silence through the heartbeat; a TCP connection to
the same hung responder with only kernel keepalive, at the kernel's fastest setting, does not.
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass, field

import trio

from hbproto import Config, PeerDown, PeerUp, RttSample

from ._base import Server
from .address import SockAddr
from .api import connect, serve
from .kernel import KernelTimeouts
from .report import Reporter, address_text, seconds

__all__ = ["run_demo"]

_HANG_AFTER = 1.5  # seconds of normal running before the responder hangs
_WATCH = 3.0  # how long keepalive alone watches the hung responder


class _Responder:
    """A responder on UDP and TCP in a thread of its own, which can be made to hang."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.ready = threading.Event()
        self._release = threading.Event()
        self.udp: SockAddr = ("", 0)
        self.tcp: SockAddr = ("", 0)
        self.error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self.thread = threading.Thread(target=self._run, name="hbproto-demo-responder")

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by the demo's own loop
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with (
            serve("udp://127.0.0.1:0", self.config) as udp,
            serve("tcp://127.0.0.1:0", self.config) as tcp,
            trio.open_nursery() as nursery,
        ):
            self.udp, self.tcp = udp.local_address, tcp.local_address
            for server in (udp, tcp):
                nursery.start_soon(_drain, server)
            self.ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def hang(self) -> None:
        """Block the responder's loop until :meth:`stop`: its application hangs."""
        assert self._token is not None
        self._token.run_sync_soon(self._release.wait)

    def stop(self) -> None:
        self._release.set()
        if self._token is not None and self._stop is not None:
            self._token.run_sync_soon(self._stop.set)


async def _drain(server: Server) -> None:
    async for _ in server:
        pass


@dataclass
class _Link:
    name: str
    up_after: float | None = None
    rtt: float | None = None
    srtt: float | None = None
    down: PeerDown | None = None
    detected_after: float | None = None
    done: trio.Event = field(default_factory=trio.Event)


async def run_demo(interval: float, multiplier: int, json_lines: bool) -> int:
    config = Config(interval=interval, multiplier=multiplier)
    start = trio.current_time()
    report = Reporter(json_lines=json_lines, start=start, rtt_every=0.5)
    detection = interval * multiplier
    if not json_lines:
        print(
            "hbproto demo: a responder and an initiator in this process, over UDP and over TCP "
            "on loopback.\n"
            f"Heartbeat every {seconds(interval)}, multiplier {multiplier}: a peer silent for "
            f"{seconds(detection)} is down.\n"
        )
        print("   time  link  what")
    responder = _Responder(config)
    responder.thread.start()
    await trio.to_thread.run_sync(responder.ready.wait)
    if responder.error is not None:
        raise responder.error
    links = {"udp": _Link("udp"), "tcp": _Link("tcp")}
    hung_at: list[float] = []
    keepalive_verdict: list[str] = []
    try:
        async with trio.open_nursery() as nursery:
            for name, target in (("udp", responder.udp), ("tcp", responder.tcp)):
                nursery.start_soon(_initiator, target, config, links[name], report, hung_at)
            await trio.sleep(_HANG_AFTER)
            hung_at.append(trio.current_time())
            responder.hang()
            report.say(
                hung_at[0],
                "both",
                "the responder's application hangs; its kernel still answers TCP",
            )
            nursery.start_soon(_keepalive_alone, responder.tcp, report, keepalive_verdict)
            with trio.move_on_after(_WATCH + 2 * detection + 1):
                for link in links.values():
                    await link.done.wait()
    finally:
        responder.stop()
        await trio.to_thread.run_sync(responder.thread.join)
    if not json_lines:
        _summary(links, detection, keepalive_verdict)
    return 0 if all(link.down is not None for link in links.values()) else 1


async def _initiator(
    target: SockAddr, config: Config, link: _Link, report: Reporter, hung_at: list[float]
) -> None:
    name = link.name
    opened = trio.current_time()
    kernel = KernelTimeouts.minimum() if name == "tcp" else None
    async with connect(
        f"{name}://{address_text(target)}", config, wait_up=False, kernel=kernel
    ) as peer:
        async for event in peer:
            now = trio.current_time()
            report.event(now, name, event)
            if isinstance(event, PeerUp):
                link.up_after = now - opened
            elif isinstance(event, RttSample):
                link.rtt, link.srtt = event.rtt, event.srtt
            elif isinstance(event, PeerDown):
                link.down = event
                if hung_at:
                    link.detected_after = now - hung_at[0]
    link.done.set()


async def _keepalive_alone(target: SockAddr, report: Reporter, verdict: list[str]) -> None:
    """Watch the hung responder with a TCP connection that has kernel keepalive only."""
    kernel = KernelTimeouts.minimum()
    stream = await trio.open_tcp_stream(*target)
    async with stream:
        kernel.apply(stream.socket)  # type: ignore[arg-type]
        report.say(
            trio.current_time(),
            "tcp",
            f"a second connection watches it with kernel {kernel.describe()}, and no heartbeat",
        )
        with trio.move_on_after(_WATCH):
            try:
                await stream.receive_some(1)
            except trio.BrokenResourceError as exc:
                code = getattr(exc.__cause__, "errno", None)
                what = "timed out" if code == errno.ETIMEDOUT else "failed"
                verdict.append(f"keepalive alone {what} after {_WATCH:g} s or less")
                report.say(trio.current_time(), "tcp", verdict[-1])
                return
    verdict.append(f"keepalive alone: no alarm after {_WATCH:g} s")
    report.say(
        trio.current_time(),
        "tcp",
        f"keepalive alone: no alarm after {_WATCH:g} s; the hung responder's kernel answers "
        "every probe",
    )


def _summary(links: dict[str, _Link], detection: float, keepalive: list[str]) -> None:
    print("\nSummary")
    print("  link  up after  RTT (smoothed)        hang detected after  silent for  detection time")
    for link in links.values():
        rtt = f"{seconds(link.rtt)} ({seconds(link.srtt)})" if link.rtt is not None else "-"
        if link.down is None:
            found, silent = "not detected", "-"
        else:
            found = seconds(link.detected_after) if link.detected_after is not None else "-"
            silent = seconds(link.down.silent_for)
        print(
            f"  {link.name:<5} {seconds(link.up_after) if link.up_after else '-':<9} "
            f"{rtt:<21} {found:<20} {silent:<11} {seconds(detection)}"
        )
    for line in keepalive:
        print(f"  tcp   {line}")
