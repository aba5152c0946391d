"""Run the core benchmark in its quick mode, so the script cannot rot unnoticed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "core.py"

HEADERS = [
    r"path\s+N\s+frames/s\s+us/frame\s+/codec\s+/bytes",
    r"N\s+traced\s+w/o dict\s+walk\s+session only\s+heap entries\s+goal",
    r"attribute\s+types\s+B/session\s+share",
    r"N\s+get_timer ns\s+idle tick ns\s+handle us/due\s+due/call",
    r"N\s+frames in/s\s+out/s\s+CPU s/sim s\s+us/frame in",
]


def test_core_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for header in HEADERS:
        assert re.search(rf"^\s*{header}$", out, re.MULTILINE), f"{header!r} missing:\n{out}"
    for row in (
        "Endpoint.receive_datagram",
        "codec: decode + encode ACK",
        "bytes: unpack+pack+crc32",
    ):
        assert row in out
    assert "goal: >= 200,000 frames/s per core" in out
    assert "goal: < 1024 B per session" in out
    assert out.startswith("Python ")


def test_core_benchmark_help() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for option in ("--quick", "--sizes", "--profile"):
        assert option in result.stdout
