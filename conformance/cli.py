"""``python -m conformance`` (``hbproto-conformance``): judge an implementation over the wire.

``hbproto-conformance udp://HOST:PORT`` judges a responder running there. ``hbproto-conformance
--client-cmd 'their-peer connect {target}' --transport udp`` judges an initiator: the suite
listens and launches the command for each case (the contract: :mod:`conformance.client`).

Exit status: 0 when no case FAILed or ERRORed (with ``--strict``, none was NON-STRICT either),
1 otherwise, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import datetime
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from hbproto import __version__
from transports.address import parse_address
from transports.cli import parse_auth_keys
from transports.errors import AddressError

from .client import ClientCommand
from .html import to_html
from .model import Case, Category, Level, Outcome, Result
from .registry import catalogue, select
from .report import Run, console_line, dump_json, summary, to_junit
from .runner import Target, measure_tolerance, role_of, run_cases

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hbproto-conformance",
        description="Judge an hbproto implementation over the wire, case by case against "
        "SPEC.md's requirements. The suite is the peer: point it at your implementation "
        "running as a responder, or give --client-cmd to have it launch your implementation "
        "as an initiator against an address it listens on.",
        epilog="Cases are selected by ID prefix or glob (6.2, '9.*/detection', 7/V-5-bad-"
        "checksum). Outcomes: PASS, NON-STRICT (a SHOULD broken), FAIL (a MUST broken), "
        "UNSUPPORTED, SKIPPED, INCONCLUSIVE (timing noise), ERROR (harness or connection). "
        "Exit status 0 when nothing FAILed or ERRORed, 1 otherwise, 2 for a bad command line.",
    )
    parser.add_argument(
        "target",
        nargs="?",
        metavar="TARGET",
        help="the implementation under test, serving: udp://HOST:PORT or tcp://HOST:PORT "
        "(IPv6 in brackets); not with --client-cmd",
    )
    parser.add_argument(
        "cases", nargs="*", metavar="CASE", help="run only cases whose ID starts with or matches"
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    initiator = parser.add_argument_group(
        "initiator role",
        "the suite listens, and launches the implementation against itself for each case "
        "(contract: conformance/CONTRACT.md)",
    )
    initiator.add_argument(
        "--client-cmd",
        metavar="TEMPLATE",
        help="the command that runs your implementation as an initiator, split like a shell "
        "command line but run without a shell; {target} becomes the address the suite "
        "listens on, e.g. 'their-peer connect {target}'",
    )
    initiator.add_argument(
        "--transport", choices=["udp", "tcp"], help="with --client-cmd: the transport to judge"
    )
    initiator.add_argument(
        "--listen",
        default="127.0.0.1",
        metavar="HOST",
        help="with --client-cmd: the address the suite listens on (default 127.0.0.1)",
    )
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="CASE", help="leave these cases out"
    )
    parser.add_argument(
        "--level",
        action="append",
        choices=[level.value for level in Level],
        default=[],
        help="only cases at this level (repeatable)",
    )
    parser.add_argument(
        "--category",
        action="append",
        choices=[c.value for c in Category],
        default=[],
        help="only cases in this category (repeatable)",
    )
    parser.add_argument(
        "--auth-key",
        action="append",
        default=[],
        metavar="ID:SECRET",
        help="a key the target accepts, ID 0-255, SECRET in hex or @FILE (repeat for each): "
        "the target claims the auth feature; the suite signs with the first key, requires "
        "every frame from the target to verify, and runs section 10's cases",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seed for identifiers and sequence numbers (1)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="count NON-STRICT (a broken SHOULD) as failing"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the JSON report here")
    parser.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML here")
    parser.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="write a static HTML report here: every case, with a timeline of its frames",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show timings of passing cases too"
    )
    return parser


def _target(text: str) -> tuple[str, str, int]:
    address = parse_address(text)
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise ValueError(f"cannot resolve {address.host!r}: {exc}") from None
    sockaddr = infos[0][4]
    return address.scheme, str(sockaddr[0]), int(sockaddr[1])


def _list(cases: Sequence[Case]) -> None:
    for case in cases:
        transports = ",".join(sorted(case.transports))
        roles = "both" if len(case.roles) > 1 else next(iter(case.roles)).value
        print(
            f"{case.id:<34} {case.level.value:<6} {case.category.value:<11} {transports:<7} "
            f"{roles:<9} {case.title}  [{', '.join(case.requirements)}]"
        )
    print(f"{len(cases)} cases")


async def _run(args: argparse.Namespace, cases: list[Case]) -> int:
    target: Target
    if args.client_cmd is not None:
        target, scheme = ClientCommand.parse(args.client_cmd, args.listen), args.transport
        shown = args.client_cmd
        where = f"initiator over {scheme}, the suite listening on {args.listen}"
    else:
        scheme, host, port = _target(args.target)
        target, shown, where = (host, port), args.target, "responder"
    role = role_of(target)
    tolerance = await measure_tolerance()
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    print(
        f"hbproto conformance {__version__}: {shown} ({where}), {len(cases)} cases, "
        f"seed {args.seed}, timing tolerance {tolerance * 1000:.1f} ms"
    )
    section = ""

    def show(result: Result) -> None:
        nonlocal section
        if result.case.section != section:
            section = result.case.section
            print(f"\n{section}")
        console_line(result, sys.stdout, verbose=args.verbose)
        sys.stdout.flush()

    start = trio.current_time()
    results = await run_cases(
        cases,
        target,
        scheme,
        tolerance=tolerance,
        seed=args.seed,
        on_result=show,
        auth=args.auth,
    )
    run = Run(
        target=shown,
        role=role.value,
        seed=args.seed,
        tolerance=tolerance,
        started=started,
        duration=trio.current_time() - start,
        results=results,
        tool_version=__version__,
    )
    print(f"\n{summary(results)} in {run.duration:.1f} s")
    if args.json:
        args.json.write_text(dump_json(run), encoding="utf-8")
    if args.junit:
        args.junit.write_text(to_junit(run, strict=args.strict), encoding="utf-8")
    if args.html:
        args.html.write_text(to_html(run), encoding="utf-8")
    bad = {Outcome.FAIL, Outcome.ERROR} | ({Outcome.NON_STRICT} if args.strict else set())
    return 1 if any(r.outcome in bad for r in results) else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_intermixed_args(argv)  # case patterns may follow the options
    if args.client_cmd is not None and args.target is not None:
        if "://" in args.target:
            parser.error(
                "with --client-cmd the suite listens: give no TARGET ({target} in the command "
                "is the address; --listen chooses the host)"
            )
        args.cases.insert(0, args.target)  # with --client-cmd the first word is a case
        args.target = None
    if args.client_cmd is None and args.transport is not None:
        parser.error("--transport goes with --client-cmd (a TARGET names its transport)")
    try:
        args.auth = parse_auth_keys(args.auth_key)
    except ValueError as exc:
        parser.error(str(exc))
    cases = select(
        catalogue(),
        patterns=args.cases,
        exclude=args.exclude,
        levels=[Level(v) for v in args.level],
        categories=[Category(v) for v in args.category],
    )
    if args.list:
        _list(cases)
        return 0
    if args.client_cmd is not None:
        if args.transport is None:
            parser.error("--client-cmd needs --transport udp or --transport tcp")
        try:
            ClientCommand.parse(args.client_cmd, args.listen)
        except ValueError as exc:
            parser.error(str(exc))
    elif args.target is None:
        parser.error("give a TARGET such as udp://127.0.0.1:7373, --client-cmd, or --list")
    if not cases:
        parser.error("no case matches the selection (see --list)")
    try:
        return trio.run(_run, args, cases)
    except (ValueError, AddressError) as exc:
        parser.exit(2, f"hbproto-conformance: error: {exc}\n")
    except KeyboardInterrupt:
        return 1
