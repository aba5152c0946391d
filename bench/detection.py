"""Section 4: how long from a failure to the down event, beside the kernel's own mechanisms.

Usage::

    python3 -m bench detection           # 10 ms x 3 to 1 s x 3, about 100 samples each
    python3 -m bench detection --quick   # 50 ms x 3 only, a few samples

The failing peer is the ``hbproto serve`` command in a child process; the monitor is this
process, K sessions opened with :func:`transports.connect` (so each trial gives K samples, the
sessions' phases independent of one another through the jitter of [HB-TX-1]). Once every
session runs at its final detection time, and after a random fraction of an interval, the peer
fails:

* silent: a pulled cable. iptables drops every packet to and from the child's port (both
  directions, inside a network namespace made for the run, so nothing else on the machine is
  touched);
* hung: SIGSTOP to the child. Its kernel still answers TCP.

Latency is the monitor application's PeerDown time minus the failure time. The SPEC bounds
the time from the last frame received to the down event by DetectionTime + ExpectedRemote
(MUST) and DetectionTime + min(10 ms, ExpectedRemote) (SHOULD) [HB-DET-3]; the last frame came
before the failure, so these bound the latency too. The core's own ``silent_for`` (last frame
to detection) is shown beside it.

The kernel's mechanisms on plain TCP connections to a child that only reads: keepalive at its
minimum (1 s idle, 1 s apart, 1 probe) on an idle connection, and TCP_USER_TIMEOUT set to the
detection time of a heartbeat setting, with a write every interval so that data is in flight
(keepalive does not probe then). The connection's error (ETIMEDOUT) is the detection. A hung
peer is watched for a fixed time: its kernel answers both.

The silent cases need root, ``ip`` and ``iptables``; without them only the hung rows run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import trio

from bench.common import ROOT, percentile, run_delay, table
from hbproto import Config, ParametersChanged, PeerDown, PeerUp
from transports import KernelTimeouts, connect
from transports.kernel import classify_failure

MULT = 3
FULL_INTERVALS = (0.01, 0.02, 0.05, 0.1, 1.0)
QUICK_INTERVALS = (0.05,)
SAMPLES = 100
KERNEL_SAMPLES = 40
HUNG_WATCH = 5.0  # how long a kernel mechanism is given to notice a hung peer
QUICK_HUNG_WATCH = 1.5
STARTUP = 15.0


@dataclass
class Case:
    mechanism: str  # hbproto, keepalive, user_timeout
    transport: str  # udp, tcp
    failure: str  # silent, hung
    interval: float  # heartbeat interval; for user_timeout, the write interval
    sessions: int
    trials: int
    latencies: list[float] = field(default_factory=list)  # failure to down, seconds
    silent_for: list[float] = field(default_factory=list)  # the core's last frame to down
    missed: int = 0  # sessions not declared down within the watch
    monitor_waited: list[float] = field(default_factory=list)  # per trial, seconds runnable
    # but without a CPU between the failure and the last detection: other work's doing
    detection_time: float = 0.0
    expected_remote: float = 0.0
    watch: float = 0.0

    @property
    def label(self) -> str:
        if self.mechanism == "hbproto":
            return f"hbproto {self.transport} {_ms(self.interval)} x {MULT}"
        if self.mechanism == "keepalive":
            return "kernel keepalive 1 s/1 s/1 probe"
        return f"TCP_USER_TIMEOUT {_ms(self.interval * MULT)}, writes every {_ms(self.interval)}"


def _ms(seconds: float) -> str:
    return f"{seconds:g} s" if seconds >= 1 else f"{seconds * 1e3:g} ms"


def plan(quick: bool, silent: bool) -> list[Case]:
    cases = []
    failures = ("silent", "hung") if silent else ("hung",)
    for interval in QUICK_INTERVALS if quick else FULL_INTERVALS:
        k = 10 if interval <= 0.02 else 25
        k = 4 if quick else k
        trials = 1 if quick else math.ceil(SAMPLES / k)
        for failure in failures:
            for transport in ("udp", "tcp"):
                cases.append(Case("hbproto", transport, failure, interval, k, trials))
    k, trials = (2, 1) if quick else (10, math.ceil(KERNEL_SAMPLES / 10))
    timeouts = () if quick else (0.02, 0.1, 1.0)
    kernel = [("keepalive", 1.0)] + [("user_timeout", i) for i in timeouts]
    for failure in failures:
        for mechanism, interval in kernel:
            hung = failure == "hung"
            case = Case(mechanism, "tcp", failure, interval, k, 1 if hung else trials)
            case.watch = (QUICK_HUNG_WATCH if quick else HUNG_WATCH) if hung else 0.0
            cases.append(case)
    return cases


# --- Children ---------------------------------------------------------------------------------


@asynccontextmanager
async def child(argv: list[str]) -> AsyncIterator[tuple[trio.Process, int]]:
    """A child that prints its port first; the rest of its output is read and dropped."""
    proc = await trio.lowlevel.open_process(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT
    )
    assert proc.stdout is not None
    stdout = proc.stdout
    port = 0
    text = b""
    try:
        with trio.fail_after(STARTUP):
            while not port:
                chunk = await stdout.receive_some(65536)
                if not chunk:
                    raise RuntimeError(f"{argv} ended: {text.decode(errors='replace')}")
                text += chunk
                found = re.search(rb"(?:listening on \w+://127\.0\.0\.1:|PORT )(\d+)", text)
                if found:
                    port = int(found.group(1))
        async with trio.open_nursery() as nursery:

            async def drain() -> None:
                while await stdout.receive_some(65536):
                    pass

            nursery.start_soon(drain)
            yield proc, port
            nursery.cancel_scope.cancel()
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.move_on_after(5):
            await proc.wait()


def hbproto_serve(transport: str, interval: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "transports",
        "serve",
        f"{transport}://127.0.0.1:0",
        "-i",
        str(interval),
        "-m",
        str(MULT),
    ]


SINK = [sys.executable, "-m", "bench.detection", "--sink"]


class Cable:
    """iptables DROP of every packet to or from one port, removed on exit whatever happens."""

    def __init__(self, transport: str, port: int) -> None:
        self.rules = [
            ["INPUT", "-p", transport, direction, str(port), "-j", "DROP"]
            for direction in ("--dport", "--sport")
        ]
        self.added: list[list[str]] = []

    def pull(self) -> None:
        for rule in self.rules:
            subprocess.run(["iptables", "-A", *rule], check=True)
            self.added.append(rule)

    def restore(self) -> None:
        for rule in self.added:
            subprocess.run(["iptables", "-D", *rule], check=False)
        self.added = []


async def fail(case: Case, proc: trio.Process, cable: Cable) -> float:
    if case.failure == "hung":
        proc.send_signal(signal.SIGSTOP)
    else:
        cable.pull()
    return trio.current_time()


# --- hbproto ----------------------------------------------------------------------------------


async def hbproto_trial(case: Case, rng: random.Random) -> None:
    config = Config(interval=case.interval, multiplier=MULT)
    target = MULT * case.interval
    ready = trio.Event()
    settled: set[int] = set()
    downs: dict[int, tuple[float, PeerDown]] = {}
    all_down = trio.Event()
    async with child(hbproto_serve(case.transport, case.interval)) as (proc, port):
        cable = Cable(case.transport, port)
        try:
            async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
                address = f"{case.transport}://127.0.0.1:{port}"
                for k in range(case.sessions):
                    peer = await stack.enter_async_context(connect(address, config))

                    async def watch(k: int = k, peer: Any = peer) -> None:
                        async for event in peer:
                            if isinstance(event, PeerUp | ParametersChanged):
                                n = event.negotiated
                                if (
                                    n.detection_time is not None
                                    and abs(n.detection_time - target) < 1e-9
                                ):
                                    case.expected_remote = n.expected_remote or 0.0
                                    settled.add(k)
                                    if len(settled) == case.sessions:
                                        ready.set()
                            elif isinstance(event, PeerDown) and k not in downs:
                                downs[k] = (trio.current_time(), event)
                                if len(downs) == case.sessions:
                                    all_down.set()

                    nursery.start_soon(watch)
                with trio.fail_after(10 + 20 * case.interval):
                    await ready.wait()
                await trio.sleep(case.interval * (2 + rng.random()))
                failed_at = await fail(case, proc, cable)
                waited = run_delay(os.getpid())
                case.detection_time = target
                case.watch = target + case.interval + 2.0
                with trio.move_on_after(case.watch):
                    await all_down.wait()
                case.monitor_waited.append(run_delay(os.getpid()) - waited)
                for at, event in downs.values():
                    case.latencies.append(at - failed_at)
                    case.silent_for.append(event.silent_for)
                case.missed += case.sessions - len(downs)
                nursery.cancel_scope.cancel()
        finally:
            cable.restore()


# --- The kernel -------------------------------------------------------------------------------


async def kernel_trial(case: Case, rng: random.Random) -> None:
    if case.mechanism == "keepalive":
        timeouts = KernelTimeouts.minimum()
        case.detection_time = float(timeouts.keepalive_bound or 0.0)
    else:
        timeouts = KernelTimeouts(user_timeout=MULT * case.interval)
        case.detection_time = MULT * case.interval
    if case.failure == "silent":
        case.watch = case.detection_time + 5.0
    detected: list[float] = []
    async with child(SINK) as (proc, port):
        cable = Cable("tcp", port)
        socks = []
        try:
            for _ in range(case.sessions):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                timeouts.apply(sock)
                sock.connect(("127.0.0.1", port))
                sock.setblocking(False)
                socks.append(sock)
            await trio.sleep(1.0 + rng.random())  # idle, or writing, for a random phase
            async with trio.open_nursery() as nursery:
                failed_at = 0.0

                async def watch(sock: socket.socket) -> None:
                    while True:
                        if case.mechanism == "user_timeout":
                            try:
                                sock.send(b"heartbeat-sized!")
                            except BlockingIOError:
                                pass
                            except OSError as exc:
                                if failed_at and _is_kernel(exc, sock):
                                    detected.append(trio.current_time() - failed_at)
                                return
                            with trio.move_on_after(case.interval):
                                await trio.lowlevel.wait_readable(sock)
                        else:
                            await trio.lowlevel.wait_readable(sock)
                        try:
                            sock.recv(1)
                        except BlockingIOError:
                            continue
                        except OSError as exc:
                            if failed_at and _is_kernel(exc, sock):
                                detected.append(trio.current_time() - failed_at)
                            return

                for sock in socks:
                    nursery.start_soon(watch, sock)
                await trio.sleep(0.5 + rng.random())
                failed_at = await fail(case, proc, cable)
                waited = run_delay(os.getpid())
                with trio.move_on_after(case.watch):
                    while len(detected) < len(socks):
                        await trio.sleep(0.01)
                case.monitor_waited.append(run_delay(os.getpid()) - waited)
                nursery.cancel_scope.cancel()
        finally:
            cable.restore()
            for sock in socks:
                sock.close()
    case.latencies += detected
    case.missed += case.sessions - len(detected)


def _is_kernel(exc: OSError, sock: socket.socket) -> bool:
    return classify_failure(exc, sock).value.startswith("kernel")


async def sink() -> None:
    """The kernel rows' peer: accepts connections and reads whatever arrives."""

    async def handler(stream: trio.SocketStream) -> None:
        while await stream.receive_some(65536):
            pass

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(f"PORT {listeners[0].socket.getsockname()[1]}", flush=True)
    await trio.serve_listeners(handler, listeners)


# --- Running ----------------------------------------------------------------------------------


async def inner(quick: bool, silent: bool, seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = plan(quick, silent)
    for case in cases:
        for _ in range(case.trials):
            if case.mechanism == "hbproto":
                await hbproto_trial(case, rng)
            else:
                await kernel_trial(case, rng)
        print(f"  {case.label}, {case.failure}: {len(case.latencies)} samples", file=sys.stderr)
    return cases


def can_pull_cables() -> bool:
    return (
        sys.platform == "linux"
        and os.geteuid() == 0
        and shutil.which("ip") is not None
        and shutil.which("iptables") is not None
    )


def measure(quick: bool, seed: int = 1) -> tuple[list[Case], str]:
    """Run every case, in a network namespace of its own when cables can be pulled."""
    argv = [sys.executable, "-m", "bench.detection", "--inner", "--seed", str(seed)]
    argv += ["--quick"] if quick else []
    if not can_pull_cables():
        note = "no root, ip or iptables here: only the hung-peer rows ran"
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    else:
        note = "run in a network namespace of its own, iptables dropping the peer's port"
        namespace = f"hbbench-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", namespace], check=True)
        try:
            subprocess.run(
                ["ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up"], check=True
            )
            done = subprocess.run(
                ["ip", "netns", "exec", namespace, *argv, "--silent"],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=False,
            )
        finally:
            subprocess.run(["ip", "netns", "del", namespace], check=False)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"the detection run failed:\n{done.stderr[-4000:]}")
    cases = [Case(**c) for c in json.loads(done.stdout)]
    return cases, note


def report(cases: list[Case], note: str) -> str:
    rows = []
    for c in cases:
        lat = [x * 1e3 for x in c.latencies]
        should = (c.detection_time + min(0.01, c.expected_remote)) * 1e3
        must = (c.detection_time + c.expected_remote) * 1e3
        hb = c.mechanism == "hbproto"
        rows.append(
            (
                c.label,
                c.failure,
                f"{len(lat)}/{len(lat) + c.missed}",
                percentile(lat, 50),
                percentile(lat, 99),
                max(lat) if lat else math.nan,
                f"{should:.0f} / {must:.0f}" if hb else "-",
                f"{percentile(lat, 99) - should:+.1f}" if hb and lat else "-",
                percentile([x * 1e3 for x in c.silent_for], 99) if hb else math.nan,
                max(c.monitor_waited, default=0.0) * 1e3,
            )
        )
    lines = [
        table(
            [
                "mechanism",
                "failure",
                "caught",
                "p50 ms",
                "p99 ms",
                "max ms",
                "bound SHOULD/MUST ms",
                "p99-SHOULD",
                "silent_for p99 ms",
                "waited ms",
            ],
            rows,
            title="Failure to down event (the monitor application's clock)",
        ),
        "caught: sessions declared down within the watch / sessions failed. bound: DetectionTime +",
        "min(10 ms, ExpectedRemote) (SHOULD) and + ExpectedRemote (MUST) [HB-DET-3], from the last",
        "frame, so also from the failure. silent_for: the core's last frame to detection.",
        "waited: the longest, over the trials, that this process was runnable but other",
        "processes had the CPUs between the failure and the last detection (/proc schedstat).",
        f"({note})",
        "",
        versus_kernel(cases),
    ]
    return "\n".join(lines)


def versus_kernel(cases: list[Case]) -> str:
    kernel = [
        c for c in cases if c.mechanism == "keepalive" and c.failure == "silent" and c.latencies
    ]
    out = []
    k_med = k_p99 = math.nan
    if kernel:
        k_med = percentile(kernel[0].latencies, 50)
        k_p99 = percentile(kernel[0].latencies, 99)
        out.append(
            "kernel keepalive at its fastest settings, pulled cable:"
            f" median {k_med:.2f} s, p99 {k_p99:.2f} s, best {min(kernel[0].latencies):.2f} s"
        )
        for c in cases:
            if c.mechanism == "hbproto" and c.failure == "silent" and c.latencies:
                out.append(
                    f"  {c.label}: {k_med / percentile(c.latencies, 50):.1f}x faster at the"
                    f" median, {k_p99 / percentile(c.latencies, 99):.1f}x at p99"
                )
    for c in cases:
        if c.mechanism != "hbproto" and c.failure == "hung":
            out.append(
                f"{c.label}, hung peer: {len(c.latencies)} of {c.sessions * c.trials} caught"
                f" within {c.watch:g} s"
            )
    goal = [
        c
        for c in cases
        if c.mechanism == "hbproto" and abs(c.interval - 0.02) < 1e-9 and c.latencies
    ]
    for c in goal:
        should = (c.detection_time + min(0.01, c.expected_remote)) * 1e3
        p99 = percentile(c.latencies, 99) * 1e3
        ok = p99 <= should + 10 and (c.failure != "hung" or c.missed == 0)
        if kernel and c.failure == "silent":
            faster = min(k_med / percentile(c.latencies, 50), k_p99 / (p99 / 1e3))
            ok = ok and faster >= 25
        also = ", 25x the kernel (median, p99)" if c.failure == "silent" else ", caught"
        out.append(
            f"goal at 20 ms x 3 ({c.transport}, {c.failure}): p99 {p99:.1f} ms within 10 ms of"
            f" {should:.0f} ms{also}: {'yes' if ok else 'NO'}"
        )
    return "\n".join(out)


def run(quick: bool) -> tuple[dict[str, Any], str]:
    cases, note = measure(quick)
    return {"note": note, "cases": [asdict(c) for c in cases]}, report(cases, note)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The detection section's workers.")
    parser.add_argument("--inner", action="store_true", help="run the cases, print JSON")
    parser.add_argument("--sink", action="store_true", help="accept TCP and read (a peer)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--silent", action="store_true", help="also pull cables (iptables)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.sink:
        trio.run(sink)
        return 0
    if args.inner:
        cases = trio.run(inner, args.quick, args.silent, args.seed)
        print(json.dumps([asdict(c) for c in cases]))
        return 0
    _, text = run(args.quick)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
