"""Fuzzing in the test suite: the targets of fuzz/targets.py, driven by hypothesis.

Each target feeds hostile input to one part of hbproto and checks its invariants after every
operation (see fuzz/targets.py): only documented errors escape, tables and buffers stay within
their limits, no deadline is left in the past, everything sent is a valid (and, where it must
be, signed) frame, a blind attacker draws no more bytes than it sends, and between two
authenticating endpoints no event happens that the other did not cause. This complements
tests/test_stateful.py (well-behaved peers, exact timing rules) with attackers: many source
addresses, spoofing, reflection, forged and replayed signatures, lying lengths.

Also here: every saved regression vector replays clean, the invariants can fail, and the long
run (fuzz/run.py) works in its quick mode.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from random import Random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz.targets
from fuzz.run import REGRESSIONS, replay_regressions, run_target
from fuzz.targets import TARGETS, Finding, replay
from hbproto import Endpoint
from hbproto.errors import FrameError
from hbproto.frame import Frame, FrameType, State, decode, encode

RUN = Path(__file__).resolve().parent.parent / "fuzz" / "run.py"


def _fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@_fuzz(60)
@given(st.data())
def test_decoder(data: st.DataObject) -> None:
    TARGETS["decode"].run_hypothesis(data)


@_fuzz(60)
@given(st.data())
def test_stream_deframer(data: st.DataObject) -> None:
    TARGETS["deframer"].run_hypothesis(data)


@_fuzz(60)
@given(st.data())
def test_connection(data: st.DataObject) -> None:
    TARGETS["connection"].run_hypothesis(data)


@_fuzz(50)
@given(st.data())
def test_endpoint_under_attack(data: st.DataObject) -> None:
    TARGETS["endpoint"].run_hypothesis(data)


@_fuzz(50)
@given(st.data())
def test_two_endpoints_on_a_hostile_network(data: st.DataObject) -> None:
    TARGETS["pair"].run_hypothesis(data)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeded_scenarios(name: str) -> None:
    """The long run's generator, briefly: 150 scenarios per target."""
    for index in range(150):
        TARGETS[name].run_random(Random(f"suite/{name}/{index}"))


# --- Regression vectors ---------------------------------------------------------------------


VECTORS = sorted(REGRESSIONS.glob("*.json"))


@pytest.mark.parametrize("path", VECTORS, ids=[p.name for p in VECTORS])
def test_regression_vector_replays_clean(path: Path) -> None:
    vector = json.loads(path.read_text())
    assert vector["target"] in TARGETS
    assert vector["error"]  # what it once found
    harness = replay(vector)
    assert harness.ops == vector["ops"]


def test_reflection_vectors_are_kept() -> None:
    """The fuzzer found that a session could come up with itself when its own frames were sent
    back (an echo service, or an attacker reflecting them); these vectors keep it found."""
    errors = {json.loads(p.read_text())["error"] for p in VECTORS}
    assert any("reflected" in e for e in errors)
    assert any("UP with nobody keyed" in e for e in errors)


# --- The invariants can fail ----------------------------------------------------------------


def _vector(target: str, setup: dict[str, Any], ops: list[list[Any]]) -> dict[str, Any]:
    return {"target": target, "setup": setup, "ops": ops}


ENDPOINT_SETUP = {"auth": False, "blind": True, "limits": [8, 3, 3], "min_rx": None, "mult": 3}
OPENING = encode(
    Frame(FrameType.HEARTBEAT, State.DOWN, 0x0A0A0A0A, 0, 1000, 0, 100_000, 100_000)
).hex()


def test_a_leak_in_the_endpoint_tables_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deleted session left behind in a lookup table is a finding."""
    real_delete = Endpoint._delete

    def leaky(self: Endpoint, session: Any) -> None:
        pending = dict(self._pending_by_remote)
        real_delete(self, session)
        self._pending_by_remote.update(pending)

    monkeypatch.setattr(Endpoint, "_delete", leaky)
    ops = [["rx", "b", OPENING, "198.51.100.1", 7373], ["time", 30.0]]
    with pytest.raises(Finding, match="pending leak"):
        replay(_vector("endpoint", {**ENDPOINT_SETUP, "seed": 1}, ops))


def test_an_escaping_exception_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Endpoint, data: bytes, addr: Any, now: float) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(Endpoint, "receive_datagram", broken)
    with pytest.raises(ValueError, match="boom"):
        replay(_vector("endpoint", {**ENDPOINT_SETUP, "seed": 1}, [["rx", "b", "00", "h", 1]]))


def test_amplification_towards_a_blind_attackers_address_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An endpoint that answers a spoofed frame with more bytes than it got is a finding."""
    real = Endpoint.datagrams_to_send
    victim = ("198.51.100.1", 7373)

    def chatty(self: Endpoint, now: float) -> list[tuple[bytes, Any]]:
        return [*real(self, now), (bytes.fromhex(OPENING), victim)]

    monkeypatch.setattr(Endpoint, "datagrams_to_send", chatty)
    ops = [["rx", "b", "00", *victim]]  # one byte of garbage, answered with 28
    with pytest.raises(Finding, match=r"28 bytes sent to .* which sent only 1 \(SPEC 12.1\)"):
        replay(_vector("endpoint", {**ENDPOINT_SETUP, "seed": 1}, ops))


def test_a_decoder_that_accepts_garbage_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def lenient(data: bytes, max_size: int = 65535) -> Frame:
        if len(data) < 28:
            raise FrameError("short")  # the base class: no SPEC counter name
        return Frame(FrameType.HEARTBEAT, State.DOWN, 1)  # 28 bytes, whatever arrived

    monkeypatch.setattr(fuzz.targets, "decode", lenient)
    with pytest.raises(Finding, match="unnamed drop reason"):
        replay(_vector("decode", {"max_size": 1200}, [["bytes", "00"]]))
    with pytest.raises(Finding, match="wrong size"):
        replay(_vector("decode", {"max_size": 1200}, [["bytes", "11" * 40]]))


# --- The long run ---------------------------------------------------------------------------


def test_a_finding_is_shrunk_and_saved(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A scenario that fails is cut down to the operation that fails and saved where the
    replay test finds it; replaying it fails the same way."""

    def fragile(data: bytes, max_size: int = 65535) -> Any:
        if len(data) == 7:
            raise RuntimeError("seven bytes")
        return decode(data, max_size)

    monkeypatch.setattr(fuzz.targets, "decode", fragile)
    result = run_target("decode", 20_000, seed=3, slow=60, directory=tmp_path)
    assert result["finding"] == "RuntimeError: seven bytes"
    saved = json.loads(Path(result["vector"]).read_text())
    assert len(saved["ops"]) == 1
    assert len(bytes.fromhex(saved["ops"][0][1])) == 7
    with pytest.raises(RuntimeError, match="seven bytes"):
        replay(saved)
    assert replay_regressions(tmp_path) == (1, [f"{Path(result['vector']).name}: {saved['error']}"])


def test_quick_run_reports_every_target() -> None:
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"replayed {len(VECTORS)} regression vectors" in out
    assert re.search(r"^target\s+inputs\s+scenarios\s+wall s\s+CPU s\s+inputs/CPU s", out, re.M)
    for name in TARGETS:
        row = re.search(rf"^{name}\s+([\d,]+)\s+([\d,]+)\s", out, re.MULTILINE)
        assert row is not None, out
        assert int(row.group(1).replace(",", "")) >= 2000
    total = re.search(r"^total\s+([\d,]+)", out, re.MULTILINE)
    assert total is not None
    assert int(total.group(1).replace(",", "")) >= 10_000
    assert out.rstrip().endswith("no finding")


def test_run_exits_non_zero_when_a_saved_vector_fails(tmp_path: Path) -> None:
    bad = _vector("endpoint", {**ENDPOINT_SETUP, "seed": 1}, [["no such operation", "b", 0]])
    (tmp_path / "endpoint-bad.json").write_text(json.dumps({**bad, "error": "made up"}))
    done = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--inputs",
            "50",
            "--targets",
            "decode",
            "--regressions",
            tmp_path,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL endpoint-bad.json: Finding: unknown operation" in done.stdout
