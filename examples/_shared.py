"""The part of the example peers that has nothing to do with the loop: the command line, what to
print, and what to do about each event (send a message once UP, echo, stop when done)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from hbproto import (
    Config,
    ConnectionEnded,
    Event,
    HbprotoError,
    MessageReceived,
    PeerDown,
    PeerUp,
    SessionClosed,
)

LINGER = 1.0  # longest wait for a TCP peer to close after our CLOSE [HB-TCP-6]


@dataclasses.dataclass
class Options:
    role: str  # "serve" or "connect"
    link: str  # "udp" or "tcp"
    host: str
    port: int
    config: Config
    duration: float | None
    send: bytes | None
    echo: bool
    json: bool


def parse(description: str) -> Options:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("role", choices=["serve", "connect"])
    parser.add_argument("url", help="udp://HOST:PORT or tcp://HOST:PORT (port 0: any free one)")
    parser.add_argument("-i", "--interval", type=float, default=1.0, help="seconds (default 1)")
    parser.add_argument("-m", "--multiplier", type=int, default=3, help="misses until down")
    parser.add_argument("--duration", type=float, help="close and exit after this many seconds")
    parser.add_argument("--send", metavar="TEXT", help="send TEXT to every peer once it is UP")
    parser.add_argument("--echo", action="store_true", help="send every message back")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    args = parser.parse_args()
    url = urlsplit(args.url)
    if url.scheme not in ("udp", "tcp"):
        parser.error(f"{args.url}: use udp://HOST:PORT or tcp://HOST:PORT")
    try:
        config = Config(interval=args.interval, multiplier=args.multiplier)
        port = 7373 if url.port is None else url.port
    except (HbprotoError, ValueError) as exc:
        parser.error(str(exc))
    send = None if args.send is None else args.send.encode()
    host = url.hostname or "127.0.0.1"
    return Options(
        args.role, url.scheme, host, port, config, args.duration, send, args.echo, args.json
    )


class App:
    """Prints events and decides what to send; ``on_done`` is called when an initiator's
    session is over (closed by the peer, or lost: then ``status`` is 1)."""

    def __init__(self, options: Options, now: float, on_done: Callable[[], None]) -> None:
        self.options, self.start, self.on_done = options, now, on_done
        self.status = 0

    def say(self, now: float, record: dict[str, Any]) -> None:
        """One line: JSON, or the time, the link, and what happened."""
        t, link = round(now - self.start, 6), self.options.link
        if self.options.json:
            print(json.dumps({"t": t, "link": link, **record}, default=_plain), flush=True)
        else:
            what = record.pop("note", None) or record.pop("event")
            print(f"{t:8.3f}  {link}  {what}  {json.dumps(record, default=_plain)}", flush=True)

    def listening(self, now: float, sockname: tuple[Any, ...]) -> None:
        host, port = sockname[:2]
        note = f"listening on {self.options.link}://{host}:{port}"
        self.say(now, {"note": note, "local": [host, port]})

    def handle(self, event: Event, now: float) -> tuple[int, bytes] | None:
        """Print an event; return ``(session, message)`` to send, if any."""
        assert dataclasses.is_dataclass(event)
        self.say(now, {"event": type(event).__name__, **dataclasses.asdict(event)})
        if isinstance(event, PeerUp) and self.options.send is not None:
            return event.session, self.options.send
        if isinstance(event, MessageReceived) and self.options.echo:
            return event.session, event.data
        if self.options.role == "connect" and (status := _outcome(event)) is not None:
            self.status = max(self.status, status)
            self.on_done()
        return None


def _outcome(event: Event) -> int | None:
    """The exit status once a session is over (1 if the peer was lost), else ``None``."""
    if isinstance(event, PeerDown):
        return 1
    if isinstance(event, ConnectionEnded):
        return 0 if event.reason is None else 1
    return 0 if isinstance(event, SessionClosed) and event.by_peer else None


def _plain(value: object) -> object:
    """JSON for what ``dataclasses.asdict`` leaves as it is: enums and bytes."""
    if isinstance(value, Enum):
        return value.value
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
