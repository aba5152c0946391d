"""The conformance suite has teeth: the reference fails no case, with and without
authentication, and each deliberately broken variant of it (tests/mutants) fails exactly the
cases its manifest lists. Every MUST requirement that a case checks is checked by a case some
mutant fails; those no case checks are printed, each with the reason.

Every judgement runs the whole catalogue, as ``python3 -m conformance`` against a server
process (or, for an initiator, with ``--client-cmd``), over each transport its manifest names;
they run side by side, a few minutes in all.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from conformance.registry import catalogue
from tests.mutants import MUTANTS, REFERENCES
from tests.mutants.coverage import UNPROVOKED, coverage, report
from tests.mutants.judge import Judgement, judge_all

EVERY = {**REFERENCES, **MUTANTS}
KEYS = [(m.name, t) for m in EVERY.values() for t in sorted(m.fails)]


@pytest.fixture(scope="module")
def judgements(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Judgement]:
    workdir: Path = tmp_path_factory.mktemp("mutants")
    done = trio.run(judge_all, list(EVERY.values()), workdir)
    return {(j.mutant, j.transport): j for j in done}


def test_every_manifest_names_real_cases_and_something_to_fail() -> None:
    known = {c.id: c for c in catalogue()}
    for mutant in MUTANTS.values():
        for transport, cases in mutant.fails.items():
            assert cases, f"{mutant.name} [{transport}] fails nothing: it proves nothing"
            for case in cases:
                assert case in known, f"{mutant.name}: no case {case}"
                assert transport in known[case].transports, f"{mutant.name}: {case} {transport}"


@pytest.mark.parametrize(("mutant", "transport"), KEYS, ids=[f"{m}-{t}" for m, t in KEYS])
def test_each_fails_exactly_its_listed_cases(
    judgements: dict[tuple[str, str], Judgement], mutant: str, transport: str
) -> None:
    judgement = judgements[(mutant, transport)]
    problems = judgement.problems(EVERY[mutant].fails[transport])
    assert not problems, "\n".join(problems)


def test_the_reference_passes_the_authentication_cases(
    judgements: dict[tuple[str, str], Judgement],
) -> None:
    for transport in ("udp", "tcp"):
        outcomes = judgements[("reference-auth", transport)].outcomes
        ten = {case: o for case, o in outcomes.items() if case.startswith("10/")}
        assert ten, outcomes
        assert set(ten.values()) == {"PASS"}, ten


def test_requirement_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + report())
    c = coverage()
    assert set(c.no_case) == set(UNPROVOKED), "update UNPROVOKED in tests/mutants/coverage.py"
    assert not c.not_tripped, report()
