"""Run ``python3 -m bench`` in its quick mode, section by section, so the code cannot rot.

Only the sections that run quickly and need nothing from outside: ``wire`` (computed),
``scale`` (a small server and load generator on loopback) and ``detection`` (the hung-peer rows
everywhere; the pulled-cable rows too where root, ``ip`` and ``iptables`` are available).
``codec`` and ``core`` have smoke tests of their own; ``peers`` needs PyPI.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    if "--help" not in args:
        assert result.stdout.startswith("machine: "), result.stdout
    return result.stdout


def test_help_names_every_section() -> None:
    out = bench("--help")
    for name in ("codec", "core", "scale", "detection", "wire", "peers", "--quick", "--out"):
        assert name in out


def test_an_unknown_section_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "nosuch"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown section nosuch" in result.stderr


def test_wire(tmp_path: Path) -> None:
    out = bench("wire", "--quick", "--out", str(tmp_path))
    assert re.search(r"^hbproto / UDP\s+28 \+ 28\s+56\s+112\s+152\s+1\.00x", out, re.MULTILINE)
    assert re.search(r"^BFD \(RFC 5880\) / UDP\s+24 \+ 24\s+52\s+104\s+144", out, re.MULTILINE)
    # The default 1 s preset: one HEARTBEAT per 0.875 s each way, each answered.
    default = re.search(r"^Config\(\) \(default\)\s+1 s x 3\s+(\d+)\s+(\d+)", out, re.MULTILINE)
    assert default is not None, out
    assert 130 <= int(default.group(1)) <= 145
    assert (tmp_path / "wire.json").exists()
    assert (tmp_path / "wire.txt").read_text().startswith("$ python3 -m bench wire --quick")


@pytest.mark.skipif(sys.platform != "linux", reason="taskset, /proc and SO_REUSEPORT")
def test_scale() -> None:
    out = bench("scale", "--quick")
    rows = table_rows(out, "deployment")
    row = rows["answer only"]
    assert (row["N"], row["up"]) == ("200", "200"), out
    assert float(row["answered"].rstrip("%")) > 95
    assert row["false down"] == "0"
    caught, stopped = row["caught"].split("/")
    assert caught == stopped, out
    servers = table_rows(out, "server")
    for server in ("bare", "drain", "hbproto"):
        assert server in servers, out
        assert float(servers[server]["answers/s"].replace(",", "")) > 0


def table_rows(out: str, first: str) -> dict[str, dict[str, str]]:
    """The rows of the table whose header starts with ``first``, by their first cell; columns
    are two or more spaces apart, as the benchmark prints them."""
    lines = out.splitlines()
    start = next(
        i
        for i, line in enumerate(lines[:-1])
        if line.startswith(first + " ") and lines[i + 1].startswith("---")
    )
    header = re.split(r"\s{2,}", lines[start].strip())
    rows: dict[str, dict[str, str]] = {}
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == len(header):
            rows.setdefault(cells[0], dict(zip(header, cells, strict=True)))
    return rows


@pytest.mark.skipif(sys.platform != "linux", reason="SIGSTOP and Linux keepalive options")
def test_detection() -> None:
    out = bench("detection", "--quick")
    for transport in ("udp", "tcp"):
        row = re.search(
            rf"^hbproto {transport} 50 ms x 3\s+hung\s+4/4\s+([\d.]+)", out, re.MULTILINE
        )
        assert row is not None, out
        assert 100 <= float(row.group(1)) <= 200  # within one DetectionTime plus an interval
    assert re.search(r"kernel keepalive .*hung\s+0/2", out), out  # the kernel cannot see a hang
