"""The catalogue: every case, registered by the ``@case`` decorator in ``conformance/cases``."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Awaitable, Callable, Iterable

from .context import Context
from .model import Case, Category, Level, Role
from .requirements import level_of, requirements

__all__ = ["BOTH_ROLES", "INITIATOR", "also_in_role", "case", "catalogue", "select"]

_CASES: dict[str, Case] = {}
BOTH = frozenset({"udp", "tcp"})
INITIATOR = frozenset({Role.INITIATOR})
BOTH_ROLES = frozenset(Role)


def case(
    case_id: str,
    title: str,
    *,
    requires: tuple[str, ...],
    category: Category,
    level: Level | None = None,
    roles: frozenset[Role] = frozenset({Role.RESPONDER}),
    transports: frozenset[str] = BOTH,
    feature: str | None = None,
) -> Callable[[Callable[[Context], Awaitable[None]]], Callable[[Context], Awaitable[None]]]:
    """Register a case. Its level defaults to the strongest keyword among the requirements
    it cites; the report quotes those requirements from SPEC.md."""

    def register(run: Callable[[Context], Awaitable[None]]) -> Callable[[Context], Awaitable[None]]:
        if case_id in _CASES:
            raise ValueError(f"case {case_id} is registered twice")
        texts = requirements()
        missing = [r for r in requires if r not in texts]
        if missing:
            raise ValueError(f"case {case_id} cites unknown requirements {missing}")
        quote = " ".join(f"[{r}] {texts[r]}" for r in requires)
        strongest = min((level_of(texts[r]) for r in requires), key=["MUST", "SHOULD", "MAY"].index)
        _CASES[case_id] = Case(
            id=case_id,
            title=title,
            requirements=requires,
            level=level or Level(strongest),
            category=category,
            quote=quote,
            run=run,
            roles=roles,
            transports=transports,
            feature=feature,
        )
        return run

    return register


def also_in_role(role: Role, *case_ids: str) -> None:
    """Let cases registered already run in ``role`` too: cases that need no more of the
    target than a session that is UP, which :meth:`Context.session` gives in both roles."""
    for case_id in case_ids:
        found = _CASES.get(case_id)
        if found is None:
            raise ValueError(f"no case {case_id} to run in the {role.value} role")
        _CASES[case_id] = dataclasses.replace(found, roles=found.roles | {role})


def _order(case: Case) -> tuple[tuple[int, ...], str]:
    numbers = tuple(int(part) for part in case.section.split(".") if part.isdigit())
    return numbers, case.id


def catalogue() -> list[Case]:
    """Every case, in SPEC section order."""
    from . import cases  # noqa: F401, PLC0415 - registers the cases; they import this module

    return sorted(_CASES.values(), key=_order)


def select(
    cases: Iterable[Case],
    *,
    patterns: Iterable[str] = (),
    exclude: Iterable[str] = (),
    levels: Iterable[Level] = (),
    categories: Iterable[Category] = (),
) -> list[Case]:
    """The cases whose ID starts with, or matches as a glob, one of ``patterns`` (all when
    there are none), minus the ones ``exclude`` names the same way, at the given levels and
    in the given categories (all when empty)."""
    include, leave_out = list(patterns), list(exclude)
    wanted_levels, wanted_categories = set(levels), set(categories)

    def named(case: Case, names: list[str]) -> bool:
        return any(case.id.startswith(n) or fnmatch.fnmatchcase(case.id, n) for n in names)

    return [
        c
        for c in cases
        if (not include or named(c, include))
        and not named(c, leave_out)
        and (not wanted_levels or c.level in wanted_levels)
        and (not wanted_categories or c.category in wanted_categories)
    ]
