"""What the benchmark sections share: the machine's description, tables, percentiles, CPU time
of other processes, and the JSON-lines control channel between a section and its workers."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import select
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine() -> dict[str, Any]:
    """CPU model, cores, kernel and Python, for the top of every report."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "load": os.getloadavg(),
    }


def describe_machine() -> str:
    m = machine()
    load = ", ".join(f"{x:.2f}" for x in m["load"])
    return (
        f"machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']};"
        f" load average {load}"
    )


def table(header: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> str:
    """A plain-text table: left-aligned first column, right-aligned others."""
    cells = [[str(c) for c in header]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    out = [title] if title else []
    out.append(line(cells[0]))
    out.append("-" * len(out[-1]))
    out.extend(line(r) for r in cells[1:])
    return "\n".join(out)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, from /proc (10 ms resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def run_delay(pid: int) -> float:
    """Seconds a process has spent runnable but waiting for a CPU (/proc/PID/schedstat): time
    other processes took from it. A benchmark whose server waited much was disturbed."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def pinned(cpus: str | None, argv: list[str]) -> list[str]:
    """``argv`` under ``taskset -c cpus`` when pinning is asked for and possible."""
    if cpus is None or sys.platform != "linux":
        return argv
    return ["taskset", "-c", cpus, *argv]


class Worker:
    """A child process spoken to in JSON lines: one command in on stdin, one reply out."""

    def __init__(self, argv: list[str], name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, **command: Any) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write((json.dumps(command) + "\n").encode())
        stdin.flush()

    def reply(self, timeout: float) -> dict[str, Any]:
        """The next JSON line from the child; RuntimeError with its stderr if none comes."""
        stdout = self.proc.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline() if ready else b""
        if not line:
            self.stop()
            err = self._stderr()
            raise RuntimeError(f"{self.name}: no reply within {timeout} s; stderr:\n{err}")
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, timeout: float, **command: Any) -> dict[str, Any]:
        self.send(**command)
        return self.reply(timeout)

    def _stderr(self) -> str:
        stderr = self.proc.stderr
        if stderr is None:
            return ""
        try:
            return stderr.read().decode(errors="replace")[-4000:]
        except (OSError, ValueError):
            return ""

    def stop(self) -> None:
        """End the child (it is a benchmark worker: nothing to close gracefully)."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
