"""Which MUST requirements the conformance suite checks, and which of those checks a mutant
proves able to fail."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from conformance.registry import catalogue
from conformance.requirements import level_of, requirements

from . import MUTANTS

SPEC = Path(__file__).resolve().parents[2] / "SPEC.md"

# MUST requirements the wire would show, but that no case checks: the suite, as the peer,
# cannot make the target do what they govern. Each is said here why, and the report prints it.
UNPROVOKED = {
    "HB-ACK-6": "ignoring F outside a poll leaves nothing on the wire to see",
    "HB-CLOSE-5": "a refusal is the target's choice (MAY), at limits only the target knows",
    "HB-DATA-1": "only the target's application sends DATA",
    "HB-DATA-4": "an error returned to the target's application",
    "HB-DET-9": "needs the target's own R at 0 as well as the suite's",
    "HB-ID-3": "needs the target to restart",
    "HB-NEG-3": "needs the target's own R at 0 as well as the suite's",
    "HB-NEG-6": "the values assumed before a first frame are hidden by the slow start",
    "HB-NEG-7": "MIN_TX is the target's setting; the default, 1 ms, is below timing noise",
    "HB-POLL-1": "the target polls only when its own configuration changes",
    "HB-POLL-2": "the target polls only when its own configuration changes",
    "HB-POLL-4": "the target polls only when its own configuration changes",
    "HB-POLL-7": "the target polls only when its own configuration changes",
    "HB-RTT-1": "round-trip times are reported to the target's application",
    "HB-SEQ-5": "needs 2^31 frames in one authenticated session",
    "HB-SES-3": "the limits are the target's to choose; the suite does not know them",
    "HB-SM-8": "an initiator case would wait out HANDSHAKE_TIMEOUT (10 s) after a DOWN",
    "HB-TX-3": "idle-only mode is the target's setting and looks no different to its peer",
    "HB-TX-7": "reported to the target's application after HANDSHAKE_TIMEOUT without a frame",
    "HB-VER-1": "there is one version",
}


def wire_blind() -> frozenset[str]:
    """The requirements SPEC.md's Table 17 lists as not showing on the wire (in whole or part)."""
    text = SPEC.read_text(encoding="utf-8")
    start = text.index("*Table 17.")
    table = text[start : text.index("\n\n", text.index("|", start))]
    ids = set(re.findall(r"\[(HB-[A-Z]+-\d+)\]", table))
    for prefix, first, last in re.findall(r"\[(HB-[A-Z]+-)(\d+)\] to \[HB-[A-Z]+-(\d+)\]", table):
        ids.update(f"{prefix}{n}" for n in range(int(first), int(last) + 1))
    return frozenset(ids)


@dataclass(frozen=True, slots=True)
class Coverage:
    musts: list[str]
    blind: list[str]  # MUSTs in Table 17 that no case cites
    no_case: list[str]  # MUSTs the wire shows that no case cites
    not_tripped: list[str]  # MUSTs with cases, none of which any mutant fails
    tripped: list[str]


def coverage() -> Coverage:
    reqs = requirements()
    musts = sorted((r for r, text in reqs.items() if level_of(text) == "MUST"), key=_order)
    cited: dict[str, set[str]] = {r: set() for r in musts}
    for case in catalogue():
        for r in case.requirements:
            cited.setdefault(r, set()).add(case.id)
    failing = {case for m in MUTANTS.values() for ids in m.fails.values() for case in ids}
    blind = wire_blind()
    return Coverage(
        musts=musts,
        blind=[r for r in musts if not cited[r] and r in blind],
        no_case=[r for r in musts if not cited[r] and r not in blind],
        not_tripped=[r for r in musts if cited[r] and not cited[r] & failing],
        tripped=[r for r in musts if cited[r] & failing],
    )


def _order(rid: str) -> tuple[str, int]:
    prefix, _, number = rid.rpartition("-")
    return prefix, int(number)


def report() -> str:
    c = coverage()
    lines = [
        f"{len(c.musts)} MUST requirements in SPEC.md; {len(MUTANTS)} mutants.",
        f"  {len(c.tripped)} have a case that some mutant fails;",
        f"  {len(c.not_tripped)} have cases that no mutant fails;",
        f"  {len(c.no_case)} have no case although the wire shows them;",
        f"  {len(c.blind)} have no case and are in Table 17 (the wire does not show them).",
    ]
    if c.no_case:
        lines += ["", "No case, although the wire shows them (why):"]
        lines += [f"  {r:<11} {UNPROVOKED.get(r, 'no reason recorded')}" for r in c.no_case]
    for title, ids in (
        ("Cases, but no mutant fails any of them", c.not_tripped),
        ("No case; Table 17", c.blind),
    ):
        if ids:
            lines += ["", f"{title}:", *_wrap(ids)]
    return "\n".join(lines)


def _wrap(ids: list[str], width: int = 96) -> list[str]:
    out, line = [], " "
    for rid in ids:
        if len(line) + len(rid) + 1 > width:
            out.append(line)
            line = " "
        line += " " + rid
    return [*out, line]
