"""The core must stay sans-IO: no module under hbproto/ may import I/O or clock machinery."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FORBIDDEN = {"trio", "asyncio", "socket", "select", "selectors", "threading", "time", "anyio"}
CORE = Path(__file__).resolve().parent.parent / "hbproto"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_no_io(path: Path) -> None:
    assert not (_imports(path) & FORBIDDEN)


def test_the_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import socket\nfrom time import monotonic\n")
    assert _imports(bad) & FORBIDDEN == {"socket", "time"}
