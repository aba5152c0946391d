"""Benchmark the sans-IO core: one responder :class:`~hbproto.Endpoint` holding N sessions.

Usage::

    python bench/core.py                      # N = 1k, 10k, 100k; about two minutes
    python bench/core.py --quick              # 1k and 10k sessions, a few seconds
    python bench/core.py --sizes 1000,50000   # choose N
    python bench/core.py --profile 10000      # also cProfile the receive path at N = 10k

For each N the script builds a responder (``Endpoint(accept=True)``, default :class:`Config`:
1 s x 3) and brings N sessions UP by scripting the initiator's side of the handshake with raw
frames: HEARTBEAT(DOWN), read the responder's identifier from its ACK, HEARTBEAT(UP). Every
fake peer has its own address (a distinct host, so the per-source limit does not bite) and
advertises 1 s, like a default-config initiator. The peers' frames are built outside the timed
regions; only calls into the Endpoint (and the baselines) are timed. Then, on that endpoint:

a. Throughput. Every peer sends a valid HEARTBEAT (next sequence number, UP) once per
   simulated second; the peers take turns in a fixed shuffled order, so ``now`` advances by
   1/N s per frame and no peer looks premature. ``receive_datagram`` is timed alone (decode,
   session lookup and update, ACK encode), and ``datagrams_to_send`` every 64 frames is timed
   apart (it also runs the responder's own due HEARTBEATs). Baselines on the same bytes in the
   same run: ``decode`` + ``encode`` of the ACK (the checked codec: the codec-only floor),
   ``decode`` + ``pack`` (the unchecked encoder the session really uses), and a bare loop of
   ``struct.unpack_from`` + ``struct.pack`` + two ``zlib.crc32`` (check and seal: nothing but
   bytes). Ratios are time per frame over the baseline's. Goal: >= 200,000 frames/s.
b. Memory. tracemalloc's traced bytes after establishing N sessions minus before (the endpoint
   already built), per session; the same without the ``sessions`` dict's table; and a
   ``sys.getsizeof`` walk of every slot and endpoint index, where an object referenced by k
   sessions costs 1/k to each (so shared constants, enum members and the config cost ~0).
   Goal: under 1 KiB per session. The per-attribute table is taken in the steady state.
c. Timers. ``get_timer()`` and an idle ``handle_timer`` (nothing due) per call, and
   ``handle_timer`` per due session while sweeping the window in which every session's first
   periodic HEARTBEAT falls (about 8 due per call). The ratio largest/smallest N shows whether
   the cost stays flat (O(1)) or grows like log N.
d. Steady state. 10 simulated seconds in 10 ms ticks: the peers send HEARTBEATs at 1 s and
   answer every HEARTBEAT of the responder with an ACK in the next tick; the application calls
   ``datagrams_to_send`` once per tick and drains ``next_event``. The process CPU time spent in
   Endpoint calls divided by the simulated time is the fraction of a core N sessions need.

The garbage collector stays enabled, as in an application. The script exits 0 whatever the
numbers; it exits 2 only if the simulation went wrong (a session left UP, a frame dropped), in
which case the numbers would not measure what they claim to.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import math
import os
import platform
import pstats
import statistics
import struct
import sys
import time
import timeit
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from random import Random
from typing import Any

from hbproto import Config, Endpoint, Limits
from hbproto.frame import Frame, FrameType, State, decode, encode, encode_interval, pack
from hbproto.session import Session

GOAL_FRAMES_PER_S = 200_000
GOAL_BYTES_PER_SESSION = 1024
DEFAULT_SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (1_000, 10_000)  # enough sessions that fixed table overheads do not dominate
INTERVAL_US = 1_000_000  # every peer, and the responder, run Config()'s 1 s
MULT = 3
DRAIN_EVERY = 64  # frames between two datagrams_to_send calls in the throughput phase
HANDSHAKE_BATCH = 5_000  # below Limits.max_half_open, so no handshake is refused
SWEEP_DUE_PER_CALL = 8
SIM_SECONDS = 10
SIM_TICK = 0.01
WALK_SAMPLE = 20_000  # sessions walked for the per-attribute breakdown

_HB, _ACK = FrameType.HEARTBEAT, FrameType.ACK
_DOWN, _UP = State.DOWN, State.UP
_D_CODE = encode_interval(INTERVAL_US)
_R_CODE = encode_interval(None)
_CODES = (_D_CODE, _R_CODE)
_MASK32 = 0xFFFFFFFF
_FIXED = struct.Struct(">HHIIIIHH")
_CRC = struct.Struct(">I")
_IDS = struct.Struct(">III")  # My Identifier, Your Identifier, Sequence Number at offset 4
_TYPE_NIBBLE = 0x0F

Addr = tuple[str, int]


# --- Fake peers -------------------------------------------------------------------------------


def new_endpoint(seed: int) -> Endpoint:
    ids = Random(seed + 1)
    return Endpoint(
        Config(),
        accept=True,
        limits=Limits(max_sessions=10_000_000),
        rng=Random(seed),
        id_source=lambda: ids.getrandbits(32),
    )


def establish(ep: Endpoint, n: int, rng: Random, now: float) -> None:
    """Bring ``n`` sessions UP, keeping nothing outside ``ep`` (so memory can be measured)."""
    peer_ids = rng.sample(range(1, 1 << 32), n)
    for start in range(0, n, HANDSHAKE_BATCH):
        for i in range(start, min(n, start + HANDSHAKE_BATCH)):
            addr = (f"10.{(i >> 16) & 0xFF}.{(i >> 8) & 0xFF}.{i & 0xFF}", 1024 + i % 60_000)
            seq = rng.getrandbits(32)
            hello = pack(_HB, _DOWN, False, False, MULT, peer_ids[i], 0, seq, seq, _D_CODE, _R_CODE)
            ep.receive_datagram(hello, addr, now)
        for data, to in ep.datagrams_to_send(now):
            # The ACK (Sta INIT) names the responder's session in its My Identifier.
            session, peer, seq = _IDS.unpack_from(data, 4)
            seq = (seq + 1) & _MASK32
            up = pack(_HB, _UP, False, False, MULT, peer, session, seq, seq, _D_CODE, _R_CODE)
            ep.receive_datagram(up, to, now)
        ep.datagrams_to_send(now)
        while ep.next_event() is not None:
            pass


@dataclass
class Peers:
    """The initiators' side, in the (shuffled) order in which they take turns."""

    ids: list[int]  # each peer's own identifier
    sessions: list[int]  # the responder's identifier for it
    addrs: list[Any]
    seqs: list[int]  # the next sequence number each peer sends

    def heartbeats(self) -> list[bytes]:
        """One valid HEARTBEAT from every peer, advancing their sequence numbers."""
        ids, sessions, seqs = self.ids, self.sessions, self.seqs
        out = []
        for j, seq in enumerate(seqs):
            out.append(pack(_HB, _UP, False, False, MULT, ids[j], sessions[j], seq, seq, *_CODES))
            seqs[j] = (seq + 1) & _MASK32
        return out


def peers_of(ep: Endpoint, rng: Random) -> Peers:
    # Read back from the responder what each fake peer would have remembered.
    sessions = list(ep.sessions.values())
    rng.shuffle(sessions)  # arrival order unrelated to allocation order, as on a real server
    return Peers(
        [s.remote_id for s in sessions],
        [s.local_id for s in sessions],
        [s.addr for s in sessions],
        [((s.rx_top or 0) + 1) & _MASK32 for s in sessions],
    )


def ack_for(heartbeat: bytes) -> bytes:
    """The ACK a peer sends back for one of the responder's HEARTBEATs."""
    session, peer, seq, ts = struct.unpack_from(">IIII", heartbeat, 4)
    final = bool(heartbeat[1] & 0x20)  # F answers P
    return pack(_ACK, _UP, False, final, MULT, peer, session, seq, ts, _D_CODE, _R_CODE)


def check_up(ep: Endpoint, n: int, phase: str) -> list[str]:
    problems = []
    if len(ep.sessions) != n:
        problems.append(f"{phase}: {len(ep.sessions)} sessions, expected {n}")
    down = sum(1 for s in ep.sessions.values() if s.state is not _UP)
    if down:
        problems.append(f"{phase}: {down} sessions not UP")
    counters = {k: v for k, v in ep.counters.items() if v}
    if counters:
        problems.append(f"{phase}: frames dropped or anomalies counted: {counters}")
    return problems


# --- a. Throughput ----------------------------------------------------------------------------


def codec_floor(frames: list[bytes]) -> None:
    for data in frames:
        f = decode(data)
        encode(Frame(_ACK, _UP, f.your_id, f.my_id, f.seq, f.timestamp, INTERVAL_US, None, MULT,
                     False, f.poll))  # fmt: skip


def codec_pack(frames: list[bytes]) -> None:
    for data in frames:
        f = decode(data)
        pack(_ACK, _UP, False, f.poll, MULT, f.your_id, f.my_id, f.seq, f.timestamp, *_CODES)


def bytes_only(frames: list[bytes]) -> None:
    unpack_from, fixed_pack, crc_pack, crc_unpack = (
        _FIXED.unpack_from,
        _FIXED.pack,
        _CRC.pack,
        _CRC.unpack_from,
    )
    crc32 = zlib.crc32
    for data in frames:
        n = len(data)
        if crc32(data[: n - 4]) != crc_unpack(data, n - 4)[0]:
            raise AssertionError("bad CRC in a benchmark frame")
        head, _, my_id, your_id, seq, ts, tx, rx = unpack_from(data)
        body = fixed_pack(0x12C3 | (head & 0x20) >> 1, 28, your_id, my_id, seq, ts, tx, rx)
        body + crc_pack(crc32(body))


BASELINES: list[tuple[str, Callable[[list[bytes]], None]]] = [
    ("codec: decode + encode ACK", codec_floor),
    ("codec: decode + pack ACK", codec_pack),
    ("bytes: unpack+pack+crc32", bytes_only),
]


@dataclass
class Throughput:
    rounds: int
    receive_us: float  # per frame, median over rounds
    total_us: float  # receive plus the periodic datagrams_to_send
    baseline_us: dict[str, float]
    problems: list[str] = field(default_factory=list)


def throughput(ep: Endpoint, peers: Peers, start: float, min_frames: int) -> Throughput:
    n = len(peers.ids)
    rounds = max(3, -(-min_frames // n))
    step = 1.0 / n
    recv = ep.receive_datagram
    clock = time.perf_counter
    rx_us: list[float] = []
    all_us: list[float] = []
    base_us: dict[str, list[float]] = {name: [] for name, _ in BASELINES}
    acks = 0
    for r in range(rounds):
        frames = peers.heartbeats()
        t0 = start + r
        times = [t0 + j * step for j in range(n)]
        items = list(zip(frames, peers.addrs, times, strict=True))
        outs: list[list[tuple[bytes, Any]]] = []
        gc.collect()
        rx = drain = 0.0
        for lo in range(0, n, DRAIN_EVERY):
            chunk = items[lo : lo + DRAIN_EVERY]
            began = clock()
            for data, addr, now in chunk:
                recv(data, addr, now)
            mid = clock()
            outs.append(ep.datagrams_to_send(chunk[-1][2]))
            drain += clock() - mid
            rx += mid - began
        acks += sum(1 for out in outs for d, _ in out if d[0] & _TYPE_NIBBLE == _ACK)
        rx_us.append(rx / n * 1e6)
        all_us.append((rx + drain) / n * 1e6)
        for name, fn in BASELINES:
            began = clock()
            fn(frames)
            base_us[name].append((clock() - began) / n * 1e6)
    result = Throughput(
        rounds,
        statistics.median(rx_us),
        statistics.median(all_us),
        {name: statistics.median(v) for name, v in base_us.items()},
    )
    if acks != rounds * n:
        result.problems.append(f"throughput: {acks} ACKs for {rounds * n} HEARTBEATs")
    return result


# --- b. Memory --------------------------------------------------------------------------------


@dataclass
class Memory:
    traced: float  # bytes per session, tracemalloc
    traced_without_dict: float
    walk: float  # bytes per session, getsizeof walk of slots and endpoint indices
    walk_session_only: float  # the same, without the endpoint's indices
    heap_entries: float  # timer heap entries per session


def measure_memory(n: int, seed: int, rng: Random) -> tuple[Endpoint, Memory]:
    gc.collect()
    tracemalloc.start()
    ep = new_endpoint(seed)
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    establish(ep, n, rng, 0.0)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    delta = after - before
    breakdown = walk(ep)
    total = sum(row.size for row in breakdown)
    own = sum(row.size for row in breakdown if not row.name.startswith(_INDEX))
    return ep, Memory(
        delta / n,
        (delta - sys.getsizeof(ep.sessions)) / n,
        total,
        own,
        len(ep._heap) / n,
    )


@dataclass
class Row:
    name: str
    types: str
    size: float  # bytes per session


_INDEX = "[endpoint: "


def _held_by_session(ep: Endpoint, entry: tuple[Any, ...]) -> set[int]:
    """Ids of the objects in a timer heap entry that its session also references."""
    session = next((item for item in entry if isinstance(item, Session)), None)
    if session is None:  # an entry naming its session by identifier
        session = next((ep.sessions[i] for i in entry if i in ep.sessions), None)
    if session is None:
        return set()
    return {id(session)} | {id(getattr(session, name)) for name in Session.__slots__}


def _objects(value: object) -> Iterator[object]:
    yield value
    if isinstance(value, tuple | list):
        for item in value:
            yield from _objects(item)


def walk(ep: Endpoint) -> list[Row]:
    """Bytes per session by slot (over a sample) and by endpoint index (over all sessions).

    An object that k sampled sessions reference costs 1/k of its size to each, so objects
    shared by all sessions (None, enum members, small ints, the config, the owner) cost ~0.
    """
    sessions = list(ep.sessions.values())
    n = len(sessions)
    sample = sessions[:: max(1, n // WALK_SAMPLE)]
    occurrences: Counter[int] = Counter()
    sizes: dict[int, int] = {}
    for s in sample:
        for name in Session.__slots__:
            for obj in _objects(getattr(s, name)):
                occurrences[id(obj)] += 1
                sizes[id(obj)] = sys.getsizeof(obj)
    rows = [Row("[Session object: header + slots]", f"{len(Session.__slots__)} slots",
                sys.getsizeof(sample[0]))]  # fmt: skip
    for name in Session.__slots__:
        size = 0.0
        kinds: set[str] = set()
        for s in sample:
            value = getattr(s, name)
            kinds.add(type(value).__name__)
            size += sum(sizes[id(o)] / occurrences[id(o)] for o in _objects(value))
        rows.append(Row(name, ",".join(sorted(kinds)), size / len(sample)))
    # The endpoint's indices: their tables, plus objects only they hold.
    heap = sys.getsizeof(ep._heap)
    for entry in ep._heap:
        heap += sys.getsizeof(entry)
        held = _held_by_session(ep, entry)
        # Count what only the entry holds (a tiebreak, a superseded deadline), not the session.
        heap += sum(sys.getsizeof(item) for item in entry if id(item) not in held)
    by_source = sys.getsizeof(ep._by_source)
    for ids in ep._by_source.values():
        if isinstance(ids, list):  # hosts with several sessions hold a list of ids
            by_source += sys.getsizeof(ids)
    rows += [
        Row(f"{_INDEX}sessions]", "dict", sys.getsizeof(ep.sessions) / n),
        Row(f"{_INDEX}_heap]", "list of tuples", heap / n),
        Row(f"{_INDEX}_by_source]", "dict", by_source / n),
        Row(f"{_INDEX}_pending_by_remote]", "dict (empty, peak size)",
            sys.getsizeof(ep._pending_by_remote) / n),
    ]  # fmt: skip
    return rows


# --- c. Timers --------------------------------------------------------------------------------


@dataclass
class Timers:
    get_timer_ns: float
    idle_tick_ns: float
    due_us: float
    due_per_call: float


def per_call_ns(stmt: str, env: dict[str, Any], repeats: int, min_time: float) -> float:
    timer = timeit.Timer(stmt, globals=env)
    number = 1
    while timer.timeit(number) < min_time:
        number *= 2
    return statistics.median(timer.repeat(repeat=repeats, number=number)) / number * 1e9


def timer_costs(ep: Endpoint, n: int, repeats: int, min_time: float) -> tuple[Timers, list[Any]]:
    """Measured right after the handshakes at t=0: the first periodic HEARTBEATs fall in
    [0.75, 1.0] s (jitter), nothing is due before. Returns the HEARTBEATs the sweep sent."""
    if ep.get_timer() is None or (ep.get_timer() or 0.0) <= 0.0:
        raise AssertionError("expected the first deadline after t=0")
    env = {"ep": ep}
    get_ns = per_call_ns("ep.get_timer()", env, repeats, min_time)
    idle_ns = per_call_ns("ep.handle_timer(0.0)", env, repeats, min_time)
    lo, hi = 0.75, 1.0  # jitter puts every first HEARTBEAT in this window [HB-TX-1]
    calls = max(1, round(n / SWEEP_DUE_PER_CALL))
    times = [lo + (hi - lo) * (k + 1) / calls for k in range(calls)]
    handle, send, clock = ep.handle_timer, ep.datagrams_to_send, time.perf_counter
    out: list[tuple[bytes, Any]] = []
    elapsed = 0.0
    gc.collect()
    for now in times:
        began = clock()
        handle(now)
        elapsed += clock() - began
        out += send(now)  # drained as an application would, so garbage does not pile up
    due = sum(1 for d, _ in out if d[0] & _TYPE_NIBBLE == _HB)
    return Timers(get_ns, idle_ns, elapsed / max(due, 1) * 1e6, due / calls), out


# --- d. Steady state --------------------------------------------------------------------------


@dataclass
class Steady:
    cpu_per_sim_s: float
    frames_in: int
    frames_out: int
    seconds: float


def steady_state(ep: Endpoint, peers: Peers, start: float, pending: list[Any]) -> Steady:
    """``pending``: the responder's HEARTBEATs still to be answered, as (data, addr) pairs."""
    n = len(peers.ids)
    ticks = round(SIM_SECONDS / SIM_TICK)
    recv, send, next_event = ep.receive_datagram, ep.datagrams_to_send, ep.next_event
    cpu = time.process_time
    acks = [(ack_for(d), a) for d, a in pending if d[0] & _TYPE_NIBBLE == _HB]
    frames: list[bytes] = []
    sent = 0  # peer HEARTBEATs handed out so far, over all simulated seconds
    frames_in = frames_out = 0
    busy = 0.0
    gc.collect()
    for k in range(ticks):
        t_lo = start + k * SIM_TICK
        t_hi = start + (k + 1) * SIM_TICK
        items = [(d, a, t_lo) for d, a in acks]
        # Peer j's HEARTBEATs are due at start + s + j/n, s = 0, 1, ...
        while True:
            s, j = divmod(sent, n)
            at = start + s + j / n
            if at >= t_hi or s >= SIM_SECONDS:
                break
            if j == 0:
                frames = peers.heartbeats()
            items.append((frames[j], peers.addrs[j], at))
            sent += 1
        began = cpu()
        for data, addr, now in items:
            recv(data, addr, now)
        out = send(t_hi)
        while next_event() is not None:
            pass
        busy += cpu() - began
        frames_in += len(items)
        frames_out += len(out)
        acks = [(ack_for(d), a) for d, a in out if d[0] & _TYPE_NIBBLE == _HB]
    return Steady(busy / SIM_SECONDS, frames_in, frames_out, float(SIM_SECONDS))


# --- Profile ----------------------------------------------------------------------------------


def profile_receive(n: int, seed: int, top: int) -> None:
    """cProfile ``receive_datagram`` at ``n`` sessions, and apart the drains (timers)."""
    rng = Random(seed)
    ep = new_endpoint(seed)
    establish(ep, n, rng, 0.0)
    peers = peers_of(ep, rng)
    rounds = max(3, -(-200_000 // n))
    receive, drain = cProfile.Profile(), cProfile.Profile()
    step = 1.0 / n
    for r in range(rounds):
        frames = peers.heartbeats()
        items = [
            (d, a, 1.0 + r + j * step)
            for j, (d, a) in enumerate(zip(frames, peers.addrs, strict=True))
        ]
        for lo in range(0, n, DRAIN_EVERY):
            chunk = items[lo : lo + DRAIN_EVERY]
            receive.enable()
            for data, addr, now in chunk:
                ep.receive_datagram(data, addr, now)
            receive.disable()
            drain.enable()
            ep.datagrams_to_send(chunk[-1][2])
            drain.disable()
    print(f"\ncProfile at N={n:,}, {rounds} rounds: own time per received HEARTBEAT. cProfile adds")
    print("a fixed cost to every call, so small functions look bigger than they are.")
    for title, prof in (("receive_datagram", receive), ("datagrams_to_send", drain)):
        _print_profile(title, prof, rounds * n, top)


def _print_profile(title: str, prof: cProfile.Profile, frames: int, top: int) -> None:
    rows = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in rows.values())
    print(f"\n{title}: {total / frames * 1e6:.2f} us/frame under the profiler")
    _table(f"{'function':<52} {'calls/frame':>11} {'own us/frame':>12} {'share':>6}")
    ranked = sorted(rows.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    for (path, line, func), (_cc, calls, tottime, _ct, _callers) in ranked:
        where = f"{os.path.basename(path)}:{line}({func})" if line else func
        print(
            f"{where[:52]:<52} {calls / frames:>11.2f}"
            f" {tottime / frames * 1e6:>12.3f} {tottime / total:>6.1%}"
        )


def warm_up(seed: int) -> None:
    """A small untimed run first, so the first N is not measured on a cold interpreter."""
    rng = Random(seed)
    ep = new_endpoint(seed)
    establish(ep, 500, rng, 0.0)
    peers = peers_of(ep, rng)
    steady_state(ep, peers, 1.0, [])


# --- Main -------------------------------------------------------------------------------------


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive integers")
    return sizes


@dataclass
class Result:
    throughput: Throughput
    memory: Memory
    timers: Timers
    steady: Steady


def run_size(n: int, seed: int, min_frames: int, timing: tuple[int, float]) -> tuple[
    Result, list[Row], list[str]
]:  # fmt: skip
    """Every measurement at one N, on one endpoint: handshakes at t=0, timers, steady state
    from t=1 s, then throughput. Returns the results, the steady-state breakdown, problems."""
    rng = Random(seed)
    ep, memory = measure_memory(n, seed, rng)
    problems = check_up(ep, n, f"N={n} handshakes")
    timers, first_heartbeats = timer_costs(ep, n, *timing)
    peers = peers_of(ep, rng)
    steady = steady_state(ep, peers, 1.0, first_heartbeats)
    problems += check_up(ep, n, f"N={n} steady state")
    breakdown = walk(ep)
    tput = throughput(ep, peers, 1.0 + SIM_SECONDS, min_frames)
    problems += tput.problems + check_up(ep, n, f"N={n} throughput")
    return Result(tput, memory, timers, steady), breakdown, problems


def _table(header: str) -> None:
    print(header)
    print("-" * len(header))


def report_throughput(results: dict[int, Result]) -> None:
    print("a. Throughput: valid HEARTBEATs in, ACKs out (median over rounds of N frames)")
    _table(f"{'path':<28} {'N':>8} {'frames/s':>11} {'us/frame':>9} {'/codec':>7} {'/bytes':>7}")
    floor_name, bytes_name = BASELINES[0][0], BASELINES[-1][0]
    for n, result in results.items():
        tput = result.throughput
        rows = [
            ("Endpoint.receive_datagram", tput.receive_us),
            ("  + drains, own HEARTBEATs", tput.total_us),
            *tput.baseline_us.items(),
        ]
        for name, us in rows:
            print(
                f"{name:<28} {n:>8,} {1e6 / us:>11,.0f} {us:>9.2f}"
                f" {us / tput.baseline_us[floor_name]:>6.1f}x"
                f" {us / tput.baseline_us[bytes_name]:>6.1f}x"
            )
    print("/codec, /bytes: time per frame over the decode+encode and the bytes-only baselines.")
    print(f"'+ drains': plus datagrams_to_send every {DRAIN_EVERY} frames, which also runs the")
    print("responder's own periodic HEARTBEATs (about 1.14 per received frame at 1 s each way).")
    verdicts = [
        f"N={n:,} {'yes' if 1e6 / r.throughput.receive_us >= GOAL_FRAMES_PER_S else 'NO'}"
        f" ({1e6 / r.throughput.receive_us:,.0f}/s)"
        for n, r in results.items()
    ]
    print(f"goal: >= {GOAL_FRAMES_PER_S:,} frames/s per core through the Endpoint:")
    print(f"  {', '.join(verdicts)}")
    print()


def report_memory(results: dict[int, Result], breakdown: tuple[int, list[Row]]) -> None:
    print("b. Memory per established session, bytes")
    _table(
        f"{'N':>8} {'traced':>7} {'w/o dict':>9} {'walk':>6} {'session only':>13}"
        f" {'heap entries':>13} {'goal':>5}"
    )
    for n, result in results.items():
        m = result.memory
        met = "yes" if m.traced < GOAL_BYTES_PER_SESSION else "NO"
        print(
            f"{n:>8,} {m.traced:>7.0f} {m.traced_without_dict:>9.0f} {m.walk:>6.0f}"
            f" {m.walk_session_only:>13.0f} {m.heap_entries:>13.2f} {met:>5}"
        )
    print("traced: tracemalloc after minus before the handshakes (the endpoint already built);")
    print("w/o dict: minus the sessions dict's table; walk: getsizeof over slots and endpoint")
    print("indices; session only: without the indices. All right after the handshakes.")
    n, rows = breakdown
    total = sum(row.size for row in rows)
    print(f"\nBy attribute in the steady state, N={n:,} (walk total {total:.0f} B/session):")
    _table(f"{'attribute':<34} {'types':<28} {'B/session':>9} {'share':>6}")
    shared = 0
    for row in sorted(rows, key=lambda r: r.size, reverse=True):
        if row.size < 0.5:
            shared += 1
            continue
        print(f"{row.name:<34} {row.types[:28]:<28} {row.size:>9.1f} {row.size / total:>6.1%}")
    print(f"(~0 B: {shared} more slots, holding shared objects: None, enums, small ints, config)")
    ok = all(r.memory.traced < GOAL_BYTES_PER_SESSION for r in results.values())
    print(f"goal: < {GOAL_BYTES_PER_SESSION} B per session (traced): {'yes' if ok else 'NO'}")
    print()


def report_timers(results: dict[int, Result]) -> None:
    print("c. Timer cost as N grows")
    _table(
        f"{'N':>8} {'get_timer ns':>13} {'idle tick ns':>13} {'handle us/due':>14} {'due/call':>9}"
    )
    for n, result in results.items():
        t = result.timers
        print(
            f"{n:>8,} {t.get_timer_ns:>13.0f} {t.idle_tick_ns:>13.0f} {t.due_us:>14.2f}"
            f" {t.due_per_call:>9.1f}"
        )
    small, large = min(results), max(results)
    if large > small > 1:
        a, b = results[small].timers, results[large].timers
        print(
            f"ratio N={large:,} / N={small:,}: get_timer {b.get_timer_ns / a.get_timer_ns:.2f}x,"
            f" idle tick {b.idle_tick_ns / a.idle_tick_ns:.2f}x,"
            f" handle/due {b.due_us / a.due_us:.2f}x"
        )
        print(f"(flat = 1x; a cost growing like log N would give {math.log(large, small):.2f}x)")
    print("handle/due: one session's periodic HEARTBEAT from the heap (pop, on_timer, pack, push).")
    print()


def report_steady(results: dict[int, Result]) -> None:
    print(f"d. Steady state: {SIM_SECONDS} simulated s, peers at 1 s, every HEARTBEAT answered")
    _table(f"{'N':>8} {'frames in/s':>12} {'out/s':>10} {'CPU s/sim s':>12} {'us/frame in':>12}")
    for n, result in results.items():
        d = result.steady
        print(
            f"{n:>8,} {d.frames_in / d.seconds:>12,.0f} {d.frames_out / d.seconds:>10,.0f}"
            f" {d.cpu_per_sim_s:>12.3f} {d.cpu_per_sim_s * d.seconds / d.frames_in * 1e6:>12.2f}"
        )
    print("CPU s/sim s: the fraction of one core the endpoint needs (process time spent in")
    print("receive_datagram, datagrams_to_send with its timers, and next_event).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time an hbproto Endpoint serving N sessions: throughput, memory, timers."
    )
    parser.add_argument(
        "--quick", action="store_true", help="small N and few iterations (a few seconds)"
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=None,
        help="comma-separated session counts (default 1000,10000,100000; --quick: 1000,10000)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=None,
        metavar="N",
        help="also cProfile the receive path at N sessions and print the top functions",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for ids, jitter and order")
    args = parser.parse_args(argv)
    sizes: tuple[int, ...] = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    min_frames = 20_000 if args.quick else 300_000
    timing = (3, 0.002) if args.quick else (7, 0.02)

    print(f"Python {platform.python_version()} ({platform.python_implementation()})")
    processor = platform.processor() or platform.machine()
    print(f"machine: {processor}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"gc enabled: {gc.isenabled()}, thresholds {gc.get_threshold()}; one thread")
    print(f"N = {', '.join(f'{n:,}' for n in sizes)}; Config() = 1 s x {MULT}; seed {args.seed}")
    print()

    warm_up(args.seed)
    results: dict[int, Result] = {}
    problems: list[str] = []
    breakdown: tuple[int, list[Row]] = (0, [])
    for n in sorted(set(sizes)):
        result, rows, trouble = run_size(n, args.seed, min_frames, timing)
        results[n] = result
        problems += trouble
        breakdown = (n, rows)  # the largest N's is the one reported
        print(f"  N={n:,} measured", file=sys.stderr, flush=True)
    if problems:
        print("The simulation went wrong; the numbers would not mean what they say:")
        print(*problems, sep="\n  ")
        return 2
    report_throughput(results)
    report_memory(results, breakdown)
    report_timers(results)
    report_steady(results)
    if args.profile:
        profile_receive(args.profile, args.seed, 16)
    return 0


if __name__ == "__main__":
    sys.exit(main())
