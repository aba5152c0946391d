"""Run hbproto's benchmarks and write their tables: python3 -m bench [SECTION ...].

Sections (all of them when none is named):

  codec      encode/decode per frame: construct, hbproto, a hand-written struct baseline
  core       one Endpoint with 1k, 10k, 100k sessions: frames/s, memory, timer cost
  scale      a real UDP server under 1k-30k peers at 1 Hz, saturated, and SO_REUSEPORT,
             beside a bare Python echo loop
  detection  failure-to-down latency over UDP and TCP, silent and hung (SIGSTOP) peers,
             beside kernel TCP keepalive and TCP_USER_TIMEOUT (needs root for the network
             namespace and iptables; the hung-peer rows run without)
  wire       bytes per heartbeat round trip beside BFD, TCP keepalive, WebSocket, HTTP/2, MQTT;
             packets per minute at each preset
  peers      aiobfd and a phi-accrual detector from PyPI, installed in a throwaway venv

Every table compares with a baseline measured in the same run where one exists. A full run
writes bench/results/SECTION.{txt,json} and, with matplotlib installed (the 'bench' extra:
pip install -e '.[bench]'), the figures in bench/plots/. --quick runs a few seconds per
section and writes nothing unless --out is given. BENCHMARKS.md has the published results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import detection, peers, plots, scale, wire
from bench.common import ROOT, describe_machine, machine

Section = Callable[[bool], tuple[dict[str, Any], str]]
SECTIONS = ("codec", "core", "scale", "detection", "wire", "peers")
RESULTS = ROOT / "bench" / "results"
PLOTS = ROOT / "bench" / "plots"


def _script(name: str) -> Section:
    """The sections that are scripts of their own (codec.py, core.py): run, show and keep."""

    def section(quick: bool) -> tuple[dict[str, Any], str]:
        argv = [sys.executable, str(ROOT / "bench" / f"{name}.py")] + (["--quick"] if quick else [])
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"bench/{name}.py failed:\n{done.stdout}\n{done.stderr}")
        return {"output": done.stdout}, done.stdout.rstrip()

    return section


def _section(name: str) -> Section:
    if name in ("codec", "core"):
        return _script(name)
    runs: dict[str, Section] = {
        "scale": scale.run,
        "detection": detection.run,
        "wire": wire.run,
        "peers": peers.run,
    }
    return runs[name]


def wait_calm(load: float, longest: float = 900.0) -> None:
    began = time.monotonic()
    while os.getloadavg()[0] >= load and time.monotonic() - began < longest:
        time.sleep(5)
    waited = time.monotonic() - began
    print(
        f"(waited {waited:.0f} s for a load average under {load:g}: now {os.getloadavg()[0]:.2f})",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench",
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "sections", nargs="*", metavar="SECTION", help=f"any of: {', '.join(SECTIONS)}"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and short runs (a few seconds each)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write SECTION.txt and SECTION.json (default: bench/results, none "
        "with --quick)",
    )
    parser.add_argument(
        "--plots",
        type=Path,
        default=None,
        help="where to write the figures (default: bench/plots, none with --quick)",
    )
    parser.add_argument(
        "--calm",
        type=float,
        default=None,
        metavar="LOAD",
        help="on a shared machine: before each section, wait (up to 15 minutes) until the "
        "1-minute load average is below LOAD",
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    chosen = [s for s in SECTIONS if s in args.sections] or list(SECTIONS)
    out: Path | None = args.out or (None if args.quick else RESULTS)
    figures: Path | None = args.plots or (None if args.quick else PLOTS)

    print(describe_machine())
    for name in chosen:
        command = "python3 -m bench " + name + (" --quick" if args.quick else "")
        print(f"\n== {name}: {command}\n", flush=True)
        if args.calm is not None:
            wait_calm(args.calm)
        began = time.monotonic()
        data, text = _section(name)(args.quick)
        took = time.monotonic() - began
        print(text)
        print(f"\n({name}: {took:.0f} s)", flush=True)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            record = {
                "section": name,
                "command": command,
                "machine": machine(),
                "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                "seconds": took,
                "data": data,
                "text": text,
            }
            (out / f"{name}.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
            (out / f"{name}.txt").write_text(f"$ {command}\n{describe_machine()}\n\n{text}\n")
        if figures is not None:
            for path in plots.draw(name, data, figures):
                print(f"figure: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0
