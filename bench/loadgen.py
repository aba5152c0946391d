"""One load-generator process of the scale benchmark: ``python -m bench.loadgen CONFIG_JSON``.

It plays many initiators against one UDP server with raw frames built here with ``struct`` and
``zlib`` (none of the code under test): per peer, HEARTBEAT(DOWN) with Your Identifier 0, the
responder's identifier read from its ACK (Sta INIT), HEARTBEAT(UP), then HEARTBEATs on a
schedule. Each peer has a socket of its own, bound to its own 127.x.y.z source address and
connected to the server; one epoll set watches them all.

Sending disciplines:

* paced: every peer sends a HEARTBEAT every ``interval`` x U(0.75, 1.0) seconds, as [HB-TX-1]
  has it (unless ``periodic`` is false: a server that advertises R = 0 asks for none), and
  (``ack``) answers each of the server's HEARTBEATs with an ACK;
* saturate: closed loop, ``window`` HEARTBEATs in flight, each answer releasing the next
  peer's HEARTBEAT (a peer never sends twice within ``min_gap`` seconds);
* echo: the same closed loop against a plain echo server (the replies are the HEARTBEATs).

Commands arrive as JSON lines on stdin (``start``, ``saturate``, ``window``, ``stop``,
``report``, ``quit``) and are handled inside the event loop, so the generator never stops
sending to listen.
"""

from __future__ import annotations

import heapq
import json
import os
import random
import resource
import select
import socket
import struct
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

_FIXED = struct.Struct(">HHIIIIHH")
_CRC = struct.Struct(">I")
_IDS = struct.Struct(">II")  # My Identifier, Your Identifier at offset 4
_SEQ_TS = struct.Struct(">II")  # Sequence Number, Timestamp at offset 12
_HB, _ACK, _CLOSE = 1, 2, 4
_DOWN, _INIT, _UP = 1, 2, 3
_MASK = 0xFFFFFFFF
# Peer states
_NEW, _HELLO, _SENT_UP, _ESTABLISHED, _SILENT, _CLOSED = range(6)
_RTT_KEPT = 20_000


def head(ftype: int, sta: int, final: bool, mult: int) -> int:
    """The first 16 bits: Ver 1, Type, Sta, P 0, F, Mult (SPEC 4.1)."""
    return 0x1000 | ftype << 8 | sta << 6 | final << 4 | mult


def frame(head: int, ids: tuple[int, int], seq: int, ts: int, codes: tuple[int, int]) -> bytes:
    """A bare 28-byte frame with its CRC-32."""
    body = _FIXED.pack(head, 28, ids[0], ids[1], seq, ts, codes[0], codes[1])
    return body + _CRC.pack(zlib.crc32(body))


@dataclass
class Settings:
    port: int
    index: int  # which worker: chooses the source addresses
    peers: int
    d_code: int
    r_code: int
    mult: int
    interval: float
    ack: bool
    seed: int
    periodic: bool = True  # False: the server drives (its R is 0), peers only answer it
    handshakes_in_flight: int = 400
    opens_per_second: float = 2000.0  # new sessions a second, per generator process


@dataclass
class Stats:
    hb_sent: int = 0
    acks_in: int = 0  # ACKs answering an established peer's HEARTBEAT
    server_hb_in: int = 0
    acks_out: int = 0
    closes_in: int = 0
    other_in: int = 0
    put_down: int = 0  # established peers the server answered with Sta DOWN
    late_max: float = 0.0  # the latest a paced HEARTBEAT went out after its time, seconds
    rtts: list[float] = field(default_factory=list)
    rtt_seen: int = 0


class Generator:
    def __init__(self, s: Settings) -> None:
        self.s = s
        rng = random.Random(s.seed)
        self.rng = rng
        n = s.peers
        self.ids = rng.sample(range(1, 1 << 32), n)
        self.server_ids = [0] * n
        self.seqs = [rng.getrandbits(32) for _ in range(n)]
        self.state = [_NEW] * n
        self.last_sent = [0.0] * n
        self.codes = (s.d_code, s.r_code)
        # One socket per peer, each from its own 127.x.y.z address, as real peers would be:
        # peers sharing an address would look to the server like restarts of one another
        # [HB-SM-6], and the per-source limit counts by host.
        need = n + 64
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft), max(need, hard)))
        self.socks: list[socket.socket] = []
        self.poll = select.epoll()
        for i in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((f"127.{100 + s.index}.{i // 250}.{i % 250 + 1}", 0))
            sock.connect(("127.0.0.1", s.port))
            sock.setblocking(False)
            self.socks.append(sock)
            self.poll.register(sock.fileno(), select.EPOLLIN)
        self.fd_peer = {sock.fileno(): i for i, sock in enumerate(self.socks)}
        self.poll.register(0, select.EPOLLIN)
        self.stats = Stats()
        self.reset_at = time.monotonic()  # when the counts in stats began
        self.mode = "idle"
        self.interval = s.interval
        self.heap: list[tuple[float, int]] = []
        self.to_open = list(range(n))
        self.to_open.reverse()
        self.opening = 0
        self.opened = 0
        self.opened_at = [0.0] * n
        self.ramp_began: float | None = None
        self.window_open = False
        self.window_start = 0
        self.window_span = -1  # no window yet: no ACK counts
        self.window_hb = 0
        self.window_acked = 0
        self.up = 0
        self.stopped: list[tuple[int, float]] = []
        # Closed loop
        self.window = 0
        self.min_gap = 0.0
        self.in_flight = 0
        self.cursor = 0
        self.last_rx = 0.0
        self.running = True

    # --- Sending ------------------------------------------------------------------------------

    def send_hb(self, i: int, sta: int, now: float) -> None:
        seq = self.seqs[i]
        self.seqs[i] = (seq + 1) & _MASK
        data = frame(
            head(_HB, sta, False, self.s.mult),
            (self.ids[i], self.server_ids[i]),
            seq,
            int(now * 1e6) & _MASK,
            self.codes,
        )
        self.last_sent[i] = now
        try:
            self.socks[i].send(data)
        except BlockingIOError:
            return
        if sta == _UP:
            self.stats.hb_sent += 1
            if self.window_open:
                self.window_hb += 1

    def open_more(self, now: float) -> None:
        if self.ramp_began is None:
            self.ramp_began = now
        allowed = (now - self.ramp_began) * self.s.opens_per_second + 1 - self.opened
        while self.to_open and self.opening < self.s.handshakes_in_flight and allowed >= 1:
            i = self.to_open.pop()
            self.state[i] = _HELLO
            self.opening += 1
            self.opened += 1
            allowed -= 1
            self.opened_at[i] = now
            self.send_hb(i, _DOWN, now)

    def retry_handshakes(self, now: float) -> None:
        # As an initiator's slow start would: each HEARTBEAT of the handshake again after 1 s
        # without an answer, and from the opening HEARTBEAT again if the server's half-open
        # session may have expired meanwhile.
        for i, st in enumerate(self.state):
            if st not in (_HELLO, _SENT_UP) or now - self.last_sent[i] <= 1.0:
                continue
            if st == _SENT_UP and now - self.opened_at[i] < 3.0:
                self.send_hb(i, _UP, now)
            else:
                self.state[i] = _HELLO
                self.opened_at[i] = now
                self.send_hb(i, _DOWN, now)

    def established(self, i: int, now: float) -> None:
        self.state[i] = _ESTABLISHED
        self.opening -= 1
        self.up += 1
        if self.mode == "paced" and self.s.periodic:  # the next one J x T after the UP [HB-TX-1]
            heapq.heappush(self.heap, (now + self.interval * self.rng.uniform(0.75, 1.0), i))

    def paced(self, now: float) -> float:
        heap, state, interval, uniform = self.heap, self.state, self.interval, self.rng.uniform
        while heap and heap[0][0] <= now:
            due, i = heapq.heappop(heap)
            if state[i] != _ESTABLISHED:
                continue
            # How late the generator itself fell behind: the server is not to blame for that.
            self.stats.late_max = max(self.stats.late_max, now - due)
            self.send_hb(i, _UP, now)
            heapq.heappush(heap, (now + interval * uniform(0.75, 1.0), i))
        return heap[0][0] - now if heap else 0.05

    def closed_loop(self, now: float) -> None:
        if now - self.last_rx > 0.02:
            self.in_flight = 0  # replies lost: refill the window
            self.last_rx = now
        n, state, last_sent, min_gap = self.s.peers, self.state, self.last_sent, self.min_gap
        tries = n
        while self.in_flight < self.window and tries:
            tries -= 1
            i = self.cursor
            self.cursor = 0 if i + 1 >= n else i + 1
            if state[i] != _ESTABLISHED:
                if self.mode != "echo":
                    continue
                state[i] = _ESTABLISHED
            if now - last_sent[i] < min_gap:
                break
            self.send_hb(i, _UP, now)
            self.in_flight += 1

    # --- Receiving ----------------------------------------------------------------------------

    def receive(self, i: int, now: float) -> None:
        sock = self.socks[i]
        stats = self.stats
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            return
        except OSError:  # ICMP port unreachable: the server is gone
            stats.other_in += 1
            return
        self.last_rx = now
        if self.mode == "echo":
            stats.acks_in += 1
            if self.in_flight:
                self.in_flight -= 1
            return
        if len(data) < 28 or _IDS.unpack_from(data, 4)[1] != self.ids[i]:
            stats.other_in += 1
            return
        ftype = data[0] & 0x0F
        sta = data[1] >> 6
        state = self.state
        st = state[i]
        if st in (_HELLO, _SENT_UP):
            if sta == _UP:  # the server is UP with this peer, whatever we missed
                self.server_ids[i] = _IDS.unpack_from(data, 4)[0]
                self.established(i, now)
            elif st == _HELLO and sta == _INIT and ftype == _ACK:
                self.server_ids[i] = _IDS.unpack_from(data, 4)[0]
                state[i] = _SENT_UP
                self.send_hb(i, _UP, now)
            return
        if st == _ESTABLISHED and sta == _DOWN:
            stats.put_down += 1  # the server declared this peer down: it stops here
            state[i] = _CLOSED
            return
        if ftype == _ACK:
            if st == _ESTABLISHED:
                stats.acks_in += 1
                if self.in_flight:
                    self.in_flight -= 1
                ts = _SEQ_TS.unpack_from(data, 12)[1]
                if (ts - self.window_start) & _MASK <= self.window_span:
                    self.window_acked += 1  # answers a HEARTBEAT sent in the window
                stats.rtt_seen += 1
                if stats.rtt_seen % 16 == 0 and len(stats.rtts) < _RTT_KEPT:
                    stats.rtts.append(((int(now * 1e6) - ts) & _MASK) / 1e6)
        elif ftype == _HB:
            stats.server_hb_in += 1
            if self.s.ack and st == _ESTABLISHED:
                seq, ts = _SEQ_TS.unpack_from(data, 12)
                ack = frame(
                    head(_ACK, _UP, bool(data[1] & 0x20), self.s.mult),
                    (self.ids[i], self.server_ids[i]),
                    seq,
                    ts,
                    self.codes,
                )
                try:
                    sock.send(ack)
                except BlockingIOError:
                    return
                stats.acks_out += 1
                self.last_sent[i] = now  # proof of life too [HB-DET-1]
        elif ftype == _CLOSE:
            stats.closes_in += 1
            if st != _SILENT:
                state[i] = _CLOSED
        else:
            stats.other_in += 1

    # --- Commands -----------------------------------------------------------------------------

    def command(self, line: str, now: float) -> None:
        cmd = json.loads(line)
        verb = cmd["cmd"]
        if verb == "start":
            self.mode = "paced"
            self.interval = float(cmd.get("interval", self.s.interval))
        elif verb == "saturate":
            self.mode = cmd.get("mode", "saturate")
            self.window = int(cmd["window"])
            self.min_gap = float(cmd.get("min_gap", 0.0))
        elif verb == "stop":
            step = max(1, round(1 / float(cmd["fraction"])))
            for i in range(0, self.s.peers, step):
                if self.state[i] == _ESTABLISHED:
                    self.state[i] = _SILENT
                    self.stopped.append((self.server_ids[i], self.last_sent[i]))
        elif verb == "window":  # HEARTBEATs sent between the two edges, and their answers
            if cmd["edge"] == "start":
                self.window_open = True
                self.window_start = int(now * 1e6) & _MASK
                self.window_span = _MASK
                self.window_hb = self.window_acked = 0
            else:
                self.window_open = False
                self.window_span = (int(now * 1e6) - self.window_start) & _MASK
        elif verb == "report":
            self.reply(now)
            if cmd.get("reset"):
                self.stats = Stats()
                self.reset_at = now
        elif verb == "quit":
            self.running = False

    def reply(self, now: float) -> None:
        s = self.stats
        out: dict[str, Any] = {
            "up": self.up,
            "hb_sent": s.hb_sent,
            "window_hb": self.window_hb,
            "window_acked": self.window_acked,
            "acks_in": s.acks_in,
            "server_hb_in": s.server_hb_in,
            "acks_out": s.acks_out,
            "closes_in": s.closes_in,
            "other_in": s.other_in,
            "put_down": s.put_down,
            "late_max": s.late_max,
            "rtts": s.rtts,
            "counted_for": now - self.reset_at,  # seconds: divide the counts by this
            "stopped": self.stopped,
        }
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()

    # --- Loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        buffered = b""
        last_retry = time.monotonic()
        wait = 0.05
        while self.running:
            for fd, _ in self.poll.poll(max(0.0, min(wait, 0.005))):
                now = time.monotonic()
                if fd == 0:
                    chunk = os.read(0, 65536)
                    if not chunk:
                        return
                    buffered += chunk
                    while b"\n" in buffered:
                        line, buffered = buffered.split(b"\n", 1)
                        self.command(line.decode(), now)
                else:
                    self.receive(self.fd_peer[fd], now)
            now = time.monotonic()
            if self.mode == "idle":
                wait = 0.05
                continue
            if self.mode != "echo":
                self.open_more(now)
            if self.opening and now - last_retry > 0.5:
                self.retry_handshakes(now)
                last_retry = now
            if self.mode == "paced":
                wait = self.paced(now)
            else:
                self.closed_loop(now)
                wait = 0.001


def main() -> int:
    settings = Settings(**json.loads(sys.argv[1]))
    Generator(settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
