"""The ``hbproto`` command: ``serve``, ``connect`` and ``demo``.

Exit status: 0 when the command ends as asked (Ctrl-C, ``--duration``, or the peer closed the
session), 1 when a peer was lost or could not be reached, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import trio

from hbproto import (
    AuthKeys,
    Config,
    HbprotoError,
    MessageReceived,
    PeerDown,
    PeerUp,
    SessionClosed,
    __version__,
)

from ._base import Backoff
from .address import DEFAULT_PORT, parse_address
from .api import connect, serve
from .demo import run_demo
from .errors import AddressError, TransportError
from .kernel import KernelTimeouts
from .report import Reporter, address_text

__all__ = ["main"]

_PRESETS = {
    "lan": Config.lan,
    "wan": Config.wan,
    "nat": Config.nat_keepalive,
    "mobile": Config.mobile,
}


class _UsageError(Exception):
    """A command-line value that argparse cannot check by itself."""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def _config(args: argparse.Namespace) -> Config:
    base = _PRESETS[args.preset]() if args.preset else Config()
    try:
        return Config(
            interval=args.interval if args.interval is not None else base.interval,
            min_rx=args.min_rx if args.min_rx is not None else base.min_rx,
            multiplier=args.multiplier if args.multiplier is not None else base.multiplier,
            idle_only=args.idle_only or base.idle_only,
            auth=_auth(args),
        )
    except HbprotoError as exc:
        raise _UsageError(str(exc)) from None


def _auth(args: argparse.Namespace) -> AuthKeys | None:
    try:
        return parse_auth_keys(args.auth_key, args.auth_active)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None


def parse_auth_keys(specs: Sequence[str], active: int | None = None) -> AuthKeys | None:
    """Keys from ``--auth-key ID:HEX`` or ``ID:@FILE`` options (``None`` for none), signing
    with ``active`` or else the first. Raises :class:`ValueError` saying what is wrong."""
    if not specs:
        if active is not None:
            raise ValueError("--auth-active needs at least one --auth-key")
        return None
    keys: dict[int, bytes] = {}
    for spec in specs:
        key_id, sep, secret = spec.partition(":")
        if not sep or not key_id.isdigit():
            raise ValueError(f"--auth-key {spec!r}: use ID:HEX or ID:@FILE, ID from 0 to 255")
        if secret.startswith("@"):
            try:
                keys[int(key_id)] = Path(secret[1:]).read_bytes()
            except OSError as exc:
                raise ValueError(f"--auth-key {key_id}: cannot read {secret[1:]}: {exc}") from None
        else:
            try:
                keys[int(key_id)] = bytes.fromhex(secret)
            except ValueError:
                raise ValueError(f"--auth-key {key_id}: the secret is not hex") from None
    try:
        return AuthKeys(keys, active if active is not None else int(specs[0].split(":")[0]))
    except HbprotoError as exc:
        raise ValueError(str(exc)) from None


def _kernel(args: argparse.Namespace, config: Config) -> KernelTimeouts | None:
    keepalive = args.kernel_keepalive
    user = args.user_timeout
    if keepalive == "off" and user is None:
        return None
    matching = KernelTimeouts.matching(config)
    if keepalive == "min":
        base = KernelTimeouts.minimum()
    elif keepalive == "match":
        base = KernelTimeouts(
            matching.keepalive_idle, matching.keepalive_interval, matching.keepalive_count
        )
    elif keepalive == "off":
        base = KernelTimeouts()
    else:
        try:
            idle, interval, count = (int(part) for part in keepalive.split(","))
            base = KernelTimeouts(idle, interval, count)
        except ValueError:
            raise _UsageError(
                f"--kernel-keepalive {keepalive!r}: use off, min, match or IDLE,INTERVAL,COUNT "
                "in whole seconds (at least 1,1,1)"
            ) from None
    if user is None:
        return base
    if user == "match":
        timeout = matching.user_timeout
    else:
        try:
            timeout = _positive(user)
        except argparse.ArgumentTypeError as exc:
            raise _UsageError(f"--user-timeout: {exc}") from None
    return KernelTimeouts(
        base.keepalive_idle, base.keepalive_interval, base.keepalive_count, timeout
    )


def _payload(args: argparse.Namespace) -> bytes | None:
    if args.payload is None:
        return None
    data: bytes = args.payload.encode()
    if len(data) > 128:
        raise _UsageError(f"--payload is {len(data)} bytes; a heartbeat carries at most 128")
    return data


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hbproto",
        description="Application-layer heartbeats over UDP and TCP: run a responder, an "
        "initiator, or a demonstration of both.",
        epilog="Addresses look like udp://127.0.0.1:7373, tcp://[::1]:7373 or udp://0.0.0.0:7373 "
        f"(the port defaults to {DEFAULT_PORT}). Exit status: 0 when the command ends as asked "
        "or the peer closed the session, 1 when a peer is lost or cannot be reached, 2 for a "
        "bad command line.",
    )
    parser.add_argument("--version", action="version", version=f"hbproto {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    timing = common.add_argument_group("heartbeat")
    timing.add_argument(
        "--preset",
        choices=sorted(_PRESETS),
        help="start from a preset: lan (100 ms x 3), wan (1 s x 5), nat (25 s x 3, idle "
        "only), mobile (270 s x 2; the peer sends nothing periodic). Options below override it.",
    )
    timing.add_argument(
        "-i",
        "--interval",
        type=_positive,
        metavar="SECONDS",
        help="how often to send a heartbeat (default 1; the peer may ask for slower)",
    )
    timing.add_argument(
        "-m",
        "--multiplier",
        type=int,
        metavar="N",
        help="heartbeats the peer may miss before it declares this side down, 1-15 (default 3)",
    )
    timing.add_argument(
        "--min-rx",
        type=float,
        metavar="SECONDS",
        help="the fastest this side accepts the peer's heartbeats; 0 asks the peer to send "
        "none and detects it by the acknowledgements of this side's own (default: no limit)",
    )
    timing.add_argument(
        "--idle-only",
        action="store_true",
        help="send heartbeats only while no application messages flow",
    )
    timing.add_argument(
        "--payload",
        metavar="TEXT",
        help="carry TEXT (at most 128 bytes) in every heartbeat, e.g. a load figure",
    )
    auth = common.add_argument_group("authentication (HMAC-SHA-256, SPEC section 10)")
    auth.add_argument(
        "--auth-key",
        action="append",
        default=[],
        metavar="ID:SECRET",
        help="a key, ID 0-255, SECRET in hex or @FILE to read its bytes from a file (safer: "
        "the command line shows in ps); repeat to accept several during a key rotation. "
        "Both ends need the same keys; every frame is then signed and checked",
    )
    auth.add_argument(
        "--auth-active",
        type=int,
        metavar="ID",
        help="the key to sign with (default: the first --auth-key)",
    )
    tcp = common.add_argument_group("kernel TCP options (tcp:// only)")
    tcp.add_argument(
        "--kernel-keepalive",
        default="off",
        metavar="MODE",
        help="kernel keepalive beside the heartbeat: off (default), min (1 s idle, 1 s "
        "interval, 1 probe), match (the heartbeat's interval and multiplier, in whole "
        "seconds), or IDLE,INTERVAL,COUNT",
    )
    tcp.add_argument(
        "--user-timeout",
        metavar="SECONDS",
        help="set TCP_USER_TIMEOUT: how long sent data may stay unacknowledged; 'match' sets "
        "it to the detection time",
    )
    output = common.add_argument_group("output")
    output.add_argument(
        "--json", action="store_true", help="one JSON object per event, for scripts"
    )
    output.add_argument(
        "--log-level",
        choices=["debug", "info", "warning"],
        help="also log every event to stderr through the 'hbproto' logger",
    )

    serve_cmd = commands.add_parser(
        "serve",
        parents=[common],
        help="accept sessions and report every peer",
        description="Run a responder: accept sessions on ADDRESS and report every peer's "
        "state changes and messages. Ctrl-C closes every session (the peers are told) and "
        "exits 0.",
    )
    serve_cmd.add_argument("address", metavar="ADDRESS", help="udp://HOST:PORT or tcp://HOST:PORT")
    serve_cmd.add_argument(
        "--echo", action="store_true", help="send every application message back to its sender"
    )
    serve_cmd.add_argument(
        "--duration", type=_positive, metavar="SECONDS", help="stop after this long"
    )

    connect_cmd = commands.add_parser(
        "connect",
        parents=[common],
        help="open a session and print state changes and RTT",
        description="Run an initiator: open a session to ADDRESS and print its state changes "
        "and round-trip times. Ctrl-C closes the session (the peer is told) and exits 0.",
    )
    connect_cmd.add_argument(
        "address", metavar="ADDRESS", help="udp://HOST:PORT or tcp://HOST:PORT"
    )
    connect_cmd.add_argument(
        "--reconnect",
        action="store_true",
        help="keep trying when the session is lost, backing off with jitter",
    )
    connect_cmd.add_argument(
        "--send", metavar="TEXT", help="send TEXT as an application message once UP"
    )
    connect_cmd.add_argument(
        "--every",
        type=_positive,
        metavar="SECONDS",
        help="with --send: send it again every SECONDS",
    )
    connect_cmd.add_argument(
        "--duration", type=_positive, metavar="SECONDS", help="close and exit after this long"
    )

    demo_cmd = commands.add_parser(
        "demo",
        help="both ends in this process, over UDP and TCP on loopback: up, RTT, a hang caught",
        description="Start a responder and an initiator in this process over UDP and over TCP "
        "on loopback, show them come up and their round-trip times, then hang the responder's "
        "application (its kernel keeps answering TCP) and show how fast the heartbeat "
        "notices, next to TCP keepalive at its fastest setting, which does not. Takes about "
        "6 seconds.",
    )
    demo_cmd.add_argument(
        "--json", action="store_true", help="one JSON object per event, for scripts"
    )
    demo_cmd.add_argument(
        "-i",
        "--interval",
        type=_positive,
        default=0.1,
        metavar="SECONDS",
        help="heartbeat interval (default 0.1)",
    )
    demo_cmd.add_argument(
        "-m",
        "--multiplier",
        type=int,
        default=3,
        metavar="N",
        help="detection multiplier, 1-15 (default 3)",
    )
    return parser


async def _until_signal(body: Callable[[], Awaitable[int]]) -> int:
    """Run ``body``; on SIGINT or SIGTERM cancel it (it closes gracefully) and return 0."""
    result = 0
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

            async def work() -> None:
                nonlocal result
                result = await body()
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            nursery.start_soon(work)
    return result


async def _serve(args: argparse.Namespace, config: Config, kernel: KernelTimeouts | None) -> int:
    report = Reporter(json_lines=args.json, start=trio.current_time())
    address = parse_address(args.address, default_host="0.0.0.0")
    payload = _payload(args)
    async with serve(address, config, kernel=kernel) as server:
        report.say(
            trio.current_time(),
            address.scheme,
            f"listening on {address.scheme}://{address_text(server.local_address)}",
            local=list(server.local_address),
        )

        async def body() -> int:
            with trio.move_on_after(args.duration or float("inf")):
                async for event in server:
                    session = getattr(event, "session", None)
                    peer = ""
                    if session is not None:
                        at = server.address_of(session)
                        peer = f"{session:08x}" if at is None else address_text(at)
                    report.event(trio.current_time(), address.scheme, event, peer)
                    if isinstance(event, PeerUp) and payload is not None:
                        server.set_piggyback(event.session, payload)
                    if args.echo and isinstance(event, MessageReceived):
                        await server.send(event.session, event.data)
            return 0

        try:
            return await _until_signal(body)
        finally:
            report.say(trio.current_time(), address.scheme, "closing every session")


async def _connect(args: argparse.Namespace, config: Config, kernel: KernelTimeouts | None) -> int:
    report = Reporter(json_lines=args.json, start=trio.current_time())
    address = parse_address(args.address)
    link = address.scheme
    report.say(trio.current_time(), link, f"connecting to {address}")
    async with connect(
        address,
        config,
        wait_up=False,
        reconnect=Backoff() if args.reconnect else False,
        kernel=kernel,
        piggyback=_payload(args),
    ) as peer:

        async def sender() -> None:
            message = args.send.encode()
            while True:
                await peer.wait_up()
                await peer.send(message)
                if args.every is None:
                    return
                await trio.sleep(args.every)

        async def body() -> int:
            lost = False
            with trio.move_on_after(args.duration or float("inf")):
                async with trio.open_nursery() as nursery:
                    if args.send is not None:
                        nursery.start_soon(sender)
                    async for event in peer:
                        report.event(trio.current_time(), link, event)
                        if isinstance(event, PeerDown):
                            lost = True
                        elif isinstance(event, SessionClosed) and event.by_peer:
                            lost = False
                    nursery.cancel_scope.cancel()
            if peer.failure is not None:
                raise peer.failure
            if peer.finished and peer.end_reason not in (None, "closed"):
                report.say(trio.current_time(), link, f"finished: {peer.end_reason}")
                return 1 if lost else 0
            return 0

        try:
            return await _until_signal(body)
        finally:
            if not peer.finished:
                report.say(trio.current_time(), link, "closing the session")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hbproto`` command; return its exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "log_level", None):
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        if args.command == "demo":
            try:
                Config(interval=args.interval, multiplier=args.multiplier)
            except HbprotoError as exc:
                raise _UsageError(str(exc)) from None
            return trio.run(run_demo, args.interval, args.multiplier, args.json)
        config = _config(args)
        kernel = _kernel(args, config)
        _payload(args)
        parse_address(args.address)
        if args.command == "serve":
            return trio.run(_serve, args, config, kernel)
        return trio.run(_connect, args, config, kernel)
    except (_UsageError, AddressError) as exc:
        parser.exit(2, f"hbproto: error: {exc}\n")
    except TransportError as exc:
        print(f"hbproto: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
