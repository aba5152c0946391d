"""Cutting frames out of a byte stream (the TCP binding, SPEC.md section 11.2).

Frames follow one another on the stream with nothing in between; each frame's Length field
says where it ends. The de-framer checks only what it needs to find the boundary (the
version nibble and the Length field). Everything else is :func:`hbproto.frame.decode`'s job,
so a frame with a bad checksum is cut out intact and dropped by the caller while the stream
stays usable. A bad version or an impossible Length leaves no way to find the next frame:
that error is fatal and repeats on every later call.
"""

from __future__ import annotations

from collections import deque

from .errors import BadLength, BadVersion, FrameError, FrameTooLarge, LocalProtocolError
from .frame import MAX_FRAME, MIN_FRAME, VERSION

__all__ = ["StreamDeframer"]

_COMPACT_AT = 1 << 16
_MAX_ARRIVALS = 16


class StreamDeframer:
    """Buffers stream bytes and returns whole frames.

    Call :meth:`receive_data` with what the socket delivered, then :meth:`next_frame` until it
    returns ``None``. Memory stays bounded by ``max_frame_size`` plus the bytes of whole frames
    the caller has not yet taken: a Length above the limit is rejected before its body is
    buffered.

    :attr:`partial_since` tells how long an incomplete frame has been waiting, so the caller
    can enforce SPEC rule [HB-TCP-4] against peers that trickle a frame and never finish it.
    """

    __slots__ = ("_arrivals", "_buf", "_consumed", "_error", "_pos", "_received", "max_frame_size")

    def __init__(self, max_frame_size: int = MAX_FRAME) -> None:
        if not MIN_FRAME <= max_frame_size <= MAX_FRAME:
            raise LocalProtocolError(f"max_frame_size must be in {MIN_FRAME}..{MAX_FRAME}")
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._pos = 0
        # (stream offset just past a received chunk, its arrival time), oldest first
        self._arrivals: deque[tuple[int, float]] = deque()
        self._received = 0
        self._consumed = 0
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as frames."""
        return len(self._buf) - self._pos

    @property
    def partial_since(self) -> float | None:
        """When the oldest byte not yet returned in a frame arrived; ``None`` if there is none."""
        return self._arrivals[0][1] if self._arrivals else None

    def receive_data(self, data: bytes, now: float) -> None:
        """Add bytes that arrived at time ``now``.

        Raises the stream's fatal error again if framing has already failed: a dead stream
        must be closed, not fed.
        """
        if self._error is not None:
            raise self._error
        if not data:
            return
        self._received += len(data)
        arrivals = self._arrivals
        if len(arrivals) < _MAX_ARRIVALS:
            arrivals.append((self._received, now))
        else:
            # Date the new bytes with the newest recorded chunk: a trickling peer cannot grow
            # this record, and the partial-frame clock can only run early, never late.
            arrivals[-1] = (self._received, arrivals[-1][1])
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next whole frame's bytes, or ``None`` if more bytes are needed.

        Raises :class:`~hbproto.errors.BadVersion`, :class:`~hbproto.errors.BadLength` or
        :class:`~hbproto.errors.FrameTooLarge` when the stream cannot be framed any more.
        """
        if self._error is not None:
            raise self._error
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail == 0:
            return None
        if buf[pos] >> 4 != VERSION:
            raise self._fail(BadVersion(f"version {buf[pos] >> 4} on the stream"))
        if avail < 4:
            return None
        length = (buf[pos + 2] << 8) | buf[pos + 3]
        if length < MIN_FRAME:
            raise self._fail(BadLength(f"Length {length} is below {MIN_FRAME}"))
        if length > self.max_frame_size:
            raise self._fail(FrameTooLarge(f"Length {length} > limit {self.max_frame_size}"))
        if avail < length:
            return None
        frame = bytes(buf[pos : pos + length])
        pos += length
        if pos == len(buf):
            buf.clear()
            pos = 0
        elif pos >= _COMPACT_AT:
            del buf[:pos]
            pos = 0
        self._pos = pos
        self._consumed += length
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] <= self._consumed:
            arrivals.popleft()
        return frame

    def _fail(self, error: FrameError) -> FrameError:
        self._error = error
        self._buf.clear()
        self._pos = 0
        self._arrivals.clear()
        return error
