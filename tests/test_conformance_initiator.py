"""The conformance suite in the initiator role: the reference ``hbproto connect`` passes every
initiator-role case over UDP and TCP, and the command contract (exit status 127, a command
that cannot start, the environment, the event log) does what conformance/CONTRACT.md says.

The slowest shared case is left out of the default run; ``HBPROTO_CONFORMANCE_FULL=1`` runs
every case.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import trio

from conformance.cli import main
from conformance.client import ClientCommand
from conformance.model import Outcome, Result, Role
from conformance.registry import catalogue, select
from conformance.runner import measure_tolerance, run_cases

FULL = os.environ.get("HBPROTO_CONFORMANCE_FULL") == "1"
SLOW = ["9.1/slower-for-the-peer"]  # about 7 s per transport, and the responder run has it
CONNECT = [sys.executable, "-m", "transports", "connect", "{target}", "-i", "0.1"]
# --json puts the event records on stdout; --reconnect lets 6.4/refusal-back-off see a retry.
REFERENCE = [*CONNECT, "--json", "--reconnect"]


def _initiator_cases(patterns: list[str] | None = None) -> list[str]:
    return [
        c.id
        for c in select(catalogue(), patterns=patterns or [], exclude=[] if FULL else SLOW)
        if Role.INITIATOR in c.roles
    ]


async def _judge(argv: list[str], scheme: str, patterns: list[str]) -> list[Result]:
    cases = select(catalogue(), patterns=patterns)
    tolerance = await measure_tolerance()
    return await run_cases(cases, ClientCommand.of(argv), scheme, tolerance=tolerance, seed=11)


def _bad(results: list[Result]) -> str:
    return "\n".join(
        f"{r.key}: {r.outcome.value} {r.expected} / {r.actual} {r.message}"
        for r in results
        if r.outcome not in (Outcome.PASS, Outcome.SKIPPED)
    )


def test_the_initiator_role_has_cases_of_its_own_and_shared_ones() -> None:
    cases = catalogue()
    own = [c for c in cases if c.roles == {Role.INITIATOR}]
    shared = [c for c in cases if c.roles == {Role.INITIATOR, Role.RESPONDER}]
    assert len(own) >= 6
    assert {"6.2/echo", "9.3/detection"} <= {c.id for c in shared}
    assert "8.3/handshake" not in {c.id for c in own + shared}  # the suite opens: responder


@pytest.mark.parametrize("scheme", ["udp", "tcp"])
async def test_the_reference_initiator_passes_every_initiator_case(scheme: str) -> None:
    ids = _initiator_cases()
    results = await _judge(REFERENCE, scheme, ids)
    assert not _bad(results), _bad(results)
    assert all(r.role is Role.INITIATOR for r in results)
    ran = [r for r in results if r.outcome is Outcome.PASS]
    assert len(ran) >= 20
    assert any(r.case.id == "6.4/refusal-back-off" for r in ran)


async def test_without_reconnecting_the_refusal_case_is_unsupported() -> None:
    (result,) = await _judge([*CONNECT, "--json"], "udp", ["6.4/refusal-back-off"])
    assert result.outcome is Outcome.UNSUPPORTED, result.message
    assert "--reconnect" in result.message


async def test_events_are_read_from_the_event_log_file() -> None:
    # A shell redirect sends the reference's JSON lines to HBPROTO_EVENT_LOG, not stdout.
    script = (
        'exec "$0" -m transports connect "$HBPROTO_TARGET" -i 0.1 --json > "$HBPROTO_EVENT_LOG"'
    )
    results = await _judge(
        ["sh", "-c", script, sys.executable],
        "tcp",
        ["6.4/initiator-reports-close", "9.3/initiator-reports-down"],
    )
    assert not _bad(results), _bad(results)
    assert all(r.outcome is Outcome.PASS for r in results)
    assert any(e["event"] == "PeerUp" for e in results[0].events)


async def test_without_events_the_event_log_cases_are_unsupported() -> None:
    results = await _judge(CONNECT, "udp", ["6.4/initiator-reports-close"])
    assert [r.outcome for r in results] == [Outcome.UNSUPPORTED], results[0].message
    assert "no events" in results[0].message


_ENVIRONMENT = """
import json, os, sys
record = {k: v for k, v in os.environ.items() if k.startswith("HBPROTO_")}
record.update(event="Environment", argv=sys.argv[1:])
with open(os.environ["HBPROTO_EVENT_LOG"], "w") as log:
    log.write(json.dumps(record) + "\\n")
sys.exit(127)
"""


@pytest.mark.parametrize("scheme", ["udp", "tcp"])
async def test_exit_127_is_unsupported_and_the_environment_is_set(scheme: str) -> None:
    argv = [sys.executable, "-c", _ENVIRONMENT, "{target}"]
    results = await _judge(argv, scheme, ["8.3/initiator-opening", "6.2/echo"])
    assert [r.outcome for r in results] == [Outcome.UNSUPPORTED] * 2
    assert "status 127" in results[0].message
    for result in results:
        (record,) = result.events
        target = record["HBPROTO_TARGET"]
        assert re.fullmatch(rf"{scheme}://127\.0\.0\.1:\d+", target), target
        assert record["argv"] == [target]  # {target} is the same address
        assert record["HBPROTO_CASE"] == result.case.id
        assert record["HBPROTO_TRANSPORT"] == scheme
        assert record["HBPROTO_EVENT_LOG"].endswith("events.jsonl")


async def test_a_command_that_cannot_start_is_an_error_with_the_reason() -> None:
    with trio.fail_after(10):
        results = await _judge(
            ["/nonexistent/their-peer", "connect", "{target}"],
            "udp",
            ["8.3/initiator-opening", "6.2/echo"],
        )
    assert [r.outcome for r in results] == [Outcome.ERROR] * 2
    for result in results:
        assert "cannot start the command '/nonexistent/their-peer'" in result.message
        assert "No such file or directory" in result.message


async def test_a_command_that_opens_no_session_is_an_error_with_its_exit() -> None:
    argv = [sys.executable, "-c", "import sys; print('bad flag', file=sys.stderr); sys.exit(2)"]
    with trio.fail_after(10):
        results = await _judge(argv, "udp", ["6.2/echo", "8.3/initiator-opening"])
    assert [r.outcome for r in results] == [Outcome.ERROR] * 2
    assert "exited by itself with status 2" in results[0].message
    assert "bad flag" in results[0].message


def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r.json"
    command = f"{sys.executable} -c 'import sys; sys.exit(127)' {{target}}"
    assert main(["--client-cmd", command, "--transport", "tcp", "8.3", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "(initiator over tcp" in out
    assert "UNSUPPORTED  8.3/initiator-opening [tcp]" in out
    assert "SKIPPED      8.3/handshake [tcp]" in out
    doc = json.loads(report.read_text())
    assert doc["role"] == "initiator"
    assert {r["role"] for r in doc["results"]} == {"initiator"}
    for argv in (
        ["--client-cmd", command],  # no --transport
        ["--client-cmd", command, "--transport", "udp", "udp://127.0.0.1:7373"],
        ["--transport", "udp", "udp://127.0.0.1:7373"],
        ["--client-cmd", "'unbalanced", "--transport", "udp"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
