"""Reports: a console report in the style of h2spec, versioned JSON, and JUnit XML."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from .model import Outcome, Result

__all__ = ["JSON_FORMAT", "JSON_VERSION", "Run", "console_line", "summary", "to_json", "to_junit"]

JSON_FORMAT = "hbproto-conformance-report"
JSON_VERSION = 1

_MARK = {
    Outcome.PASS: "PASS",
    Outcome.NON_STRICT: "NON-STRICT",
    Outcome.FAIL: "FAIL",
    Outcome.UNSUPPORTED: "UNSUPPORTED",
    Outcome.SKIPPED: "SKIPPED",
    Outcome.INCONCLUSIVE: "INCONCLUSIVE",
    Outcome.ERROR: "ERROR",
}


@dataclass(slots=True)
class Run:
    """What a report describes: a target, how it was judged, and the results."""

    target: str
    role: str
    seed: int
    tolerance: float
    started: str
    duration: float
    results: Sequence[Result]
    tool_version: str


def console_line(result: Result, out: TextIO, *, verbose: bool = False) -> None:
    """One case for a person: outcome, ID, title; the requirement, Expected and Actual when it
    did not pass."""
    case = result.case
    out.write(
        f"  {_MARK[result.outcome]:<12} {case.id} [{result.transport}]  {case.title}"
        f" ({result.duration:.2f} s)\n"
    )
    if result.outcome in (Outcome.PASS, Outcome.SKIPPED) and not verbose:
        return
    indent = " " * 17
    if result.outcome in (Outcome.FAIL, Outcome.NON_STRICT):
        quote = textwrap.fill(
            case.quote, width=98, initial_indent=indent + "-> ", subsequent_indent=indent + "   "
        )
        out.write(f"{quote}\n")
        out.write(f"{indent}   Expected: {result.expected}\n")
        out.write(f"{indent}     Actual: {result.actual}\n")
    if result.message:
        out.write(f"{indent}{result.message}\n")
    for name, value in result.timings.items():
        out.write(f"{indent}{name}: {value:.4f} s\n")


def summary(results: Sequence[Result]) -> str:
    counts = Counter(r.outcome for r in results)
    parts = [f"{counts[o]} {_MARK[o]}" for o in Outcome if counts[o]]
    return f"{len(results)} results: " + ", ".join(parts)


def to_json(run: Run) -> dict[str, Any]:
    """The report as a JSON document, format ``hbproto-conformance-report`` version 1."""
    return {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "tool": {"name": "hbproto-conformance", "version": run.tool_version},
        "target": run.target,
        "role": run.role,
        "seed": run.seed,
        "toleranceSeconds": run.tolerance,
        "started": run.started,
        "durationSeconds": round(run.duration, 3),
        "summary": {o.value: sum(r.outcome is o for r in run.results) for o in Outcome},
        "results": [
            {
                "id": r.case.id,
                "title": r.case.title,
                "section": r.case.section,
                "level": r.case.level.value,
                "category": r.case.category.value,
                "requirements": list(r.case.requirements),
                "transport": r.transport,
                "role": r.role.value,
                "outcome": r.outcome.value,
                "durationSeconds": round(r.duration, 4),
                "expected": r.expected,
                "actual": r.actual,
                "message": r.message,
                "timings": {k: round(v, 6) for k, v in r.timings.items()},
                "events": r.events,
                "frames": [
                    {
                        "t": round(f.time, 6),
                        "direction": f.direction,
                        "summary": f.summary,
                        "hex": f.raw.hex(),
                        "note": f.note,
                    }
                    for f in r.frames
                ],
            }
            for r in run.results
        ],
    }


def to_junit(run: Run, *, strict: bool = False) -> str:
    """The report as JUnit XML (the common Jenkins/Ant schema): one testcase per result;
    FAIL is a failure, ERROR an error, SKIPPED, UNSUPPORTED and INCONCLUSIVE are skipped, and
    NON-STRICT is a failure only with ``strict``."""
    results = run.results
    failures = sum(
        r.outcome is Outcome.FAIL or (strict and r.outcome is Outcome.NON_STRICT) for r in results
    )
    errors = sum(r.outcome is Outcome.ERROR for r in results)
    skipped = sum(
        r.outcome in (Outcome.SKIPPED, Outcome.UNSUPPORTED, Outcome.INCONCLUSIVE) for r in results
    )
    suites = ET.Element(
        "testsuites",
        name="hbproto conformance",
        tests=str(len(results)),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
        time=f"{run.duration:.3f}",
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"hbproto conformance: {run.target} ({run.role})",
        tests=str(len(results)),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
        time=f"{run.duration:.3f}",
        timestamp=run.started,
    )
    for r in results:
        case = ET.SubElement(
            suite,
            "testcase",
            name=f"{r.case.id} [{r.transport}]",
            classname=f"hbproto.{r.case.section}",
            time=f"{r.duration:.3f}",
        )
        detail = f"{r.case.quote}\nExpected: {r.expected}\nActual: {r.actual}\n{r.message}"
        if r.outcome is Outcome.FAIL or (strict and r.outcome is Outcome.NON_STRICT):
            element = ET.SubElement(case, "failure", message=f"expected {r.expected}")
            element.set("type", r.case.level.value)
            element.text = detail
        elif r.outcome is Outcome.ERROR:
            ET.SubElement(case, "error", message=r.message, type="ERROR").text = detail
        elif r.outcome in (Outcome.SKIPPED, Outcome.UNSUPPORTED, Outcome.INCONCLUSIVE):
            ET.SubElement(case, "skipped", message=f"{r.outcome.value}: {r.message}")
        elif r.outcome is Outcome.NON_STRICT:
            ET.SubElement(case, "system-out").text = f"NON-STRICT (a SHOULD):\n{detail}"
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def dump_json(run: Run) -> str:
    return json.dumps(to_json(run), indent=1) + "\n"
