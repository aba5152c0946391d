"""A network lab for fault tests: three network namespaces, real processes, injected faults.

::

    client ns                router ns                       server ns
    10.77.1.2 [to-r] <--veth--> [to-c] 10.77.1.1
                                       10.77.2.1 [to-s] <--veth--> [to-r] 10.77.2.2

:class:`Lab` builds the namespaces (unique names per lab, so parallel or aborted runs do not
collide) and always tears them down, with every process it started in them; iptables rules live
in the router namespace and go with it. Faults are made in the router: iptables ``DROP`` for a
pulled cable (both ways or one), ``-m statistic`` for random loss, ``SNAT`` and a fresh
conntrack zone for a NAT that rebinds, and :mod:`tests.impair` (a relay in the router) for
delay, jitter and reordering. The peers are the ``hbproto`` command with ``--json``
(:class:`Proc` stamps each line with this process's monotonic clock as it arrives, since each
child's ``t`` counts from its own start).

The second half holds the scenarios: each builds a lab, starts the peers, injects one fault and
returns what each side reported (:class:`Outcome`), for tests/test_faults.py to judge against
SPEC.md's bounds and for tests/fault_report.py to tabulate.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "LINKS",
    "Fault",
    "Impair",
    "Lab",
    "LabError",
    "Line",
    "Link",
    "Missing",
    "Outcome",
    "Proc",
    "Report",
    "cable",
    "can_make_labs",
    "hung",
    "killed",
    "loss",
    "loss_rate",
    "rebind",
    "reorder",
    "restarted",
    "spike",
    "stall",
    "tolerance",
]

ROOT = Path(__file__).resolve().parent.parent
CLIENT_IP = "10.77.1.2"
ROUTER_CLIENT_SIDE = "10.77.1.1"
ROUTER_SERVER_SIDE = "10.77.2.1"
SERVER_IP = "10.77.2.2"
PORT = 7373
PROXY_PORT = 7474
STARTUP = 15.0  # a child's interpreter start and imports, on a loaded machine
COMMAND_TIMEOUT = 10.0  # any ip or iptables command
_STALE = re.compile(r"^hbf(\d+)x[0-9a-f]{6}[crs]$")


class LabError(RuntimeError):
    """The lab could not be built or driven (a command failed)."""


class Missing(AssertionError):
    """A process did not report what was waited for in time (a test failure, with its output)."""


def can_make_labs() -> bool:
    """Linux, root, ``ip`` and ``iptables``: what a lab needs."""
    return (
        sys.platform == "linux"
        and os.geteuid() == 0
        and shutil.which("ip") is not None
        and shutil.which("iptables") is not None
    )


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(argv)}: no answer within {COMMAND_TIMEOUT} s") from None
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def tolerance(samples: int = 50) -> float:
    """A timing tolerance measured on this machine: how late a short sleep wakes up (99th
    percentile, times four), plus 20 ms for a child's own wake-up and the pipe to the harness,
    and at least 50 ms in all."""
    late = []
    for _ in range(samples):
        start = time.monotonic()
        time.sleep(0.002)
        late.append(time.monotonic() - start - 0.002)
    late.sort()
    return max(0.05, 0.02 + 4 * late[int(0.99 * (len(late) - 1))])


# --- Processes ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One JSON line of a child's output and when the harness read it (``time.monotonic()``)."""

    at: float
    record: dict[str, Any]

    @property
    def event(self) -> str | None:
        kind = self.record.get("event")
        return kind if isinstance(kind, str) else None

    def __getitem__(self, key: str) -> Any:
        return self.record[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.record.get(key, default)


class Proc:
    """A child process whose stdout (JSON lines, and stderr with it) a thread reads and stamps."""

    def __init__(self, name: str, argv: Sequence[str], *, control: bool = False) -> None:
        self.name = name
        self.argv = list(argv)
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE if control else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,  # a Ctrl-C meant for the tests does not reach it
        )
        self.lines: list[Line] = []
        self.text: list[str] = []
        self.eof = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            at = time.monotonic()
            text = raw.decode(errors="replace").rstrip("\n")
            try:
                record = json.loads(text)
            except ValueError:
                record = None
            with self._cond:
                self.text.append(text)
                if isinstance(record, dict):
                    self.lines.append(Line(at, record))
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def output(self, last: int = 30) -> str:
        with self._cond:
            return "\n".join(self.text[-last:])

    def index(self, line: Line) -> int:
        """The position of ``line`` (one this process printed) in :attr:`lines`."""
        with self._cond:
            return next(i for i in range(len(self.lines) - 1, -1, -1) if self.lines[i] is line)

    def mark(self) -> int:
        """A position in :attr:`lines`: pass it as ``start`` to look only at what came later."""
        with self._cond:
            return len(self.lines)

    def wait_for(
        self, what: str, match: Callable[[Line], bool], *, timeout: float, start: int = 0
    ) -> Line:
        """The first line from ``start`` on that ``match`` accepts, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if match(line):
                        return line
                seen = max(seen, len(self.lines))
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    why = "exited" if self.eof else f"said nothing of it within {timeout} s"
                    raise Missing(f"{self.name} {why} before {what}; its output:\n{self.output()}")
                self._cond.wait(left)

    def wait_event(self, kind: str, *, timeout: float, start: int = 0) -> Line:
        return self.wait_for(kind, lambda line: line.event == kind, timeout=timeout, start=start)

    def events(self, *kinds: str, start: int = 0) -> list[Line]:
        with self._cond:
            return [line for line in self.lines[start:] if line.event in kinds]

    def send(self, text: str) -> None:
        """A line on the child's stdin (for :mod:`tests.impair`'s control)."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(text.encode() + b"\n")
        self.popen.stdin.flush()

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.pid, signum)

    def wait_exit(self, timeout: float) -> int:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Missing(
                f"{self.name} did not exit within {timeout} s:\n{self.output()}"
            ) from None
        self._reader.join(timeout)
        return code

    def stop(self) -> None:
        """End the child whatever its state (resumed first, so no stopped process lingers)."""
        if self.popen.poll() is None:
            for signum in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(self.pid, signum)
                except ProcessLookupError:
                    break
        with suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        if self.popen.stdin is not None:
            with suppress(OSError):
                self.popen.stdin.close()
        self._reader.join(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


# --- The lab --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """When a fault was injected: the command started at ``begun`` and had taken effect by
    ``done`` (harness clock), so the fault itself began somewhere in between."""

    begun: float
    done: float

    @property
    def at(self) -> float:
        return (self.begun + self.done) / 2


class Lab:
    """Three namespaces (client, router, server) joined by two veth pairs; see the module
    docstring. Use as a context manager: leaving it kills every process started through it
    and deletes the namespaces (and with them their links and iptables rules)."""

    def __init__(self) -> None:
        tag = f"hbf{os.getpid()}x{secrets.token_hex(3)}"
        self.ns = {"client": f"{tag}c", "router": f"{tag}r", "server": f"{tag}s"}
        self.procs: list[Proc] = []
        self._nat_ranges = 0

    def __enter__(self) -> Lab:
        reap_stale_labs()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        c, r, s = self.ns["client"], self.ns["router"], self.ns["server"]
        for ns in (c, r, s):
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "dev", "lo", "up")
        # Each end is created inside its namespace: no name can clash with another lab's.
        for ns, router_end in ((c, "to-c"), (s, "to-s")):
            veth = ["type", "veth", "peer", "name", router_end, "netns", r]
            _run("ip", "link", "add", "name", "to-r", "netns", ns, *veth)
        for ns, dev, addr in (
            (c, "to-r", f"{CLIENT_IP}/24"),
            (r, "to-c", f"{ROUTER_CLIENT_SIDE}/24"),
            (r, "to-s", f"{ROUTER_SERVER_SIDE}/24"),
            (s, "to-r", f"{SERVER_IP}/24"),
        ):
            _run("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            _run("ip", "-n", ns, "link", "set", "dev", dev, "up")
        _run("ip", "-n", c, "route", "add", "default", "via", ROUTER_CLIENT_SIDE)
        _run("ip", "-n", s, "route", "add", "default", "via", ROUTER_SERVER_SIDE)
        # /proc/sys/net is the namespace's own: the router forwards, the others do not.
        _run("ip", "netns", "exec", r, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")

    def close(self) -> None:
        for proc in self.procs:
            proc.stop()
        for ns in self.ns.values():
            _remove_namespace(ns)

    # --- Processes --------------------------------------------------------------------------

    def start(self, where: str, name: str, argv: Sequence[str], *, control: bool = False) -> Proc:
        """Run ``python3 ARGV`` in namespace ``where`` (client, router or server)."""
        command = ["ip", "netns", "exec", self.ns[where], sys.executable, *argv]
        proc = Proc(name, command, control=control)
        self.procs.append(proc)
        return proc

    def hbproto(self, where: str, name: str, *args: str) -> Proc:
        return self.start(where, name, ["-m", "transports", *args, "--json"])

    def serve(self, scheme: str, *options: str, name: str = "server") -> Proc:
        """``hbproto serve`` in the server namespace, once it listens."""
        proc = self.hbproto("server", name, "serve", f"{scheme}://{SERVER_IP}:{PORT}", *options)
        proc.wait_for("listening", lambda line: "local" in line.record, timeout=STARTUP)
        return proc

    def connect(
        self, scheme: str, *options: str, via_proxy: bool = False, name: str = "client"
    ) -> Proc:
        """``hbproto connect`` in the client namespace, to the server or through the proxy."""
        target = f"{ROUTER_CLIENT_SIDE}:{PROXY_PORT}" if via_proxy else f"{SERVER_IP}:{PORT}"
        return self.hbproto("client", name, "connect", f"{scheme}://{target}", *options)

    def proxy(self, scheme: str) -> Impair:
        """:mod:`tests.impair` in the router, relaying the proxy port to the server."""
        relay = [scheme, f"{ROUTER_CLIENT_SIDE}:{PROXY_PORT}", f"{SERVER_IP}:{PORT}"]
        proc = self.start("router", "impair", ["-m", "tests.impair", *relay], control=True)
        proc.wait_for("ready", lambda line: bool(line.get("ready")), timeout=STARTUP)
        return Impair(proc)

    # --- Faults in the router ---------------------------------------------------------------

    def iptables(self, *args: str) -> None:
        _run("ip", "netns", "exec", self.ns["router"], "iptables", "-w", *args)

    def tcp_timeouts(self) -> int:
        """TCP retransmission timeouts so far, at both ends (the kernels' TCPTimeouts)."""
        return sum(_netstat(self.ns[side], "TCPTimeouts") for side in ("client", "server"))

    def _inbound(self, direction: str) -> list[str]:
        """Match forwarded packets going ``to_server``, ``to_client`` or ``both`` ways."""
        return {"to_server": ["-i", "to-c"], "to_client": ["-i", "to-s"], "both": []}[direction]

    @contextmanager
    def _fault(self) -> Iterator[list[Fault]]:
        begun = time.monotonic()
        out: list[Fault] = []
        yield out
        out.append(Fault(begun, time.monotonic()))

    def cut(self, direction: str = "both") -> Fault:
        """Pull the cable: drop every packet the router would forward in ``direction``."""
        with self._fault() as fault:
            self.iptables("-A", "FORWARD", *self._inbound(direction), "-j", "DROP")
        return fault[0]

    def loss(self, probability: float, direction: str = "both") -> Fault:
        """Drop forwarded packets at random, each with ``probability``, independently."""
        with self._fault() as fault:
            random = ["-m", "statistic", "--mode", "random", "--probability", f"{probability}"]
            self.iptables("-A", "FORWARD", *self._inbound(direction), *random, "-j", "DROP")
        return fault[0]

    def mend(self) -> Fault:
        """Remove every cut and loss rule."""
        with self._fault() as fault:
            self.iptables("-F", "FORWARD")
        return fault[0]

    def nat(self, first_port: int) -> Fault:
        """Put a NAT in the router: connections from the client leave it from the router's
        address with a source port in ``first_port`` to ``first_port + 99``. Called again, the
        NAT forgets every mapping (a fresh conntrack zone: no conntrack tool needed) and maps
        the client's next packet to a new port in the new range: a NAT rebinding."""
        with self._fault() as fault:
            self.iptables("-t", "nat", "-F", "POSTROUTING")
            to = f"{ROUTER_SERVER_SIDE}:{first_port}-{first_port + 99}"
            for proto in ("udp", "tcp"):
                snat = ["-o", "to-s", "-p", proto, "-j", "SNAT", "--to-source", to]
                self.iptables("-t", "nat", "-A", "POSTROUTING", *snat)
            if self._nat_ranges:
                # Conntrack entries of the zone in use keep the old mappings: move to a new one.
                self.iptables("-t", "raw", "-F", "PREROUTING")
                zone = ["-j", "CT", "--zone", str(self._nat_ranges)]
                self.iptables("-t", "raw", "-A", "PREROUTING", *zone)
            self._nat_ranges += 1
        return fault[0]


def _netstat(ns: str, name: str) -> int:
    """A TcpExt counter of namespace ``ns`` (``/proc/net/netstat`` is per namespace)."""
    text = _run("ip", "netns", "exec", ns, "cat", "/proc/net/netstat").stdout.splitlines()
    for head, values in zip(text[::2], text[1::2], strict=False):
        if head.startswith("TcpExt:"):
            counters = dict(zip(head.split()[1:], values.split()[1:], strict=True))
            return int(counters.get(name, 0))
    return 0


class Impair:
    """Control of a running :mod:`tests.impair` proxy."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc

    def set(self, **params: Any) -> tuple[Fault, dict[str, Any]]:
        """Change parameters; return when the proxy applied them (to the microsecond: it
        reads the same monotonic clock), and its reply."""
        start = self.proc.mark()
        begun = time.monotonic()
        self.proc.send(json.dumps(params))
        reply = self.proc.wait_for(
            "a control reply",
            lambda line: "ok" in line.record or "error" in line.record,
            timeout=5,
            start=start,
        )
        if "error" in reply.record:
            raise LabError(f"impair: {reply['error']}")
        applied = float(reply["monotonic"])  # the clock this process reads too
        if not begun <= applied <= reply.at:
            raise LabError(f"impair applied its change at {applied}, not in [{begun}, {reply.at}]")
        return Fault(applied, applied), reply.record


def _remove_namespace(ns: str) -> None:
    """Kill whatever still runs in ``ns`` (only processes a lab started run there), delete it."""
    pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        for signum in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(int(pid), signum)
            except (ProcessLookupError, ValueError):
                break
    _run("ip", "netns", "del", ns, check=False)


def reap_stale_labs() -> None:
    """Delete the namespaces of labs whose test process is gone (a run that was killed)."""
    listing = _run("ip", "netns", "list", check=False).stdout
    for entry in listing.splitlines():
        name = entry.split()[0] if entry.split() else ""
        found = _STALE.match(name)
        if found and not Path(f"/proc/{found.group(1)}").exists():
            _remove_namespace(name)


# --- Links and outcomes ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    """How the two peers talk: the transport, and which liveness mechanisms run on it."""

    name: str
    scheme: str
    heartbeat: bool = True
    keepalive: bool = False

    def options(self, interval: float, multiplier: int) -> list[str]:
        """Options for both ``hbproto serve`` and ``hbproto connect``."""
        if not self.heartbeat:
            # R = 0 on both sides: no periodic heartbeats at all [HB-NEG-3]; the kernel alone.
            out = ["--min-rx", "0"]
        else:
            out = ["-i", f"{interval:g}", "-m", str(multiplier)]
        if self.keepalive:
            out += ["--kernel-keepalive", "min"]
        return out


LINKS = {
    "udp": Link("udp", "udp"),
    "tcp": Link("tcp", "tcp"),
    "tcp+ka": Link("tcp+ka", "tcp", keepalive=True),
    "ka": Link("ka", "tcp", heartbeat=False, keepalive=True),
}
"""``tcp+ka``: the heartbeat with kernel keepalive at its minimum beside it (1 s idle, 1 s
interval, 1 probe); ``ka``: kernel keepalive at its minimum alone, for comparison."""

DOWN_EVENTS = ("PeerDown", "SessionClosed")


@dataclass(slots=True)
class Report:
    """How one side learned of the fault: its first PeerDown or SessionClosed after it."""

    event: str
    reason: str
    after: float  # seconds from the fault (its midpoint) to the harness reading the line
    after_bounds: tuple[float, float]  # the same from the fault's begun and done times
    silent_for: float | None
    detection_time: float | None
    detected_by: str | None

    @classmethod
    def of(cls, line: Line, fault: Fault) -> Report:
        if line.event == "PeerDown":
            reason = str(line["reason"])
        else:
            reason = f"closed by {'peer' if line['by_peer'] else 'us'} code {line['code']}"
        return cls(
            event=str(line.event),
            reason=reason,
            after=line.at - fault.at,
            after_bounds=(line.at - fault.done, line.at - fault.begun),
            silent_for=line.get("silent_for"),
            detection_time=line.get("detection_time"),
            detected_by=line.get("detected_by"),
        )


@dataclass(slots=True)
class Outcome:
    """What a scenario saw: per side, the first report after the fault and every down."""

    scenario: str
    link: str
    reports: dict[str, Report | None] = field(default_factory=dict)
    downs: dict[str, list[Line]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)

    def report(self, side: str) -> Report:
        found = self.reports.get(side)
        if found is None:
            raise Missing(
                f"{self.scenario}/{self.link}: the {side} reported nothing; its output:\n"
                f"{self.logs.get(side, '')}"
            )
        return found


# --- Scenarios ------------------------------------------------------------------------------

INTERVAL = 0.05
MULTIPLIER = 3
DT = INTERVAL * MULTIPLIER  # DetectionTime when both sides use INTERVAL and MULTIPLIER
ER = INTERVAL  # ExpectedRemote
WATCH = 3.0  # longest wait for a heartbeat's report: many detection times
KEEPALIVE_WATCH = 5.0  # longest wait for kernel keepalive at 1 s idle, 1 s apart, 1 probe


def _steady(line: Line) -> bool:
    """UP at a configured detection time (below the 1 s slow-start floor) [HB-DET-8]."""
    if line.event not in ("PeerUp", "ParametersChanged"):
        return False
    dt = line["negotiated"]["detection_time"]
    return dt is not None and dt < 1.0


def _up(link: Link) -> Callable[[Line], bool]:
    return _steady if link.heartbeat else (lambda line: line.event == "PeerUp")


def _wait_up(proc: Proc, link: Link, *, start: int = 0) -> Line:
    return proc.wait_for("a steady session", _up(link), timeout=STARTUP, start=start)


def _pair(
    lab: Lab,
    link: Link,
    *,
    server: Sequence[str] = (),
    client: Sequence[str] = (),
    reconnect: bool = False,
    via_proxy: bool = False,
) -> tuple[Proc, Proc]:
    """``hbproto serve`` and ``hbproto connect`` with ``link``'s options (``server`` and
    ``client`` add to or override them), both steadily UP and a heartbeat exchanged."""
    common = link.options(INTERVAL, MULTIPLIER)
    srv = lab.serve(link.scheme, *common, *server)
    cli = lab.connect(
        link.scheme,
        *common,
        *client,
        *(["--reconnect"] if reconnect else []),
        via_proxy=via_proxy,
    )
    up = _wait_up(cli, link)
    _wait_up(srv, link)
    if link.heartbeat:
        cli.wait_event("RttSample", timeout=STARTUP, start=cli.index(up))
    elif link.scheme == "tcp":
        _wait_idle(lab)
    return srv, cli


def _wait_idle(lab: Lab) -> None:
    """Until no TCP data is unacknowledged at either end: kernel keepalive probes only an
    idle connection, and this gives it its best case."""
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        queued = [
            _run(
                "ip", "netns", "exec", lab.ns[side], "ss", "-tnH", "state", "established"
            ).stdout.split()[1:2]
            for side in ("client", "server")
        ]
        if all(q == ["0"] for q in queued):
            return
        time.sleep(0.05)  # polling the kernel's queues
    raise Missing("the TCP connection never went idle")


def _first_down(proc: Proc, start: int, fault: Fault, deadline: float) -> Report | None:
    try:
        line = proc.wait_for(
            "a PeerDown or SessionClosed",
            lambda line: line.event in DOWN_EVENTS,
            timeout=max(0.0, deadline - time.monotonic()),
            start=start,
        )
    except Missing:
        return None
    return Report.of(line, fault)


def _watch(
    outcome: Outcome, sides: dict[str, Proc], marks: dict[str, int], fault: Fault, watch: float
) -> None:
    """Each side's first report after ``fault`` (waiting up to ``watch`` from it)."""
    deadline = fault.done + watch
    for side, proc in sides.items():
        outcome.reports[side] = _first_down(proc, marks[side], fault, deadline)


def _finish(outcome: Outcome, sides: dict[str, Proc], marks: dict[str, int]) -> Outcome:
    for side, proc in sides.items():
        outcome.downs[side] = proc.events("PeerDown", start=marks[side])
        outcome.logs[side] = proc.output()
    return outcome


def _watch_for(link: Link) -> float:
    return WATCH if link.heartbeat else KEEPALIVE_WATCH


def cable(link: Link, direction: str = "both") -> Outcome:
    """Pull the cable (``both`` ways, or only ``to_server`` or ``to_client``)."""
    outcome = Outcome(f"cable-{direction}", link.name)
    with Lab() as lab:
        srv, cli = _pair(lab, link)
        sides = {"client": cli, "server": srv}
        marks = {side: proc.mark() for side, proc in sides.items()}
        fault = lab.cut(direction)
        _watch(outcome, sides, marks, fault, _watch_for(link))
        return _finish(outcome, sides, marks)


def killed(link: Link) -> Outcome:
    """SIGKILL the responder; the initiator reports it."""
    outcome = Outcome("killed", link.name)
    with Lab() as lab:
        srv, cli = _pair(lab, link)
        mark = cli.mark()
        begun = time.monotonic()
        srv.signal(signal.SIGKILL)
        fault = Fault(begun, time.monotonic())
        _watch(outcome, {"client": cli}, {"client": mark}, fault, _watch_for(link))
        return _finish(outcome, {"client": cli}, {"client": mark})


def _back(cli: Proc, start: int, resumed: float, outcome: Outcome, timeout: float) -> None:
    """How the initiator came back after ``resumed``: the same session (UP again), a restart
    of the peer, or a new session (a new TCP connection)."""
    up = cli.wait_event("PeerUp", timeout=timeout, start=start)
    # The core reports a restart right after the PeerUp it concerns [HB-SM-8]: the next line.
    following = cli.wait_for(
        "a line after PeerUp", lambda line: True, timeout=WATCH, start=cli.index(up) + 1
    )
    restarted = following.event == "PeerRestarted"
    outcome.facts["back_after"] = up.at - resumed
    outcome.facts["again"] = bool(up["again"])
    outcome.facts["restart_reported"] = restarted
    if up["again"]:
        outcome.facts["came_back"] = "same session"
    elif restarted:
        outcome.facts["came_back"] = "restart"
    else:
        outcome.facts["came_back"] = "new session"


def hung(link: Link, pause: float) -> Outcome:
    """SIGSTOP the responder for ``pause`` seconds, then SIGCONT (SPEC 8.4)."""
    outcome = Outcome(f"hung-{pause:g}s", link.name)
    with Lab() as lab:
        srv, cli = _pair(lab, link, reconnect=True)
        sides = {"client": cli, "server": srv}
        marks = {side: proc.mark() for side, proc in sides.items()}
        begun = time.monotonic()
        srv.signal(signal.SIGSTOP)
        fault = Fault(begun, time.monotonic())
        outcome.reports["client"] = _first_down(cli, marks["client"], fault, fault.done + pause)
        time.sleep(max(0.0, fault.done + pause - time.monotonic()))  # the hang itself
        resumed = time.monotonic()
        srv.signal(signal.SIGCONT)
        if link.heartbeat:
            _back(cli, marks["client"], resumed, outcome, WATCH + 10.0)
            srv.wait_event("PeerUp", timeout=WATCH, start=marks["server"])
            kinds = (*DOWN_EVENTS, "PeerRestarted", "PeerUp", "LocalStall")
            seen = srv.events(*kinds, start=marks["server"])
            outcome.facts["server_saw"] = sorted({str(line.event) for line in seen})
        return _finish(outcome, sides, marks)


def restarted(link: Link) -> Outcome:
    """SIGKILL the responder and start a new one on the same address at once."""
    outcome = Outcome("restarted", link.name)
    with Lab() as lab:
        srv, cli = _pair(lab, link, reconnect=True)
        mark = cli.mark()
        begun = time.monotonic()
        srv.signal(signal.SIGKILL)
        fault = Fault(begun, time.monotonic())
        srv.wait_exit(5)
        lab.serve(link.scheme, *link.options(INTERVAL, MULTIPLIER), name="server2")
        outcome.reports["client"] = _first_down(cli, mark, fault, fault.done + _watch_for(link))
        _back(cli, mark, fault.at, outcome, WATCH + 10.0)
        return _finish(outcome, {"client": cli}, {"client": mark})


def loss(link: Link, probability: float, multiplier: int, duration: float) -> Outcome:
    """Random loss both ways for ``duration`` seconds, with ``multiplier`` on both sides:
    every PeerDown is a false positive (the peer is alive and the path mostly works). Over
    TCP the kernels' retransmission timeouts in the same time are counted too."""
    outcome = Outcome(f"loss-{probability:.0%}-x{multiplier}", link.name)
    with Lab() as lab:
        timing = ["-m", str(multiplier)]
        srv, cli = _pair(lab, link, server=timing, client=timing, reconnect=True)
        sides = {"client": cli, "server": srv}
        marks = {side: proc.mark() for side, proc in sides.items()}
        timeouts = lab.tcp_timeouts()
        lab.loss(probability)
        time.sleep(duration)  # the run itself: loss for this long
        lab.mend()
        downs = [len(proc.events("PeerDown", start=marks[side])) for side, proc in sides.items()]
        outcome.facts.update(
            duration=duration,
            intervals=duration / INTERVAL,
            tcp_timeouts=lab.tcp_timeouts() - timeouts,
            false_downs=sum(downs),
        )
        return _finish(outcome, sides, marks)


def _clock_offset(proc: Proc) -> float:
    """Harness time minus the child's ``t`` (its own clock), from the line read soonest."""
    return min(line.at - float(line["t"]) for line in proc.lines if "t" in line.record)


def _steady_time(proc: Proc, start: float, end: float) -> float:
    """Seconds the child spent UP at its configured detection time within [start, end) of
    its own clock: the time during which a false PeerDown could happen."""
    total = 0.0
    since: float | None = None
    for line in list(proc.lines):
        t = line.get("t")
        if t is None or line.event is None:
            continue
        if _steady(line):
            since = since if since is not None else float(t)
        elif line.event in (*DOWN_EVENTS, "PeerUp", "ConnectionEnded") and since is not None:
            total += max(0.0, min(float(t), end) - max(since, start))
            since = None
    if since is not None:
        total += max(0.0, end - max(since, start))
    return total


def loss_rate(link: Link, probability: float, multiplier: int, duration: float) -> Outcome:
    """The false-positive rate under random loss, against theory.

    The responder sets the pace and asks for no periodic heartbeats (R = 0), so the
    initiator hears exactly one stream: the responder's HEARTBEATs, every J x T with J uniform
    in [0.75, 1] ([0.75, 0.9] with Mult 1) [HB-TX-1]. Its DetectionTime is ``multiplier`` x T.
    For a multiplier of 3 or less, the gap after one received HEARTBEAT reaches
    DetectionTime exactly when the next ``multiplier`` are lost (``multiplier`` + 1 draws of J
    add up to more than ``multiplier``, ``multiplier`` draws to no more), so each HEARTBEAT
    received is followed by a false PeerDown with probability p^multiplier. The initiator
    advertises a multiplier of 15, so that the responder's own detection (through ACKs to its
    HEARTBEATs) stays out of the way.
    """
    outcome = Outcome(f"loss-rate-{probability:.0%}-x{multiplier}", link.name)
    with Lab() as lab:
        _, cli = _pair(
            lab,
            link,
            server=["--min-rx", "0", "-m", str(multiplier)],
            client=["-m", "15"],
            reconnect=True,
        )
        mark = cli.mark()
        fault = lab.loss(probability)
        time.sleep(duration)  # the run itself: loss for this long
        end = lab.mend()
        offset = _clock_offset(cli)
        steady = _steady_time(cli, fault.done - offset, end.begun - offset)
        downs = [
            line
            for line in cli.events("PeerDown", start=mark)
            if fault.done <= line.at <= end.begun + ER
        ]
        mean_gap = INTERVAL * (0.825 if multiplier == 1 else 0.875)
        received = steady / mean_gap * (1 - probability)
        outcome.facts.update(
            probability=probability,
            multiplier=multiplier,
            duration=duration,
            steady_time=steady,
            received=received,
            false_downs=len(downs),
            theory_per_heartbeat=probability**multiplier,
            expected=received * probability**multiplier,
        )
        outcome.downs["client"] = downs
        outcome.logs["client"] = cli.output()
        return outcome


def rebind(link: Link) -> Outcome:
    """A NAT in the router maps the initiator to a new source port mid-session."""
    outcome = Outcome("nat-rebinding", link.name)
    with Lab() as lab:
        lab.nat(41000)
        srv, cli = _pair(lab, link, reconnect=True)
        sides = {"client": cli, "server": srv}
        marks = {side: proc.mark() for side, proc in sides.items()}
        outcome.facts["peer_before"] = _server_peer(srv, 0)
        session = cli.events("PeerUp")[-1]["session"]
        fault = lab.nat(42000)
        _watch(outcome, sides, marks, fault, 1.0 if link.scheme == "udp" else WATCH)
        if link.scheme == "udp":
            time.sleep(max(0.0, fault.done + 1.0 - time.monotonic()))  # watch for 1 s
            outcome.facts["same_session"] = all(
                line["session"] == session
                for line in cli.events("RttSample", start=marks["client"])
            )
        else:
            _back(cli, marks["client"], fault.at, outcome, WATCH + 10.0)
            srv.wait_event("PeerUp", timeout=WATCH, start=marks["server"])
        outcome.facts["peer_after"] = _server_peer(srv, marks["server"], last=True)
        return _finish(outcome, sides, marks)


def _server_peer(srv: Proc, start: int, *, last: bool = False) -> str | None:
    """The peer address the responder names in its events (its verified address)."""
    peers = [line["peer"] for line in srv.lines[start:] if "peer" in line.record]
    if not peers:
        return None
    return str(peers[-1] if last else peers[0])


def stall(link: Link, peers: int, pause: float) -> Outcome:
    """SIGSTOP the responder itself, the monitor of ``peers`` sessions, for ``pause`` seconds:
    longer than its DetectionTime, shorter than its peers' (SPEC 9.6)."""
    outcome = Outcome("local-stall", link.name)
    with Lab() as lab:
        common = link.options(INTERVAL, MULTIPLIER)
        # Its peers wait 15 x T before they judge it; it judges them after 3 x T.
        srv = lab.serve(link.scheme, *common, "-m", "15")
        clients = [lab.connect(link.scheme, *common, name=f"client{i}") for i in range(peers)]
        for cli in clients:
            _wait_up(cli, link)
        sessions: set[int] = set()

        def all_steady(line: Line) -> bool:
            if _steady(line):
                sessions.add(line["session"])
            return len(sessions) == peers

        srv.wait_for(f"{peers} steady sessions", all_steady, timeout=STARTUP)
        sides = {"server": srv} | {cli.name: cli for cli in clients}
        marks = {side: proc.mark() for side, proc in sides.items()}
        begun = time.monotonic()
        srv.signal(signal.SIGSTOP)
        fault = Fault(begun, time.monotonic())
        time.sleep(pause)  # the stall itself
        srv.signal(signal.SIGCONT)
        time.sleep(10 * DT)  # long enough for any false PeerDown to show
        stalls = srv.events("LocalStall", start=marks["server"])
        outcome.facts["stalls"] = len(stalls)
        outcome.facts["spared"] = sum(int(line["sessions_spared"]) for line in stalls)
        outcome.facts["late_by"] = max((float(line["late_by"]) for line in stalls), default=None)
        outcome.facts["pause"] = pause
        outcome.facts["peers"] = peers
        outcome.facts["fault_at"] = fault.at
        return _finish(outcome, sides, marks)


def spike(link: Link, delay: float, hold: float = 1.0) -> Outcome:
    """Add ``delay`` to every packet both ways for ``hold`` seconds (a queue building up)."""
    outcome = Outcome(f"delay-spike-{delay * 1000:.0f}ms", link.name)
    with Lab() as lab:
        proxy = lab.proxy(link.scheme)
        srv, cli = _pair(lab, link, reconnect=True, via_proxy=True)
        sides = {"client": cli, "server": srv}
        marks = {side: proc.mark() for side, proc in sides.items()}
        fault, _ = proxy.set(delay=delay)
        _watch(outcome, sides, marks, fault, hold)
        time.sleep(max(0.0, fault.done + hold - time.monotonic()))  # the spike itself
        proxy.set(delay=0)
        if any(outcome.reports.values()):
            _back(cli, marks["client"], fault.at, outcome, WATCH + 10.0)
        else:
            time.sleep(10 * DT)  # the queue drains: any PeerDown would show by now
        return _finish(outcome, sides, marks)


def reorder(link: Link, *, above: bool, hold: float = 3.0) -> Outcome:
    """Reorder packets for ``hold`` seconds: some held back less than DetectionTime - T
    (``above`` false: they still arrive in time), or every 4th held 2 x DetectionTime.
    Over UDP later packets overtake the held ones (and one in ten is duplicated); TCP's byte
    stream cannot be reordered, so there a held segment holds back all that follows it."""
    outcome = Outcome(f"reorder-{'above' if above else 'below'}", link.name)
    with Lab() as lab:
        proxy = lab.proxy(link.scheme)
        srv, cli = _pair(lab, link, reconnect=True, via_proxy=True)
        sides = {"client": cli, "server": srv}
        marks = {side: proc.mark() for side, proc in sides.items()}
        if above:
            params = {"reorder_every": 4, "reorder_by": 2 * DT}
        else:
            # Each direction carries about two frames per interval: a packet held back this
            # long is overtaken, and the longest gap, an interval plus 45 ms, stays well short.
            params = {"reorder": 0.3, "reorder_by": 0.8 * INTERVAL, "jitter": 0.005}
            if link.scheme == "udp":
                params["duplicate"] = 0.1
        fault, _ = proxy.set(**params)
        _watch(outcome, sides, marks, fault, hold)
        time.sleep(max(0.0, fault.done + hold - time.monotonic()))  # the impairment itself
        _, reply = proxy.set(reset=True)
        outcome.facts["proxy"] = reply["counts"]
        return _finish(outcome, sides, marks)
