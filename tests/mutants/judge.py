"""Run the conformance suite, as its users do (``python3 -m conformance``), against mutants.

Each judgement starts the mutant as a responder in its own process, runs the whole catalogue
against it in another, and reads the JSON report. Judgements run side by side: the cases spend
most of their time waiting on timers. A case whose outcome disagrees with the manifest is run
again alone, twice at most, so that a timing case disturbed by its neighbours is not taken for
a missing or a surplus failure; a real disagreement disagrees every time.

``python3 -m tests.mutants.judge [NAME ...]`` prints each judgement in manifest form.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import trio

from conformance.model import Role
from conformance.registry import catalogue

from . import MUTANTS, REFERENCES, TEST_KEYS, Mutant

ROOT = Path(__file__).resolve().parents[2]
SEED = 7
BROKEN = frozenset({"FAIL", "NON-STRICT", "ERROR"})  # for a mutant, any case it does not pass
HARMLESS = frozenset({"PASS", "SKIPPED", "UNSUPPORTED"})  # UNSUPPORTED: a feature not claimed
RERUNS = 2
SHARD_ABOVE, SHARDS = 8, 4
_TAGS = itertools.count()
MAX_RERUN = 6  # beyond this many disagreements the manifest is wrong: no use re-running
STARTUP = 60.0  # seconds for a mutant to start listening, on a machine busy starting others


@dataclass(slots=True)
class Judgement:
    mutant: str
    transport: str
    outcomes: dict[str, str]  # case ID -> outcome
    messages: dict[str, str]  # case ID -> what went wrong, for cases that did not pass
    reruns: dict[str, list[str]] = field(default_factory=dict)  # case ID -> earlier outcomes

    @property
    def failed(self) -> frozenset[str]:
        return frozenset(c for c, o in self.outcomes.items() if o in BROKEN)

    def disagreements(self, expected: frozenset[str]) -> list[str]:
        """Cases whose outcome differs from the manifest (or is neither a pass nor a fail)."""
        return sorted(
            case
            for case, outcome in self.outcomes.items()
            if (case in expected) != (outcome in BROKEN) or outcome not in BROKEN | HARMLESS
        ) + sorted(expected - self.outcomes.keys())

    def problems(self, expected: frozenset[str]) -> list[str]:
        """Everything that differs from the manifest, one line each."""
        return [
            f"{case}: {self.outcomes.get(case, 'not run')}, the manifest says "
            f"{'fail' if case in expected else 'pass'}: {self.messages.get(case, '')}"
            for case in self.disagreements(expected)
        ]


def _argv(mutant: Mutant) -> list[str]:
    return [arg for key in TEST_KEYS for arg in ("--auth-key", key)] if mutant.auth else []


async def _read_port(
    server: trio.Process, name: str, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """The port from the server's first JSON line; then keep reading, so that a full pipe
    never blocks the server."""
    assert server.stdout is not None
    pending = b""
    with trio.fail_after(STARTUP):
        while b"\n" not in pending:
            chunk = await server.stdout.receive_some(65536)
            if not chunk:
                raise RuntimeError(f"mutant {name} exited before listening")
            pending += chunk
    task_status.started(json.loads(pending.split(b"\n", 1)[0])["local"][1])
    while await server.stdout.receive_some(65536):
        pass


async def judge(
    mutant: Mutant, transport: str, workdir: Path, cases: list[str] | None = None
) -> Judgement:
    """The catalogue (or ``cases``) against ``mutant`` serving over ``transport``."""
    tag = f"{mutant.name}-{transport}-{next(_TAGS)}"
    report = workdir / f"{tag}.json"
    if mutant.initiator:
        command = (
            f"{sys.executable} -m tests.mutants {mutant.name} connect {{target}} -i 0.1 "
            f"--json --reconnect {' '.join(_argv(mutant))}"
        )
        await trio.run_process(
            [sys.executable, "-m", "conformance", *(cases or []), "--client-cmd", command,
             "--transport", transport, "--seed", str(SEED), "--json", str(report),
             *_argv(mutant)],
            cwd=ROOT, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        return _read(mutant, transport, report)
    with (workdir / f"{tag}.log").open("wb") as log:
        server = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tests.mutants", mutant.name, "serve",
             f"{transport}://127.0.0.1:0", "-i", "0.1", "--json", *_argv(mutant)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=log,
        )  # fmt: skip
        try:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(_read_port, server, mutant.name)
                with trio.fail_after(600):
                    await trio.run_process(
                        [sys.executable, "-m", "conformance",
                         f"{transport}://127.0.0.1:{port}", *(cases or []), "--seed", str(SEED),
                         "--json", str(report), *_argv(mutant)],
                        cwd=ROOT, check=False, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                nursery.cancel_scope.cancel()
        finally:
            server.kill()
            await server.wait()
    return _read(mutant, transport, report)


def _read(mutant: Mutant, transport: str, report: Path) -> Judgement:
    results = json.loads(report.read_text(encoding="utf-8"))["results"]
    return Judgement(
        mutant.name,
        transport,
        {r["id"]: r["outcome"] for r in results},
        {r["id"]: f"{r['expected']} / {r['actual']} {r['message']}".strip() for r in results},
    )


async def _settle(judgement: Judgement, workdir: Path) -> None:
    """Run each disagreeing case again alone until it agrees with the manifest, or
    :data:`RERUNS` times."""
    mutant = {**REFERENCES, **MUTANTS}[judgement.mutant]
    expected = mutant.fails[judgement.transport]
    for _ in range(RERUNS):
        doubtful = judgement.disagreements(expected)
        if not doubtful or len(doubtful) > MAX_RERUN:
            return
        for case in doubtful:
            again = await judge(mutant, judgement.transport, workdir, [case])
            judgement.reruns.setdefault(case, []).append(judgement.outcomes.get(case, "not run"))
            judgement.outcomes[case] = again.outcomes.get(case, "not run")
            judgement.messages[case] = again.messages.get(case, "")


def _shards(mutant: Mutant, transport: str) -> list[list[str] | None]:
    """The catalogue in one piece, or, for a mutant that fails many cases (and so waits out
    many timeouts), dealt into :data:`SHARDS` pieces judged side by side."""
    if len(mutant.fails[transport]) <= SHARD_ABOVE:
        return [None]
    role = Role.INITIATOR if mutant.initiator else Role.RESPONDER
    ids = [c.id for c in catalogue() if transport in c.transports and role in c.roles]
    return [ids[i::SHARDS] for i in range(SHARDS)]


async def judge_all(
    mutants: list[Mutant], workdir: Path, *, at_once: int = 16, settle: bool = True
) -> list[Judgement]:
    limiter = trio.CapacityLimiter(at_once)
    done: dict[tuple[str, str], Judgement] = {}

    async def one(mutant: Mutant, transport: str, cases: list[str] | None) -> None:
        async with limiter:
            part = await judge(mutant, transport, workdir, cases)
        whole = done.setdefault((mutant.name, transport), part)
        if whole is not part:
            whole.outcomes.update(part.outcomes)
            whole.messages.update(part.messages)

    # Longest first: a mutant that fails many cases waits out each one's timeout.
    jobs = sorted(
        ((m, t, cases) for m in mutants for t in m.fails for cases in _shards(m, t)),
        key=lambda job: -len(job[0].fails[job[1]]),
    )
    async with trio.open_nursery() as nursery:
        for mutant, transport, cases in jobs:
            nursery.start_soon(one, mutant, transport, cases)
    if settle:  # one at a time: the point is to run without neighbours
        for judgement in done.values():
            await _settle(judgement, workdir)
    return sorted(done.values(), key=lambda j: (j.mutant, j.transport))


def main(argv: list[str]) -> int:
    """Judge the named mutants (all by default) and print what failed, manifest-style."""
    settle = "--no-rerun" not in argv
    names = [a for a in argv if a != "--no-rerun"]
    every = {**REFERENCES, **MUTANTS}
    chosen = [every[name] for name in names] or list(every.values())
    with tempfile.TemporaryDirectory() as tmp:
        judgements = trio.run(lambda: judge_all(chosen, Path(tmp), settle=settle))
        for log in sorted(Path(tmp).glob("*.log")):
            if log.stat().st_size:
                print(f"--- {log.name}:", log.read_text(errors="replace")[-3000:])
    for j in judgements:
        print(f"{j.mutant} [{j.transport}]: {sorted(j.failed)}")
        for line in j.problems(every[j.mutant].fails[j.transport]):
            print("   ", line)
        for case, earlier in j.reruns.items():
            print(f"    re-ran {case}: {' -> '.join([*earlier, j.outcomes.get(case, '?')])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
