"""The core's fast paths do exactly what its full path does.

A routine HEARTBEAT and a routine ACK (bare, from the verified address, nothing about the peer
changed) skip building a :class:`~hbproto.Frame` (:meth:`Session.fast_heartbeat`,
:meth:`Session.fast_ack`). They are an optimisation only: each test here runs one seeded
simulation twice, once as shipped and once with both fast paths refusing every frame, and
requires the two runs to be identical: every datagram sent, every event, and every field of
every session at the end. The runs mix the steady state with what must leave the fast paths:
loss, duplication, reordering, parameter changes (polls), a rebinding, and replayed ACKs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from hbproto import Config
from hbproto.session import Session
from tests.simnet import Network

Trace = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[dict[str, Any]]]


def _session_fields(session: Session) -> dict[str, Any]:
    fields = {name: getattr(session, name) for name in Session.__slots__ if name != "owner"}
    rare = fields.pop("_rare")
    if rare is not None:
        fields.update({f"rare.{n}": getattr(rare, n) for n in type(rare).__slots__})
    return fields


def _run(seed: int, *, rebind: bool) -> Trace:
    net = Network(seed=seed)
    net.add_endpoint("a", ("10.0.0.1", 7373), Config(interval=0.05, multiplier=3))
    net.add_endpoint("b", ("10.0.0.2", 7373), Config(interval=0.05, multiplier=3), accept=True)
    net.set_link("a", "b", delay=0.004, jitter=0.006, loss=0.03, duplicate=0.05, both=True)
    sid = net.connect("a", "b")
    a, b = net.endpoint("a"), net.endpoint("b")
    net.at(1.0, lambda: a.set_parameters(sid, net.now, interval=0.03))
    net.at(1.5, lambda: b.set_parameters(next(iter(b.sessions)), net.now, multiplier=5))
    if rebind:
        net.at(2.0, lambda: net.rebind("a", ("10.0.0.9", 4000)))

    def replay_acks() -> None:  # ACKs already taken: V-13 must discard the copies
        for wire in [w for w in net.wire if w.src == "b" and w.data[0] == 0x12][-20:]:
            net.send_raw("b", wire.data, net.addr("a"), delay=0.001)

    net.at(2.5, replay_acks)
    net.run_until(4.0)
    wire = [(w.time, w.src, w.data, w.dropped, tuple(w.delivered)) for w in net.wire]
    events = [(r.time, r.host, repr(r.event)) for r in net.log.records]
    sessions = [_session_fields(s) for e in (a, b) for s in e.sessions.values()]
    return wire, events, sessions


def _counting(
    hits: Counter[tuple[str, bool]], name: str, method: Callable[..., bool]
) -> Callable[..., bool]:
    def counted(self: Session, *args: Any) -> bool:
        taken = method(self, *args)
        hits[name, taken] += 1
        return taken

    return counted


@pytest.mark.parametrize("rebind", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_paths_change_nothing(
    seed: int, rebind: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    hits: Counter[tuple[str, bool]] = Counter()
    with monkeypatch.context() as m:
        for name in ("fast_heartbeat", "fast_ack"):
            m.setattr(Session, name, _counting(hits, name, getattr(Session, name)))
        fast = _run(seed, rebind=rebind)
    with monkeypatch.context() as m:
        for name in ("fast_heartbeat", "fast_ack"):
            m.setattr(Session, name, lambda *_: False)
        full = _run(seed, rebind=rebind)
    # The runs exercise both paths both ways: most routine frames go fast, some cannot.
    for name in ("fast_heartbeat", "fast_ack"):
        assert hits[name, True] > 100, (name, hits)
        assert hits[name, False] > 5, (name, hits)
    assert fast[0] == full[0], "the datagrams differ"
    assert fast[1] == full[1], "the events differ"
    assert fast[2] == full[2], "the sessions' fields differ"
