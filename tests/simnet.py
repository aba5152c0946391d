"""A deterministic simulated network and discrete-event driver for hbproto's sans-IO core.

The core never reads a clock, so a whole deployment can run in simulated time: this module
plays the part of the kernel, the wires and the event loops. A :class:`Network` holds

- *hosts*: :class:`EndpointHost` (an :class:`~hbproto.Endpoint` bound to a UDP address),
  :class:`StreamHost` (one side of a :class:`~hbproto.Connection` pair joined by a simulated
  byte stream) and :class:`ScriptedHost` (an address whose datagrams a test handles itself,
  for peers that misbehave on purpose);
- *links*: one :class:`Link` per direction between two hosts, with loss, drop-by-index,
  delay, jitter (which also reorders datagrams), duplication, partition and, for streams,
  chunking. Links can be changed at any time during a run;
- a simulated clock and one queue of timed work. :meth:`Network.run_until` processes, in time
  order, every delivery, every host timer (``get_timer()`` / ``handle_timer(now)``) and every
  action a test scheduled with :meth:`Network.at`, and after each one collects the host's
  output (``datagrams_to_send(now)`` / ``data_to_send()``) and events;
- two logs: :attr:`Network.log` (every event of every host, with time and host) and
  :attr:`Network.wire` (every frame sent, with time, addresses, what became of it, and the
  decoded :class:`~hbproto.Frame`).

Nothing sleeps and nothing reads the real clock. All randomness comes from one seeded
:class:`random.Random`, so a run is a pure function of its seed and its script. Loops are
bounded: a run that takes more than ``max_steps`` steps, or a host whose timer stays due
after being handled, raises :class:`SimulationError` instead of hanging.

Process control mirrors what happens to real processes: :meth:`Network.stop` (SIGSTOP: no
timers, no reads, datagrams pile up in a bounded socket buffer), :meth:`Network.resume`
(SIGCONT: the buffered datagrams are read in order with the resume time as ``now``, and late
timers run), :meth:`Network.kill` (the process is gone; datagrams to it vanish, a stream peer
sees end of stream) and :meth:`Network.restart` (a new Endpoint at the same address).

Typical use::

    net = Network(seed=1)
    net.add_endpoint("a", ("10.0.0.1", 7373), Config(interval=0.1))
    net.add_endpoint("b", ("10.0.0.2", 7373), Config(interval=0.1), accept=True)
    net.set_link("a", "b", delay=0.01, both=True)
    sid = net.connect("a", "b")
    net.run_until(5.0)
    up = net.log.first(PeerUp, host="a")
"""

from __future__ import annotations

import contextlib
import heapq
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from random import Random
from typing import Generic, Literal, TypeVar

from hbproto import Config, Connection, Endpoint, Event, Frame, FrameType, Limits
from hbproto.errors import FrameError
from hbproto.frame import decode

__all__ = [
    "Addr",
    "EndpointHost",
    "EventLog",
    "Host",
    "Link",
    "Logged",
    "Network",
    "ScriptedHost",
    "SimulationError",
    "StreamHost",
    "Wire",
]

Addr = tuple[str, int]
Chunking = Literal["whole", "byte", "random"]
E = TypeVar("E", bound=Event)

_DELIVERY, _TIMER = 0, 1  # queue priorities: at equal times, deliveries and actions go first
_SAME_INSTANT_LIMIT = 1000


class SimulationError(RuntimeError):
    """The simulation cannot go on: a livelock, a step budget exceeded, or a misuse."""


# --- Links --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Link:
    """One direction between two hosts. Change the fields at any time during a run.

    Datagram links apply, in this order: ``partitioned`` (drop everything), ``drop`` (drop the
    datagrams whose index, counted in :attr:`sent` from 0, is in the set), ``loss`` (drop with
    this probability), then deliver after ``delay`` plus a uniform random ``jitter`` (so
    datagrams can overtake each other), and with probability ``duplicate`` deliver a second
    copy with its own jitter. The decision is taken when the datagram is sent: datagrams
    already in flight when a link changes are not affected.

    Stream links never lose, duplicate or reorder bytes (TCP would not: ``loss``, ``drop``
    and ``duplicate`` are ignored there). They apply ``delay``
    and ``jitter`` while keeping order, cut what a host writes into chunks (``chunking``:
    ``"whole"`` writes, single bytes, or random sizes from 1 to ``max_chunk``) spaced
    ``chunk_gap`` apart, and while ``partitioned`` they hold bytes back and release them on
    heal, as TCP retransmission would.
    """

    loss: float = 0.0
    drop: set[int] = field(default_factory=set)
    delay: float = 0.0
    jitter: float = 0.0
    duplicate: float = 0.0
    partitioned: bool = False
    chunking: Chunking = "whole"
    max_chunk: int = 16
    chunk_gap: float = 0.0
    sent: int = 0

    def drop_next(self, count: int) -> None:
        """Drop the next ``count`` datagrams offered to this direction."""
        self.drop.update(range(self.sent, self.sent + count))

    def fresh_copy(self) -> Link:
        """A link with these properties and no history."""
        return Link(
            self.loss,
            set(self.drop),
            self.delay,
            self.jitter,
            self.duplicate,
            self.partitioned,
            self.chunking,
            self.max_chunk,
            self.chunk_gap,
        )


# --- Logs ---------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Wire:
    """One frame (or, for injected bytes, one chunk) that a host put on the wire.

    ``time`` is when it was sent; ``delivered`` lists the times the receiving host processed it
    (more than one if duplicated; for a stopped host, the time it resumed); ``dropped`` says
    why it was not delivered, if it was not: ``"partition"``, ``"index"``, ``"loss"``,
    ``"no_host"``, ``"buffer_full"`` or ``"closed"``.
    """

    index: int
    time: float
    src: str | None
    dst: str | None
    src_addr: Addr | None
    dst_addr: Addr | None
    data: bytes
    transport: Literal["udp", "tcp"]
    injected: bool = False
    delivered: list[float] = field(default_factory=list)
    dropped: str | None = None
    _frame: Frame | None = None
    _decoded: bool = False

    def try_frame(self) -> Frame | None:
        """The decoded frame, or ``None`` if these bytes are not a valid frame."""
        if not self._decoded:
            self._decoded = True
            try:
                self._frame = decode(self.data)
            except FrameError:
                self._frame = None
        return self._frame

    @property
    def frame(self) -> Frame:
        """The decoded frame; raises :class:`SimulationError` if the bytes do not decode."""
        frame = self.try_frame()
        if frame is None:
            raise SimulationError(f"wire record {self.index} is not a valid frame")
        return frame

    @property
    def type(self) -> FrameType | None:
        frame = self.try_frame()
        return None if frame is None else frame.type

    @property
    def arrived(self) -> float | None:
        """The first time the receiver processed it, or ``None``."""
        return self.delivered[0] if self.delivered else None


@dataclass(slots=True, frozen=True)
class Logged(Generic[E]):
    """One event, with the simulated time and the host (and its generation) that reported it."""

    time: float
    host: str
    generation: int
    event: E


class EventLog:
    """Every event of every host, in the order the hosts reported them."""

    def __init__(self) -> None:
        self.records: list[Logged[Event]] = []

    def __len__(self) -> int:
        return len(self.records)

    def select(
        self,
        kind: type[E],
        host: str | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        where: Callable[[E], bool] | None = None,
    ) -> list[Logged[E]]:
        """Events of type ``kind`` (from ``host``), with ``since <= time <= until``."""
        found: list[Logged[E]] = []
        for rec in self.records:
            ev = rec.event
            if not isinstance(ev, kind):
                continue
            if host is not None and rec.host != host:
                continue
            if since is not None and rec.time < since:
                continue
            if until is not None and rec.time > until:
                continue
            if where is not None and not where(ev):
                continue
            found.append(Logged(rec.time, rec.host, rec.generation, ev))
        return found

    def first(
        self,
        kind: type[E],
        host: str | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        where: Callable[[E], bool] | None = None,
    ) -> Logged[E] | None:
        """The earliest matching event, or ``None``."""
        found = self.select(kind, host, since=since, until=until, where=where)
        return found[0] if found else None

    def last(
        self,
        kind: type[E],
        host: str | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        where: Callable[[E], bool] | None = None,
    ) -> Logged[E] | None:
        """The latest matching event, or ``None``."""
        found = self.select(kind, host, since=since, until=until, where=where)
        return found[-1] if found else None

    def count(
        self,
        kind: type[E],
        host: str | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        where: Callable[[E], bool] | None = None,
    ) -> int:
        return len(self.select(kind, host, since=since, until=until, where=where))

    def expect(
        self,
        kind: type[E],
        host: str | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        where: Callable[[E], bool] | None = None,
    ) -> Logged[E]:
        """Like :meth:`first`, but fails with the host's event history if there is none."""
        found = self.first(kind, host, since=since, until=until, where=where)
        if found is None:
            history = "\n".join(
                f"  {r.time:10.6f} {r.host}: {r.event!r}"
                for r in self.records
                if (host is None or r.host == host) and type(r.event).__name__ != "RttSample"
            )
            raise AssertionError(f"no {kind.__name__} from {host or 'any host'}:\n{history}")
        return found


# --- Hosts --------------------------------------------------------------------------------------


def _id_source(rng: Random) -> Callable[[], int]:
    """Session identifiers drawn from ``rng`` (reproducible, unlike the default)."""
    return lambda: rng.getrandbits(32)


class Host:
    """Something attached to the network. ``generation`` counts restarts."""

    def __init__(self, net: Network, name: str) -> None:
        self.net = net
        self.name = name
        self.alive = True
        self.stopped = False
        self.generation = 0
        self.timer_at: float | None = None


class EndpointHost(Host):
    """An :class:`~hbproto.Endpoint` bound to ``addr``.

    ``public_addr`` is the source address its datagrams appear to come from (different after
    :meth:`Network.rebind`). While stopped, arriving datagrams wait in ``buffered`` (at most
    ``socket_buffer`` of them; the kernel drops the rest).
    """

    def __init__(
        self,
        net: Network,
        name: str,
        addr: Addr,
        config: Config | None,
        *,
        accept: bool,
        limits: Limits | None,
        socket_buffer: int,
    ) -> None:
        super().__init__(net, name)
        self.addr = addr
        self.public_addr = addr
        self.config = config
        self.accept = accept
        self.limits = limits
        self.socket_buffer = socket_buffer
        self.buffered: deque[tuple[bytes, Addr, Wire | None]] = deque()
        self.endpoint = self._new_endpoint()

    def _new_endpoint(self) -> Endpoint:
        return Endpoint(
            self.config,
            accept=self.accept,
            limits=self.limits,
            rng=Random(self.net.rng.getrandbits(64)),
            id_source=_id_source(Random(self.net.rng.getrandbits(64))),
        )


class StreamHost(Host):
    """One side of a :class:`~hbproto.Connection` pair. ``peer`` is the other side."""

    def __init__(self, net: Network, name: str, conn: Connection) -> None:
        super().__init__(net, name)
        self.conn = conn
        self.peer: StreamHost = self
        self.out: _Pipe | None = None
        self.socket_closed = False
        self.buffered: deque[tuple[bytes, int]] = deque()


DatagramHandler = Callable[["ScriptedHost", float, bytes, Addr], None]


class ScriptedHost(Host):
    """An address whose datagrams the test handles: they are kept in ``inbox`` and passed to
    ``handler`` if one is set. Send from it with :meth:`Network.send_raw`."""

    def __init__(self, net: Network, name: str, addr: Addr, handler: DatagramHandler | None):
        super().__init__(net, name)
        self.addr = addr
        self.public_addr = addr
        self.handler = handler
        self.inbox: list[tuple[float, bytes, Addr]] = []

    def frames(self) -> list[Frame]:
        """The inbox, decoded (undecodable datagrams are skipped)."""
        out = []
        for _, data, _ in self.inbox:
            with contextlib.suppress(FrameError):
                out.append(decode(data))
        return out


class _Pipe:
    """One direction of a simulated byte stream."""

    def __init__(self, src: StreamHost, dst: StreamHost) -> None:
        self.src = src
        self.dst = dst
        self.written = 0  # stream offset of the next byte written
        self.last_at = 0.0  # delivery time of the last scheduled chunk (keeps order)
        self.held: list[bytes] = []  # bytes written while partitioned
        self.eof_held = False
        self.tap = bytearray()  # the core's output not yet cut into logged frames
        self.records: deque[tuple[int, Wire]] = deque()  # (end offset, record) in flight


# --- The network --------------------------------------------------------------------------------


class Network:
    """Hosts, links, a simulated clock and the logs. See the module docstring.

    ``seed`` fixes every random choice. ``max_steps`` bounds one :meth:`run_until` call.
    ``record_frames=False`` skips the wire log (for large runs; counters still work).
    """

    def __init__(
        self,
        seed: int,
        *,
        start: float = 0.0,
        max_steps: int = 5_000_000,
        record_frames: bool = True,
        default_link: Link | None = None,
    ) -> None:
        self.rng = Random(seed)
        self.now = start
        self.max_steps = max_steps
        self.record_frames = record_frames
        self.default_link = default_link or Link()
        self.log = EventLog()
        self.wire: list[Wire] = []
        self.frames_sent = 0
        self.hosts: dict[str, Host] = {}
        self._routes: dict[Addr, Host] = {}
        self._links: dict[tuple[str, str], Link] = {}
        self._queue: list[tuple[float, int, int, Callable[[], None]]] = []
        self._seq = 0
        self._instant_at = -1.0
        self._instant_count: dict[str, int] = {}

    # --- Building ---------------------------------------------------------------------------

    def add_endpoint(
        self,
        name: str,
        addr: Addr,
        config: Config | None = None,
        *,
        accept: bool = False,
        limits: Limits | None = None,
        socket_buffer: int = 256,
    ) -> EndpointHost:
        """Attach a new Endpoint at ``addr``. ``accept`` makes it a responder."""
        self._check_new(name)
        if addr in self._routes:
            raise SimulationError(f"address {addr} is already taken")
        host = EndpointHost(
            self, name, addr, config, accept=accept, limits=limits, socket_buffer=socket_buffer
        )
        self.hosts[name] = host
        self._routes[addr] = host
        return host

    def add_scripted(
        self, name: str, addr: Addr, handler: DatagramHandler | None = None
    ) -> ScriptedHost:
        """Attach an address whose traffic the test produces and consumes itself."""
        self._check_new(name)
        host = ScriptedHost(self, name, addr, handler)
        self.hosts[name] = host
        self._routes[addr] = host
        return host

    def add_stream_pair(
        self,
        client: str,
        server: str,
        client_config: Config | None = None,
        server_config: Config | None = None,
    ) -> tuple[StreamHost, StreamHost]:
        """Two :class:`~hbproto.Connection` objects joined by a stream, created now.

        ``client`` is the initiator (it sends the first frame).
        """
        self._check_new(client)
        self._check_new(server)
        hosts = []
        for name, config, initiator in (
            (client, client_config, True),
            (server, server_config, False),
        ):
            conn = Connection(
                config,
                initiator=initiator,
                now=self.now,
                rng=Random(self.rng.getrandbits(64)),
                id_source=_id_source(Random(self.rng.getrandbits(64))),
            )
            host = StreamHost(self, name, conn)
            self.hosts[name] = host
            hosts.append(host)
        c, s = hosts
        c.peer, s.peer = s, c
        c.out, s.out = _Pipe(c, s), _Pipe(s, c)
        c.out.last_at = s.out.last_at = self.now
        self._service(c)
        self._service(s)
        return c, s

    def _check_new(self, name: str) -> None:
        if name in self.hosts:
            raise SimulationError(f"host {name!r} already exists")

    def endpoint(self, name: str) -> Endpoint:
        """The current Endpoint of host ``name``."""
        host = self.hosts[name]
        if not isinstance(host, EndpointHost):
            raise SimulationError(f"{name!r} is not an endpoint host")
        return host.endpoint

    def connection(self, name: str) -> Connection:
        """The Connection of stream host ``name``."""
        host = self.hosts[name]
        if not isinstance(host, StreamHost):
            raise SimulationError(f"{name!r} is not a stream host")
        return host.conn

    def addr(self, name: str) -> Addr:
        host = self.hosts[name]
        if not isinstance(host, EndpointHost | ScriptedHost):
            raise SimulationError(f"{name!r} has no datagram address")
        return host.addr

    # --- Links ------------------------------------------------------------------------------

    def link(self, src: str, dst: str) -> Link:
        """The live :class:`Link` from ``src`` to ``dst`` (created from the default)."""
        key = (src, dst)
        link = self._links.get(key)
        if link is None:
            link = self._links[key] = self.default_link.fresh_copy()
        return link

    def set_link(self, src: str, dst: str, *, both: bool = False, **changes: object) -> None:
        """Change fields of the link ``src -> dst`` (and ``dst -> src`` if ``both``)."""
        pairs = [(src, dst), (dst, src)] if both else [(src, dst)]
        for a, b in pairs:
            link = self.link(a, b)
            for key, value in changes.items():
                if not hasattr(link, key) or key == "sent":
                    raise SimulationError(f"links have no settable field {key!r}")
                # Each direction gets its own copy of a drop set: drops consume entries.
                setattr(link, key, set(value) if isinstance(value, set) else value)
            if not link.partitioned:
                self._release_held(a, b)

    def partition(self, a: str, b: str, *, one_way: bool = False) -> None:
        """Drop everything from ``a`` to ``b`` (and back, unless ``one_way``)."""
        self.set_link(a, b, both=not one_way, partitioned=True)

    def heal(self, a: str, b: str) -> None:
        """End a partition in both directions."""
        self.set_link(a, b, both=True, partitioned=False)

    def rebind(self, name: str, new_addr: Addr, *, keep_old: bool = False) -> None:
        """NAT rebinding: ``name``'s datagrams now come from ``new_addr``, and datagrams to
        ``new_addr`` reach it. Unless ``keep_old``, the old public address stops working."""
        host = self.hosts[name]
        if not isinstance(host, EndpointHost):
            raise SimulationError("only endpoint hosts can be rebound")
        if new_addr in self._routes:
            raise SimulationError(f"address {new_addr} is already taken")
        old = host.public_addr
        if not keep_old and self._routes.get(old) is host:
            del self._routes[old]
        host.public_addr = new_addr
        self._routes[new_addr] = host

    # --- Process control --------------------------------------------------------------------

    def stop(self, name: str) -> None:
        """SIGSTOP: the host's timers stop and it reads nothing until :meth:`resume`."""
        host = self.hosts[name]
        if not host.alive:
            raise SimulationError(f"{name!r} is not running")
        host.stopped = True
        host.timer_at = None  # pending timer entries lapse; resume re-arms

    def resume(self, name: str, *, timers_first: bool = True) -> None:
        """SIGCONT at the current time: read what the socket buffered, in order, with ``now``
        the resume time, and run the late timers. ``timers_first`` picks which of the two the
        process gets to first (an event loop may do either)."""
        host = self.hosts[name]
        if not host.stopped:
            raise SimulationError(f"{name!r} is not stopped")
        host.stopped = False
        if timers_first:
            self._run_late_timers(host)
        if isinstance(host, EndpointHost):
            while host.buffered and not host.stopped:
                data, src, rec = host.buffered.popleft()
                self._deliver_to_endpoint(host, data, src, rec)
        elif isinstance(host, StreamHost):
            while host.buffered and not host.stopped:
                chunk, end = host.buffered.popleft()
                self._deliver_to_stream(host, chunk, end)
        if not timers_first:
            self._run_late_timers(host)
        self._service(host)

    def _run_late_timers(self, host: Host) -> None:
        if isinstance(host, EndpointHost):
            timer = host.endpoint.get_timer()
            if timer is not None and timer <= self.now:
                host.endpoint.handle_timer(self.now)
        elif isinstance(host, StreamHost):
            timer = host.conn.get_timer()
            if timer is not None and timer <= self.now:
                host.conn.handle_timer(self.now)
        self._service(host)

    def kill(self, name: str) -> None:
        """The process dies: datagrams to it vanish; a stream peer sees end of stream."""
        host = self.hosts[name]
        host.alive = False
        host.stopped = False
        host.timer_at = None
        if isinstance(host, EndpointHost):
            host.buffered.clear()
        elif isinstance(host, StreamHost):
            host.buffered.clear()
            self._close_socket(host)

    def restart(self, name: str, config: Config | None = None) -> EndpointHost:
        """A new process at the same address: a fresh Endpoint (new identifiers, no state)."""
        host = self.hosts[name]
        if not isinstance(host, EndpointHost):
            raise SimulationError("only endpoint hosts can be restarted")
        if config is not None:
            host.config = config
        host.generation += 1
        host.alive = True
        host.stopped = False
        host.timer_at = None
        host.buffered.clear()
        for addr in [a for a, h in self._routes.items() if h is host]:
            del self._routes[addr]  # NAT mappings of the old process are gone
        host.public_addr = host.addr
        self._routes[host.addr] = host
        host.endpoint = host._new_endpoint()
        return host

    def close_stream(self, name: str) -> None:
        """The host's socket closes without a CLOSE frame: the peer reads end of stream."""
        host = self.hosts[name]
        if not isinstance(host, StreamHost):
            raise SimulationError(f"{name!r} is not a stream host")
        self._close_socket(host)

    # --- Verbs that tests use often ---------------------------------------------------------

    def connect(self, src: str, dst: str, config: Config | None = None) -> int:
        """``src`` opens a session to ``dst``'s address now; returns the session handle."""
        host = self.hosts[src]
        if not isinstance(host, EndpointHost):
            raise SimulationError(f"{src!r} is not an endpoint host")
        sid = host.endpoint.connect(self.addr(dst), self.now, config)
        self._service(host)
        return sid

    def flush(self) -> None:
        """Collect output and events of every running host (after calling a verb directly)."""
        for host in list(self.hosts.values()):
            self._service(host)

    def at(self, when: float, action: Callable[[], object]) -> None:
        """Run ``action`` at simulated time ``when``, then collect every host's output."""
        if when < self.now:
            raise SimulationError(f"cannot schedule at {when}, the time is {self.now}")

        def run() -> None:
            action()
            self.flush()

        self._push(when, _DELIVERY, run)

    def every(
        self, period: float, action: Callable[[], object], *, start: float, until: float
    ) -> None:
        """Run ``action`` at ``start``, ``start + period``, ... while the time is <= ``until``."""
        when = start
        while when <= until + 1e-12:
            self.at(when, action)
            when += period

    def send_raw(
        self,
        src: str,
        data: bytes,
        to: Addr,
        *,
        src_addr: Addr | None = None,
        delay: float | None = None,
    ) -> Wire:
        """Send ``data`` as a datagram from host ``src`` (any kind) to ``to``.

        It goes through the link like any datagram, or, with ``delay``, straight to the
        receiver after that delay. ``src_addr`` spoofs the source address.
        """
        host = self.hosts[src]
        if src_addr is None:
            if not isinstance(host, EndpointHost | ScriptedHost):
                raise SimulationError(f"{src!r} has no datagram address")
            src_addr = host.public_addr
        rec = self._send_datagram(host, data, src_addr, to, injected=True, fixed_delay=delay)
        return rec if rec is not None else Wire(-1, self.now, src, None, src_addr, to, data, "udp")

    def inject_stream(self, src: str, data: bytes) -> Wire:
        """Write raw bytes into the stream from ``src`` to its peer, as if ``src`` wrote them."""
        host = self.hosts[src]
        if not isinstance(host, StreamHost) or host.out is None:
            raise SimulationError(f"{src!r} is not a stream host")
        rec = self._record(host, data, "tcp", dst=host.peer.name, injected=True)
        self._write(host.out, data, [] if rec is None else [rec])
        return rec if rec is not None else Wire(-1, self.now, src, None, None, None, data, "tcp")

    # --- Queries ----------------------------------------------------------------------------

    def frames(
        self,
        src: str | None = None,
        dst: str | None = None,
        *,
        ftype: FrameType | None = None,
        since: float | None = None,
        until: float | None = None,
        delivered: bool | None = None,
    ) -> list[Wire]:
        """Wire records filtered by sender, receiver, frame type, send time and fate."""
        out = []
        for rec in self.wire:
            if src is not None and rec.src != src:
                continue
            if dst is not None and rec.dst != dst:
                continue
            if since is not None and rec.time < since:
                continue
            if until is not None and rec.time > until:
                continue
            if delivered is not None and bool(rec.delivered) != delivered:
                continue
            if ftype is not None and rec.type is not ftype:
                continue
            out.append(rec)
        return out

    def last_arrival(
        self, src: str, dst: str, *, before: float | None = None, valid_only: bool = True
    ) -> float | None:
        """When ``dst`` last processed a frame from ``src`` (at or before ``before``)."""
        best: float | None = None
        for rec in self.wire:
            if rec.src != src or rec.dst != dst or not rec.delivered:
                continue
            if valid_only and rec.try_frame() is None:
                continue
            for t in rec.delivered:
                if (before is None or t <= before) and (best is None or t > best):
                    best = t
        return best

    # --- Running ----------------------------------------------------------------------------

    def run_until(self, end: float) -> None:
        """Advance the clock to ``end``, processing everything due on the way, in time order."""
        if end < self.now:
            raise SimulationError(f"cannot run back to {end} from {self.now}")
        self.flush()
        queue = self._queue
        steps = 0
        while queue and queue[0][0] <= end:
            at, _, _, work = heapq.heappop(queue)
            steps += 1
            if steps > self.max_steps:
                raise SimulationError(f"more than {self.max_steps} steps before t={end}")
            self.now = max(self.now, at)
            work()
        self.now = end

    def run_for(self, duration: float) -> None:
        self.run_until(self.now + duration)

    # --- Internals: scheduling --------------------------------------------------------------

    def _push(self, at: float, prio: int, work: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, prio, self._seq, work))

    def _service(self, host: Host) -> None:
        """Collect a host's output and events and re-arm its timer."""
        if not host.alive or host.stopped:
            return
        if isinstance(host, EndpointHost):
            ep = host.endpoint
            now = self.now
            for data, to in ep.datagrams_to_send(now):
                self._send_datagram(host, data, host.public_addr, to)  # type: ignore[arg-type]
            if ep.events:
                self._drain(host, ep.next_event)
            timer = ep.get_timer()
        elif isinstance(host, StreamHost):
            conn = host.conn
            data = conn.data_to_send()
            if data and not host.socket_closed and host.out is not None:
                self._write_from_core(host.out, data)
            self._drain(host, conn.next_event)
            if conn.ended and not host.socket_closed:
                self._close_socket(host)  # the application closes the socket on ConnectionEnded
            timer = conn.get_timer()
        else:
            return
        self._arm(host, timer)

    def _drain(self, host: Host, next_event: Callable[[], Event | None]) -> None:
        records = self.log.records
        while (ev := next_event()) is not None:
            records.append(Logged(self.now, host.name, host.generation, ev))

    def _arm(self, host: Host, timer: float | None) -> None:
        if timer == host.timer_at:
            return
        host.timer_at = timer
        if timer is None:
            return
        if timer <= self.now:
            # A timer that is still due right after being handled, again and again, would
            # spin forever at one instant.
            if self._instant_at != self.now:
                self._instant_at = self.now
                self._instant_count.clear()
            count = self._instant_count.get(host.name, 0) + 1
            if count > _SAME_INSTANT_LIMIT:
                raise SimulationError(
                    f"livelock: {host.name}'s timer stays due at t={self.now} after handling"
                )
            self._instant_count[host.name] = count
        generation = host.generation

        def fire() -> None:
            if host.timer_at != timer or host.generation != generation:
                return  # superseded
            if not host.alive or host.stopped:
                return
            host.timer_at = None
            if isinstance(host, EndpointHost):
                host.endpoint.handle_timer(self.now)
            elif isinstance(host, StreamHost):
                host.conn.handle_timer(self.now)
            self._service(host)

        self._push(max(timer, self.now), _TIMER, fire)

    # --- Internals: datagrams ---------------------------------------------------------------

    def _record(
        self,
        host: Host,
        data: bytes,
        transport: Literal["udp", "tcp"],
        *,
        dst: str | None,
        src_addr: Addr | None = None,
        dst_addr: Addr | None = None,
        injected: bool = False,
    ) -> Wire | None:
        self.frames_sent += 1
        if not self.record_frames:
            return None
        rec = Wire(
            len(self.wire),
            self.now,
            host.name,
            dst,
            src_addr,
            dst_addr,
            data,
            transport,
            injected,
        )
        self.wire.append(rec)
        return rec

    def _send_datagram(
        self,
        host: Host,
        data: bytes,
        src_addr: Addr,
        to: Addr,
        *,
        injected: bool = False,
        fixed_delay: float | None = None,
    ) -> Wire | None:
        target = self._routes.get(to)
        dst_name = target.name if target is not None else None
        if self.record_frames:
            rec = self._record(
                host, data, "udp", dst=dst_name, src_addr=src_addr, dst_addr=to, injected=injected
            )
        else:  # the hot path of large runs
            self.frames_sent += 1
            rec = None
        if fixed_delay is not None:
            self._push(self.now + fixed_delay, _DELIVERY, self._arrival(to, data, src_addr, rec))
            return rec
        if dst_name is None:
            link = self.default_link
        else:
            link = self._links.get((host.name, dst_name)) or self.link(host.name, dst_name)
        index = link.sent
        link.sent += 1
        rng = self.rng
        reason = None
        if link.partitioned:
            reason = "partition"
        elif index in link.drop:
            link.drop.discard(index)
            reason = "index"
        elif link.loss and rng.random() < link.loss:
            reason = "loss"
        if reason is not None:
            if rec is not None:
                rec.dropped = reason
        else:
            copies = 2 if link.duplicate and rng.random() < link.duplicate else 1
            for _ in range(copies):
                delay = link.delay + (rng.uniform(0.0, link.jitter) if link.jitter else 0.0)
                self._push(self.now + delay, _DELIVERY, self._arrival(to, data, src_addr, rec))
        return rec

    def _arrival(self, to: Addr, data: bytes, src: Addr, rec: Wire | None) -> Callable[[], None]:
        def arrive() -> None:
            host = self._routes.get(to)
            if host is None or not host.alive:
                if rec is not None and not rec.delivered:
                    rec.dropped = "no_host"
                return
            if isinstance(host, EndpointHost):
                if host.stopped:
                    if len(host.buffered) >= host.socket_buffer:
                        if rec is not None and not rec.delivered:
                            rec.dropped = "buffer_full"
                        return
                    host.buffered.append((data, src, rec))
                    return
                self._deliver_to_endpoint(host, data, src, rec)
            elif isinstance(host, ScriptedHost):
                if rec is not None:
                    rec.delivered.append(self.now)
                host.inbox.append((self.now, data, src))
                if host.handler is not None:
                    host.handler(host, self.now, data, src)

        return arrive

    def _deliver_to_endpoint(
        self, host: EndpointHost, data: bytes, src: Addr, rec: Wire | None
    ) -> None:
        if rec is not None:
            rec.delivered.append(self.now)
            rec.dropped = None
        host.endpoint.receive_datagram(data, src, self.now)
        self._service(host)

    # --- Internals: streams -----------------------------------------------------------------

    def _write_from_core(self, pipe: _Pipe, data: bytes) -> None:
        """Log each frame the core wrote (cut by its Length field), then send the bytes."""
        records: list[Wire] = []
        tap = pipe.tap
        tap += data
        while len(tap) >= 4:
            length = (tap[2] << 8) | tap[3]
            if length < 4 or len(tap) < length:
                break
            frame = bytes(tap[:length])
            del tap[:length]
            rec = self._record(pipe.src, frame, "tcp", dst=pipe.dst.name)
            if rec is not None:
                records.append(rec)
        self._write(pipe, data, records)

    def _write(self, pipe: _Pipe, data: bytes, records: list[Wire]) -> None:
        start = pipe.written
        pipe.written += len(data)
        end = start
        for rec in records:
            end += len(rec.data)
            pipe.records.append((end, rec))
        link = self.link(pipe.src.name, pipe.dst.name)
        if link.partitioned or pipe.held:
            pipe.held.append(data)
            if not link.partitioned:
                self._release_held(pipe.src.name, pipe.dst.name)
            return
        self._schedule_chunks(pipe, link, data, start)

    def _schedule_chunks(self, pipe: _Pipe, link: Link, data: bytes, start: int) -> None:
        rng = self.rng
        if link.chunking == "byte":
            sizes = [1] * len(data)
        elif link.chunking == "random":
            sizes = []
            left = len(data)
            while left:
                size = min(left, rng.randint(1, max(1, link.max_chunk)))
                sizes.append(size)
                left -= size
        else:
            sizes = [len(data)]
        jitter = rng.uniform(0.0, link.jitter) if link.jitter else 0.0
        at = max(pipe.last_at, self.now + link.delay + jitter)
        pos = 0
        for i, size in enumerate(sizes):
            if i:
                at += link.chunk_gap
            chunk = data[pos : pos + size]
            pos += size
            self._push(at, _DELIVERY, self._chunk_arrival(pipe, chunk, start + pos))
        pipe.last_at = at

    def _release_held(self, src: str, dst: str) -> None:
        host = self.hosts.get(src)
        if not isinstance(host, StreamHost) or host.out is None or host.peer.name != dst:
            return
        pipe = host.out
        link = self.link(src, dst)
        if link.partitioned:
            return
        held, pipe.held = pipe.held, []
        offset = pipe.written - sum(len(d) for d in held)
        for data in held:
            self._schedule_chunks(pipe, link, data, offset)
            offset += len(data)
        if pipe.eof_held:
            pipe.eof_held = False
            self._schedule_eof(pipe, link)

    def _chunk_arrival(self, pipe: _Pipe, chunk: bytes, end: int) -> Callable[[], None]:
        def arrive() -> None:
            dst = pipe.dst
            if not dst.alive or dst.socket_closed:
                self._settle(pipe, end, None)
                return
            if dst.stopped:
                dst.buffered.append((chunk, end))
                return
            self._deliver_to_stream(dst, chunk, end)

        return arrive

    def _deliver_to_stream(self, host: StreamHost, chunk: bytes, end: int) -> None:
        pipe = host.peer.out
        if host.socket_closed or not host.alive:
            if pipe is not None:
                self._settle(pipe, end, None)
            return
        host.conn.receive_data(chunk, self.now)
        if pipe is not None:
            self._settle(pipe, end, self.now)
        self._service(host)

    def _settle(self, pipe: _Pipe, end: int, delivered_at: float | None) -> None:
        while pipe.records and pipe.records[0][0] <= end:
            _, rec = pipe.records.popleft()
            if delivered_at is None:
                rec.dropped = "closed"
            else:
                rec.delivered.append(delivered_at)

    def _close_socket(self, host: StreamHost) -> None:
        if host.socket_closed:
            return
        host.socket_closed = True
        pipe = host.out
        if pipe is None:
            return
        link = self.link(pipe.src.name, pipe.dst.name)
        if link.partitioned or pipe.held:
            pipe.eof_held = True
            return
        self._schedule_eof(pipe, link)

    def _schedule_eof(self, pipe: _Pipe, link: Link) -> None:
        at = max(pipe.last_at, self.now + link.delay)
        pipe.last_at = at

        def arrive() -> None:
            dst = pipe.dst
            if not dst.alive or dst.socket_closed:
                return
            if dst.stopped:
                dst.buffered.append((b"", pipe.written))
                return
            dst.conn.receive_data(b"", self.now)
            self._service(dst)

        self._push(at, _DELIVERY, arrive)

    # --- Debugging --------------------------------------------------------------------------

    def describe(self, host: str | None = None) -> Iterator[str]:
        """Human-readable event history (without RTT samples), for assertion messages."""
        for rec in self.log.records:
            if (host is None or rec.host == host) and type(rec.event).__name__ != "RttSample":
                yield f"{rec.time:10.6f} {rec.host}: {rec.event!r}"
