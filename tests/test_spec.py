"""SPEC.md and the code must say the same thing.

These tests read SPEC.md itself: the interval table of section 4.4, the frames of Appendix A and
the requirement identifiers, so an edit to either side that breaks the other fails here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from hbproto import AuthKeys, errors
from hbproto.auth import check, compute_mac
from hbproto.frame import (
    CloseCode,
    FrameType,
    State,
    TlvType,
    decode,
    decode_interval,
    encode,
    encode_interval,
    pack,
    schema_decode,
)

SPEC = (Path(__file__).resolve().parent.parent / "SPEC.md").read_text(encoding="utf-8")
KEYWORDS = re.compile(r"\b(MUST|SHOULD|MAY|REQUIRED|RECOMMENDED|SHALL|OPTIONAL)\b")
REQ_DEF = re.compile(r"^- \[(HB-[A-Z]+-\d+)\]", re.MULTILINE)


def _section(title: str) -> str:
    start = SPEC.index(title)
    end = SPEC.find("\n## ", start + len(title))
    return SPEC[start : end if end != -1 else None]


def _interval_to_us(text: str) -> int:
    number, unit = text.replace(",", "").split()
    scale = {"us": 1, "ms": 1_000, "s": 1_000_000, "min": 60_000_000, "h": 3_600_000_000}[unit]
    return round(float(number) * scale)


def test_interval_examples_table_matches_codec() -> None:
    rows = re.findall(r"^\| ([\d.,]+ (?:us|ms|s|min|h)) \| 0x([0-9A-F]{4}) \|", SPEC, re.MULTILINE)
    assert len(rows) >= 9
    for interval, code in rows:
        us = _interval_to_us(interval)
        assert encode_interval(us) == int(code, 16), interval
        assert decode_interval(int(code, 16)) == us, interval


def test_non_canonical_example_decodes() -> None:
    assert "0x4001 | decodes to 1 ms" in SPEC
    assert decode_interval(0x4001) == 1_000
    assert encode_interval(1_000) == 0x0064


def _appendix_frames() -> dict[str, bytes]:
    appendix = _section("## Appendix A. Test vectors")
    frames: dict[str, bytes] = {}
    for block in re.finditer(r"\*\*(A\.\d+)[^*]*\*\*.*?```\n([0-9a-f]+)\n```", appendix, re.DOTALL):
        frames.setdefault(block.group(1), bytes.fromhex(block.group(2)))
    return frames


def test_appendix_frames_decode_as_described() -> None:
    frames = _appendix_frames()
    assert set(frames) >= {"A.1", "A.2", "A.3", "A.4", "A.5", "A.6"}
    for name, data in frames.items():
        if name == "A.7":  # the MAC input, not a frame; the full frame is checked below
            continue
        frame = decode(data)
        assert frame == schema_decode(data)
        assert encode(frame) == data, name

    a1 = decode(frames["A.1"])
    assert (a1.type, a1.state, a1.mult) == (FrameType.HEARTBEAT, State.DOWN, 3)
    assert (a1.my_id, a1.your_id, a1.seq, a1.timestamp) == (0x0A0A0A0A, 0, 1, 0x12345678)
    assert (a1.desired_tx, a1.required_rx) == (100_000, 50_000)
    a2 = decode(frames["A.2"])
    assert (a2.type, a2.state, a2.desired_tx, a2.required_rx) == (
        FrameType.ACK,
        State.INIT,
        None,
        300_000,
    )
    assert (a2.seq, a2.timestamp) == (a1.seq, a1.timestamp)
    assert decode(frames["A.3"]).poll
    assert decode(frames["A.4"]).final
    assert decode(frames["A.5"]).payload == b"hello"
    a6 = decode(frames["A.6"])
    assert a6.close_code == CloseCode.TOO_FREQUENT
    assert a6.close_text == "too many heartbeats"


def test_appendix_auth_example() -> None:
    appendix = _section("## Appendix A. Test vectors")
    blocks = re.findall(r"```\n([0-9a-f]+)\n```", appendix)
    full = next(bytes.fromhex(b) for b in blocks if len(b) == 96)
    mac_input = next(bytes.fromhex(b) for b in blocks if len(b) == 56 and b.endswith("1107"))
    frame = decode(full)
    auth = frame.auth
    assert auth is not None
    key_id, mac = auth
    assert key_id == 7
    assert full[: len(mac_input)] == mac_input
    expected = hmac.new(bytes(range(32)), mac_input, hashlib.sha256).digest()[:16]
    assert mac == expected
    assert expected.hex() in appendix
    assert frame.tlvs[-1].type == TlvType.AUTH
    assert struct.unpack(">I", full[-4:])[0] == zlib.crc32(full[:-4])
    # The implementation computes the same MAC and frame [HB-AUTH-1] to [HB-AUTH-3]: when it
    # signs its own frames (pack), when it signs an encoded one, and it verifies the example.
    keys = AuthKeys({7: bytes(range(32))}, active=7)
    assert compute_mac(keys.keys[7], mac_input) == expected
    unsigned = encode(replace(frame, tlvs=()))
    assert keys.sign(unsigned) == full
    codes = (encode_interval(frame.desired_tx), encode_interval(frame.required_rx))
    fields = (frame.type, frame.state, frame.poll, frame.final, frame.mult, frame.my_id)
    rest = (frame.your_id, frame.seq, frame.timestamp, *codes)
    assert pack(*fields, *rest, b"", keys) == full
    assert keys.verify(full)
    assert check(keys, frame, full) is None
    assert not AuthKeys({7: bytes(range(1, 33))}, active=7).verify(full)


def test_appendix_invalid_frames_are_rejected_with_the_named_counter() -> None:
    table = _section("## Appendix A. Test vectors")
    rows = re.findall(r"^\| [^|]+ \| `([0-9a-f]+)` \| `([a-z_]+)` \|$", table, re.MULTILINE)
    assert len(rows) >= 6
    for hexdata, counter in rows:
        for decoder in (decode, schema_decode):
            with pytest.raises(errors.FrameError) as caught:
                decoder(bytes.fromhex(hexdata))
            assert caught.value.reason == counter, hexdata


def test_appendix_covers_what_it_says() -> None:
    """Appendix A's coverage statement: every frame type, and every byte-only check but V-3."""
    frames = _appendix_frames()
    types = {decode(data).type for name, data in frames.items() if name != "A.7"}
    assert types == set(FrameType)
    table = _section("## Appendix A. Test vectors")
    counters = set(re.findall(r"^\| [^|]+ \| `[0-9a-f]+` \| `([a-z_]+)` \|$", table, re.MULTILINE))
    byte_checks = {"bad_version", "truncated", "bad_length", "bad_checksum", "unknown_type"}
    assert counters == byte_checks | {"bad_field", "bad_tlv"}


def test_crc_check_value() -> None:
    assert "0xCBF43926" in SPEC
    assert zlib.crc32(b"123456789") == 0xCBF43926


def test_requirement_ids_are_unique() -> None:
    ids = REQ_DEF.findall(SPEC)
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates
    assert len(ids) > 100


def test_every_cited_requirement_exists() -> None:
    defined = set(REQ_DEF.findall(SPEC))
    cited = set(re.findall(r"\[(HB-[A-Z]+-\d+)\]", SPEC))
    assert cited <= defined, sorted(cited - defined)


def _normative_paragraphs() -> list[str]:
    """Bullets and paragraphs after the conventions section, code blocks and tables excluded."""
    body = SPEC[SPEC.index("## 3. Protocol overview") :]
    body = re.sub(r"```.*?```", "", body, flags=re.DOTALL)
    chunks: list[str] = []
    for block in re.split(r"\n\s*\n", body):
        lines = [ln for ln in block.splitlines() if not ln.lstrip().startswith("|")]
        current: list[str] = []
        for line in lines:
            if line.startswith("- ") and current:
                chunks.append(" ".join(current))
                current = []
            current.append(line.strip())
        if current:
            chunks.append(" ".join(current))
    return chunks


def test_every_normative_sentence_has_an_id() -> None:
    missing = [
        chunk
        for chunk in _normative_paragraphs()
        if KEYWORDS.search(chunk) and not REQ_DEF.match(chunk)
    ]
    assert not missing, "\n\n".join(missing)


@pytest.mark.parametrize("name", ["Truncated", "BadVersion", "BadLength", "BadChecksum"])
def test_counter_names_in_spec(name: str) -> None:
    reason = getattr(errors, name).reason
    assert f"`{reason}`" in _section("## 7. Receive validation")
