"""The cases, one module per area of the SPEC. Importing this package registers them all."""

from . import ack, close, sessions, stream, timers, validation

__all__ = ["ack", "close", "sessions", "stream", "timers", "validation"]
