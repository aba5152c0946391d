"""The guides in docs/ say what the code does.

- Every ```python block of a guide runs. The blocks of one guide run in order, in one fresh
  interpreter and one namespace, from the repository root, as a reader following the guide
  would run them. A block followed by an ``<!-- output -->`` comment and a fenced block must
  print exactly that block's text. A block after a ``<!-- not-run -->`` comment is skipped: only
  for what cannot run here, such as a command in a second process.
- Every relative link in docs/*.md names a file that exists, and every ``#anchor`` a heading.
- docs/README.md links every guide.
- docs/api.md lists the public API (``hbproto.__all__`` and ``transports.__all__``) as it is.
  Regenerate its part below the marker line with ``python3 -m tests.test_docs``.
"""

from __future__ import annotations

import difflib
import enum
import inspect
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ForwardRef

import pytest

import hbproto
import transports

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
API = DOCS / "api.md"
API_MARKER = "<!-- Everything below is generated: python3 -m tests.test_docs -->"
NOT_RUN = "<!-- not-run -->"
OUTPUT = "<!-- output -->"
SNIPPET_TIMEOUT = 120.0  # seconds for all of one guide's blocks; they take a few seconds

# --- Fenced blocks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fence:
    """One fenced block: its info string, its text, the line its text starts on (1-based),
    and the HTML comment on the last non-blank line before it, if any."""

    info: str
    body: str
    line: int
    marker: str | None


def fences(text: str) -> list[Fence]:
    """Every fenced block of a Markdown text, each opening fence paired with its close.

    The pairing is tests/test_readme.py's; this adds the line numbers and the markers.
    """
    found: list[Fence] = []
    info: str | None = None
    body: list[str] = []
    start = 0
    marker: str | None = None
    before: str | None = None  # the last non-blank line outside a block
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            if info is None:
                info, body, start = line[3:].strip(), [], number + 1
                marker = before if before is not None and before.startswith("<!--") else None
            else:
                found.append(Fence(info, "\n".join(body) + "\n", start, marker))
                info, before = None, line
        elif info is not None:
            body.append(line)
        elif line.strip():
            before = line.strip()
    return found


def guides() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


@dataclass(frozen=True)
class Snippet:
    """A block to run, and the text it must print (``None``: anything)."""

    fence: Fence
    expected: str | None


def snippets(path: Path) -> list[Snippet]:
    blocks = fences(path.read_text(encoding="utf-8"))
    found: list[Snippet] = []
    for index, fence in enumerate(blocks):
        if fence.info != "python" or fence.marker == NOT_RUN:
            continue
        after = blocks[index + 1] if index + 1 < len(blocks) else None
        expected = after.body if after is not None and after.marker == OUTPUT else None
        found.append(Snippet(fence, expected))
    return found


# Runs one guide's blocks in order in one namespace, with line numbers in tracebacks that are
# the guide's own, and writes a separator before each block so that each one's output can be
# told apart.
_RUNNER = """
import json, sys
guide = json.load(sys.stdin)
namespace = {"__name__": "__main__"}
for line, code in guide["blocks"]:
    sys.stdout.write(guide["separator"] + "\\n")
    sys.stdout.flush()
    exec(compile("\\n" * (line - 1) + code, guide["path"], "exec"), namespace)
    sys.stdout.flush()
"""
_SEPARATOR = "\x1e--- next block ---\x1e"


def _guides_with_snippets() -> list[Any]:
    return [pytest.param(path, id=path.name) for path in guides() if snippets(path)] or [
        pytest.param(None, id="no-guides", marks=pytest.mark.skip(reason="no guide has code"))
    ]


@pytest.mark.parametrize("path", _guides_with_snippets())
def test_every_python_block_runs_and_prints_what_the_guide_shows(path: Path) -> None:
    runnable = snippets(path)
    relative = str(path.relative_to(ROOT))
    guide = {
        "path": relative,
        "separator": _SEPARATOR,
        "blocks": [(s.fence.line, s.fence.body) for s in runnable],
    }
    run = subprocess.run(
        [sys.executable, "-c", _RUNNER],
        input=json.dumps(guide),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=SNIPPET_TIMEOUT,
        check=False,
    )
    outputs = run.stdout.split(_SEPARATOR + "\n")[1:]
    assert run.returncode == 0, (
        f"a block of {relative} failed (block {len(outputs)} of {len(runnable)}):\n{run.stderr}"
    )
    assert len(outputs) == len(runnable)
    for snippet, output in zip(runnable, outputs, strict=True):
        if snippet.expected is not None:
            assert output == snippet.expected, (
                f"{relative}:{snippet.fence.line}: the block prints something else than the "
                f"output shown after it:\n" + _diff(snippet.expected, output)
            )


def test_output_blocks_follow_python_blocks() -> None:
    """An ``<!-- output -->`` block that follows no runnable block would check nothing."""
    for path in guides():
        blocks = fences(path.read_text(encoding="utf-8"))
        for index, fence in enumerate(blocks):
            if fence.marker == OUTPUT:
                previous = blocks[index - 1] if index else None
                assert previous is not None, f"{path.name}:{fence.line}: output of nothing"
                assert previous.info == "python", f"{path.name}:{fence.line}"
                assert previous.marker != NOT_RUN, f"{path.name}:{fence.line}"


# --- Links --------------------------------------------------------------------------------------

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_INLINE_CODE = re.compile(r"`[^`]*`")


def _prose(text: str, *, keep_code: bool = False) -> Iterator[tuple[int, str]]:
    """The numbered lines of a Markdown text outside fenced blocks, without inline code unless
    ``keep_code`` (a heading's anchor is made from its text, inline code included)."""
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            inside = not inside
        elif not inside:
            yield number, line if keep_code else _INLINE_CODE.sub("", line)


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a Markdown text's headings."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in _prose(text, keep_code=True):
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(path: Path) -> Iterator[tuple[int, str]]:
    for number, line in _prose(path.read_text(encoding="utf-8")):
        for match in _LINK.finditer(line):
            yield number, match.group(1)


def _is_external(target: str) -> bool:
    return re.match(r"[a-z][a-z0-9+.-]*:", target) is not None


def test_relative_links_resolve() -> None:
    broken: list[str] = []
    for path in guides():
        for number, target in links(path):
            if _is_external(target):
                continue
            name, _, anchor = target.partition("#")
            file = (path.parent / name).resolve() if name else path
            where = f"{path.name}:{number}: {target}"
            if not file.exists():
                broken.append(f"{where} (no such file)")
            elif (
                anchor
                and file.suffix == ".md"
                and anchor not in anchors(file.read_text(encoding="utf-8"))
            ):
                broken.append(f"{where} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_index_links_every_guide() -> None:
    index = DOCS / "README.md"
    linked = {
        (index.parent / target.partition("#")[0]).resolve()
        for _, target in links(index)
        if not _is_external(target)
    }
    missing = [p.name for p in guides() if p != index and p.resolve() not in linked]
    assert not missing, f"docs/README.md does not link {missing}"


# --- The API reference --------------------------------------------------------------------------

PACKAGES = (hbproto, transports)
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


class _Text:
    """An annotation or default shown as written, without the quotes repr() would add."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _exported() -> dict[int, str]:
    """Exported objects by identity, so that a default such as UNCHANGED is shown by name."""
    return {id(getattr(p, name)): name for p in PACKAGES for name in p.__all__}


def _default(value: Any, names: dict[int, str]) -> str:
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if id(value) in names and not isinstance(value, int | str | float | bool | type(None)):
        return names[id(value)]
    return repr(value)


def _annotation(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, ForwardRef):
        return value.__forward_arg__
    if isinstance(value, type):
        return value.__name__
    return repr(value).replace("typing.", "")


def signature(obj: Callable[..., Any], *, drop_first: bool = False, returns: bool = True) -> str:
    """A signature as the source writes it: annotations unquoted, defaults by name."""
    sig = inspect.signature(obj)
    names = _exported()
    params = []
    for index, param in enumerate(sig.parameters.values()):
        if drop_first and index == 0:
            continue
        changes: dict[str, Any] = {}
        if param.annotation is not inspect.Parameter.empty:
            changes["annotation"] = _Text(_annotation(param.annotation))
        if param.default is not inspect.Parameter.empty:
            changes["default"] = _Text(_default(param.default, names))
        params.append(param.replace(**changes))
    result = sig.return_annotation
    if not returns or result is inspect.Signature.empty:
        return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))
    return str(sig.replace(parameters=params, return_annotation=_Text(_annotation(result))))


def summary(obj: Any) -> str:
    """The first paragraph of an object's own docstring, on one line, in Markdown."""
    doc = obj.__doc__ if inspect.isclass(obj) else inspect.getdoc(obj)
    if not doc:
        return ""
    first = inspect.cleandoc(doc).split("\n\n")[0]
    text = " ".join(first.split())
    return _ROLE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text).replace("``", "`")


def _project_class(klass: type) -> bool:
    return klass.__module__.split(".")[0] in {p.__name__ for p in PACKAGES}


def _members(cls: type) -> Iterator[str]:
    """One line per public method and property of a class, its project bases' included."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not _project_class(klass):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            line = _member(cls, name, member)
            if line is not None:
                yield line


def _member(cls: type, name: str, member: Any) -> str | None:
    if isinstance(member, property):
        returns = inspect.signature(member.fget).return_annotation if member.fget else None
        kind = f": {_annotation(returns)}" if returns not in (None, inspect.Signature.empty) else ""
        return _item(f"{name}{kind}", "property", member)
    if isinstance(member, classmethod | staticmethod):
        function = member.__func__
        drop = isinstance(member, classmethod)
        shown = f"{cls.__name__}.{name}{signature(function, drop_first=drop)}"
        return _item(shown, "classmethod" if drop else "staticmethod", function)
    if inspect.isfunction(member):
        prefix = "async " if inspect.iscoroutinefunction(member) else ""
        return _item(f"{prefix}{name}{signature(member, drop_first=True)}", None, member)
    return None


def _item(code: str, kind: str | None, obj: Any) -> str:
    text = summary(obj)
    label = f" ({kind})" if kind else ""
    return f"- `{code}`{label}" + (f": {text}" if text else "")


def _describe_class(name: str, cls: type) -> list[str]:
    out = [f"### `{name}`", ""]
    if issubclass(cls, enum.Enum):
        base = next(b for b in cls.__mro__[1:] if b.__module__ == "enum").__name__
        out.append(f"`class {name}({base})`")
    elif issubclass(cls, BaseException):
        out.append(f"`class {name}({cls.__bases__[0].__name__})`")
    elif inspect.isabstract(cls):  # made by the transports, never by the application
        out.append(f"`class {name}` (abstract)")
    else:
        kind = ""
        if is_dataclass(cls):
            frozen = cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
            kind = " (frozen dataclass)" if frozen else " (dataclass)"
        out.append(f"`class {name}{signature(cls, returns=False)}`{kind}")
    text = summary(cls)
    if text:
        out += ["", text]
    lines: list[str] = []
    if issubclass(cls, enum.Enum):
        lines = [f"- `{member.name} = {member.value!r}`" for member in cls]
    elif issubclass(cls, BaseException):
        lines = [
            f"- `{attr} = {value!r}`"
            for attr, value in vars(cls).items()
            if not attr.startswith("_") and isinstance(value, str)
        ]
    else:
        lines = list(_members(cls))
    if lines:
        out += ["", *lines]
    return out


def _describe(name: str, obj: Any) -> list[str]:
    if inspect.isclass(obj):
        return _describe_class(name, obj)
    if callable(obj):
        wrapped = getattr(obj, "__wrapped__", None)
        if wrapped is not None and inspect.isasyncgenfunction(wrapped):
            kind = "async with "
        elif inspect.iscoroutinefunction(obj):
            kind = "async "
        else:
            kind = ""
        out = [f"### `{name}`", "", f"`{kind}{name}{signature(obj)}`"]
        text = summary(obj)
        return out + (["", text] if text else [])
    value = f" = {obj!r}" if isinstance(obj, int) else ""
    return [f"### `{name}`", "", f"`{name}: {type(obj).__name__}{value}`"]


def _home(package: ModuleType, name: str, obj: Any) -> str:
    """The source file that defines an exported name, as a repository path."""
    module = getattr(obj, "__module__", None) if inspect.isclass(obj) or callable(obj) else None
    if module is None:
        for candidate in sorted(m for m in sys.modules if m.startswith(package.__name__ + ".")):
            if name in getattr(sys.modules[candidate], "__all__", ()):
                module = candidate
                break
        else:
            module = package.__name__
    file = sys.modules[module].__file__
    assert file is not None
    return str(Path(file).resolve().relative_to(ROOT))


def api_reference() -> str:
    """The generated part of docs/api.md."""
    out: list[str] = []
    for package in PACKAGES:
        out += [f"## `{package.__name__}`", "", summary(package)]
        by_file: dict[str, list[str]] = {}
        for name in package.__all__:
            obj = getattr(package, name)
            by_file.setdefault(_home(package, name, obj), []).append(name)
        for file, names in sorted(by_file.items()):
            out += ["", f"Defined in [`{file}`](../{file}):"]
            for name in names:
                out += ["", *_describe(name, getattr(package, name))]
        out.append("")
    return "\n".join(out)


def _split_api() -> tuple[str, str]:
    text = API.read_text(encoding="utf-8")
    head, marker, generated = text.partition(API_MARKER + "\n")
    assert marker, f"docs/api.md has no marker line {API_MARKER!r}"
    return head, generated


def _diff(expected: str, actual: str) -> str:
    lines = difflib.unified_diff(
        expected.splitlines(), actual.splitlines(), "shown", "actual", lineterm="", n=1
    )
    return "\n".join(list(lines)[:60])


def test_every_exported_name_exists() -> None:
    for package in PACKAGES:
        missing = [name for name in package.__all__ if not hasattr(package, name)]
        assert not missing, f"{package.__name__}.__all__ names what it lacks: {missing}"


def test_api_reference_is_current() -> None:
    _, generated = _split_api()
    current = api_reference()
    assert generated == current, (
        "docs/api.md is out of date with the code; regenerate it with "
        "`python3 -m tests.test_docs` and review the change:\n" + _diff(generated, current)
    )


def write_api_reference() -> None:
    """Rewrite docs/api.md below its marker line; the hand-written part above it stays."""
    head, _ = _split_api()
    API.write_text(head + API_MARKER + "\n" + api_reference(), encoding="utf-8")


if __name__ == "__main__":
    write_api_reference()
    print(f"wrote {API.relative_to(ROOT)}")
