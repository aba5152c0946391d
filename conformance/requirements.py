"""The SPEC's requirements, by ID, as the suite quotes them: ``requirements.json``.

It is generated from SPEC.md, so that the suite can quote requirements wherever it is
installed; ``python3 -m conformance.requirements`` regenerates it and ``--check`` verifies it
is current (CI runs the check through the test suite).
"""

from __future__ import annotations

import json
import re
import sys
from functools import cache
from pathlib import Path

__all__ = ["level_of", "parse_spec", "requirements"]

HERE = Path(__file__).resolve().parent
JSON = HERE / "requirements.json"
_BULLET = re.compile(r"^- \[(HB-[A-Z]+-\d+)\] (.*)$")
_KEYWORD = re.compile(r"\b(MUST NOT|MUST|SHOULD NOT|SHOULD|MAY)\b")


def parse_spec(text: str) -> dict[str, str]:
    """Every ``- [HB-...]`` bullet of SPEC.md: its ID and its text on one line."""
    found: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        match = _BULLET.match(line)
        if match:
            current = match[1]
            found[current] = match[2].strip()
        elif current is not None and line.startswith("  ") and line.strip():
            found[current] += " " + line.strip()
        else:
            current = None
    return found


def level_of(text: str) -> str:
    """The strongest RFC 2119 keyword in a requirement: MUST, SHOULD or MAY."""
    words = {m.split()[0] for m in _KEYWORD.findall(text)}
    for level in ("MUST", "SHOULD", "MAY"):
        if level in words:
            return level
    return "MAY"


@cache
def requirements() -> dict[str, str]:
    data: dict[str, str] = json.loads(JSON.read_text(encoding="utf-8"))
    return data


def main(argv: list[str]) -> int:
    spec = (HERE.parent / "SPEC.md").read_text(encoding="utf-8")
    text = json.dumps(parse_spec(spec), indent=1, sort_keys=True) + "\n"
    if "--check" in argv:
        if JSON.read_text(encoding="utf-8") != text:
            print("conformance/requirements.json is out of date with SPEC.md", file=sys.stderr)
            return 1
        return 0
    JSON.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
