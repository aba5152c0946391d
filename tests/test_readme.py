"""The README's commands are what CI runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block as (info string, body), pairing each opening fence with its close."""
    blocks: list[tuple[str, str]] = []
    info: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        if line.startswith("```"):
            if info is None:
                info, body = line[3:].strip(), []
            else:
                blocks.append((info, "\n".join(body)))
                info = None
        elif info is not None:
            body.append(line)
    return blocks


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    run = text[text.index("## Run it") : text.index("## Status")]
    return [body for info, body in _blocks(run) if not info]


def test_readme_has_two_commands() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    assert commands[1].endswith("python3 -m pytest")


def test_the_main_command_is_the_demo() -> None:
    assert _readme_commands()[0].endswith("&& hbproto demo")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"]["hbproto"] == "transports.cli:main"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert _readme_commands()[1] in ci


def test_readme_embedding_example_prints_what_the_readme_shows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Embedding the core") :]
    example, shown = re.findall(r"```(?:python)?\n(.+?)```", section, re.DOTALL)[:2]
    exec(compile(example, "README.md", "exec"), {})
    assert capsys.readouterr().out == shown


def test_readme_python_examples_run() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    examples = re.findall(r"```python\n(.+?)```", text, re.DOTALL)
    assert examples
    for example in examples:
        exec(compile(example, "README.md", "exec"), {})
