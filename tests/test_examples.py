"""The example peers in examples/ (asyncio, selectors) interoperate with the trio command.

Real processes on loopback, both ways round: an example as initiator against ``python3 -m
transports serve``, and ``python3 -m transports connect`` against an example as responder, over
UDP and TCP. Each run checks that both sides come UP, that a message crosses and is echoed, and
that a graceful close (``--duration`` on the initiator, Ctrl-C on the responder) is reported on
the other side as a CLOSE from the peer. Every wait has a deadline.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRIO = [sys.executable, "-m", "transports"]
INTERVAL = "0.05"
WAIT = 15.0  # generous: it bounds a failure, a passing run takes well under a second per wait

Record = dict[str, Any]


class Proc:
    """A process printing JSON lines, read by a thread so that every wait can have a deadline."""

    def __init__(self, argv: list[str], stderr: Path) -> None:
        self.argv, self.stderr = argv, stderr
        with stderr.open("w") as err:
            self.popen = subprocess.Popen(
                argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True
            )
        self.lines: list[Record] = []
        self.ended = False
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                record = {"unparsed": line}
            with self.changed:
                self.lines.append(record)
                self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def _find(self, match: Callable[[Record], bool]) -> Record | None:
        return next((r for r in self.lines if match(r)), None)

    def wait_for(self, what: str, match: Callable[[Record], bool]) -> Record:
        """The first line that matches, waiting for it until the deadline or end of output."""
        with self.changed:
            self.changed.wait_for(lambda: self._find(match) is not None or self.ended, WAIT)
            found = self._find(match)
        if found is None:
            pytest.fail(f"{what} never came from {self.describe()}")
        return found

    def exit_status(self) -> int:
        try:
            return self.popen.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running after {WAIT} s: {self.describe()}")

    def describe(self) -> str:
        lines = [r for r in self.lines if r.get("event") != "RttSample"]
        shown = "\n".join(json.dumps(r) for r in lines[-20:])
        return f"{' '.join(self.argv[1:])}\nstdout:\n{shown}\nstderr:\n{self.stderr.read_text()}"


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[[list[str]], Proc]]:
    started: list[Proc] = []

    def start(argv: list[str]) -> Proc:
        started.append(Proc(argv, tmp_path / f"stderr-{len(started)}.txt"))
        return started[-1]

    yield start
    for proc in started:
        if proc.popen.poll() is None:
            proc.popen.kill()
            proc.popen.wait(timeout=WAIT)
        assert proc.popen.stdout is not None
        proc.popen.stdout.close()


def event(name: str, **fields: object) -> Callable[[Record], bool]:
    return lambda r: r.get("event") == name and all(r.get(k) == v for k, v in fields.items())


@pytest.mark.parametrize("closer", ["initiator", "responder"], ids=lambda c: f"{c}-closes")
@pytest.mark.parametrize("example_role", ["connect", "serve"], ids=lambda r: f"example-{r}s")
@pytest.mark.parametrize("link", ["udp", "tcp"])
@pytest.mark.parametrize("example", ["asyncio_peer.py", "selectors_peer.py"])
def test_example_and_trio_command_interoperate(
    spawn: Callable[[list[str]], Proc], example: str, link: str, example_role: str, closer: str
) -> None:
    mine = [sys.executable, str(ROOT / "examples" / example)]
    common = ["--json", "-i", INTERVAL]
    responder_argv = mine if example_role == "serve" else TRIO
    initiator_argv = TRIO if example_role == "serve" else mine
    responder = spawn([*responder_argv, "serve", f"{link}://127.0.0.1:0", *common, "--echo"])
    port = responder.wait_for("the bound port", lambda r: "local" in r)["local"][1]
    address = f"{link}://127.0.0.1:{port}"
    duration = ["--duration", "0.5"] if closer == "initiator" else []
    initiator = spawn([*initiator_argv, "connect", address, *common, "--send", "hi", *duration])

    for side in (initiator, responder):
        side.wait_for("PeerUp", event("PeerUp"))
        side.wait_for("the message", event("MessageReceived", data="hi"))  # sent, then echoed
    if closer == "responder":
        responder.popen.send_signal(signal.SIGINT)
    other = responder if closer == "initiator" else initiator
    other.wait_for("the peer's CLOSE", event("SessionClosed", by_peer=True))

    assert initiator.exit_status() == 0, initiator.describe()  # done: closed, or by its peer
    if closer == "initiator":
        responder.popen.send_signal(signal.SIGINT)
    assert responder.exit_status() == 0, responder.describe()
    for side in (initiator, responder):
        assert "Traceback" not in side.stderr.read_text(), side.describe()
