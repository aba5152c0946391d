"""The ``hbproto`` command: help, errors, and the demo, as a user meets them."""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from hbproto import Config
from transports import connect
from transports.cli import _parser, main

ROOT = Path(__file__).resolve().parent.parent


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_is_explained_in_help() -> None:
    for name, sub in _subcommands().items():
        for action in sub._actions:
            assert action.help, f"hbproto {name} {action.option_strings or action.dest}"
    for name in ("serve", "connect", "demo"):
        assert name in _parser().format_help()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["connect", "localhost:7373"], "not an address like udp://"),
        (["connect", "http://localhost"], "the scheme must be udp or tcp"),
        (["serve", "udp://0.0.0.0:99999"], "the port must be a number"),
        (["connect", "udp://127.0.0.1:1", "-m", "16"], "multiplier must be 1..15"),
        (["connect", "udp://127.0.0.1:1", "--payload", "x" * 129], "at most 128"),
        (["connect", "tcp://127.0.0.1:1", "--kernel-keepalive", "1,2"], "IDLE,INTERVAL,COUNT"),
        (["connect", "udp://127.0.0.1:1", "-i", "0"], "must be more than 0"),
    ],
)
def test_bad_command_lines_get_one_line_and_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_a_port_in_use_is_one_line_and_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert main(["serve", f"udp://127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err
    assert err == f"hbproto: cannot listen on udp://127.0.0.1:{port}: address already in use\n"


@pytest.mark.parametrize("scheme", ["udp", "tcp"])
def test_nothing_listening_is_one_line_and_status_1(
    scheme: str, capsys: pytest.CaptureFixture[str]
) -> None:
    kind = socket.SOCK_DGRAM if scheme == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    assert main(["connect", f"{scheme}://127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "connection refused" in err


def _demo(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "transports", "demo", *extra],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def test_the_demo_shows_up_rtt_and_a_hang_caught() -> None:
    run = _demo()
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    out = run.stdout
    for link in ("udp", "tcp"):
        assert re.search(rf"^\s+[\d.]+\s+{link}\s+UP ", out, re.M), out
        assert re.search(rf"^\s+[\d.]+\s+{link}\s+RTT ", out, re.M), out
        assert re.search(rf"^\s+[\d.]+\s+{link}\s+DOWN\s+heartbeats stopped", out, re.M), out
    assert "keepalive alone: no alarm after 3 s" in out
    summary = out[out.index("Summary") :].splitlines()
    rows = {line.split()[0]: line for line in summary[2:4]}
    assert set(rows) == {"udp", "tcp"}
    for row in rows.values():
        assert "not detected" not in row


def test_the_demo_in_json_is_one_object_per_line() -> None:
    run = _demo("--json", "--interval", "0.05")
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    downs = [r for r in records if r.get("event") == "PeerDown"]
    assert sorted(r["link"] for r in downs) == ["tcp", "udp"]
    for down in downs:
        assert down["reason"] == "detection_timeout"
        assert down["detection_time"] == pytest.approx(0.15)
        assert down["silent_for"] >= down["detection_time"] - 1e-6
        assert down["silent_for"] < down["detection_time"] + 0.1
    assert any(r.get("note", "").startswith("keepalive alone: no alarm") for r in records)


class _Lines:
    """Lines of a child process's output, waited for with a deadline."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.lines: list[str] = []

    async def wait_for(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        with trio.fail_after(timeout):
            while True:
                for line in self.lines:
                    if found := re.search(pattern, line):
                        return found
                chunk = await self.stream.receive_some()
                if not chunk:
                    raise AssertionError(f"no line matching {pattern!r} in {self.lines}")
                self.buffer += chunk
                *complete, self.buffer = self.buffer.split(b"\n")
                self.lines += [line.decode() for line in complete]


@pytest.mark.parametrize("scheme", ["udp", "tcp"])
async def test_serve_reports_each_peer_by_address_until_ctrl_c(scheme: str) -> None:
    command = [sys.executable, "-m", "transports", "serve", f"{scheme}://127.0.0.1:0", "-i", "0.05"]
    process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert process.stdout is not None
        out = _Lines(process.stdout)
        port = int((await out.wait_for(r"listening on \w+://127\.0\.0\.1:(\d+)"))[1])
        async with connect(f"{scheme}://127.0.0.1:{port}", Config(interval=0.05)) as peer:
            local = peer.local_address
            assert local is not None
        peer_at = re.escape(f"127.0.0.1:{local[1]}")
        await out.wait_for(rf"{peer_at}\s+UP ")
        await out.wait_for(rf"{peer_at}\s+CLOSED\s+by the peer: shutdown")
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_auth_keys_from_the_command_line(tmp_path: Path) -> None:
    """Both ends with the same key come up; a peer with another key never does."""
    secret = tmp_path / "key"
    secret.write_bytes(bytes(range(32)))
    serve_cmd = [
        sys.executable, "-m", "transports", "serve", "udp://127.0.0.1:0", "-i", "0.05",
        "--auth-key", f"7:@{secret}",
    ]  # fmt: skip
    server = await trio.lowlevel.open_process(serve_cmd, stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert server.stdout is not None
        out = _Lines(server.stdout)
        port = int((await out.wait_for(r"listening on udp://127\.0\.0\.1:(\d+)"))[1])

        async def connect_with(key: str) -> list[dict[str, object]]:
            run = await trio.run_process(
                [
                    sys.executable,
                    "-m",
                    "transports",
                    "connect",
                    f"udp://127.0.0.1:{port}",
                    "-i",
                    "0.05",
                    "--json",
                    "--duration",
                    "1",
                    "--auth-key",
                    key,
                ],
                capture_stdout=True,
                check=False,
                cwd=ROOT,
            )
            return [json.loads(line) for line in run.stdout.decode().splitlines()]

        with trio.fail_after(20):
            right = await connect_with(f"7:{bytes(range(32)).hex()}")
            wrong = await connect_with("7:" + "ab" * 32)
        assert any(r.get("event") == "PeerUp" for r in right)
        assert not any(r.get("event") == "PeerUp" for r in wrong)
    finally:
        server.kill()
        await server.wait()
