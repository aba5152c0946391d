"""Running cases against a target: one fresh session per case, every failure mode named.

A target is a responder's address, or, for the initiator role, a
:class:`~conformance.client.ClientCommand` that is launched afresh for each case.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Iterator, Sequence
from random import Random

import trio

from hbproto import AuthKeys

from .client import EXIT_UNSUPPORTED, PREFLIGHT, Client, ClientCommand, LaunchFailed
from .context import Context
from .model import (
    Case,
    Category,
    Failed,
    Inconclusive,
    Level,
    Outcome,
    Result,
    Role,
    TargetUnusable,
    Unsupported,
)
from .wire import WireClosed

__all__ = ["Target", "measure_tolerance", "preflight", "role_of", "run_case", "run_cases"]

CASE_TIMEOUT = 60.0


async def measure_tolerance(samples: int = 40) -> float:
    """How late this machine wakes a sleeping task, as a timing tolerance in seconds.

    The 99th percentile of the lateness of short sleeps, times four, and at least 5 ms: timing
    bounds are widened by this much, and a result only just outside them is INCONCLUSIVE.
    """
    late: list[float] = []
    for _ in range(samples):
        start = trio.current_time()
        await trio.sleep(0.002)
        late.append(trio.current_time() - start - 0.002)
    late.sort()
    p99 = late[min(len(late) - 1, int(0.99 * len(late)))]
    return max(0.005, 4 * p99, 2 * statistics.median(late))


Target = tuple[str, int] | ClientCommand
"""A responder's address (the suite connects), or the command of an initiator (it listens)."""


def role_of(target: Target) -> Role:
    return Role.INITIATOR if isinstance(target, ClientCommand) else Role.RESPONDER


async def run_case(
    case: Case,
    target: Target,
    transport: str,
    *,
    tolerance: float,
    seed: int,
    case_id: str | None = None,
    auth: AuthKeys | None = None,
) -> Result:
    """Run one case; never raises for anything the target does. In the initiator role the
    command is launched for the case (``HBPROTO_CASE`` is ``case_id``, the case's ID unless
    given) and stopped when it ends."""
    role = role_of(target)
    result = Result(case, transport, role, Outcome.PASS)
    address = (target.listen, 0) if isinstance(target, ClientCommand) else target
    ctx = Context(address, transport, role, tolerance=tolerance, rng=Random(seed), auth=auth)
    if not isinstance(target, ClientCommand):
        await _judge(case, ctx, result)
    else:
        try:
            with _unwrapped():
                async with trio.open_nursery() as nursery:
                    try:
                        await ctx.launch(target, case_id or case.id, nursery)
                    except LaunchFailed as exc:
                        result.outcome, result.message = Outcome.ERROR, str(exc)
                    except OSError as exc:
                        result.outcome = Outcome.ERROR
                        result.message = f"cannot listen on {target.listen}: {exc.strerror or exc}"
                    else:
                        await _judge(case, ctx, result)
                    finally:
                        await ctx.aclose()
                        nursery.cancel_scope.cancel()
            if ctx.client is not None:
                _initiator_outcome(ctx.client, result)
        finally:
            if ctx.client is not None:
                ctx.client.cleanup()
    result.duration = trio.current_time() - ctx.start
    result.frames = ctx.frames
    result.timings = ctx.timings
    return result


@contextlib.contextmanager
def _unwrapped() -> Iterator[None]:
    """What escapes the nursery (a KeyboardInterrupt, say) as itself, not in a group."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = [e for e in _leaves(group) if not isinstance(e, trio.Cancelled)]
        raise (leaves or list(_leaves(group)))[0] from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


async def _judge(case: Case, ctx: Context, result: Result) -> None:
    """Run the case and turn how it ended into the result's outcome."""
    try:
        with trio.fail_after(CASE_TIMEOUT):
            try:
                if ctx.client is None:
                    await case.run(ctx)
                else:  # exit status 127 decides the case: no use waiting for its timeouts
                    with ctx.client.unless_exited(status=EXIT_UNSUPPORTED):
                        await case.run(ctx)
            finally:
                await ctx.aclose()
    except Failed as failure:
        result.outcome = Outcome.FAIL if case.level is Level.MUST else Outcome.NON_STRICT
        result.expected, result.actual = failure.expected, failure.actual
    except Inconclusive as noise:
        result.outcome, result.message = Outcome.INCONCLUSIVE, str(noise)
    except Unsupported as missing:
        result.outcome, result.message = Outcome.UNSUPPORTED, str(missing)
    except TargetUnusable as unusable:
        result.outcome, result.message = Outcome.ERROR, str(unusable)
    except WireClosed as closed:
        # The session was up (else TargetUnusable), and the case waited for something else.
        result.outcome = Outcome.FAIL if case.level is Level.MUST else Outcome.NON_STRICT
        closes = [r.summary for r in ctx.frames if r.direction == "in" and r.summary[:5] == "CLOSE"]
        if closes:
            result.expected = "the connection open until the case ends it"
            result.actual = f"{closed} after {closes[-1]}"
        else:  # a session ended on purpose is ended with a CLOSE [HB-CLOSE-1], [HB-TCP-6]
            result.expected = "a CLOSE before the target ends the connection [HB-CLOSE-1]"
            result.actual = f"{closed} without one, in the middle of the case"
    except trio.TooSlowError:
        result.outcome, result.message = Outcome.ERROR, f"the case ran past {CASE_TIMEOUT:g} s"
    except OSError as exc:
        result.outcome, result.message = Outcome.ERROR, f"network error: {exc}"
    except Exception as exc:  # a harness fault must not take the whole run down
        result.outcome, result.message = Outcome.ERROR, f"{type(exc).__name__}: {exc}"


def _initiator_outcome(client: Client, result: Result) -> None:
    """What the command's exit and event log add to the result."""
    result.events = client.events()
    if client.returncode == EXIT_UNSUPPORTED and not client.stopped_by_suite:
        result.outcome = Outcome.UNSUPPORTED
        result.expected = result.actual = ""
        result.message = f"the command exited with status {EXIT_UNSUPPORTED} (unsupported)"
        return
    note = client.exit_note()
    if note is not None and result.outcome is not Outcome.PASS:
        result.message = f"{result.message}; {note}" if result.message else note


async def preflight(
    target: Target,
    transport: str,
    *,
    tolerance: float,
    seed: int,
    auth: AuthKeys | None = None,
) -> str | None:
    """Whether a session comes up with the target at all; if not, why (every case then ends
    as ERROR with that message instead of each failing in its own way)."""
    if isinstance(target, ClientCommand):
        return await _preflight_initiator(
            target, transport, tolerance=tolerance, seed=seed, auth=auth
        )
    ctx = Context(
        target, transport, Role.RESPONDER, tolerance=tolerance, rng=Random(seed - 1), auth=auth
    )
    try:
        with trio.fail_after(10):
            try:
                await ctx.session(keep_alive=False)
            finally:
                await ctx.aclose()
    except TargetUnusable as exc:
        return f"{exc}: is an hbproto responder running at the target?"
    except WireClosed as exc:
        return f"{exc} before a session came up"
    except trio.TooSlowError:
        return "the target did not complete a handshake within 10 s"
    except OSError as exc:
        return f"cannot reach the target: {exc.strerror or exc}"
    return None


async def _session_comes_up(ctx: Context) -> None:
    await ctx.session(keep_alive=False)


_PREFLIGHT = Case(
    id=PREFLIGHT,
    title="a session comes up",
    requirements=(),
    level=Level.MUST,
    category=Category.VALID,
    quote="",
    run=_session_comes_up,
    roles=frozenset(Role),
)


async def _preflight_initiator(
    command: ClientCommand,
    transport: str,
    *,
    tolerance: float,
    seed: int,
    auth: AuthKeys | None,
) -> str | None:
    """The command launched once (``HBPROTO_CASE=preflight``): does it open a session that
    comes up? Exit status 127 here says nothing: the cases find out one by one."""
    result = await run_case(
        _PREFLIGHT,
        command,
        transport,
        tolerance=tolerance,
        seed=seed - 1,
        case_id=PREFLIGHT,
        auth=auth,
    )
    if result.outcome in (Outcome.PASS, Outcome.UNSUPPORTED):
        return None
    return result.message or f"expected {result.expected}; actual {result.actual}"


async def run_cases(
    cases: Sequence[Case],
    target: Target,
    transport: str,
    *,
    tolerance: float,
    seed: int,
    on_result: Callable[[Result], None] | None = None,
    auth: AuthKeys | None = None,
) -> list[Result]:
    """Run ``cases`` one after another (timing cases must not share the CPU with others).
    ``auth``: the target's keys, when it claims the auth feature."""
    results: list[Result] = []
    role = role_of(target)
    applicable = [c for c in cases if transport in c.transports and role in c.roles]
    unusable = None
    if applicable:
        unusable = await preflight(target, transport, tolerance=tolerance, seed=seed, auth=auth)
    for index, case in enumerate(cases):
        if case not in applicable:
            result = Result(case, transport, role, Outcome.SKIPPED)
            result.message = f"does not apply to {transport} in the {role.value} role"
        elif unusable is not None:
            result = Result(case, transport, role, Outcome.ERROR, message=unusable)
        else:
            result = await run_case(
                case, target, transport, tolerance=tolerance, seed=seed + index, auth=auth
            )
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
