"""How the ``hbproto`` command shows what happens: a timeline for people, JSON lines for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from hbproto import (
    ConnectionEnded,
    Event,
    LivenessInactive,
    LocalStall,
    MessageReceived,
    Negotiated,
    ParametersChanged,
    PeerDown,
    PeerRestarted,
    PeerUp,
    PiggybackReceived,
    RttSample,
    SessionClosed,
)

from ._base import close_reason, describe_reason, event_fields
from .events import Reconnecting, TransportOpened

__all__ = ["Reporter", "address_text", "seconds"]


def seconds(value: float | None) -> str:
    """A duration the way a person reads it: ``250 us``, ``1.5 ms``, ``300 ms``, ``2.5 s``."""
    if value is None:
        return "none"
    if value < 0.001:
        return f"{value * 1e6:.0f} us"
    if value < 0.01:
        return f"{value * 1e3:.2f} ms"
    if value < 1:
        return f"{value * 1e3:.0f} ms"
    return f"{value:.3g} s"


def _timers(n: Negotiated) -> str:
    if n.tx_interval is None and n.detection_time is None:
        return "no periodic heartbeats either way"
    sent = "nothing periodic" if n.tx_interval is None else f"every {seconds(n.tx_interval)}"
    if n.detection_time is None:
        return f"sending {sent}; the peer sends nothing periodic"
    return f"sending {sent}; down after {seconds(n.detection_time)} of silence"


class Reporter:
    """Writes events as a timeline (``time  link  what``) or as JSON lines.

    ``rtt_every`` limits RTT lines in the timeline to one per that many seconds per session,
    so fast heartbeats do not flood the terminal (JSON output keeps every sample).
    """

    def __init__(
        self, *, json_lines: bool, start: float, out: TextIO | None = None, rtt_every: float = 1.0
    ) -> None:
        self.json_lines = json_lines
        self.start = start
        self.out = out or sys.stdout
        self.rtt_every = rtt_every
        self._last_rtt: dict[int, float] = {}
        self._last_payload: dict[int, bytes] = {}

    def say(self, now: float, link: str, text: str, **fields: Any) -> None:
        """One line of narration (in JSON: a ``note`` record)."""
        if self.json_lines:
            record = {"t": round(now - self.start, 6), "link": link, "note": text, **fields}
            self._write(json.dumps(record))
        else:
            self._write(f"{now - self.start:7.3f}  {link:<5} {text}")

    def event(self, now: float, link: str, event: Event, peer: str = "") -> None:
        if self.json_lines:
            record = {"t": round(now - self.start, 6), "link": link, **event_fields(event)}
            if peer:
                record["peer"] = peer
            self._write(json.dumps(record, default=str))
            return
        text = self.describe(event, now)
        if text is not None:
            self.say(now, link, f"{peer}  {text}" if peer else text)

    def describe(self, event: Event, now: float) -> str | None:
        """One line for a person, or ``None`` for an event not worth a line."""
        session = f"{getattr(event, 'session', 0):08x}"
        match event:
            case PeerUp(negotiated=n, again=again):
                return f"UP      session {session}{' again' if again else ''}; {_timers(n)}"
            case PeerDown(reason=reason, silent_for=silent, detection_time=dt):
                bound = "" if dt is None else f", detection time {seconds(dt)}"
                why = describe_reason(reason)
                return f"DOWN    {why} (silent for {seconds(silent)}{bound})"
            case RttSample(rtt=rtt, srtt=srtt):
                last = self._last_rtt.get(event.session)
                if last is not None and now - last < self.rtt_every:
                    return None
                self._last_rtt[event.session] = now
                return f"RTT     {seconds(rtt)} (smoothed {seconds(srtt)})"
            case SessionClosed(code=code, text=text, by_peer=by_peer):
                who = "by the peer" if by_peer else "by us"
                return f"CLOSED  {who}: {close_reason(code)}{f' ({text})' if text else ''}"
            case PeerRestarted(old_remote_id=old, new_remote_id=new):
                return f"RESTART the peer restarted: session {old:08x} is now {new:08x}"
            case MessageReceived(data=data):
                return f"MESSAGE {data!r}"
            case PiggybackReceived(data=data):
                if self._last_payload.get(event.session) == data:
                    return None  # heartbeats repeat it: show it when it changes
                self._last_payload[event.session] = data
                return f"PAYLOAD {data!r}"
            case ParametersChanged(negotiated=n):
                return f"TIMERS  now {_timers(n)}"
            case LivenessInactive():
                return "NOTE    neither side sends periodic heartbeats: failures go unnoticed"
            case LocalStall(late_by=late, sessions_spared=spared):
                return f"STALL   ran {seconds(late)} late; {spared} session(s) spared a false DOWN"
            case TransportOpened(local=local, remote=remote, kernel=kernel):
                return (
                    f"OPEN    {address_text(local)} -> {address_text(remote)}, {kernel.describe()}"
                )
            case Reconnecting(attempt=attempt, delay=delay, reason=reason):
                when = "the session keeps trying" if delay is None else f"in {seconds(delay)}"
                return f"RETRY   attempt {attempt}, {when}: {reason}"
            case ConnectionEnded():
                return None
        return None

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


def address_text(addr: Any) -> str:
    """``host:port`` (``[v6]:port``) for a socket address."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = f"[{addr[0]}]" if ":" in str(addr[0]) else str(addr[0])
        return f"{host}:{addr[1]}"
    return str(addr)
