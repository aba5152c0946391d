"""What the suite is made of: cases, their levels and categories, and what a run of one yields."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import Context

__all__ = [
    "Case",
    "Category",
    "Failed",
    "FrameRecord",
    "Inconclusive",
    "Level",
    "Outcome",
    "Result",
    "Role",
    "TargetUnusable",
    "Unsupported",
]


class Level(Enum):
    """The RFC 2119 keyword of the requirement a case checks: it decides FAIL or NON-STRICT."""

    MUST = "MUST"
    SHOULD = "SHOULD"
    MAY = "MAY"


class Category(Enum):
    VALID = "valid"  # behaviour with well-formed, well-timed input
    MALFORMED = "malformed"  # invalid frames, then a probe proving the target survived
    INOPPORTUNE = "inopportune"  # valid frames at the wrong time: duplicates, replays, ...
    TIMERS = "timers"  # intervals, jitter, detection, negotiation, close reasons


class Role(Enum):
    """The target's role: it serves (the suite connects) or it connects (to the suite)."""

    RESPONDER = "responder"
    INITIATOR = "initiator"


class Outcome(Enum):
    PASS = "PASS"
    NON_STRICT = "NON-STRICT"  # a SHOULD was broken
    FAIL = "FAIL"  # a MUST was broken
    UNSUPPORTED = "UNSUPPORTED"  # the target declared an optional feature missing
    SKIPPED = "SKIPPED"  # not run: excluded, or not applicable to this transport or role
    INCONCLUSIVE = "INCONCLUSIVE"  # timing noise larger than the bound being judged
    ERROR = "ERROR"  # the harness or the connection failed; says nothing about the target


class Failed(Exception):
    """The target did not do what the requirement says."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"expected {expected}; actual {actual}")
        self.expected = expected
        self.actual = actual


class Inconclusive(Exception):
    """The measurement cannot decide the case (the machine's timing noise is too large)."""


class Unsupported(Exception):
    """The target does not implement an optional feature the case needs."""


class TargetUnusable(Exception):
    """The target could not be brought to the point the case needs (no session came up):
    the case says nothing about the requirement it checks, so it ends as ERROR."""


@dataclass(frozen=True, slots=True)
class Case:
    """One check of the SPEC against a target.

    ``id`` is stable: ``<SPEC section>/<name>``, never renumbered. ``requirements`` are the
    requirement IDs it checks; ``quote`` the sentence it holds the target to.
    """

    id: str
    title: str
    requirements: tuple[str, ...]
    level: Level
    category: Category
    quote: str
    run: Callable[[Context], Awaitable[None]]
    roles: frozenset[Role] = frozenset({Role.RESPONDER})
    transports: frozenset[str] = frozenset({"udp", "tcp"})
    feature: str | None = None  # an optional feature of SPEC section 14 the case needs

    @property
    def section(self) -> str:
        return self.id.split("/", 1)[0]


@dataclass(slots=True)
class FrameRecord:
    """One frame (or undecodable chunk) on the wire, as the suite saw or sent it."""

    time: float  # seconds since the case started
    direction: str  # "in" (from the target) or "out" (from the suite)
    raw: bytes
    summary: str  # decoded fields, or why it could not be decoded
    note: str = ""  # what the suite did to it: "dropped", "duplicated", ...


@dataclass(slots=True)
class Result:
    case: Case
    transport: str
    role: Role
    outcome: Outcome
    duration: float = 0.0
    expected: str = ""
    actual: str = ""
    message: str = ""
    frames: list[FrameRecord] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)  # the initiator's event log

    @property
    def key(self) -> str:
        return f"{self.case.id} [{self.transport}, {self.role.value}]"
