"""Section 6: Python alternatives from PyPI, installed in a throwaway venv, measured beside hbproto.

Usage::

    python3 -m bench peers            # needs PyPI; about three minutes
    python3 -m bench peers --quick    # one interval, one trial

* aiobfd 0.2, an asyncio BFD daemon (one process per local address, one session per remote).
  K pairs of daemons on 127.0.2.x addresses, and beside them, in the same run, K ``hbproto
  connect`` processes against one ``hbproto serve``, at the same interval x 3. Measured: the
  CPU of one process keeping one session (over a steady period), down events while nothing
  failed (false positives), and the time from SIGSTOP of the far end to the monitor's down line,
  timed on the line's arrival for both.
* phi-accrual-failure-detector 0.3.3, a port of Akka's phi accrual detector (a library, no
  network). Fed heartbeats in simulated time at an interval x U(0.75, 1.0), like an hbproto
  sender, then silence: when does it first say "not available" at Akka's defaults (threshold 8,
  min_std_deviation 100 ms, no acceptable pause)? And its cost per heartbeat, beside hbproto's
  own phi bookkeeping (``hbproto.timers``), which runs on every frame.

Each package is installed as published; when it does not run as published, the error is shown
and the smallest change that makes it run is made (and said). ``BENCH_PEERS_VENV=DIR`` reuses a
venv instead of making a throwaway one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.common import ROOT, cpu_seconds, percentile, table
from hbproto.timers import interarrival_seed, interarrival_update, phi

MULT = 3
AIOBFD = "aiobfd==0.2"
PHI = "phi-accrual-failure-detector==0.3.3"


class Lines:
    """A child's output lines, each stamped (CLOCK_MONOTONIC) when it arrived."""

    def __init__(self, proc: subprocess.Popen[bytes], stream: IO[bytes]) -> None:
        self.proc = proc
        self.lines: list[tuple[float, str]] = []
        thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip()))

    def find(self, pattern: str, after: float = 0.0) -> list[float]:
        return [t for t, line in self.lines if t >= after and re.search(pattern, line)]

    def find_line(self, pattern: str) -> str:
        return next(line for _, line in self.lines if re.search(pattern, line))

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines[-30:])


def spawn(argv: list[str], stream: str = "stderr") -> Lines:
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
        stderr=subprocess.PIPE if stream == "stderr" else subprocess.DEVNULL,
        cwd=ROOT,
    )
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    assert pipe is not None
    return Lines(proc, pipe)


def end(children: list[Lines]) -> None:
    for c in children:
        if c.proc.poll() is None:
            c.proc.kill()
        c.proc.wait(timeout=10)


def wait_for(children: list[Lines], pattern: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(c.find(pattern) for c in children):
            return True
        time.sleep(0.05)
    return False


# --- Installing ---------------------------------------------------------------------------


@dataclass
class Install:
    package: str
    installed: bool
    runs_as_published: bool
    error: str = ""
    change: str = ""


def pip(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def last_error(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "error" in ln]
    return (errors or lines or ["(no output)"])[-1].strip()


# --- aiobfd -------------------------------------------------------------------------------


@dataclass
class Daemons:
    name: str
    interval: float
    sessions: int
    cpu_per_process: list[float] = field(default_factory=list)
    false_downs: int = 0
    latencies: list[float] = field(default_factory=list)
    missed: int = 0


def _record_detections(result: Daemons, monitors: list[Lines], pattern: str, since: float) -> None:
    """The time each monitor logged ``pattern`` after ``since``, or a miss."""
    for m in monitors:
        seen = m.find(pattern, since)
        if seen:
            result.latencies.append(seen[0] - since)
        else:
            result.missed += 1


def aiobfd_pairs(venv: Path, interval: float, pairs: int, steady: float) -> Daemons:
    result = Daemons("aiobfd 0.2", interval, pairs)
    ms = str(round(interval * 1000))
    python = str(venv / "bin" / "python")
    monitors, far = [], []
    for j in range(pairs):
        a, b = f"127.0.2.{2 * j + 1}", f"127.0.2.{2 * j + 2}"
        common = ["-t", ms, "-r", ms, "-m", str(MULT)]
        monitors.append(spawn([python, "-m", "aiobfd", a, b, *common]))
        far.append(spawn([python, "-m", "aiobfd", b, a, *common]))
    try:
        if not wait_for(monitors, "going to UP state", 15):
            raise RuntimeError("aiobfd sessions did not come up:\n" + monitors[0].text())
        time.sleep(2 * interval * MULT + 1.0)  # past the poll that speeds it up
        began = time.monotonic()
        cpu0 = [cpu_seconds(m.proc.pid) for m in monitors]
        time.sleep(steady)
        cpu1 = [cpu_seconds(m.proc.pid) for m in monitors]
        spent = time.monotonic() - began
        result.cpu_per_process = [(b - a) / spent for a, b in zip(cpu0, cpu1, strict=True)]
        result.false_downs = sum(len(c.find("going DOWN", began)) for c in monitors + far)
        failed_at = time.monotonic()
        for f in far:
            f.proc.send_signal(signal.SIGSTOP)
        time.sleep(MULT * interval + interval + 2.0)
        _record_detections(result, monitors, "Detected BFD remote .* going DOWN", failed_at)
    finally:
        end(monitors + far)
    return result


def hbproto_pairs(interval: float, sessions: int, steady: float) -> Daemons:
    result = Daemons("hbproto", interval, sessions)
    common = ["-i", str(interval), "-m", str(MULT)]
    server = spawn(
        [sys.executable, "-m", "transports", "serve", "udp://127.0.0.1:0", *common, "--json"],
        "stdout",
    )
    monitors: list[Lines] = []
    try:
        if not wait_for([server], '"local"', 15):
            raise RuntimeError("hbproto serve did not start:\n" + server.text())
        port = json.loads(server.find_line('"local"'))["local"][1]
        for _ in range(sessions):
            monitors.append(
                spawn(
                    [
                        sys.executable,
                        "-m",
                        "transports",
                        "connect",
                        f"udp://127.0.0.1:{port}",
                        *common,
                        "--json",
                    ],
                    "stdout",
                )
            )
        if not wait_for(monitors, '"PeerUp"', 15):
            raise RuntimeError("hbproto sessions did not come up:\n" + monitors[0].text())
        time.sleep(2 * interval * MULT + 1.0)
        began = time.monotonic()
        cpu0 = [cpu_seconds(m.proc.pid) for m in monitors]
        time.sleep(steady)
        cpu1 = [cpu_seconds(m.proc.pid) for m in monitors]
        spent = time.monotonic() - began
        result.cpu_per_process = [(b - a) / spent for a, b in zip(cpu0, cpu1, strict=True)]
        result.false_downs = sum(len(c.find('"PeerDown"', began)) for c in [*monitors, server])
        failed_at = time.monotonic()
        server.proc.send_signal(signal.SIGSTOP)
        time.sleep(MULT * interval + interval + 2.0)
        _record_detections(result, monitors, '"PeerDown"', failed_at)
    finally:
        end([*monitors, server])
    return result


# --- phi accrual --------------------------------------------------------------------------

PHI_SCRIPT = r"""
import json, random, sys, timeit
sys.path.insert(0, sys.argv[1])
from phi_accrual_failure_detector import PhiAccrualFailureDetector

class Simulated(PhiAccrualFailureDetector):
    now = 0.0
    @classmethod
    def _get_time(cls):
        return round(cls.now)

def detector():
    return Simulated(threshold=8.0, max_sample_size=1000, min_std_deviation_ms=100,
                     acceptable_heartbeat_pause_ms=0, first_heartbeat_estimate_ms=1000)

out = {"latency_ms": {}, "per_heartbeat_us": None}
rng = random.Random(1)
for interval_ms in json.loads(sys.argv[2]):
    samples = []
    for trial in range(20):
        d = detector()
        Simulated.now = 0.0
        for _ in range(200):
            Simulated.now += interval_ms * rng.uniform(0.75, 1.0)
            d.heartbeat()
        last = Simulated.now
        while d.is_available():
            Simulated.now += 1.0
        samples.append(Simulated.now - last)
    out["latency_ms"][str(interval_ms)] = samples
d = detector()
def beat():
    Simulated.now += 100.0
    d.heartbeat()
n = 20000
out["per_heartbeat_us"] = min(timeit.repeat(beat, number=n, repeat=5)) / n * 1e6
out["per_check_us"] = min(timeit.repeat(d.is_available, number=n, repeat=5)) / n * 1e6
print(json.dumps(out))
"""


@dataclass
class PhiResult:
    latency_ms: dict[str, list[float]]
    per_heartbeat_us: float
    per_check_us: float
    hbproto_per_frame_us: float
    hbproto_phi_us: float


def hbproto_phi_cost() -> tuple[float, float]:
    """hbproto's suspicion bookkeeping per frame (interarrival_update) and one phi()."""
    mean, var = interarrival_seed(0.1)
    n = 200_000
    update = (
        min(timeit.repeat(lambda: interarrival_update(mean, var, 0.09), number=n, repeat=5))
        / n
        * 1e6
    )
    check = min(timeit.repeat(lambda: phi(mean, var, 0.2), number=n, repeat=5)) / n * 1e6
    return update, check


def phi_accrual(venv: Path, intervals_ms: list[int]) -> tuple[Install, PhiResult | None]:
    install = Install(PHI, installed=False, runs_as_published=False)
    done = pip(venv, PHI)
    if done.returncode != 0:
        install.error = last_error(done.stdout + done.stderr)
        return install, None
    install.installed = True
    python = str(venv / "bin" / "python")
    probe = subprocess.run(
        [python, "-c", "import phi_accrual_failure_detector"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode == 0:
        install.runs_as_published = True
        folder = ""
    else:
        install.error = last_error(probe.stderr)
        site = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        folder = str(Path(site) / "phi-accrual-failure-detector")
        install.change = f"added its install folder {Path(folder).name}/ to sys.path"
    run = subprocess.run(
        [python, "-c", PHI_SCRIPT, folder, json.dumps(intervals_ms)],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        install.error += " | " + last_error(run.stderr)
        return install, None
    got = json.loads(run.stdout)
    update, check = hbproto_phi_cost()
    return install, PhiResult(
        got["latency_ms"], got["per_heartbeat_us"], got["per_check_us"], update, check
    )


# --- Running ------------------------------------------------------------------------------


def make_venv() -> tuple[Path, bool]:
    reuse = os.environ.get("BENCH_PEERS_VENV")
    if reuse:
        path = Path(reuse)
        if not (path / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        return path, False
    path = Path(tempfile.mkdtemp(prefix="hbbench-peers-"))
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path, True


def aiobfd_install(venv: Path) -> Install:
    install = Install(AIOBFD, installed=False, runs_as_published=False)
    done = pip(venv, AIOBFD)
    if done.returncode != 0:
        install.error = last_error(done.stdout + done.stderr)
        return install
    install.installed = True
    # Run a pair for two seconds as published: does a session come up?
    python = str(venv / "bin" / "python")
    pair = [
        spawn([python, "-m", "aiobfd", "127.0.2.101", "127.0.2.102", "-t", "100", "-r", "100"]),
        spawn([python, "-m", "aiobfd", "127.0.2.102", "127.0.2.101", "-t", "100", "-r", "100"]),
    ]
    try:
        up = wait_for(pair, "going to UP state", 4)
    finally:
        end(pair)
    if up:
        install.runs_as_published = True
        return install
    install.error = last_error(pair[0].text())
    if "BitString" in install.error:
        fixed = pip(venv, "bitstring<4")
        if fixed.returncode == 0:
            install.change = "installed bitstring<4 (3.x, the series aiobfd 0.2 was written for)"
        else:
            install.error += " | bitstring<4: " + last_error(fixed.stdout + fixed.stderr)
    return install


def run(quick: bool) -> tuple[dict[str, Any], str]:
    intervals = (0.1,) if quick else (0.02, 0.1, 1.0)
    pairs, trials, steady = (2, 1, 2.0) if quick else (3, 3, 5.0)
    venv, throwaway = make_venv()
    try:
        bfd = aiobfd_install(venv)
        daemons: list[Daemons] = []
        if bfd.installed and (bfd.runs_as_published or bfd.change):
            for interval in intervals:
                for make in ("aiobfd", "hbproto"):
                    merged: Daemons | None = None
                    for _ in range(trials):
                        got = (
                            aiobfd_pairs(venv, interval, pairs, steady)
                            if make == "aiobfd"
                            else hbproto_pairs(interval, pairs, steady)
                        )
                        if merged is None:
                            merged = got
                        else:
                            merged.cpu_per_process += got.cpu_per_process
                            merged.false_downs += got.false_downs
                            merged.latencies += got.latencies
                            merged.missed += got.missed
                    assert merged is not None
                    daemons.append(merged)
                    print(f"  {make} at {interval:g} s measured", file=sys.stderr, flush=True)
        phi_install, phi_result = phi_accrual(venv, [round(i * 1000) for i in intervals])
    finally:
        if throwaway:
            shutil.rmtree(venv, ignore_errors=True)
    data = {
        "installs": [asdict(bfd), asdict(phi_install)],
        "daemons": [asdict(d) for d in daemons],
        "phi": asdict(phi_result) if phi_result else None,
    }
    return data, report([bfd, phi_install], daemons, phi_result)


def report(installs: list[Install], daemons: list[Daemons], phi_result: PhiResult | None) -> str:
    out = [
        table(
            ["package", "installs", "runs as published", "error as published", "change made"],
            [
                (
                    i.package,
                    "yes" if i.installed else "NO",
                    "yes" if i.runs_as_published else "no",
                    i.error or "-",
                    i.change or "-",
                )
                for i in installs
            ],
            title="Installing into a throwaway venv (same Python as the rest of the run)",
        )
    ]
    if daemons:
        hb = {d.interval: d for d in daemons if d.name == "hbproto"}
        rows = []
        for d in daemons:
            cpu = percentile(d.cpu_per_process, 50)
            base = percentile(hb[d.interval].cpu_per_process, 50) if d.interval in hb else cpu
            lat = [x * 1e3 for x in d.latencies]
            rows.append(
                (
                    d.name,
                    f"{d.interval * 1e3:g} ms x {MULT}",
                    f"{cpu:.1%}",
                    f"{cpu / base:.1f}x" if base else "-",
                    d.false_downs,
                    f"{len(lat)}/{len(lat) + d.missed}",
                    percentile(lat, 50),
                    max(lat) if lat else float("nan"),
                )
            )
        out += [
            "",
            table(
                [
                    "implementation",
                    "setting",
                    "CPU/process",
                    "/hbproto",
                    "false downs",
                    "caught",
                    "p50 ms",
                    "max ms",
                ],
                rows,
                title="One session per process over UDP on loopback; far end SIGSTOPped",
            ),
            "CPU/process: median over the monitoring processes of one core's share in a steady",
            "period. false downs: down lines from either end while nothing had failed. Times are",
            "the arrival of the monitor's down line minus the SIGSTOP, the same way for both.",
        ]
    if phi_result is not None:
        phi_rows: list[tuple[object, ...]] = []
        for interval, samples in phi_result.latency_ms.items():
            phi_rows.append(
                (
                    f"{interval} ms",
                    percentile(samples, 50),
                    max(samples),
                    MULT * float(interval),
                    f"{percentile(samples, 50) / (MULT * float(interval)):.1f}x",
                )
            )
        out += [
            "",
            table(
                ["heartbeat interval", "phi>=8 after ms (p50)", "max", "hbproto x3 ms", "ratio"],
                phi_rows,
                title="phi-accrual-failure-detector: silence until 'not available', simulated",
            ),
            "Akka's defaults: threshold 8, min_std_deviation 100 ms (which dominates at short",
            "intervals), acceptable pause 0; 200 heartbeats of history, 20 trials each.",
            f"cost per heartbeat: {phi_result.per_heartbeat_us:.1f} us, per check"
            f" {phi_result.per_check_us:.1f} us; hbproto's per-frame phi bookkeeping"
            f" {phi_result.hbproto_per_frame_us:.2f} us, one phi() {phi_result.hbproto_phi_us:.2f}"
            f" us ({phi_result.per_heartbeat_us / phi_result.hbproto_per_frame_us:.0f}x less"
            " per heartbeat).",
        ]
    return "\n".join(out)
