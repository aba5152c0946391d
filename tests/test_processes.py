"""Real loopback tests with each peer in its own process: killed, stopped and signalled peers.

One end runs as the ``hbproto`` command (``python -m transports``) in a child process, the other
in the test through :func:`transports.connect` or :func:`transports.serve`. The child is killed
(SIGKILL), hung (SIGSTOP) or asked to exit (SIGINT, SIGTERM), and the test checks what the other
end reports and how fast: a hang is caught within [DetectionTime, DetectionTime + slack] of the
signal ([HB-DET-2], [HB-DET-3]), which TCP keepalive alone does not catch ([HB-TCP-10]); a
signalled command closes its session with ``shutdown``.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from hbproto import (
    CloseCode,
    Config,
    DownReason,
    Event,
    Negotiated,
    ParametersChanged,
    PeerDown,
    PeerUp,
    RttSample,
    SessionClosed,
)
from transports import KernelTimeouts, connect, serve

pytestmark = pytest.mark.skipif(
    sys.platform != "linux",
    reason="needs Linux: SIGSTOP/SIGCONT on child processes and TCP_KEEPIDLE-style keepalive",
)

ROOT = Path(__file__).resolve().parent.parent
SCHEMES = ["udp", "tcp"]
INTERVAL = 0.05
MULTIPLIER = 3
TIMING = ["-i", str(INTERVAL), "-m", str(MULTIPLIER)]
SLACK = 0.25  # scheduling and process-switch allowance on top of DetectionTime
STARTUP = 10.0  # a child's interpreter start and import of trio, on a loaded CI machine
TEST_BOUND = 30.0  # no test may take longer than this, whatever hangs
TCP_ESTABLISHED = 1  # the first byte of Linux's struct tcp_info
KEEPALIVE_WATCH = 3.0  # minimum keepalive (1 s idle, 1 probe) would give up within about 2 s

E = TypeVar("E", bound=Event)
Record = dict[str, Any]
RecordProperty = Callable[[str, object], None]


def config() -> Config:
    return Config(interval=INTERVAL, multiplier=MULTIPLIER)


class Child:
    """An ``hbproto`` command in a child process, its JSON output read on demand.

    stderr goes to the same pipe, so a failure message can show everything the child said.
    Output is read only while the test waits for it; the children here print a few kB per
    second, far below what the pipe holds over a test's life.
    """

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.records: list[Record] = []
        self._partial = b""
        self._eof = False

    def output(self) -> str:
        return "\n".join(self.lines[-40:])

    async def _read_more(self) -> None:
        assert self.process.stdout is not None
        chunk = await self.process.stdout.receive_some(65536)
        if not chunk:
            self._eof = True
            chunk = b"\n" if self._partial else b""
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        for raw in complete:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a traceback or other stderr text: kept in lines for messages
            if isinstance(record, dict):
                self.records.append(record)

    async def wait_for(
        self, what: str, match: Callable[[Record], bool], *, timeout: float
    ) -> Record:
        """The first record, old or new, that ``match`` accepts, within ``timeout`` seconds."""
        seen = 0
        with trio.move_on_after(timeout):
            while True:
                for record in self.records[seen:]:
                    if match(record):
                        return record
                seen = max(seen, len(self.records))
                if self._eof:
                    pytest.fail(f"the child ended before {what}; its output:\n{self.output()}")
                await self._read_more()
        pytest.fail(f"no {what} from the child within {timeout} s; its output:\n{self.output()}")

    async def wait_event(self, kind: str, *, timeout: float) -> Record:
        return await self.wait_for(
            f"{kind} line", lambda r: r.get("event") == kind, timeout=timeout
        )

    async def wait_exit(self, *, timeout: float) -> int:
        """The exit status, reading (and keeping) the rest of the output meanwhile, so a child
        blocked on a full pipe cannot look like one that will not exit."""
        with trio.move_on_after(timeout):
            while not self._eof:
                await self._read_more()
            return await self.process.wait()
        pytest.fail(f"the child did not exit within {timeout} s; its output:\n{self.output()}")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def stop(self) -> None:
        """End the child whatever its state: resumed first, so no stopped process lingers."""
        with trio.CancelScope(shield=True):
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGCONT)
                self.process.kill()
            with trio.move_on_after(5):
                await self.process.wait()
            if self.process.stdout is not None:
                await self.process.stdout.aclose()


@asynccontextmanager
async def hbproto_command(*args: str) -> AsyncIterator[Child]:
    """Run ``hbproto ARGS --json``; the child is killed (and reaped) on the way out."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "transports", *args, "--json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    child = Child(process)
    try:
        yield child
    finally:
        await child.stop()


@asynccontextmanager
async def serving_command(scheme: str) -> AsyncIterator[tuple[Child, int]]:
    """``hbproto serve`` on a free loopback port, once it listens; yields it and the port."""
    async with hbproto_command("serve", f"{scheme}://127.0.0.1:0", *TIMING) as child:
        note = await child.wait_for("the listening note", lambda r: "local" in r, timeout=STARTUP)
        yield child, int(note["local"][1])


async def next_event(
    events: AsyncIterator[Event],
    kind: type[E],
    *,
    timeout: float,
    session: int | None = None,
) -> E:
    """The next event of type ``kind`` (for ``session``, if given) within ``timeout``."""
    skipped: Counter[str] = Counter()
    with trio.move_on_after(timeout):
        async for event in events:
            if isinstance(event, kind) and session in (None, getattr(event, "session", None)):
                return event
            skipped[type(event).__name__] += 1
        pytest.fail(f"the events ended before a {kind.__name__}; skipped {dict(skipped)}")
    pytest.fail(f"no {kind.__name__} within {timeout} s; skipped {dict(skipped)}")


def check_detection(
    down: PeerDown,
    signalled_at: float,
    detected_at: float,
    reasons: Iterable[DownReason],
    record_property: RecordProperty,
) -> None:
    """[HB-DET-2], [HB-DET-3] seen from outside: the signal's time is an upper bound on the
    last frame the peer sent, so detection must follow it within DetectionTime + SLACK."""
    allowed = set(reasons)
    assert down.reason in allowed, f"PeerDown reason {down.reason.value}, expected {allowed}"
    assert down.detection_time is not None
    after = detected_at - signalled_at
    record_property("detection_time", down.detection_time)
    record_property("detected_after_signal", round(after, 4))
    record_property("silent_for", round(down.silent_for, 4))
    record_property("reason", down.reason.value)
    if down.reason is DownReason.DETECTION_TIMEOUT:
        assert down.silent_for >= down.detection_time, down
    assert after <= down.detection_time + SLACK, (
        f"detected {after:.3f} s after the signal; DetectionTime {down.detection_time} s "
        f"+ slack {SLACK} s"
    )


def is_steady(negotiated: Negotiated | Record) -> bool:
    """DetectionTime is down from its slow-start floor to the configured one [HB-DET-8]."""
    dt = negotiated["detection_time"] if isinstance(negotiated, dict) else negotiated.detection_time
    return dt is not None and abs(dt - INTERVAL * MULTIPLIER) < 1e-6


async def steady(events: AsyncIterator[Event], *, session: int | None = None) -> int:
    """Wait until a session is UP at the configured DetectionTime (it starts UP with the
    slow-start floor and lowers it once the peer is seen UP); return its handle."""
    up = await next_event(events, PeerUp, timeout=STARTUP, session=session)
    negotiated = up.negotiated
    while not is_steady(negotiated):
        changed = await next_event(events, ParametersChanged, timeout=STARTUP, session=up.session)
        negotiated = changed.negotiated
    return up.session


async def command_steady(child: Child) -> None:
    """The child's session is UP at the configured DetectionTime."""
    await child.wait_for(
        "a steady session",
        lambda r: r.get("event") in ("PeerUp", "ParametersChanged") and is_steady(r["negotiated"]),
        timeout=STARTUP,
    )


async def up_with_command(peer: AsyncIterator[Event], child: Child) -> None:
    """Wait until both ends are steadily UP and a heartbeat went round."""
    await steady(peer)
    await command_steady(child)
    await next_event(peer, RttSample, timeout=STARTUP)


# --- The responder is a child process -------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_killed_responder_is_detected(scheme: str, record_property: RecordProperty) -> None:
    """SIGKILL the responder: over UDP nothing tells the initiator but silence, so its
    detection timer fires; over TCP the dead process's kernel closes or resets the connection,
    which is reported at once."""
    expected = (
        {DownReason.DETECTION_TIMEOUT}
        if scheme == "udp"
        else {DownReason.TRANSPORT_CLOSED, DownReason.CONNECTION_RESET}
    )
    with trio.fail_after(TEST_BOUND):
        async with (
            serving_command(scheme) as (child, port),
            connect(f"{scheme}://127.0.0.1:{port}", config()) as peer,
        ):
            await up_with_command(peer, child)
            killed_at = trio.current_time()
            child.signal(signal.SIGKILL)
            down = await next_event(peer, PeerDown, timeout=5)
            check_detection(down, killed_at, trio.current_time(), expected, record_property)
            assert await child.wait_exit(timeout=5) == -signal.SIGKILL


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_stopped_responder_is_detected(scheme: str, record_property: RecordProperty) -> None:
    """SIGSTOP the responder: its kernel still holds the socket, so only the heartbeat sees the
    hang. Over TCP, a plain connection to the same stopped process with kernel keepalive at
    its fastest hears nothing wrong: the kernel answers the probes [HB-TCP-10]."""
    with trio.fail_after(TEST_BOUND):
        async with serving_command(scheme) as (child, port):
            async with connect(f"{scheme}://127.0.0.1:{port}", config()) as peer:
                await up_with_command(peer, child)
                stopped_at = trio.current_time()
                child.signal(signal.SIGSTOP)
                down = await next_event(peer, PeerDown, timeout=5)
                check_detection(
                    down,
                    stopped_at,
                    trio.current_time(),
                    {DownReason.DETECTION_TIMEOUT},
                    record_property,
                )

            if scheme == "tcp":
                raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                applied = KernelTimeouts.minimum().apply(raw)
                assert applied == KernelTimeouts.minimum()
                with trio.socket.from_stdlib_socket(raw) as sock:
                    # The stopped process's kernel completes the handshake from its backlog.
                    await sock.connect(("127.0.0.1", port))
                    with trio.move_on_after(KEEPALIVE_WATCH) as watch:
                        data = await sock.recv(1)
                        pytest.fail(f"keepalive reported {data!r} on a live kernel's socket")
                    assert watch.cancelled_caught
                    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                    state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
                    assert state == TCP_ESTABLISHED

            child.signal(signal.SIGCONT)
            child.signal(signal.SIGTERM)
            assert await child.wait_exit(timeout=10) == 0, child.output()


# --- The initiator is a child process -------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_stopped_initiator_is_detected(scheme: str, record_property: RecordProperty) -> None:
    """SIGSTOP an ``hbproto connect`` process: the in-test responder's detection timer fires."""
    with trio.fail_after(TEST_BOUND):
        # The server closes while the child is still stopped, and only then is the child
        # killed: its kernel's reset would otherwise reach a server still lingering after its
        # CLOSE, a crash of the transport's own (StreamDriver._finish) that this test is not about.
        async with (
            AsyncExitStack() as children,
            serve(f"{scheme}://127.0.0.1:0", config()) as server,
        ):
            port = server.local_address[1]
            child = await children.enter_async_context(
                hbproto_command("connect", f"{scheme}://127.0.0.1:{port}", *TIMING)
            )
            session = await steady(server)
            await command_steady(child)
            await child.wait_event("RttSample", timeout=STARTUP)
            stopped_at = trio.current_time()
            child.signal(signal.SIGSTOP)
            down = await next_event(server, PeerDown, timeout=5, session=session)
            check_detection(
                down,
                stopped_at,
                trio.current_time(),
                {DownReason.DETECTION_TIMEOUT},
                record_property,
            )


# --- Graceful exits -------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_interrupted_initiator_closes(scheme: str) -> None:
    """SIGINT (Ctrl-C) to ``hbproto connect``: it sends CLOSE(shutdown) and exits 0."""
    with trio.fail_after(TEST_BOUND):
        async with serve(f"{scheme}://127.0.0.1:0", config()) as server:
            port = server.local_address[1]
            async with hbproto_command("connect", f"{scheme}://127.0.0.1:{port}", *TIMING) as child:
                up = await next_event(server, PeerUp, timeout=STARTUP)
                # Its signal handler is in place once it reports the session UP.
                await child.wait_event("PeerUp", timeout=STARTUP)
                child.signal(signal.SIGINT)
                closed = await next_event(server, SessionClosed, timeout=5, session=up.session)
                assert closed.by_peer
                assert closed.code == CloseCode.SHUTDOWN
                assert await child.wait_exit(timeout=5) == 0, child.output()


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_terminated_responder_closes(scheme: str) -> None:
    """SIGTERM to ``hbproto serve``: it closes every session with shutdown and exits 0."""
    with trio.fail_after(TEST_BOUND):
        async with (
            serving_command(scheme) as (child, port),
            connect(f"{scheme}://127.0.0.1:{port}", config()) as peer,
        ):
            await up_with_command(peer, child)
            child.signal(signal.SIGTERM)
            closed = await next_event(peer, SessionClosed, timeout=5)
            assert closed.by_peer
            assert closed.code == CloseCode.SHUTDOWN
            assert await child.wait_exit(timeout=5) == 0, child.output()
