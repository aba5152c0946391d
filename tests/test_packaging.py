"""What the package declares must exist."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_console_script_points_at_a_callable() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for name, target in project.get("scripts", {}).items():
        module, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), name


def test_the_packages_are_typed() -> None:
    assert (ROOT / "hbproto" / "py.typed").exists()
    assert (ROOT / "transports" / "py.typed").exists()
