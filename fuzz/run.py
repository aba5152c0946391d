"""Fuzz hbproto for a long time: a million inputs across the targets of fuzz/targets.py.

Usage::

    python3 fuzz/run.py                    # 1,000,000 inputs, a few minutes
    python3 fuzz/run.py --quick            # 10,000 inputs, a few seconds (run by the test suite)
    python3 fuzz/run.py --inputs 5000000 --seed 7 --targets pair,endpoint

First every saved vector in fuzz/regressions/ is replayed. Then each target runs in a child
process of its own (so that its peak RSS is its own) until it has been fed its share of the
inputs: byte strings handed to the code under test (a datagram, a chunk of a stream, a buffer
to decode), in scenarios of up to 40 operations drawn from a random generator seeded with
``--seed``. The report gives, per target, the inputs and scenarios run, the wall and CPU time
(tracemalloc, on for the whole run, roughly halves the speed), the slowest scenario,
tracemalloc's peak (the code under test and the harness) and the child's RSS when it started
and at its peak.

A scenario that raises anything, or that takes longer than ``--slow`` seconds, is a finding: its
operations are shrunk to a minimal list that still fails the same way and saved as
``fuzz/regressions/TARGET-HASH.json`` (tests/test_fuzz.py replays every file there), and the
script exits 1. Exit 0 means no finding.

Why a seeded generator and not hypothesis or atheris for this run: hypothesis draws these
structured scenarios at about 40 a second here (the test suite uses it, where shrinking
matters), a hundred times slower than the generator, so a million inputs would take hours.
atheris 3.1.0 publishes no wheel for Python 3.11; 3.0.0 does, but the depth here is gated by
protocol state (CRC-32, live session identifiers, sequence windows, MACs) that the structure-
aware generator resolves directly, where coverage feedback would have to rediscover it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from random import Random
from typing import Any

if __package__ in (None, ""):  # run as a script: make the fuzz package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.targets import TARGETS, Harness, replay

REGRESSIONS = Path(__file__).resolve().parent / "regressions"
QUICK_INPUTS = 10_000
FULL_INPUTS = 1_000_000
MAX_SHRINK_RUNS = 3000


def _signature(exc: BaseException) -> str:
    """What a finding is, without the numbers that change as its operations are shrunk."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {re.sub(r'0x[0-9a-f]+|[0-9]+', '#', first)}"


def _fails_as(vector: dict[str, Any], signature: str) -> bool:
    try:
        replay(vector)
    except Exception as exc:
        return _signature(exc) == signature
    return False


def shrink(vector: dict[str, Any], signature: str) -> dict[str, Any]:
    """Delta debugging on the operations: drop chunks while the same failure remains."""
    ops: list[Any] = vector["ops"]
    chunks, runs = 2, 0
    while len(ops) > 1 and runs < MAX_SHRINK_RUNS:
        size = -(-len(ops) // chunks)
        for start in range(0, len(ops), size):
            candidate = ops[:start] + ops[start + size :]
            runs += 1
            if candidate and _fails_as({**vector, "ops": candidate}, signature):
                ops, chunks = candidate, max(chunks - 1, 2)
                break
        else:
            if chunks >= len(ops):
                break
            chunks = min(len(ops), chunks * 2)
    return {**vector, "ops": ops}


def save_vector(vector: dict[str, Any], signature: str, directory: Path = REGRESSIONS) -> Path:
    """Write a finding as a regression vector, one operation per line."""
    directory.mkdir(parents=True, exist_ok=True)
    body = json.dumps(vector["ops"], separators=(",", ":"))
    name = f"{vector['target']}-{hashlib.sha256(body.encode()).hexdigest()[:12]}.json"
    ops = ",\n    ".join(json.dumps(op, separators=(",", ":")) for op in vector["ops"])
    text = (
        "{\n"
        f'  "target": {json.dumps(vector["target"])},\n'
        f'  "error": {json.dumps(signature)},\n'
        f'  "setup": {json.dumps(vector["setup"], sort_keys=True)},\n'
        f'  "ops": [\n    {ops}\n  ]\n'
        "}\n"
    )
    path = directory / name
    path.write_text(text)
    return path


def replay_regressions(directory: Path = REGRESSIONS) -> tuple[int, list[str]]:
    """Replay every saved vector; return how many there are and those that still fail."""
    failures = []
    paths = sorted(directory.glob("*.json"))
    for path in paths:
        try:
            replay(json.loads(path.read_text()))
        except Exception as exc:
            failures.append(f"{path.name}: {_signature(exc)}")
    return len(paths), failures


def run_target(
    name: str, inputs: int, seed: int, slow: float, directory: Path = REGRESSIONS
) -> dict[str, Any]:
    """Fuzz one target until it has been fed ``inputs`` byte strings (in this process); a
    finding is saved in ``directory``."""
    target = TARGETS[name]
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    fed = scenarios = 0
    slowest = 0.0
    started, cpu_started = time.perf_counter(), time.process_time()
    finding = None
    while fed < inputs:
        rng = Random(f"{seed}/{name}/{scenarios}")
        began = time.perf_counter()
        try:
            harness: Harness = target.run_random(rng)
        except Exception as exc:
            finding = (target.last[0].vector(), _signature(exc))
            break
        took = time.perf_counter() - began
        slowest = max(slowest, took)
        scenarios += 1
        fed += harness.inputs
        if took > slow:
            finding = (harness.vector(), f"Slow: a scenario took {took:.1f} s")
            break
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    result: dict[str, Any] = {
        "target": name,
        "inputs": fed,
        "scenarios": scenarios,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "slowest_ms": slowest * 1000,
        "tracemalloc_peak": peak,
        "rss_start_kib": rss_start,
        "rss_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    if finding is not None:
        vector, signature = finding
        if not signature.startswith("Slow"):
            vector = shrink(vector, signature)
        result["finding"] = signature
        result["vector"] = str(save_vector(vector, signature, directory))
    return result


def _child(name: str, inputs: int, seed: int, slow: float, directory: Path) -> dict[str, Any]:
    """Run one target in a fresh interpreter, so that its peak RSS is its own."""
    command = [sys.executable, __file__, "--child", name, "--inputs", str(inputs)]
    command += ["--seed", str(seed), "--slow", str(slow), "--regressions", str(directory)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"target": name, "finding": f"the child failed: {done.stderr.strip()[-2000:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _report(results: list[dict[str, Any]], seed: int) -> None:
    header = (
        f"{'target':<11} {'inputs':>10} {'scenarios':>10} {'wall s':>7} {'CPU s':>7} "
        f"{'inputs/CPU s':>12} {'slowest ms':>10} {'tracemalloc peak MiB':>20} "
        f"{'RSS start/peak MiB':>18}"
    )
    print(header)
    for r in results:
        if "inputs" not in r:
            continue
        rate = r["inputs"] / r["cpu_seconds"] if r["cpu_seconds"] else 0.0
        rss = f"{r['rss_start_kib'] / 1024:.0f} / {r['rss_peak_kib'] / 1024:.0f}"
        print(
            f"{r['target']:<11} {r['inputs']:>10,} {r['scenarios']:>10,} {r['seconds']:>7.1f} "
            f"{r['cpu_seconds']:>7.1f} {rate:>12,.0f} {r['slowest_ms']:>10.1f} "
            f"{r['tracemalloc_peak'] / 2**20:>20.2f} {rss:>18}"
        )
    total = sum(r.get("inputs", 0) for r in results)
    seconds = sum(r.get("seconds", 0.0) for r in results)
    cpu = sum(r.get("cpu_seconds", 0.0) for r in results)
    print(f"{'total':<11} {total:>10,} {'':>10} {seconds:>7.1f} {cpu:>7.1f}   (seed {seed})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, help=f"inputs in all (default {FULL_INPUTS:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_INPUTS:,} inputs")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generator (default 1)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated targets")
    parser.add_argument(
        "--slow", type=float, default=5.0, help="seconds after which a scenario is a finding"
    )
    parser.add_argument(
        "--regressions",
        type=Path,
        default=REGRESSIONS,
        help="where saved vectors are replayed from and findings saved (default fuzz/regressions)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = run_target(args.child, args.inputs, args.seed, args.slow, args.regressions)
        print(json.dumps(result))
        return 0

    names = [n for n in args.targets.split(",") if n]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {sorted(TARGETS)}")
    total = args.inputs or (QUICK_INPUTS if args.quick else FULL_INPUTS)
    count, failures = replay_regressions(args.regressions)
    print(f"replayed {count} regression vectors from {args.regressions}: {len(failures)} fail")
    for failure in failures:
        print(f"  FAIL {failure}")
    share = -(-total // len(names))
    results = []
    for name in names:
        results.append(_child(name, share, args.seed, args.slow, args.regressions))
        print(f"  {name}: done", flush=True)
    _report(results, args.seed)
    findings = [r for r in results if "finding" in r]
    for r in findings:
        print(f"FINDING in {r['target']}: {r['finding']}")
        if "vector" in r:
            print(f"  saved as {r['vector']}; replay it with tests/test_fuzz.py")
    if findings or failures:
        return 1
    print("no finding")
    return 0


if __name__ == "__main__":
    sys.exit(main())
