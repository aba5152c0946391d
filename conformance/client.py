"""The initiator role: the suite listens, and launches the implementation against itself.

The contract between the suite and the command (``conformance/CONTRACT.md`` says the same for
implementers):

- ``--client-cmd TEMPLATE`` is split into words as a POSIX shell would (:func:`shlex.split`)
  and run without a shell. In every word, ``{target}`` is replaced by the address the suite
  listens on for the case: ``udp://HOST:PORT`` or ``tcp://HOST:PORT`` (``[v6]`` in brackets).
- The command is launched once per case, and once before the cases (``HBPROTO_CASE`` is then
  ``preflight``) to check that a session comes up at all. It runs in a process group of its
  own, with the suite's environment plus ``HBPROTO_CASE`` (the case ID), ``HBPROTO_TARGET``
  (the address, as ``{target}``), ``HBPROTO_TRANSPORT`` (``udp`` or ``tcp``) and
  ``HBPROTO_EVENT_LOG`` (the path of a file, not yet created, where it MAY write its events);
  standard input is empty.
- It opens one session to the target as an initiator at once, and keeps it going until it is
  stopped. Its first frame is due within :data:`STARTUP_WITHIN` seconds of the launch.
- When the case ends the suite closes its socket, sends SIGTERM to the process group, and
  SIGKILL :data:`STOP_GRACE` seconds later if the command is still running.
- Exit status 127 (:data:`EXIT_UNSUPPORTED`) before the suite stops it makes the case
  UNSUPPORTED: the implementation lacks what the case needs. Any other exit is no outcome by
  itself; a case that then does not pass shows the status and the end of standard error. A
  command that cannot be started at all makes every case an ERROR.
- Events: lines of the event log and of the command's standard output that are JSON objects
  with a string member ``event`` are event records (other lines are ignored), named and
  shaped as ``hbproto connect --json`` prints them: ``PeerUp``; ``PeerDown`` with ``reason``
  (``detection_timeout``, ``peer_reported_down``, ``transport_closed``, ...) and
  ``detected_by`` (``local`` or ``remote``); ``SessionClosed`` with ``code`` (the number),
  ``text`` and ``by_peer``. A case that needs a record is UNSUPPORTED when the command reported
  no events at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

__all__ = [
    "ENV_CASE",
    "ENV_EVENT_LOG",
    "ENV_TARGET",
    "ENV_TRANSPORT",
    "EXIT_UNSUPPORTED",
    "PREFLIGHT",
    "STARTUP_WITHIN",
    "STOP_GRACE",
    "Client",
    "ClientCommand",
    "LaunchFailed",
    "format_target",
]

EXIT_UNSUPPORTED = 127
STARTUP_WITHIN = 10.0  # from the launch to the first frame: interpreters start slowly
STOP_GRACE = 2.0  # from SIGTERM to SIGKILL
EXIT_SETTLE = 0.2  # after an exit, frames the command sent just before may still be arriving
PREFLIGHT = "preflight"

ENV_CASE = "HBPROTO_CASE"
ENV_TARGET = "HBPROTO_TARGET"
ENV_TRANSPORT = "HBPROTO_TRANSPORT"
ENV_EVENT_LOG = "HBPROTO_EVENT_LOG"


class LaunchFailed(Exception):
    """The command could not be started (not found, not executable, ...)."""


def format_target(transport: str, host: str, port: int) -> str:
    """The address as ``{target}`` gives it: ``udp://127.0.0.1:7373``, ``tcp://[::1]:7373``."""
    shown = f"[{host}]" if ":" in host else host
    return f"{transport}://{shown}:{port}"


@dataclass(frozen=True, slots=True)
class ClientCommand:
    """What the suite launches for each case in the initiator role, and where it listens."""

    template: str
    argv: tuple[str, ...]
    listen: str = "127.0.0.1"

    @classmethod
    def parse(cls, template: str, listen: str = "127.0.0.1") -> ClientCommand:
        """Split ``template`` into words; :class:`ValueError` if that fails or leaves none."""
        try:
            argv = tuple(shlex.split(template))
        except ValueError as exc:
            raise ValueError(f"--client-cmd {template!r}: {exc}") from None
        if not argv:
            raise ValueError("--client-cmd is empty")
        return cls(template, argv, listen)

    @classmethod
    def of(cls, argv: list[str], listen: str = "127.0.0.1") -> ClientCommand:
        """A command given as words already (tests, programs)."""
        return cls(shlex.join(argv), tuple(argv), listen)

    def render(self, target: str) -> list[str]:
        return [word.replace("{target}", target) for word in self.argv]


class Client:
    """One launch of the command for one case: its process, its output and its event log."""

    def __init__(self, command: ClientCommand, target: str, transport: str, case_id: str):
        self.command = command
        self.target = target
        self.transport = transport
        self.case_id = case_id
        self.argv = command.render(target)
        self.workdir = Path(tempfile.mkdtemp(prefix="hbproto-conformance-"))
        self.event_log = self.workdir / "events.jsonl"
        self.stdout_path = self.workdir / "stdout"
        self.stderr_path = self.workdir / "stderr"
        self.process: trio.Process | None = None
        self.started = 0.0  # trio clock
        self.exited_at: float | None = None
        self.stopped_by_suite = False
        self._exited = trio.Event()
        self._cut_short: list[tuple[trio.CancelScope, int | None]] = []

    @property
    def returncode(self) -> int | None:
        """The exit status, once the command has exited (negative: killed by that signal)."""
        return None if self.process is None else self.process.poll()

    async def start(self) -> None:
        env = dict(os.environ)
        env.update(
            {
                ENV_CASE: self.case_id,
                ENV_TARGET: self.target,
                ENV_TRANSPORT: self.transport,
                ENV_EVENT_LOG: str(self.event_log),
            }
        )
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            try:
                self.process = await trio.lowlevel.open_process(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=env,
                    start_new_session=True,  # its own process group: stopped whole
                )
            except OSError as exc:
                self.cleanup()
                where = ""
                if isinstance(exc, FileNotFoundError) and "/" not in self.argv[0]:
                    where = " (looked for on PATH)"
                raise LaunchFailed(
                    f"cannot start the command {self.argv[0]!r}: {exc.strerror or exc}{where}"
                ) from None
        self.started = trio.current_time()

    async def watch(self) -> None:
        """Wait for the command to exit; then cut short what waits on it (see
        :meth:`unless_exited`). Run it in a nursery for as long as the case runs."""
        assert self.process is not None
        await self.process.wait()
        self.exited_at = trio.current_time()
        await trio.sleep(EXIT_SETTLE)
        self._exited.set()
        for scope, status in self._cut_short:
            if status is None or status == self.process.returncode:
                scope.cancel()

    @contextlib.contextmanager
    def unless_exited(self, status: int | None = None) -> Iterator[trio.CancelScope]:
        """A cancel scope that the command's exit cancels (at once if it has exited); with
        ``status``, only an exit with that status."""
        with trio.CancelScope() as scope:
            entry = (scope, status)
            if self._exited.is_set() and status in (None, self.returncode):
                scope.cancel()
            self._cut_short.append(entry)
            try:
                yield scope
            finally:
                self._cut_short.remove(entry)

    async def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after :data:`STOP_GRACE`; bounded, shielded."""
        process = self.process
        if process is None:
            return
        with trio.CancelScope(shield=True):
            if process.poll() is None:
                self.stopped_by_suite = True
                self._signal(signal.SIGTERM)
                with trio.move_on_after(STOP_GRACE):
                    await process.wait()
            if process.poll() is None:
                self._signal(signal.SIGKILL)
                with trio.move_on_after(STOP_GRACE):
                    await process.wait()
            self._signal(signal.SIGKILL)  # whatever the command left running in its group

    def _signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- What the command said -------------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        """The event records so far, from the event log and from standard output."""
        records: list[dict[str, Any]] = []
        for path in (self.event_log, self.stdout_path):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for line in text.splitlines(keepends=True):
                if not line.endswith("\n"):
                    break  # still being written
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("event"), str):
                    records.append(record)
        return records

    def stderr_tail(self, limit: int = 400) -> str:
        try:
            data = self.stderr_path.read_bytes()
        except OSError:
            return ""
        text = data[-limit:].decode("utf-8", errors="replace").strip()
        return ("..." if len(data) > limit else "") + " | ".join(text.splitlines())

    def exit_note(self) -> str | None:
        """How the command ended by itself, for a result's message; ``None`` if the suite
        stopped it or it is still running."""
        code = self.returncode
        if code is None or self.stopped_by_suite:
            return None
        when = (self.exited_at or trio.current_time()) - self.started
        how = f"status {code}" if code >= 0 else f"signal {-code}"
        note = f"the command exited by itself with {how} {when:.2f} s after its launch"
        tail = self.stderr_tail()
        return f"{note}; its stderr: {tail}" if tail else note
