"""``python3 -m tests.mutants NAME ARGS...``: the ``hbproto`` command with one mutant's fault.

``--list`` names the mutants; ``--coverage`` prints the requirement coverage report.
"""

from __future__ import annotations

import sys

from transports.cli import main as hbproto

from . import MUTANTS, REFERENCES
from .coverage import report


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    if argv[0] == "--list":
        for one in MUTANTS.values():
            print(f"{one.name:24} {one.breaks}")
        return 0
    if argv[0] == "--coverage":
        print(report())
        return 0
    chosen = MUTANTS.get(argv[0]) or REFERENCES.get(argv[0])
    if chosen is None:
        print(f"no mutant {argv[0]!r}; --list names them", file=sys.stderr)
        return 2
    chosen.patch()
    return hbproto(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
