"""Figures for BENCHMARKS.md, drawn from a section's results with matplotlib (the ``bench``
extra). Sections without a figure draw nothing; without matplotlib nothing is drawn and the
runner says so."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from bench.common import percentile


def draw(section: str, data: dict[str, Any], folder: Path) -> list[Path]:
    if section not in ("detection", "scale"):
        return []
    try:
        import matplotlib  # noqa: PLC0415 - optional: the bench extra

        matplotlib.use("Agg")
    except ImportError:
        print(
            "matplotlib is not installed (pip install -e '.[bench]'): no figures", file=sys.stderr
        )
        return []
    folder.mkdir(parents=True, exist_ok=True)
    if section == "detection":
        return [_detection(data, folder)]
    return [_scale(data, folder)]


def _detection(data: dict[str, Any], folder: Path) -> Path:
    import matplotlib.pyplot as plt  # noqa: PLC0415 - optional: the bench extra
    from matplotlib.ticker import FuncFormatter  # noqa: PLC0415

    cases = data["cases"]
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(cases) + 1.6), dpi=90)
    colours = {"hbproto": "tab:blue", "keepalive": "tab:red", "user_timeout": "tab:orange"}
    labels = []
    for y, c in enumerate(cases):
        ms = [x * 1e3 for x in c["latencies"]]
        colour = colours[c["mechanism"]]
        if not ms:  # the kernel and a hung peer: nothing to plot, which is the point
            ax.annotate(
                f"never, in {c['watch']:g} s",
                (c["watch"] * 1e3, y),
                xytext=(-4, 0),
                textcoords="offset points",
                ha="right",
                va="center",
                fontsize=8,
                color=colour,
            )
            ax.plot([c["watch"] * 1e3], [y], ">", color=colour)
            labels.append(f"{_label(c)}, {c['failure']} (0/{c['missed']})")
            continue
        marker = "o" if c["failure"] == "silent" else "s"
        jitter = [y + 0.25 * math.sin(i * 2.399) for i in range(len(ms))]
        ax.scatter(ms, jitter, s=7, color=colour, alpha=0.45, marker=marker, linewidths=0)
        ax.plot([percentile(ms, 50)] * 2, [y - 0.35, y + 0.35], color="black", lw=1.5)
        ax.plot([percentile(ms, 99)] * 2, [y - 0.35, y + 0.35], color="black", lw=0.8, ls=":")
        if c["mechanism"] == "hbproto":
            bound = (c["detection_time"] + min(0.01, c["expected_remote"])) * 1e3
            ax.plot([bound] * 2, [y - 0.4, y + 0.4], color="green", lw=1.2)
        caught = len(c["latencies"])
        total = caught + c["missed"]
        label = _label(c)
        labels.append(f"{label}, {c['failure']}" + (f" ({caught}/{total})" if c["missed"] else ""))
    ax.set_yticks(range(len(cases)), labels, fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("failure to down event, ms (log scale)")
    ax.invert_yaxis()
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.set_title(
        "Detection latency: dots are samples (o silent, s hung); black: median, dotted: p99;"
        "\ngreen: the SPEC's SHOULD bound, DetectionTime + min(10 ms, ExpectedRemote)",
        fontsize=9,
    )
    fig.tight_layout()
    path = folder / "detection.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def _label(c: dict[str, Any]) -> str:
    interval = c["interval"]
    text = f"{interval:g} s" if interval >= 1 else f"{interval * 1e3:g} ms"
    if c["mechanism"] == "hbproto":
        return f"hbproto {c['transport']} {text} x 3"
    if c["mechanism"] == "keepalive":
        return "kernel keepalive 1 s + 1 x 1 s"
    return f"TCP_USER_TIMEOUT {c['detection_time'] * 1e3:g} ms"


def _scale(data: dict[str, Any], folder: Path) -> Path:
    import matplotlib.pyplot as plt  # noqa: PLC0415 - optional: the bench extra

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=90)
    deployments = (("answer only", "tab:blue"), ("server drives", "tab:green"))
    for deployment, colour in (*deployments, ("both ways", "tab:orange")):
        rows = [r for r in data["paced"] if r["deployment"] == deployment and r["workers"] == 1]
        rows.sort(key=lambda r: r["peers"])
        if rows:
            left.plot(
                [r["peers"] for r in rows],
                [r["server_cpu"][0] for r in rows],
                "o-",
                color=colour,
                label=f"{deployment}, one process",
            )
        for r in rows + [r for r in data["paced"] if r["deployment"] == deployment]:
            if r["false_down"] or r["up"] < r["peers"]:
                for cpu in r["server_cpu"]:
                    left.plot([r["peers"]], [cpu], "o", mfc="none", mec="red", ms=13)
        two = [r for r in data["paced"] if r["deployment"] == deployment and r["workers"] == 2]
        for r in two:
            left.plot(
                [r["peers"]] * len(r["server_cpu"]),
                r["server_cpu"],
                "x",
                color=colour,
                ms=9,
                label=f"{deployment}, each of 2 processes",
            )
    left.axhline(1.0, color="grey", lw=0.8, ls="--")
    left.plot([], [], "o", mfc="none", mec="red", ms=10, label="fell behind: false downs")
    left.set_xlabel("peers, heartbeats at 1 Hz")
    left.set_ylabel("server CPU, fraction of one core")
    left.set_title("Paced load: server CPU", fontsize=10)
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    sat = data["saturated"]
    names = [f"{r['server']}\n{r['workers']} proc" for r in sat]
    bare = {r["workers"]: r["rate"] for r in sat if r["server"] == "bare"}
    bars = right.bar(names, [r["rate"] / 1000 for r in sat], color="tab:gray")
    for bar, r in zip(bars, sat, strict=True):
        if r["server"] == "hbproto":
            bar.set_color("tab:blue")
        if r["workers"] in bare:
            right.annotate(
                f"{r['rate'] / bare[r['workers']]:.0%}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    right.set_ylabel("answers per second, thousands")
    right.set_title("Saturated echo, same generator (% of the bare loop)", fontsize=10)
    right.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = folder / "scale.png"
    fig.savefig(path)
    plt.close(fig)
    return path
