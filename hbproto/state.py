"""The session state machine of SPEC.md section 8.3, as tables.

Everything that changes a session's state goes through :func:`on_receive` or :func:`on_local`;
a combination missing from the tables is a bug, and raises.
"""

from __future__ import annotations

from enum import Enum

from .errors import LocalProtocolError
from .frame import State

__all__ = ["LOCAL_TRANSITIONS", "RECEIVE_TRANSITIONS", "LocalEvent", "on_local", "on_receive"]

CLOSED, DOWN, INIT, UP = State.CLOSED, State.DOWN, State.INIT, State.UP

# (local state, Sta of a valid received frame) -> new local state   [HB-SM-1, HB-SM-2]
RECEIVE_TRANSITIONS: dict[tuple[State, State], State] = {
    (DOWN, CLOSED): CLOSED,
    (DOWN, DOWN): INIT,
    (DOWN, INIT): UP,
    (DOWN, UP): DOWN,
    (INIT, CLOSED): CLOSED,
    (INIT, DOWN): INIT,
    (INIT, INIT): UP,
    (INIT, UP): UP,
    (UP, CLOSED): CLOSED,
    (UP, DOWN): DOWN,
    (UP, INIT): UP,
    (UP, UP): UP,
}


class LocalEvent(Enum):
    CLOSE = "close"  # the application closes the session
    DETECTION_TIMEOUT = "detection_timeout"  # the detection timer expired


LOCAL_TRANSITIONS: dict[tuple[State, LocalEvent], State] = {
    (DOWN, LocalEvent.CLOSE): CLOSED,
    (INIT, LocalEvent.CLOSE): CLOSED,
    (UP, LocalEvent.CLOSE): CLOSED,
    (INIT, LocalEvent.DETECTION_TIMEOUT): DOWN,
    (UP, LocalEvent.DETECTION_TIMEOUT): DOWN,
}

# Flat lookup for the receive path, which runs for every frame.
_RECEIVE = [State.CLOSED] * 16
for (_local, _remote), _new in RECEIVE_TRANSITIONS.items():
    _RECEIVE[_local * 4 + _remote] = _new


def on_receive(local: State, remote: State) -> State:
    """The new state after a valid frame with Sta ``remote`` arrives in state ``local``."""
    if local is CLOSED:
        raise LocalProtocolError("a CLOSED session processes no frames (SPEC check V-14)")
    return _RECEIVE[local * 4 + remote]


def on_local(local: State, event: LocalEvent) -> State:
    """The new state after a local event; raises for a combination the SPEC does not allow."""
    try:
        return LOCAL_TRANSITIONS[(local, event)]
    except KeyError:
        raise LocalProtocolError(f"{event.value} is not possible in state {local.name}") from None
