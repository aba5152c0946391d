"""Running cases against a target: one fresh session per case, every failure mode named."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from random import Random

import trio

from .context import Context
from .model import (
    Case,
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

__all__ = ["measure_tolerance", "preflight", "run_case", "run_cases"]

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


async def run_case(
    case: Case,
    target: tuple[str, int],
    transport: str,
    *,
    tolerance: float,
    seed: int,
) -> Result:
    """Run one case; never raises for anything the target does."""
    result = Result(case, transport, Role.RESPONDER, Outcome.PASS)
    ctx = Context(target, transport, Role.RESPONDER, tolerance=tolerance, rng=Random(seed))
    try:
        with trio.fail_after(CASE_TIMEOUT):
            try:
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
        result.outcome, result.message = Outcome.ERROR, f"{closed} in the middle of the case"
    except trio.TooSlowError:
        result.outcome, result.message = Outcome.ERROR, f"the case ran past {CASE_TIMEOUT:g} s"
    except OSError as exc:
        result.outcome, result.message = Outcome.ERROR, f"network error: {exc}"
    except Exception as exc:  # a harness fault must not take the whole run down
        result.outcome, result.message = Outcome.ERROR, f"{type(exc).__name__}: {exc}"
    result.duration = trio.current_time() - ctx.start
    result.frames = ctx.frames
    result.timings = ctx.timings
    return result


async def preflight(
    target: tuple[str, int], transport: str, *, tolerance: float, seed: int
) -> str | None:
    """Whether a session comes up with the target at all; if not, why (every case then ends
    as ERROR with that message instead of each failing in its own way)."""
    ctx = Context(target, transport, Role.RESPONDER, tolerance=tolerance, rng=Random(seed - 1))
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


async def run_cases(
    cases: Sequence[Case],
    target: tuple[str, int],
    transport: str,
    *,
    tolerance: float,
    seed: int,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run ``cases`` one after another (timing cases must not share the CPU with others)."""
    results: list[Result] = []
    unusable = await preflight(target, transport, tolerance=tolerance, seed=seed)
    for index, case in enumerate(cases):
        if transport not in case.transports or Role.RESPONDER not in case.roles:
            result = Result(case, transport, Role.RESPONDER, Outcome.SKIPPED)
            result.message = f"does not apply to {transport} in the responder role"
        elif unusable is not None:
            result = Result(case, transport, Role.RESPONDER, Outcome.ERROR, message=unusable)
        else:
            result = await run_case(case, target, transport, tolerance=tolerance, seed=seed + index)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
