"""Check hbproto's frame codec against the Wycheproof-style vectors in conformance/vectors.json.

The vectors are built by conformance/make_vectors.py from ``struct`` and ``zlib`` alone, without
hbproto, so agreement here checks the codec against an independent reading of SPEC.md rather
than against itself. Both decoders (the fast :func:`decode` and the construct-based
:func:`schema_decode`) must give the same answer for every vector.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

import pytest

from hbproto import errors
from hbproto.errors import FrameError
from hbproto.frame import Frame, decode, encode, schema_decode

CONFORMANCE = Path(__file__).resolve().parent.parent / "conformance"
VECTORS_PATH = CONFORMANCE / "vectors.json"
SCHEMA_PATH = CONFORMANCE / "hbproto_frame_vectors_v1.schema.json"
GENERATOR = CONFORMANCE / "make_vectors.py"


class Decoder(Protocol):
    def __call__(self, data: bytes, max_size: int = ...) -> Frame: ...


DECODERS: dict[str, Decoder] = {"decode": decode, "schema_decode": schema_decode}

TOP_LEVEL_KEYS = {
    "schema",
    "specVersion",
    "generatorVersion",
    "numberOfTests",
    "header",
    "notes",
    "testGroups",
}
COMMON_TEST_KEYS = {"tcId", "comment", "flags", "requirements", "hex", "result"}
RESULT_KEYS = {
    "valid": {"decoded", "roundtrip"},
    "invalid": {"error", "errorClass"},
    "acceptable": set(),
}
OPTIONAL_TEST_KEYS = {"maxSize"}
DECODED_KEYS = {
    "type",
    "state",
    "poll",
    "final",
    "mult",
    "my_id",
    "your_id",
    "seq",
    "timestamp",
    "desired_tx",
    "required_rx",
    "tlvs",
}
REQUIREMENT_ID = re.compile(r"HB-[A-Z]+-[1-9][0-9]*")
HEX = re.compile(r"([0-9a-f]{2})*")


def _load() -> dict[str, Any]:
    with VECTORS_PATH.open(encoding="utf-8") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


VECTORS = _load()
TESTS: list[dict[str, Any]] = [t for group in VECTORS["testGroups"] for t in group["tests"]]


def _by_result(result: str) -> list[dict[str, Any]]:
    return [t for t in TESTS if t["result"] == result]


def _decoder_cases(result: str) -> list[Any]:
    """One case per (vector, decoder): both decoders must agree with every vector."""
    return [
        pytest.param(test, decoder, id=f"tc{test['tcId']}-{name}")
        for test in _by_result(result)
        for name, decoder in DECODERS.items()
    ]


def _vector_cases(result: str) -> list[Any]:
    return [pytest.param(t, id=f"tc{t['tcId']}") for t in _by_result(result)]


def _limits(test: dict[str, Any]) -> dict[str, int]:
    """Keyword arguments for a decoder: the vector's maxSize, if it sets one."""
    return {"max_size": test["maxSize"]} if "maxSize" in test else {}


def _fields(frame: Frame) -> dict[str, Any]:
    """A decoded frame in the vectors' ``decoded`` format."""
    return {
        "type": frame.type.name,
        "state": frame.state.name,
        "poll": frame.poll,
        "final": frame.final,
        "mult": frame.mult,
        "my_id": frame.my_id,
        "your_id": frame.your_id,
        "seq": frame.seq,
        "timestamp": frame.timestamp,
        "desired_tx": frame.desired_tx,
        "required_rx": frame.required_rx,
        "tlvs": [{"type": t.type, "value": t.value.hex()} for t in frame.tlvs],
    }


# --- The codec against the vectors ------------------------------------------------------------


@pytest.mark.parametrize(("vector", "decoder"), _decoder_cases("valid"))
def test_valid_vector_decodes(vector: dict[str, Any], decoder: Decoder) -> None:
    frame = decoder(bytes.fromhex(vector["hex"]), **_limits(vector))
    assert _fields(frame) == vector["decoded"], vector["comment"]
    # == would let 1 pass for True; the flags must really be booleans.
    assert type(frame.poll) is bool
    assert type(frame.final) is bool


@pytest.mark.parametrize(("vector", "decoder"), _decoder_cases("invalid"))
def test_invalid_vector_is_rejected(vector: dict[str, Any], decoder: Decoder) -> None:
    with pytest.raises(FrameError) as excinfo:
        decoder(bytes.fromhex(vector["hex"]), **_limits(vector))
    error = excinfo.value
    assert (type(error).__name__, error.reason) == (vector["errorClass"], vector["error"]), (
        f"{vector['comment']}: {error}"
    )


@pytest.mark.parametrize("vector", _vector_cases("valid"))
def test_valid_vector_reencodes(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    frame = decode(data, **_limits(vector))
    out = encode(frame)
    if vector["roundtrip"]:
        assert out.hex() == vector["hex"]
        return
    # A non-canonical interval code: the re-encoding must differ, and be a canonical, valid
    # encoding of the same frame (decoding it and encoding again is a fixed point).
    assert out != data
    assert len(out) == len(data)
    again = decode(out)
    assert again == frame
    assert schema_decode(out) == frame
    assert encode(again) == out


def test_acceptable_vectors_either_decode_or_raise_frame_errors() -> None:
    # An "acceptable" input may be accepted or dropped, but only ever with a FrameError.
    for vector in _by_result("acceptable"):
        for decoder in DECODERS.values():
            try:
                frame = decoder(bytes.fromhex(vector["hex"]), **_limits(vector))
            except FrameError:
                continue
            if "decoded" in vector:
                assert _fields(frame) == vector["decoded"], vector["comment"]


# --- The vector file itself -------------------------------------------------------------------


def test_vector_file_shape() -> None:
    assert set(VECTORS) == TOP_LEVEL_KEYS
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) == TOP_LEVEL_KEYS
    assert VECTORS["schema"] == schema["$id"] == "hbproto_frame_vectors_v1.schema.json"
    assert VECTORS["specVersion"] == 1
    assert isinstance(VECTORS["generatorVersion"], str)
    assert VECTORS["generatorVersion"]
    assert all(isinstance(line, str) for line in VECTORS["header"])
    notes = VECTORS["notes"]
    assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in notes.items())

    assert VECTORS["testGroups"]
    for group in VECTORS["testGroups"]:
        assert set(group) == {"type", "tests"}
        assert group["type"] == "FrameDecode"
        assert isinstance(group["tests"], list)

    assert VECTORS["numberOfTests"] == len(TESTS)
    ids = [t["tcId"] for t in TESTS]
    assert all(type(i) is int for i in ids)
    assert len(set(ids)) == len(ids), "tcIds must be unique"
    assert ids == sorted(ids), "tcIds must appear in ascending order"

    used_flags: set[str] = set()
    for test in TESTS:
        where = f"tcId {test['tcId']}"
        result = test["result"]
        assert result in RESULT_KEYS, where
        keys = set(test)
        assert COMMON_TEST_KEYS | RESULT_KEYS[result] <= keys, where
        assert keys <= COMMON_TEST_KEYS | OPTIONAL_TEST_KEYS | set().union(*RESULT_KEYS.values())
        if result == "valid":
            assert not keys & RESULT_KEYS["invalid"], where
        if result == "invalid":
            assert not keys & RESULT_KEYS["valid"], where
        assert isinstance(test["comment"], str), where
        assert HEX.fullmatch(test["hex"]), where
        assert len(set(test["flags"])) == len(test["flags"]), where
        assert set(test["flags"]) <= set(notes), f"{where}: flag without a note"
        used_flags.update(test["flags"])
        assert test["requirements"], where
        assert all(REQUIREMENT_ID.fullmatch(r) for r in test["requirements"]), where
        if "maxSize" in test:
            assert type(test["maxSize"]) is int, where
            assert test["maxSize"] >= 0, where
        if "decoded" in test:
            decoded = test["decoded"]
            assert set(decoded) == DECODED_KEYS, where
            assert all(set(t) == {"type", "value"} for t in decoded["tlvs"]), where
            assert type(test["roundtrip"]) is bool, where
        if "error" in test:
            # The class must exist in hbproto.errors and carry the vector's reason.
            error_class = getattr(errors, test["errorClass"])
            assert issubclass(error_class, FrameError), where
            assert error_class.reason == test["error"], where
    assert used_flags == set(notes), "every note should be used by some test"


def test_generator_check_passes() -> None:
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"vectors.json is stale: {proc.stderr}"


def test_generator_check_detects_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "vectors.json"
    stale.write_text(VECTORS_PATH.read_text(encoding="utf-8").replace('"tcId": 1,', '"tcId": 0,'))
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--check", "--output", str(stale)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1


def test_generator_is_independent_of_hbproto() -> None:
    # The vectors are only an independent check if the generator never uses the codec.
    tree = ast.parse(GENERATOR.read_text(encoding="utf-8"))
    imported: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imported.append(node.module or "")
    assert not [name for name in imported if name.split(".")[0] == "hbproto"]


def test_cited_requirements_exist_in_spec() -> None:
    spec = (CONFORMANCE.parent / "SPEC.md").read_text(encoding="utf-8")
    defined = set(re.findall(r"^- \[(HB-[A-Z]+-\d+)\]", spec, re.MULTILINE))
    cited = {
        req
        for group in VECTORS["testGroups"]
        for test in group["tests"]
        for req in test["requirements"]
    }
    assert cited <= defined, sorted(cited - defined)
