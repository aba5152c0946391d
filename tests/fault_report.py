"""The fault measurements table: each fault of tests/test_faults.py run a few times, and how
long each mechanism took to report it, over UDP with hbproto, over TCP with hbproto, and over
TCP with kernel keepalive alone at its minimum (1 s idle, 1 s apart, 1 probe).

::

    python3 -m tests.fault_report [--runs 3]

Needs what the tests need: Linux, root, ``ip`` and ``iptables``. Prints Markdown tables (the
ones in docs/reliability.md). Times are from the fault to the report, read by the harness.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests import netlab
from tests.netlab import DT, INTERVAL, LINKS, MULTIPLIER, Link, Outcome

COLUMNS = [("UDP, hbproto", "udp"), ("TCP, hbproto", "tcp"), ("TCP, keepalive alone", "ka")]
HANG_WATCH = 5.0  # how long keepalive alone is given to notice a hung peer
Cell = float | str | None  # seconds, a word, or nothing reported


@dataclass(frozen=True)
class Row:
    """One fault: how to run it on a link, and what to read from its outcome."""

    name: str
    run: Callable[[Link], Outcome]
    read: Callable[[Outcome], Cell]
    links: tuple[str, ...] = ("udp", "tcp", "ka")
    shares: str = ""  # rows that name the same run read the same outcomes


def first(side: str) -> Callable[[Outcome], Cell]:
    def read(outcome: Outcome) -> Cell:
        report = outcome.reports.get(side)
        if report is None:
            return None
        return report.after

    return read


def back(outcome: Outcome) -> Cell:
    value = outcome.facts.get("back_after")
    return None if value is None else float(value)


def rebinding(outcome: Outcome) -> Cell:
    if outcome.link == "udp":
        downs = sum(len(lines) for lines in outcome.downs.values())
        return "session kept" if downs == 0 and outcome.facts["same_session"] else "LOST"
    return first("client")(outcome)


def stall_downs(outcome: Outcome) -> Cell:
    downs = sum(len(lines) for lines in outcome.downs.values())
    return f"{downs} false DOWN, {outcome.facts['spared']} spared"


def hung_for(link: Link) -> Outcome:
    return netlab.hung(link, 1.0 if link.heartbeat else HANG_WATCH)


ROWS = [
    Row("Cable pulled, both ways", lambda link: netlab.cable(link, "both"), first("client")),
    Row(
        "Cable pulled, client to server only: the server",
        lambda link: netlab.cable(link, "to_server"),
        first("server"),
        shares="one-way",
    ),
    Row(
        "Cable pulled, client to server only: the client",
        lambda link: netlab.cable(link, "to_server"),
        first("client"),
        shares="one-way",
    ),
    Row("Peer killed (SIGKILL)", netlab.killed, first("client")),
    Row("Peer hung (SIGSTOP)", hung_for, first("client")),
    Row(
        "Peer hung 1 s, then SIGCONT: back UP after",
        lambda link: netlab.hung(link, 1.0),
        back,
        links=("udp", "tcp"),
    ),
    Row("Peer restarted: back UP after", netlab.restarted, back, links=("udp", "tcp")),
    Row(
        f"Delay spike of {2 * DT * 1000:.0f} ms",
        lambda link: netlab.spike(link, 2 * DT),
        first("client"),
        links=("udp", "tcp"),
    ),
    Row("NAT rebinding", netlab.rebind, rebinding),
    Row(
        "Responder stalled 0.5 s with 3 peers",
        lambda link: netlab.stall(link, peers=3, pause=0.5),
        stall_downs,
        links=("udp", "tcp"),
    ),
]


def summarise(cells: list[Cell], watch: float) -> str:
    numbers = [c for c in cells if isinstance(c, float)]
    words = sorted({c for c in cells if isinstance(c, str)})
    if words:
        return " / ".join(words)
    if not numbers:
        return f"never (watched {watch:g} s)"
    text = f"{statistics.median(numbers) * 1000:.0f} ms"
    if len(numbers) > 1:
        text += f" ({min(numbers) * 1000:.0f}-{max(numbers) * 1000:.0f})"
    if len(numbers) < len(cells):
        text += f", {len(cells) - len(numbers)} of {len(cells)} never"
    return text


def detection_table(runs: int) -> list[str]:
    lines = [
        "| Fault | " + " | ".join(title for title, _ in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    done: dict[tuple[str, str], list[Outcome]] = {}
    for row in ROWS:
        cells = []
        for _, name in COLUMNS:
            if name not in row.links:
                cells.append("n/a")
                continue
            link = LINKS[name]
            watch = HANG_WATCH if not link.heartbeat else netlab.WATCH
            key = (row.shares or row.name, name)
            if key not in done:
                done[key] = [row.run(link) for _ in range(runs)]
            values = [row.read(outcome) for outcome in done[key]]
            cells.append(summarise(values, watch))
            print(f"  {row.name} / {name}: {cells[-1]}", file=sys.stderr, flush=True)
        lines.append(f"| {row.name} | " + " | ".join(cells) + " |")
    return lines


def loss_table(runs: int, duration: float) -> list[str]:
    """False PeerDowns under random loss at a small multiplier, against p^k per HEARTBEAT."""
    lines = [
        "| Loss | k | Link | Time UP | HEARTBEATs received (n) | False DOWN measured | "
        "Theory: n x p^k |",
        "|---|---|---|---|---|---|---|",
    ]
    for probability, multiplier in ((0.1, 1), (0.3, 3)):
        for name in ("udp", "tcp"):
            up = received = downs = expected = 0.0
            for _ in range(runs):
                facts = netlab.loss_rate(LINKS[name], probability, multiplier, duration).facts
                up += facts["steady_time"]
                received += facts["received"]
                downs += facts["false_downs"]
                expected += facts["expected"]
            lines.append(
                f"| {probability:.0%} | {multiplier} | {name} | {up:.1f} s | {received:.0f} | "
                f"{downs:.0f} | {expected:.1f} |"
            )
            print(f"  loss {lines[-1]}", file=sys.stderr, flush=True)
    return lines


def covered_table(duration: float) -> list[str]:
    """False PeerDowns under random loss with a covering multiplier, and keepalive alone."""
    lines = [
        "| Loss | Link | k | Run | False DOWN | TCP retransmission timeouts |",
        "|---|---|---|---|---|---|",
    ]
    for probability, multiplier in ((0.1, 6), (0.3, 12)):
        for name in ("udp", "tcp", "ka"):
            outcome = netlab.loss(LINKS[name], probability, multiplier, duration)
            k = str(multiplier) if LINKS[name].heartbeat else "-"
            timeouts = outcome.facts["tcp_timeouts"] if name != "udp" else "-"
            lines.append(
                f"| {probability:.0%} | {name} | {k} | {duration:g} s | "
                f"{outcome.facts['false_downs']} | {timeouts} |"
            )
            print(f"  covered {lines[-1]}", file=sys.stderr, flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.fault_report", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs of each fault (default 3)")
    parser.add_argument(
        "--loss-run", type=float, default=20.0, help="seconds of loss per run (default 20)"
    )
    args = parser.parse_args(argv)
    if not netlab.can_make_labs():
        parser.exit(2, "fault_report: needs Linux, root, ip and iptables\n")
    started = time.monotonic()
    out = [
        f"Heartbeat every {INTERVAL * 1000:.0f} ms, multiplier {MULTIPLIER}: DetectionTime "
        f"{DT * 1000:.0f} ms, window [{DT * 1000:.0f}, {(DT + INTERVAL) * 1000:.0f}] ms after "
        "the last frame. Keepalive alone: 1 s idle, 1 s apart, 1 probe, no heartbeat.",
        f"Machine: {platform.machine()}, {_cpu()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}; {args.runs} runs per cell, median (min-max).",
        "",
        *detection_table(args.runs),
        "",
        *loss_table(args.runs, args.loss_run),
        "",
        *covered_table(args.loss_run),
        "",
        f"({time.monotonic() - started:.0f} s)",
    ]
    print("\n".join(out))
    return 0


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            names = [
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            ]
    except OSError:
        return "unknown CPU"
    return f"{len(names)} x {names[0]}" if names else "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
