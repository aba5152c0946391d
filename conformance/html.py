"""A static HTML report: one page, no scripts, a timeline of frames per case.

Open it in a browser: a summary, a table of every case, and for each case that did not pass
(and, folded, for the rest) the requirement quoted, Expected and Actual, the timings, and every
frame that crossed the wire, in order, with its time and direction.
"""

from __future__ import annotations

from html import escape

from .model import Outcome, Result
from .report import Run

__all__ = ["to_html"]

_COLOUR = {
    Outcome.PASS: "#2e7d32",
    Outcome.NON_STRICT: "#b26a00",
    Outcome.FAIL: "#c62828",
    Outcome.UNSUPPORTED: "#546e7a",
    Outcome.SKIPPED: "#78909c",
    Outcome.INCONCLUSIVE: "#6a1b9a",
    Outcome.ERROR: "#ad1457",
}

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
tr:nth-child(even) { background: #f6f6f6; }
.badge { color: white; border-radius: 3px; padding: 0 6px; font-weight: 600; font-size: 0.85em; }
.quote { border-left: 3px solid #bbb; padding-left: 10px; color: #444; max-width: 60em; }
.frames td { font: 12px/1.3 ui-monospace, monospace; white-space: pre; }
.in { color: #1565c0; } .out { color: #2e7d32; } .note { color: #888; }
details { margin: 0.6em 0; } summary { cursor: pointer; }
"""


def _badge(outcome: Outcome) -> str:
    return f'<span class="badge" style="background:{_COLOUR[outcome]}">{outcome.value}</span>'


def _anchor(result: Result) -> str:
    return escape(f"{result.case.id}-{result.transport}-{result.role.value}".replace("/", "_"))


def _detail(result: Result) -> str:
    case = result.case
    parts = [
        f'<details id="{_anchor(result)}"'
        f"{' open' if result.outcome not in (Outcome.PASS, Outcome.SKIPPED) else ''}>",
        f"<summary>{_badge(result.outcome)} <b>{escape(case.id)}</b> [{result.transport}] "
        f"{escape(case.title)} ({result.duration:.2f} s)</summary>",
        f'<p class="quote">{escape(case.quote)}</p>',
        f"<p>Level {case.level.value}, category {case.category.value}.</p>",
    ]
    if result.expected or result.actual:
        parts.append(
            f"<p><b>Expected:</b> {escape(result.expected)}<br>"
            f"<b>Actual:</b> {escape(result.actual)}</p>"
        )
    if result.message:
        parts.append(f"<p>{escape(result.message)}</p>")
    if result.timings:
        rows = "".join(
            f"<tr><td>{escape(k)}</td><td>{v:.4f} s</td></tr>" for k, v in result.timings.items()
        )
        parts.append(f"<table>{rows}</table>")
    if result.frames:
        rows = "".join(
            f'<tr class="{f.direction}"><td>{f.time:8.4f}</td>'
            f"<td>{'&larr; target' if f.direction == 'in' else 'suite &rarr;'}</td>"
            f"<td>{escape(f.summary)}</td>"
            f'<td class="note">{escape(f.note)}</td></tr>'
            for f in result.frames
        )
        parts.append(f'<table class="frames">{rows}</table>')
    parts.append("</details>")
    return "\n".join(parts)


def to_html(run: Run) -> str:
    """The whole report as one HTML document."""
    counts = {o: sum(r.outcome is o for r in run.results) for o in Outcome}
    summary = " ".join(f"{_badge(o)} {n}" for o, n in counts.items() if n)
    table = "".join(
        f"<tr><td>{_badge(r.outcome)}</td>"
        f'<td><a href="#{_anchor(r)}">{escape(r.case.id)}</a></td>'
        f"<td>{r.transport}</td><td>{r.case.level.value}</td>"
        f"<td>{escape(r.case.title)}</td><td>{r.duration:.2f} s</td></tr>"
        for r in run.results
    )
    details = "\n".join(_detail(r) for r in run.results)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>hbproto conformance: {escape(run.target)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>hbproto conformance report</h1>
<p>Target <b>{escape(run.target)}</b> ({escape(run.role)}), started {escape(run.started)},
{run.duration:.1f} s, seed {run.seed}, timing tolerance {run.tolerance * 1000:.1f} ms,
suite {escape(run.tool_version)}.</p>
<p>{summary}</p>
<table><tr><th>Outcome</th><th>Case</th><th>Transport</th><th>Level</th><th>What</th>
<th>Time</th></tr>{table}</table>
<h2>Cases</h2>
{details}
</body></html>
"""
