"""The Wireshark dissector, tools/wireshark/hbproto.lua, shows what the codec encodes.

Each test writes a pcap file of its own (Ethernet, IPv4, then UDP or TCP around frames that
hbproto's codec encodes or that conformance/vectors.json holds), has tshark decode it with the
dissector, and compares tshark's PDML output with what was encoded, field by field: valid
frames decode to their fields with a good CRC and no error, and every invalid vector carries
the one expert-info error that names the receive check (SPEC section 7) a receiver fails it on.

tshark must be on PATH. Locally the tests skip without it; under CI=true they fail, because CI
installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from hbproto import AuthKeys, CloseCode, Frame, FrameType, State, Tlv, TlvType, decode, encode
from hbproto.frame import encode_interval, pack

ROOT = Path(__file__).resolve().parent.parent
DISSECTOR = ROOT / "tools" / "wireshark" / "hbproto.lua"
VECTORS = json.loads((ROOT / "conformance" / "vectors.json").read_text(encoding="utf-8"))
TESTS: list[dict[str, Any]] = [t for g in VECTORS["testGroups"] for t in g["tests"]]
PORT = 7373  # the dissector's default port
UDP_MAX_PAYLOAD = 0xFFFF - 20 - 8  # the largest datagram an IPv4 packet can carry
MSS = 1448
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
TSHARK_TIMEOUT = 60.0

CLOSE_NAMES = {c.value: c.name.lower() for c in CloseCode}
TLV_NAMES = {t.value: t.name for t in TlvType}
# The receive check each drop counter belongs to (SPEC Table 6); "truncated" is V-1 for an
# empty frame and V-2 otherwise.
CHECK_OF = {
    "bad_version": "V-1",
    "too_large": "V-3",
    "bad_length": "V-4",
    "bad_checksum": "V-5",
    "unknown_type": "V-6",
    "bad_field": "V-7",
    "bad_tlv": "V-8",
}


@pytest.fixture(scope="module")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        message = "tshark is not on PATH (apt-get install tshark)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI installs it, so this is a failure there")
        pytest.skip(message)
    return path


# --- Writing captures -------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass
class Pcap:
    """A classic pcap file of Ethernet frames from 10.0.0.1 to 10.0.0.2."""

    packets: list[bytes] = field(default_factory=list)
    src: bytes = socket.inet_aton("10.0.0.1")
    dst: bytes = socket.inet_aton("10.0.0.2")

    def _ip(self, protocol: int, payload: bytes) -> int:
        header = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(payload),
            0,
            0x4000,
            64,
            protocol,
            0,
            self.src,
            self.dst,
        )
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        ethernet = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00"
        self.packets.append(ethernet + header + payload)
        return len(self.packets)  # tshark's frame number

    def udp(self, payload: bytes, sport: int = 40000, dport: int = PORT) -> int:
        """One datagram (UDP checksum 0: absent, which IPv4 allows)."""
        assert len(payload) <= UDP_MAX_PAYLOAD
        return self._ip(17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)

    def tcp(self, sport: int = 40001, dport: int = PORT) -> TcpFlow:
        """A TCP connection from sport to dport, its handshake written."""
        flow = TcpFlow(self, sport, dport)
        flow.segment(b"", flags=0x02)  # SYN
        flow.seq += 1
        return flow

    def write(self, path: Path) -> Path:
        with path.open("wb") as out:
            out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
            for index, packet in enumerate(self.packets):
                out.write(struct.pack("<IIII", 1_700_000_000 + index, 0, len(packet), len(packet)))
                out.write(packet)
        return path


@dataclass
class TcpFlow:
    """One direction of a TCP connection: segments carry the bytes given, in order."""

    pcap: Pcap
    sport: int
    dport: int
    seq: int = 1000

    def segment(self, data: bytes, flags: int = 0x18) -> int:
        header = struct.pack(
            "!HHIIBBHHH", self.sport, self.dport, self.seq, 1, 5 << 4, flags, 65535, 0, 0
        )
        pseudo = self.pcap.src + self.pcap.dst + struct.pack("!BBH", 0, 6, len(header) + len(data))
        header = header[:16] + struct.pack("!H", _checksum(pseudo + header + data)) + header[18:]
        self.seq += len(data)
        return self.pcap._ip(6, header + data)

    def stream(self, data: bytes, mss: int = MSS) -> list[int]:
        """``data`` cut into segments of at most ``mss`` bytes, wherever the cuts fall."""
        return [self.segment(data[i : i + mss]) for i in range(0, len(data), mss)]


# --- Reading tshark's PDML --------------------------------------------------------------------


@dataclass
class Pdu:
    """One hbproto frame as tshark shows it: a <proto name="hbproto"> element."""

    element: ET.Element
    transport: str  # "udp" or "tcp"

    def fields(self, name: str) -> list[ET.Element]:
        return [e for e in self.element.iter("field") if e.get("name") == name]

    def one(self, name: str) -> ET.Element:
        found = self.fields(name)
        assert len(found) == 1, f"{name}: {len(found)} fields in {self.element.get('showname')}"
        return found[0]

    def has(self, name: str) -> bool:
        return bool(self.fields(name))

    def value(self, name: str) -> int:
        return int(self.one(name).get("show", ""), 0)

    def label(self, name: str) -> str:
        return self.one(name).get("showname", "")

    def experts(self, severity: str = "Error") -> list[str]:
        """The expert fields (by name) attached to this frame at one severity."""
        names = []
        for item in self.fields("_ws.expert"):
            if f"({severity}/" in item.get("showname", ""):
                names += [
                    c.get("name", "") for c in item if not c.get("name", "").startswith("_ws")
                ]
        return names

    def tlvs(self) -> list[tuple[int, bytes]]:
        """Every TLV, as (type, value) rebuilt from the fields the dissector shows for it."""
        result = []
        for tlv in self.fields("hbproto.tlv"):
            children = {c.get("name"): c for c in tlv}
            value = b""
            for name in ("hbproto.payload", "hbproto.close.text", "hbproto.tlv.value"):
                if name in children and int(children["hbproto.tlv.length"].get("show", "")):
                    value = bytes.fromhex(children[name].get("value", ""))
            if "hbproto.auth.key_id" in children:
                value = bytes([int(children["hbproto.auth.key_id"].get("show", ""))])
                value += bytes.fromhex(children["hbproto.auth.mac"].get("value", ""))
            length = int(children["hbproto.tlv.length"].get("show", ""))
            assert len(value) == length, tlv.get("showname")
            result.append((int(children["hbproto.tlv.type"].get("show", ""), 0), value))
        return result


def dissect(tshark: str, capture: Path, *options: str) -> dict[int, list[Pdu]]:
    """tshark's reading of ``capture``: each frame number's hbproto frames, in order."""
    run = subprocess.run(
        [tshark, "-n", "-X", f"lua_script:{DISSECTOR}", *options, "-r", str(capture), "-T", "pdml"],
        capture_output=True,
        timeout=TSHARK_TIMEOUT,
        check=False,
    )
    errors = [line for line in run.stderr.decode().splitlines() if "dangerous" not in line]
    assert run.returncode == 0, errors
    assert not errors, errors  # a Lua error in the dissector is reported here
    # tshark writes what a text field holds, even characters XML 1.0 forbids (U+FFFF).
    pdml = NOT_XML.sub("\ufffd", run.stdout.decode("utf-8", errors="replace"))
    packets: dict[int, list[Pdu]] = {}
    for number, packet in enumerate(ET.fromstring(pdml).iter("packet"), start=1):
        protos = list(packet.iter("proto"))
        transport = "tcp" if any(p.get("name") == "tcp" for p in protos) else "udp"
        packets[number] = [Pdu(p, transport) for p in protos if p.get("name") == "hbproto"]
    return packets


# --- Comparing ---------------------------------------------------------------------------------


def assert_shows(pdu: Pdu, frame: Frame, wire: bytes) -> None:
    """``pdu`` shows ``frame``, whose encoding is ``wire``, field by field, and calls it valid."""
    assert pdu.value("hbproto.version") == 1
    assert pdu.value("hbproto.type") == frame.type
    assert f": {frame.type.name} ({frame.type.value})" in pdu.label("hbproto.type")
    assert pdu.value("hbproto.state") == frame.state
    assert f": {frame.state.name} ({frame.state.value})" in pdu.label("hbproto.state")
    assert pdu.value("hbproto.flags.poll") == frame.poll
    assert pdu.value("hbproto.flags.final") == frame.final
    flags = ", ".join(name for name, on in (("P", frame.poll), ("F", frame.final)) if on)
    assert pdu.label("hbproto.flags") == f"Flags: {flags or 'none'}"
    assert pdu.value("hbproto.mult") == frame.mult
    assert pdu.value("hbproto.length") == len(wire)
    assert pdu.value("hbproto.my_id") == frame.my_id
    assert pdu.value("hbproto.your_id") == frame.your_id
    if frame.type is FrameType.ACK:
        assert pdu.value("hbproto.echo.seq") == frame.seq
        assert pdu.value("hbproto.echo.timestamp") == frame.timestamp
        assert not pdu.has("hbproto.seq")
    elif frame.type is FrameType.CLOSE:
        assert pdu.value("hbproto.seq") == frame.seq
        assert pdu.value("hbproto.close.reason") == frame.timestamp
        name = CLOSE_NAMES.get(frame.timestamp)
        assert pdu.one("hbproto.close.reason_name").get("show") == (name or "unspecified")
        if name is not None:
            assert pdu.label("hbproto.close.reason") == f"Close Reason: {name} ({frame.timestamp})"
        assert not pdu.has("hbproto.timestamp")
    else:
        assert pdu.value("hbproto.seq") == frame.seq
        assert pdu.value("hbproto.timestamp") == frame.timestamp
    noncanonical = 0
    for key, us, at in (
        ("desired_tx", frame.desired_tx, 20),
        ("required_rx", frame.required_rx, 22),
    ):
        code = int.from_bytes(wire[at : at + 2], "big")
        assert pdu.value(f"hbproto.{key}") == code
        assert pdu.value(f"hbproto.{key}.unit") == code >> 14
        assert pdu.value(f"hbproto.{key}.count") == code & 0x3FFF
        if us is None:
            assert not pdu.has(f"hbproto.{key}.us")
            assert ": no preference (0xffff)" in pdu.label(f"hbproto.{key}")
        else:
            assert pdu.value(f"hbproto.{key}.us") == us
        noncanonical += code != encode_interval(us)
    assert len(pdu.fields("hbproto.interval.noncanonical")) == noncanonical
    assert pdu.tlvs() == [(t.type, t.value) for t in frame.tlvs]
    assert pdu.value("hbproto.crc") == zlib.crc32(wire[:-4])
    assert pdu.value("hbproto.crc.status") == 1
    assert pdu.experts() == []
    assert not pdu.has("hbproto.check")


def assert_fails(pdu: Pdu, check: str, counter: str) -> None:
    """``pdu`` carries exactly one error, the expert field of ``check`` and ``counter``."""
    assert pdu.experts() == [f"hbproto.{check.lower().replace('-', '')}.{counter}"]
    assert pdu.one("hbproto.check").get("show") == f"{check} {counter}"
    assert pdu.element.get("showname", "").endswith(f"[{check} {counter}]")


def frame_of(decoded: dict[str, Any]) -> Frame:
    """A vector's expected fields as a Frame."""
    return Frame(
        FrameType[decoded["type"]],
        State[decoded["state"]],
        decoded["my_id"],
        decoded["your_id"],
        decoded["seq"],
        decoded["timestamp"],
        decoded["desired_tx"],
        decoded["required_rx"],
        decoded["mult"],
        decoded["poll"],
        decoded["final"],
        tuple(Tlv(t["type"], bytes.fromhex(t["value"])) for t in decoded["tlvs"]),
    )


# --- Every frame type, TLV and close reason ---------------------------------------------------

KEYS = AuthKeys({7: bytes(range(32))}, active=7)


def _every_kind_of_frame() -> list[tuple[Frame, bytes]]:
    payload, close_text = TlvType.PAYLOAD, TlvType.CLOSE_TEXT
    frames = [
        Frame(
            FrameType.HEARTBEAT,
            State.DOWN,
            my_id=0x0A0A0A0A,
            seq=1,
            timestamp=0x12345678,
            desired_tx=100_000,
            required_rx=50_000,
        ),
        Frame(
            FrameType.HEARTBEAT,
            State.INIT,
            my_id=0x0A0A0A0A,
            your_id=0x0B0B0B0B,
            seq=2,
            timestamp=0xFFFFFFFF,
            mult=1,
            desired_tx=1_000_000,
            tlvs=(Tlv(payload, b"load=0.42"),),
        ),
        Frame(
            FrameType.HEARTBEAT,
            State.UP,
            my_id=0x0A0A0A0A,
            your_id=0x0B0B0B0B,
            seq=3,
            poll=True,
            mult=15,
            desired_tx=200_000,
            required_rx=0,
            tlvs=(Tlv(0x70, b"exp"), Tlv(payload, b"")),
        ),
        Frame(
            FrameType.ACK,
            State.INIT,
            my_id=0x0A0A0A0A,
            your_id=0x0B0B0B0B,
            seq=1,
            timestamp=0x12345678,
            final=True,
            mult=5,
            required_rx=300_000,
            tlvs=(Tlv(payload, bytes(range(128))),),
        ),
        Frame(
            FrameType.ACK,
            State.UP,
            my_id=0x0A0A0A0A,
            your_id=0x0B0B0B0B,
            seq=0xFFFFFFFF,
            timestamp=7,
        ),
        Frame(
            FrameType.DATA,
            State.UP,
            my_id=0x0A0A0A0A,
            your_id=0x0B0B0B0B,
            seq=4,
            timestamp=9,
            desired_tx=20_000,
            tlvs=(Tlv(0x20, b"meta"), Tlv(payload, b"hello, hbproto")),
        ),
    ]
    reasons = [*CloseCode, 8, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
    frames += [
        Frame(
            FrameType.CLOSE,
            State.CLOSED,
            my_id=0x0A0A0A0A,
            your_id=0x0B0B0B0B,
            seq=10 + i,
            timestamp=int(code),
            tlvs=(Tlv(close_text, f"reason {int(code)}: ok \u00e9\u6f22".encode()),)
            if i % 2
            else (),
        )
        for i, code in enumerate(reasons)
    ]
    cases = [(frame, encode(frame)) for frame in frames]
    # Signed frames as an endpoint with keys sends them: the AUTH TLV last, with its real MAC.
    for frame in frames[1], frames[5], frames[-1]:
        signed = KEYS.sign(encode(frame))
        cases.append((decode(signed), signed))
    return cases


def test_every_frame_type_tlv_and_close_reason_is_shown_field_by_field(
    tshark: str, tmp_path: Path
) -> None:
    cases = _every_kind_of_frame()
    pcap = Pcap()
    numbers = [pcap.udp(wire) for _, wire in cases]
    packets = dissect(tshark, pcap.write(tmp_path / "frames.pcap"))
    kinds = set()
    for (frame, wire), number in zip(cases, numbers, strict=True):
        [pdu] = packets[number]
        assert_shows(pdu, frame, wire)
        kinds |= {frame.type} | {t.type for t in frame.tlvs}
        for tlv, item in zip(frame.tlvs, pdu.fields("hbproto.tlv"), strict=True):
            name = TLV_NAMES.get(tlv.type, "unknown")
            assert item.get("showname") == f"TLV {name} (0x{tlv.type:02x}), {len(tlv.value)} bytes"
        if frame.type is FrameType.CLOSE and frame.timestamp not in CLOSE_NAMES:
            private = frame.timestamp >= 0x80000000
            kind = "private use" if private else "unassigned"
            assert pdu.label("hbproto.close.reason") == (
                f"Close Reason: {kind} (treated as unspecified) ({frame.timestamp})"
            )
            assert pdu.experts("Note") == ["hbproto.close.unknown_reason"]
        if frame.close_text is not None:
            assert pdu.one("hbproto.close.text").get("show") == frame.close_text
        if frame.auth is not None:
            key_id, mac = frame.auth
            assert (pdu.value("hbproto.auth.key_id"), pdu.one("hbproto.auth.mac").get("value")) == (
                key_id,
                mac.hex(),
            )
    assert kinds == set(FrameType) | {0x20, 0x70} | set(TlvType)


# The rows of SPEC Table 4, and a few more, as the dissector labels them.
INTERVAL_LABELS = [
    (0x0000, "0 (no periodic HEARTBEATs)"),
    (0x0063, "990 us"),
    (0x014A, "3.3 ms"),
    (0x07D0, "20 ms"),
    (0x3FFF, "163.83 ms"),
    (0x412C, "300 ms"),
    (0x43E8, "1 s"),
    (0x7FFF, "16.383 s"),
    (0x80FA, "25 s"),
    (0x8BB8, "300 s (5.0 min)"),
    (0xC168, "3600 s (1.0 h)"),
    (0xFFFE, "163820 s (45.5 h)"),
    (0xFFFF, "no preference"),
    (0x4001, "1 ms"),  # not canonical (0x0064 is): shown, and warned about
]


def test_intervals_are_shown_in_human_units(tshark: str, tmp_path: Path) -> None:
    pcap = Pcap()
    numbers = [
        pcap.udp(pack(FrameType.HEARTBEAT, State.DOWN, False, False, 3, 1, 0, 1, 2, 0x43E8, code))
        for code, _ in INTERVAL_LABELS
    ]
    packets = dissect(tshark, pcap.write(tmp_path / "intervals.pcap"))
    for (code, text), number in zip(INTERVAL_LABELS, numbers, strict=True):
        [pdu] = packets[number]
        assert (
            pdu.label("hbproto.required_rx") == f"Required Min RX Interval: {text} (0x{code:04x})"
        )
        assert pdu.has("hbproto.interval.noncanonical") == (code == 0x4001)
        assert pdu.experts() == []


# --- The test vectors ---------------------------------------------------------------------------

VALID = [t for t in TESTS if t["result"] == "valid"]
INVALID = [t for t in TESTS if t["result"] == "invalid"]


@pytest.fixture(scope="module")
def vector_pdus(tshark: str, tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[Pdu]]:
    """Each vector's hbproto frames as tshark shows them. Every vector goes in a datagram of its
    own, in one capture per receiver size limit (the V-3 preference); a valid frame too large
    for any datagram goes over TCP instead."""
    directory = tmp_path_factory.mktemp("vectors")
    by_limit: dict[int, list[dict[str, Any]]] = {}
    over_tcp = []
    for test in TESTS:
        if len(test["hex"]) // 2 > UDP_MAX_PAYLOAD:
            assert test["result"] == "valid"
            over_tcp.append(test)
        else:
            by_limit.setdefault(test.get("maxSize", 0xFFFF), []).append(test)
    jobs: list[tuple[Path, tuple[str, ...], dict[int, int]]] = []
    for limit, tests in by_limit.items():
        pcap = Pcap()
        where = {t["tcId"]: pcap.udp(bytes.fromhex(t["hex"])) for t in tests}
        path = pcap.write(directory / f"udp-{limit}.pcap")
        jobs.append((path, ("-o", f"hbproto.udp_max_frame:{limit}"), where))
    pcap = Pcap()
    flow = pcap.tcp()
    where = {t["tcId"]: flow.stream(bytes.fromhex(t["hex"]))[-1] for t in over_tcp}
    jobs.append((pcap.write(directory / "tcp.pcap"), (), where))
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda job: dissect(tshark, job[0], *job[1]), jobs))
    return {
        tc_id: packets[number]
        for (_, _, where), packets in zip(jobs, runs, strict=True)
        for tc_id, number in where.items()
    }


@pytest.mark.parametrize("test", VALID, ids=[f"tc{t['tcId']}" for t in VALID])
def test_a_valid_vector_is_shown_as_its_fields(
    vector_pdus: dict[int, list[Pdu]], test: dict[str, Any]
) -> None:
    [pdu] = vector_pdus[test["tcId"]]
    assert_shows(pdu, frame_of(test["decoded"]), bytes.fromhex(test["hex"]))


@pytest.mark.parametrize("test", INVALID, ids=[f"tc{t['tcId']}" for t in INVALID])
def test_an_invalid_vector_fails_the_check_that_a_receiver_fails_it_on(
    vector_pdus: dict[int, list[Pdu]], test: dict[str, Any]
) -> None:
    if not test["hex"]:
        # Wireshark's UDP dissector hands an empty datagram to no dissector at all.
        assert vector_pdus[test["tcId"]] == []
        return
    [pdu] = vector_pdus[test["tcId"]]
    assert_fails(pdu, CHECK_OF.get(test["error"], "V-2"), test["error"])


# --- TCP: frames delimited by Length ----------------------------------------------------------


def _data(message: bytes, seq: int) -> tuple[Frame, bytes]:
    frame = Frame(FrameType.DATA, State.UP, 1, 2, seq, 0, tlvs=(Tlv(TlvType.PAYLOAD, message),))
    return frame, encode(frame)


def test_two_frames_in_one_segment_and_frames_split_across_segments(
    tshark: str, tmp_path: Path
) -> None:
    heartbeat = Frame(FrameType.HEARTBEAT, State.UP, 1, 2, 1, 0x1234, 100_000, 100_000, poll=True)
    hb_wire = encode(heartbeat)
    (d1, w1), (d2, w2), (d3, w3) = (_data(bytes(range(n)), n) for n in (100, 60, 20))
    pcap = Pcap()
    flow = pcap.tcp()
    together = flow.segment(hb_wire + w1)  # two whole frames in one segment
    head = flow.segment(w2[:2])  # cut inside the 4 bytes that give the Length
    body = flow.segment(w2[2:40])  # still not the whole frame
    rest = flow.segment(w2[40:] + w3[:10])  # its end, and the start of the next
    last = flow.segment(w3[10:])
    tiny = flow.stream(w1 + hb_wire, mss=3)  # every cut, three bytes at a time
    capture = pcap.write(tmp_path / "tcp.pcap")
    packets = dissect(tshark, capture)

    assert len(packets[together]) == 2
    assert_shows(packets[together][0], heartbeat, hb_wire)
    assert_shows(packets[together][1], d1, w1)
    assert packets[head] == []
    assert packets[body] == []
    [second] = packets[rest]
    assert_shows(second, d2, w2)
    [third] = packets[last]
    assert_shows(third, d3, w3)
    shown = [pdu for number in tiny for pdu in packets[number]]
    assert len(shown) == 2
    assert_shows(shown[0], d1, w1)
    assert_shows(shown[1], heartbeat, hb_wire)

    columns = subprocess.run(
        [
            *(tshark, "-X", f"lua_script:{DISSECTOR}", "-r", str(capture), "-T", "fields"),
            *("-e", "frame.number", "-e", "_ws.col.Info", "-Y", f"frame.number == {together}"),
        ],
        capture_output=True,
        text=True,
        timeout=TSHARK_TIMEOUT,
        check=True,
    )
    info = columns.stdout.strip().split("\t")[1]
    assert info.startswith("HEARTBEAT UP [P] My=0x00000001 Your=0x00000002 Seq=1"), info
    assert " | DATA UP My=0x00000001 Your=0x00000002 Seq=100 " in info, info


def test_a_stream_of_every_valid_vector_in_full_size_segments(tshark: str, tmp_path: Path) -> None:
    """Frames of 28 to 65535 bytes back to back, cut every 1448 bytes wherever that falls."""
    pcap = Pcap()
    stream = b"".join(bytes.fromhex(t["hex"]) for t in VALID)
    numbers = pcap.tcp().stream(stream)
    packets = dissect(tshark, pcap.write(tmp_path / "stream.pcap"))
    shown = [pdu for number in numbers for pdu in packets[number]]
    assert len(shown) == len(VALID)
    for pdu, test in zip(shown, VALID, strict=True):
        assert_shows(pdu, frame_of(test["decoded"]), bytes.fromhex(test["hex"]))


def test_a_stream_goes_on_after_a_bad_frame_but_not_after_a_bad_header(
    tshark: str, tmp_path: Path
) -> None:
    (_, w1), (d2, w2) = _data(b"one", 1), _data(b"two", 2)
    bad_crc = w1[:-1] + bytes([w1[-1] ^ 1])
    short = bytearray(w2)
    short[2:4] = (20).to_bytes(2, "big")  # Length under 28: no frame can be cut [HB-TCP-3]
    pcap = Pcap()
    flow = pcap.tcp()
    crc_failed = flow.segment(bad_crc)
    after = flow.segment(w2)
    unframeable = flow.segment(bytes(short) + w1)
    other = pcap.tcp(sport=40002)
    wrong_version = other.segment(b"\x21" + w1[1:])
    packets = dissect(tshark, pcap.write(tmp_path / "stream-errors.pcap"))

    [pdu] = packets[crc_failed]
    assert_fails(pdu, "V-5", "bad_checksum")  # delimited, discarded, and the stream goes on
    assert pdu.value("hbproto.crc.status") == 0
    [pdu] = packets[after]
    assert_shows(pdu, d2, w2)
    [pdu] = packets[unframeable]  # the rest of the segment, valid frame included, is not framed
    assert pdu.experts() == ["hbproto.tcp.unframeable"]
    assert pdu.value("hbproto.length") == 20
    [pdu] = packets[wrong_version]
    assert pdu.experts() == ["hbproto.v1.bad_version", "hbproto.tcp.unframeable"]
    assert pdu.value("hbproto.version") == 2


# --- Where the dissector is used: port, Decode As, heuristics ----------------------------------


def test_port_preference_decode_as_and_heuristics(tshark: str, tmp_path: Path) -> None:
    frame, wire = _data(b"which port", 1)
    bad_crc = wire[:-1] + bytes([wire[-1] ^ 0x80])
    pcap = Pcap()
    default_port = pcap.udp(wire, 40000, PORT)
    udp_9999 = pcap.udp(wire, 40000, 9999)
    tcp_9999 = pcap.tcp(40001, 9999).segment(wire)
    udp_other = pcap.udp(wire, 45000, 46000)
    udp_bad_crc = pcap.udp(bad_crc, 45001, 46001)
    udp_noise = pcap.udp(b"\x11" + bytes(range(1, 40)), 45002, 46002)
    tcp_other = pcap.tcp(45003, 46003)
    tcp_other_first = tcp_other.segment(wire)
    tcp_other_later = tcp_other.stream(wire, mss=20)[-1]  # in the conversation hbproto claimed
    capture = pcap.write(tmp_path / "ports.pcap")
    no_heuristics = ("--disable-heuristic", "hbproto_udp", "--disable-heuristic", "hbproto_tcp")

    def decoded(packets: dict[int, list[Pdu]]) -> set[int]:
        for pdus in packets.values():
            for pdu in pdus:
                assert_shows(pdu, frame, wire)
        return {number for number, pdus in packets.items() if pdus}

    runs = [
        (),
        no_heuristics,
        (*no_heuristics, "-o", "hbproto.port:9999"),
        (*no_heuristics, "-d", "udp.port==9999,hbproto", "-d", "tcp.port==9999,hbproto"),
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = list(pool.map(lambda options: decoded(dissect(tshark, capture, *options)), runs))
    heuristics, ports_only, port_moved, decode_as = found
    # A whole valid frame is recognised anywhere; a wrong CRC or other bytes are left alone.
    assert heuristics == {
        default_port,
        udp_9999,
        tcp_9999,
        udp_other,
        tcp_other_first,
        tcp_other_later,
    }
    assert ports_only == {default_port}
    assert port_moved == {udp_9999, tcp_9999}
    assert decode_as == {default_port, udp_9999, tcp_9999}
    assert udp_bad_crc not in heuristics
    assert udp_noise not in heuristics


# --- Real traffic --------------------------------------------------------------------------------


def _free_port() -> int:
    """A port that neither UDP nor TCP uses on loopback now."""
    while True:
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def _says(stream: IO[str] | None, text: str, timeout: float) -> bool:
    """Whether a line of ``stream`` contains ``text`` within ``timeout`` (the rest is drained)."""
    said = threading.Event()

    def read() -> None:
        assert stream is not None
        for line in stream:
            if text in line:
                said.set()

    threading.Thread(target=read, daemon=True).start()
    return said.wait(timeout)


def _closes_captured(tshark: str, capture: Path) -> set[str]:
    """The transports whose CLOSE frames are in ``capture`` so far (it may end mid-packet)."""
    run = subprocess.run(
        [
            *(tshark, "-n", "-X", f"lua_script:{DISSECTOR}", "-r", str(capture)),
            *("-Y", "hbproto.type == 4", "-T", "fields", "-e", "frame.protocols"),
        ],
        capture_output=True,
        text=True,
        timeout=TSHARK_TIMEOUT,
        check=False,
    )
    return {t for line in run.stdout.split() for t in ("udp", "tcp") if f":{t}:" in line}


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="capturing needs root")
def test_real_traffic_of_hbproto_serve_and_connect(tshark: str, tmp_path: Path) -> None:
    """hbproto serve and connect on loopback, over UDP and TCP on a port the dissector is not
    told about: the heuristics find both, and every frame is valid and shown."""
    port = _free_port()
    capture_file = tmp_path / "live.pcapng"
    command = [sys.executable, "-m", "transports"]
    capture = subprocess.Popen(
        [tshark, "-i", "lo", "-f", f"port {port}", "-w", str(capture_file), "-q"],
        stderr=subprocess.PIPE,
        text=True,
    )
    peers: list[subprocess.Popen[str]] = []
    try:
        assert _says(capture.stderr, "Capturing on", timeout=15), "tshark did not capture"
        for transport in ("udp", "tcp"):
            address = f"{transport}://127.0.0.1:{port}"
            serve = [*command, "serve", address, "--echo", "--duration", "20"]
            peers.append(subprocess.Popen(serve, stdout=subprocess.PIPE, text=True))
            assert _says(peers[-1].stdout, "listening on", timeout=15), f"{address} never served"
        servers = peers[:]
        for transport in ("udp", "tcp"):
            address = f"{transport}://127.0.0.1:{port}"
            connect = [
                *command,
                "connect",
                address,
                "-i",
                "0.1",
                "--send",
                "hi",
                "--duration",
                "0.5",
            ]
            peers.append(subprocess.Popen(connect, stdout=subprocess.DEVNULL, text=True))
        assert [client.wait(timeout=20) for client in peers[2:]] == [0, 0]
        for server in servers:
            server.send_signal(signal.SIGINT)  # hbproto closes gracefully on Ctrl-C
            assert server.wait(timeout=10) == 0
        # The capture holds packets back for a while: stop it once the last frames are in.
        deadline = time.monotonic() + 15
        while _closes_captured(tshark, capture_file) != {"udp", "tcp"}:
            assert time.monotonic() < deadline, "the CLOSE frames never reached the capture"
    finally:
        for process in (*peers, capture):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
    packets = dissect(tshark, capture_file)
    pdus = [pdu for found in packets.values() for pdu in found]
    for pdu in pdus:
        assert pdu.experts() == []
        assert pdu.value("hbproto.crc.status") == 1
    seen = {(pdu.transport, FrameType(pdu.value("hbproto.type")).name) for pdu in pdus}
    assert seen == {(t, ft.name) for t in ("udp", "tcp") for ft in FrameType}
    closes = [pdu for pdu in pdus if pdu.has("hbproto.close.reason")]
    assert {pdu.one("hbproto.close.reason_name").get("show") for pdu in closes} == {"shutdown"}
