"""Section 5: what a heartbeat costs on the wire, beside other liveness mechanisms.

Usage::

    python3 -m bench wire            # both tables (about two seconds)

a. Bytes per round trip, computed from each protocol's own sizes with the IP and transport
   headers: IPv4 20 B, IPv6 40 B, UDP 8 B, TCP 20 B plus the 12 B timestamp option that Linux
   puts on every segment by default (32 B). hbproto's sizes are the SPEC's (section 4.1: 28 B
   for a bare HEARTBEAT or ACK), checked here against the codec. A protocol over TCP may also
   cost a bare TCP ACK (52 B on IPv4) when the answer is not itself acknowledged within the
   delayed-ACK time, which at one heartbeat a second it is not; the range shows both.
b. Packets per minute at each preset of ``hbproto --preset`` (``Config.lan()`` and the rest),
   counted by running two endpoints of the core in simulated time (no network, no sleeping):
   every frame either one sends, both directions, over 30 simulated minutes (2 hours for the
   mobile preset), after the session is UP.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random
from typing import Any

from bench.common import table
from hbproto import Config, Endpoint
from hbproto.frame import Frame, FrameType, State, encode

IPV4, IPV6, UDP, TCP_TS = 20, 40, 8, 32
TCP_ACK_V4 = IPV4 + TCP_TS  # a bare TCP acknowledgement


@dataclass
class Wire:
    name: str
    transport: str  # "udp" or "tcp"
    request: int  # bytes above the transport header
    reply: int
    arithmetic: str


def hbproto_sizes() -> tuple[int, int]:
    """The sizes of a bare HEARTBEAT and its ACK, as the codec makes them."""
    hb = Frame(FrameType.HEARTBEAT, State.UP, 1, 2, 3, 4, 100_000, None, 3)
    ack = Frame(FrameType.ACK, State.UP, 2, 1, 3, 4, 100_000, None, 3)
    return len(encode(hb)), len(encode(ack))


def protocols() -> list[Wire]:
    hb, ack = hbproto_sizes()
    return [
        Wire("hbproto", "udp", hb, ack, f"HEARTBEAT {hb} B, ACK {ack} B (SPEC 4.1)"),
        Wire("hbproto", "tcp", hb, ack, f"the same {hb} B frames on the stream (SPEC 11.2)"),
        Wire(
            "BFD (RFC 5880)",
            "udp",
            24,
            24,
            "24 B control packet each way; no ACK: each side sends its own",
        ),
        Wire(
            "TCP keepalive",
            "tcp",
            0,
            0,
            "probe and its ACK carry no data (40 B each without timestamps)",
        ),
        Wire(
            "WebSocket ping/pong",
            "tcp",
            6,
            2,
            "RFC 6455: 2 B header + 4 B mask from the client; pong 2 B unmasked",
        ),
        Wire(
            "HTTP/2 PING", "tcp", 17, 17, "RFC 9113: 9 B frame header + 8 B opaque data, each way"
        ),
        Wire("MQTT PINGREQ", "tcp", 2, 2, "PINGREQ 0xC0 0x00, PINGRESP 0xD0 0x00"),
    ]


def per_packet(w: Wire, ip: int, size: int) -> int:
    return ip + (UDP if w.transport == "udp" else TCP_TS) + size


def round_trip(w: Wire, ip: int) -> tuple[int, int]:
    """Bytes for one request and its answer; the second figure adds a bare TCP ACK."""
    base = per_packet(w, ip, w.request) + per_packet(w, ip, w.reply)
    extra = 0 if w.transport == "udp" or w.name == "TCP keepalive" else ip + TCP_TS
    return base, base + extra


def bytes_table() -> tuple[list[dict[str, Any]], str]:
    rows = []
    data = []
    hb_v4 = round_trip(protocols()[0], IPV4)[0]
    for w in protocols():
        v4 = round_trip(w, IPV4)
        v6 = round_trip(w, IPV6)
        if w.name == "TCP keepalive":  # without timestamps 40 B, with them 52 B, a packet
            v4 = (2 * (IPV4 + 20), 2 * (IPV4 + TCP_TS))
            v6 = (2 * (IPV6 + 20), 2 * (IPV6 + TCP_TS))
        span4 = f"{v4[0]}" if v4[0] == v4[1] else f"{v4[0]}-{v4[1]}"
        span6 = f"{v6[0]}" if v6[0] == v6[1] else f"{v6[0]}-{v6[1]}"
        packet = f"{per_packet(w, IPV4, w.request)}"
        if w.name == "TCP keepalive":
            packet = "40-52"
        rows.append(
            (
                f"{w.name} / {w.transport.upper()}",
                f"{w.request} + {w.reply}",
                packet,
                span4,
                span6,
                f"{v4[0] / hb_v4:.2f}x",
                w.arithmetic,
            )
        )
        data.append({"name": w.name, "transport": w.transport, "ipv4": v4, "ipv6": v6})
    text = "\n".join(
        [
            table(
                [
                    "protocol",
                    "payload B",
                    "packet B (v4)",
                    "round trip B (v4)",
                    "round trip B (v6)",
                    "/hbproto UDP",
                    "where the payload comes from",
                ],
                rows,
                title="a. Bytes on the wire per heartbeat round trip (request + answer)",
            ),
            "Headers: IPv4 20 B, IPv6 40 B, UDP 8 B, TCP 20 B + 12 B timestamps (Linux default).",
            "x-y over TCP: y adds the bare TCP ACK sent when the answer is not acknowledged by",
            f"the next segment within the delayed-ACK time ({TCP_ACK_V4} B on IPv4). TLS adds",
            "at least 22 B a record (TLS 1.3: 5 B header, 1 B type, 16 B tag) to WebSocket and",
            "HTTP/2, which almost always run over it. BFD has no answer: a 'round trip' is one",
            "packet each way, what both ends send per interval.",
        ]
    )
    return data, text


# --- b. Presets -------------------------------------------------------------------------------


PRESETS: list[tuple[str, Config, Config, float]] = [
    ("Config() (default)", Config(), Config(), 1800.0),
    ("lan", Config.lan(), Config.lan(), 1800.0),
    ("wan", Config.wan(), Config.wan(), 1800.0),
    ("nat", Config.nat_keepalive(), Config.nat_keepalive(), 1800.0),
    ("mobile (server: Config())", Config.mobile(), Config(), 7200.0),
]


def count_packets(client: Config, server: Config, seconds: float) -> tuple[int, int, float]:
    """Datagrams client->server and server->client over ``seconds`` once UP, simulated."""
    a = Endpoint(client, rng=Random(1))
    b = Endpoint(server, accept=True, rng=Random(2))
    addr_a, addr_b = ("10.0.0.1", 7373), ("10.0.0.2", 7373)
    a.connect(addr_b, now=0.0)
    now = 0.0
    counting_from: float | None = None
    sent = {id(a): 0, id(b): 0}
    while counting_from is None or now < counting_from + seconds:
        deadlines = [t for ep in (a, b) if (t := ep.get_timer()) is not None]
        now = max(now, min(deadlines))
        for ep, peer, me in ((a, b, addr_a), (b, a, addr_b)):
            for data, _ in ep.datagrams_to_send(now):
                if counting_from is not None and now >= counting_from:
                    sent[id(ep)] += 1
                peer.receive_datagram(data, me, now)
        if (
            counting_from is None
            and all(s.state is State.UP for ep in (a, b) for s in ep.sessions.values())
            and a.sessions
            and b.sessions
        ):
            counting_from = now + 10 * max(1.0, client.interval or 1.0)  # past the start
    return sent[id(a)], sent[id(b)], seconds


def presets_table() -> tuple[list[dict[str, Any]], str]:
    rows = []
    data = []
    for name, client, server, seconds in PRESETS:
        up, down, span = count_packets(client, server, seconds)
        per_min = (up + down) / span * 60
        rows.append(
            (
                name,
                f"{client.interval:g} s x {client.multiplier}",
                up / span * 60,
                down / span * 60,
                per_min,
                per_min * (IPV4 + UDP + 28),
            )
        )
        data.append(
            {"preset": name, "up_per_min": up / span * 60, "down_per_min": down / span * 60}
        )
    text = "\n".join(
        [
            table(
                [
                    "preset (both ends)",
                    "client",
                    "client->server/min",
                    "server->client/min",
                    "packets/min",
                    "bytes/min (UDP v4)",
                ],
                rows,
                title="b. Packets per minute per peer, once UP (simulated, both directions)",
            ),
            "Each side sends a HEARTBEAT every TxInterval x U(0.75, 1.0) (mean 0.875) and answers",
            "the other's with an ACK. nat is idle-only (no application data flows here). mobile",
            "advertises Required Min RX 0: the server sends nothing periodic, only its ACKs.",
        ]
    )
    return data, text


def run(quick: bool) -> tuple[dict[str, Any], str]:
    del quick  # both tables are computed, not timed: the same in either mode
    by_bytes, text_a = bytes_table()
    by_preset, text_b = presets_table()
    return {"bytes": by_bytes, "presets": by_preset}, f"{text_a}\n\n{text_b}"
