"""What the package declares must exist, and what it builds installs and runs."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

import hbproto

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hbproto", "transports", "conformance")
BUILD_TIMEOUT = 300.0  # building fetches setuptools into an isolated environment
INSTALL_TIMEOUT = 300.0  # installing fetches construct and trio from the package index
RUN_TIMEOUT = 60.0


def test_every_console_script_points_at_a_callable() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for name, target in project.get("scripts", {}).items():
        module, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), name


def test_the_packages_are_typed() -> None:
    for package in PACKAGES:
        assert (ROOT / package / "py.typed").exists(), package


def _declared_version() -> str:
    """The version pyproject.toml's dynamic attribute names, read from the source the way
    setuptools reads it (statically, without importing)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["dynamic"] == ["version"]
    module, _, name = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"].rpartition(".")
    source = ROOT / Path(*module.split(".")) / "__init__.py"
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == [name]:
            value = ast.literal_eval(node.value)
            assert isinstance(value, str)
            return value
    raise AssertionError(f"{source} does not assign {name}")


def test_the_version_has_one_source() -> None:
    """hbproto.__version__ is the only version: no other package assigns one, and the commands
    and the conformance report take theirs from it."""
    assert hbproto.__version__ == _declared_version()
    assigned = [
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if re.search(r"^\s*__version__\s*[:=]", path.read_text(encoding="utf-8"), re.MULTILINE)
    ]
    assert assigned == ["hbproto/__init__.py"]
    for package in ("transports", "conformance"):
        module = importlib.import_module(package)
        assert getattr(module, "__version__", hbproto.__version__) == hbproto.__version__
    # The conformance JSON report's tool version is what conformance/cli.py passes it.
    cli = ast.parse((ROOT / "conformance" / "cli.py").read_text(encoding="utf-8"))
    passed = [
        ast.unparse(k.value)
        for node in ast.walk(cli)
        if isinstance(node, ast.Call)
        for k in node.keywords
        if k.arg == "tool_version"
    ]
    assert passed == ["__version__"]
    imports = [
        node.module
        for node in ast.walk(cli)
        if isinstance(node, ast.ImportFrom) and any(a.name == "__version__" for a in node.names)
    ]
    assert imports == ["hbproto"]


# --- Building, installing and running the distribution --------------------------------------

# Copied into a scratch directory to build from, so that building writes nothing here.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", "__pycache__", "*.egg-info", "build", "dist", ".venv", ".*_cache", ".hypothesis"
)


def _run(command: list[str], timeout: float, cwd: Path) -> str:
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )
    assert run.returncode == 0, f"{command}:\n{run.stdout}\n{run.stderr}"
    return run.stdout


@pytest.mark.slow
def test_the_distribution_builds_installs_in_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    """Slow (about 30 s) and needs the package index: `python -m build` makes an sdist and,
    from it, a wheel; each holds what it should; the wheel installs into a fresh venv, without
    this interpreter's packages, and its commands run from there."""
    if importlib.util.find_spec("build") is None:
        message = "the 'build' package is missing (pip install build, or .[test])"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI installs it, so this is a failure there")
        pytest.skip(message)
    version = _declared_version()
    source, dist = tmp_path / "source", tmp_path / "dist"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    _run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(source)], BUILD_TIMEOUT, tmp_path
    )
    [sdist] = dist.glob("*.tar.gz")
    [wheel] = dist.glob("*.whl")
    assert sdist.name == f"hbproto-{version}.tar.gz"
    assert wheel.name == f"hbproto-{version}-py3-none-any.whl"

    with tarfile.open(sdist) as archive:
        in_sdist = {name.partition("/")[2] for name in archive.getnames()}
    shipped = {"SPEC.md", "README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml"}
    shipped |= {"tools/wireshark/hbproto.lua", "docs/wireshark.md", "conformance/vectors.json"}
    assert shipped <= in_sdist, shipped - in_sdist
    assert not any(name.startswith("tests/") for name in in_sdist)

    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
        metadata = archive.read(f"hbproto-{version}.dist-info/METADATA").decode()
        entry_points = archive.read(f"hbproto-{version}.dist-info/entry_points.txt").decode()
    expected = {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for pattern in ("*.py", "py.typed")
        for path in (ROOT / package).rglob(pattern)
        if "__pycache__" not in path.parts
    }
    expected |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "conformance").glob("*.json")}
    expected |= {"conformance/CONTRACT.md"}
    assert expected <= in_wheel, expected - in_wheel
    assert {name.split("/")[0] for name in in_wheel} == {*PACKAGES, f"hbproto-{version}.dist-info"}
    assert f"\nVersion: {version}\n" in metadata
    assert "hbproto = transports.cli:main" in entry_points
    assert "hbproto-conformance = conformance.cli:main" in entry_points

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], RUN_TIMEOUT, tmp_path)
    python, scripts = venv / "bin" / "python", venv / "bin"
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    _run([*pip, "install", str(wheel)], INSTALL_TIMEOUT, tmp_path)
    # From tmp_path, not this checkout: what runs is what the wheel installed.
    shown = _run(
        [str(python), "-c", "import hbproto; print(hbproto.__version__, hbproto.__file__)"],
        RUN_TIMEOUT,
        tmp_path,
    ).split()
    assert shown[0] == version
    assert Path(shown[1]).is_relative_to(venv)
    assert _run([str(scripts / "hbproto"), "--version"], RUN_TIMEOUT, tmp_path).strip() == (
        f"hbproto {version}"
    )
    demo = _run([str(scripts / "hbproto"), "demo"], RUN_TIMEOUT, tmp_path)
    assert demo.startswith("hbproto demo: ")
    assert re.search(r"^\s*[\d.]+\s+udp\s+DOWN\s+heartbeats stopped", demo, re.MULTILINE), demo
    listing = _run([str(scripts / "hbproto-conformance"), "--list"], RUN_TIMEOUT, tmp_path)
    assert re.search(r"^\d+ cases$", listing, re.MULTILINE), listing
    assert "11.2/unframeable-stream" in listing
