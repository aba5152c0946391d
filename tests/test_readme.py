"""The README's commands are what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    run = text[text.index("## Run it") : text.index("## What is here")]
    return re.findall(r"```\n(.+?)\n```", run)


def test_readme_has_two_commands() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    assert commands[1].endswith("python3 -m pytest")


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
