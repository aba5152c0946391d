"""The conformance suite: its catalogue, its command line, its reports, and hostile targets.
(The reference passing every case, and broken variants failing, is tests/test_mutants.py.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import trio

from conformance.cli import main
from conformance.model import Outcome, Result
from conformance.registry import catalogue, select
from conformance.report import Run, to_json, to_junit
from conformance.requirements import requirements
from conformance.runner import measure_tolerance, run_cases
from hbproto import Config
from transports import serve

ROOT = Path(__file__).resolve().parent.parent
# A fast target keeps the timing cases short; a short HANDSHAKE_TIMEOUT too (11.2/half-open
# waits for it, and the suite assumes no more than the SPEC's default of 10 s).
REFERENCE = Config(interval=0.1, handshake_timeout=2.0)


def test_requirements_json_is_current_with_the_spec() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "conformance.requirements", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr


def test_the_catalogue_is_well_formed() -> None:
    cases = catalogue()
    assert len({c.id for c in cases}) == len(cases)
    known = requirements()
    for case in cases:
        assert re.fullmatch(r"\d+(\.\d+)*/[A-Za-z0-9.-]+", case.id), case.id
        assert case.requirements, case.id
        assert all(r in known for r in case.requirements), case.id
        assert case.quote.startswith(f"[{case.requirements[0]}] ")


def test_selection_by_prefix_glob_exclude_and_level() -> None:
    cases = catalogue()
    ids = [c.id for c in select(cases, patterns=["6.2"])]
    assert ids
    assert all(i.startswith("6.2/") for i in ids)
    assert [c.id for c in select(cases, patterns=["7/*checksum"])] == ["7/V-5-bad-checksum"]
    left = [c.id for c in select(cases, patterns=["6.2"], exclude=["6.2/echo"])]
    assert "6.2/echo" not in left
    assert len(left) == len(ids) - 1


def test_list_names_every_case(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for case in catalogue():
        assert case.id in out
    assert out.rstrip().endswith(f"{len(catalogue())} cases")


async def _judge(scheme: str, patterns: list[str] | None = None) -> list[Result]:
    async with serve(f"{scheme}://127.0.0.1:0", REFERENCE) as server, trio.open_nursery() as n:

        async def drain() -> None:
            async for _ in server:
                pass

        n.start_soon(drain)
        cases = select(catalogue(), patterns=patterns or [])
        tolerance = await measure_tolerance()
        results = await run_cases(
            cases, ("127.0.0.1", server.local_address[1]), scheme, tolerance=tolerance, seed=7
        )
        n.cancel_scope.cancel()
    return results


async def _silent_udp(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    task_status.started(sock.getsockname()[1])
    with sock:
        while True:
            await sock.recvfrom(65535)  # and never answer


async def _closing_tcp(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(hang_up, listeners)


async def _garbage_udp(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    task_status.started(sock.getsockname()[1])
    with sock:
        while True:
            _, source = await sock.recvfrom(65535)
            for size in (0, 3, 28, 200):
                await sock.sendto(bytes((i * 37) & 0xFF for i in range(size)), source)


@pytest.mark.parametrize(
    ("scheme", "hostile", "message"),
    [
        ("udp", _silent_udp, "no session came up"),
        ("tcp", _closing_tcp, "ended the connection"),
        ("udp", _garbage_udp, "no session came up"),
    ],
)
async def test_hostile_targets_end_as_error_with_a_reason(
    scheme: str, hostile: object, message: str
) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(hostile)  # type: ignore[arg-type]
            cases = select(catalogue(), patterns=["6.2", "8.3"])
            results = await run_cases(cases, ("127.0.0.1", port), scheme, tolerance=0.01, seed=1)
            nursery.cancel_scope.cancel()
    results = [r for r in results if r.outcome is not Outcome.SKIPPED]  # initiator-role cases
    assert results
    assert all(r.outcome is Outcome.ERROR for r in results)
    assert all(message in r.message for r in results), results[0].message


async def test_reports_json_and_junit(tmp_path: Path) -> None:
    results = await _judge(
        "udp",
        [
            "6.2/echo",
            "11.2/byte-at-a-time",
            "11.2/frames-in-one-segment",
            "11.2/unframeable-stream",
        ],
    )
    run = Run(
        "udp://127.0.0.1:1",
        "responder",
        7,
        0.005,
        "2026-01-01T00:00:00+00:00",
        1.0,
        results,
        "0.1.0",
    )
    doc = to_json(run)
    assert (doc["format"], doc["version"]) == ("hbproto-conformance-report", 1)
    assert doc["summary"]["PASS"] == 1
    assert doc["summary"]["SKIPPED"] == 3
    echo = doc["results"][0]
    assert echo["requirements"] == ["HB-HB-1", "HB-ACK-1"]
    assert any(f["direction"] == "in" and f["summary"].startswith("ACK") for f in echo["frames"])
    json.dumps(doc)  # serialisable as is
    root = ET.fromstring(to_junit(run))
    assert root.tag == "testsuites"
    (suite,) = root
    assert suite.get("tests") == "4"
    assert suite.get("skipped") == "3"
    names = [case.get("name") for case in suite]
    assert "6.2/echo [udp]" in names


def test_exit_status_and_report_files(tmp_path: Path) -> None:
    async def target(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        await _silent_udp(task_status)

    async def go() -> int:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(target)
            code = await trio.to_thread.run_sync(
                lambda: main(
                    [
                        f"udp://127.0.0.1:{port}",
                        "8.3/handshake",
                        "--json",
                        str(tmp_path / "r.json"),
                        "--junit",
                        str(tmp_path / "r.xml"),
                    ]
                )
            )
            nursery.cancel_scope.cancel()
        return code

    assert trio.run(go) == 1  # ERROR: nothing answers
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["summary"]["ERROR"] == 1
    ET.parse(tmp_path / "r.xml")
