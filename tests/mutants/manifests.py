"""The manifests: for each mutant (tests/mutants/__init__.py) and transport, the cases it must
fail. A case missing here must pass; tests/test_mutants.py holds every mutant to its list.
"""

from __future__ import annotations

# What fails, over both transports, when the target's ACKs cannot be matched to the HEARTBEATs they
# answer: most cases wait for such an ACK at some point.
_NO_USABLE_ACK = (
    "4/non-canonical-codes",
    "4/target-frames-well-formed",
    "5.1/unknown-noncritical-tlv",
    "5.2/piggyback-processed",
    "6.2/ack-promptly",
    "6.2/ack-unanswered",
    "6.2/duplicate-ack",
    "6.2/echo",
    "6.2/final",
    "6.2/not-larger",
    "6.2/one-ack",
    "6.2/stale-ack",
    "6.2/timestamp-opaque",
    "6.3/data-brings-up",
    "6.3/data-is-proof-of-life",
    "7/V-11-in-session",
    "7/V-5-bad-checksum",
    "7/V-5-in-session",
    "7/V-6-in-session",
    "7/V-6-unknown-type",
    "7/V-7-bad-field",
    "7/V-7-in-session",
    "7/V-8-bad-tlv",
    "7/V-8-in-session",
    "8.2/late-opening",
    "8.2/opening-copy",
    "8.2/opening-repeated",
    "8.2/wrong-peer",
    "8.5/reordered",
    "8.5/replay",
    "8.5/window-edge",
    "9.1/r-zero",
    "9.1/slower-for-the-peer",
    "9.2/interval-and-jitter",
    "9.3/detection-promptly",
    "9.3/misses-not-accumulated",
    "9.3/mult-change",
    "9.3/only-valid-frames-count",
    "9.3/slow-start-floor",
    "9.4/change-without-poll",
    "9.4/poll-applied",
    "9.5/burst-one-strike",
    "9.5/conforming-not-struck",
)
_NO_USABLE_ACK_UDP = (
    *_NO_USABLE_ACK,
    "11.1/ack-to-source",
    "11.1/largest-datagram",
    "7/V-1-bad-version",
    "7/V-1-in-session",
    "7/V-2-in-session",
    "7/V-2-truncated",
    "7/V-4-bad-length",
    "7/V-4-in-session",
    "8.4/resume",
    "8.2/reflected-opening",
)
_NO_USABLE_ACK_TCP = (
    *_NO_USABLE_ACK,
    "11.2/frames-in-one-segment",
    "11.2/largest-frame",
    "11.2/partial-frame",
)


def _both(*cases: str) -> dict[str, tuple[str, ...]]:
    """The same cases over UDP and over TCP."""
    return {"udp": cases, "tcp": cases}


MANIFESTS: dict[str, dict[str, tuple[str, ...]]] = {
    "accepts-bad-checksum": _both(
        "7/V-5-in-session",
        "9.3/only-valid-frames-count",
    ),
    "accepts-bad-mac": _both(
        "10/bad-mac",
        "10/opening-verified",
        "10/unknown-key",
        "7/V-11-in-session",
    ),
    "accepts-replays": {
        "tcp": (
            "8.5/replay",
            "8.5/window-edge",
            "9.3/only-valid-frames-count",
        ),
        "udp": (
            "8.4/resume",
            "8.5/replay",
            "8.5/window-edge",
            "9.3/only-valid-frames-count",
        ),
    },
    "ack-larger": _both(
        "4/target-frames-well-formed",
        "6.2/not-larger",
    ),
    "ack-without-final": _both(
        "4/target-frames-well-formed",
        "6.2/final",
        "9.4/poll-applied",
    ),
    "ack-wrong-sequence": {
        "tcp": (
            *_NO_USABLE_ACK_TCP,
            "8.3/peer-reports-down",
        ),
        "udp": (
            *_NO_USABLE_ACK_UDP,
            "8.3/peer-reports-down",
            "9.2/slow-start-pace",
        ),
    },
    "ack-wrong-timestamp": _both(
        "6.2/echo",
        "6.2/timestamp-opaque",
    ),
    "answers-reflections": {
        "udp": ("8.2/reflected-opening",),
    },
    "closes-on-bad-frame": {
        "tcp": (
            "7/V-5-in-session",
            "7/V-6-in-session",
            "7/V-7-in-session",
            "7/V-8-in-session",
            "9.3/only-valid-frames-count",
        ),
    },
    "deaf-after-truncated": {
        "udp": (
            "7/V-1-bad-version",
            "7/V-1-in-session",
            "7/V-2-in-session",
            "7/V-2-truncated",
        ),
    },
    "down-blamed-on-the-peer": _both(
        "9.3/initiator-reports-down",
    ),
    "down-too-early": {
        "tcp": (
            "11.2/partial-frame",
            "4/non-canonical-codes",
            "9.1/no-preference",
            "9.3/detection",
            "9.3/detection-promptly",
            "9.3/misses-not-accumulated",
            "9.3/mult-change",
            "9.3/only-valid-frames-count",
            "9.3/slow-start-floor",
        ),
        "udp": (
            "4/non-canonical-codes",
            "9.1/no-preference",
            "9.3/detection",
            "9.3/detection-promptly",
            "9.3/misses-not-accumulated",
            "9.3/mult-change",
            "9.3/only-valid-frames-count",
            "9.3/slow-start-floor",
        ),
    },
    "heartbeats-badly-signed": {
        "tcp": (
            "10/every-frame-signed",
            "11.2/largest-frame",
            "4/target-frames-well-formed",
            "6.1/triggered-on-ack",
            "6.2/duplicate-ack",
            "6.2/stale-ack",
            "6.3/data-brings-up",
            "8.5/send-counter",
            "9.1/slower-for-the-peer",
            "9.2/interval-and-jitter",
            "9.3/detection",
            "9.3/misses-not-accumulated",
            "9.4/change-without-poll",
            "9.4/poll-applied",
        ),
        "udp": (
            "10/every-frame-signed",
            "11.1/largest-datagram",
            "4/non-canonical-codes",
            "4/target-frames-well-formed",
            "6.1/triggered-on-ack",
            "6.2/duplicate-ack",
            "6.2/stale-ack",
            "6.3/data-brings-up",
            "8.5/send-counter",
            "9.1/no-preference",
            "9.1/slower-for-the-peer",
            "9.2/interval-and-jitter",
            "9.2/slow-start-pace",
            "9.3/detection",
            "9.3/detection-promptly",
            "9.3/misses-not-accumulated",
            "9.3/mult-change",
            "9.3/only-valid-frames-count",
            "9.3/slow-start-floor",
            "9.4/change-without-poll",
            "9.4/poll-applied",
        ),
    },
    "ignores-peer-minimum": _both(
        "9.1/slower-for-the-peer",
        "9.2/interval-and-jitter",
        "9.4/change-without-poll",
        "9.4/poll-applied",
    ),
    "ignores-unknown-reason": _both(
        "6.4/unknown-reason",
    ),
    "ignores-version": {
        "tcp": ("11.2/unframeable-stream",),
        "udp": ("7/V-1-in-session",),
    },
    "interval-too-fast": {
        "tcp": (
            "9.1/slower-for-the-peer",
            "9.2/interval-and-jitter",
            "9.4/change-without-poll",
            "9.4/poll-applied",
        ),
        "udp": (
            "6.1/triggered-on-ack",
            "9.1/slower-for-the-peer",
            "9.2/interval-and-jitter",
            "9.2/slow-start-pace",
            "9.4/change-without-poll",
            "9.4/poll-applied",
        ),
    },
    "misses-add-up": {
        "tcp": (
            "4/non-canonical-codes",
            "9.1/slower-for-the-peer",
            "9.3/detection",
            "9.3/detection-promptly",
            "9.3/mult-change",
            "9.3/only-valid-frames-count",
        ),
        "udp": (
            "4/non-canonical-codes",
            "9.3/detection",
            "9.3/detection-promptly",
            "9.3/mult-change",
            "9.3/only-valid-frames-count",
        ),
    },
    "never-acks": {
        "tcp": (
            *_NO_USABLE_ACK_TCP,
            "8.5/wraparound",
        ),
        "udp": (
            *_NO_USABLE_ACK_UDP,
            "8.5/wraparound",
        ),
    },
    "never-down": _both(
        "4/non-canonical-codes",
        "9.1/no-preference",
        "9.3/detection",
        "9.3/detection-promptly",
        "9.3/mult-change",
        "9.3/only-valid-frames-count",
        "9.3/slow-start-floor",
    ),
    "no-handshake-deadline": {
        "tcp": (
            "11.2/half-open",
            "11.2/handshake-deadline",
        ),
    },
    "no-jitter": _both(
        "9.2/interval-and-jitter",
    ),
    "no-refusal-back-off": {
        "udp": ("6.4/refusal-back-off",),
    },
    "no-slow-start": {
        "tcp": ("8.2/opening-repeated",),
        "udp": (
            "6.1/triggered-on-ack",
            "9.2/slow-start-pace",
        ),
    },
    "only-active-key": _both(
        "10/any-configured-key",
    ),
    "replaces-live-sessions": {
        "udp": ("8.2/no-restart-while-alive",),
    },
    "skips-close": {
        "tcp": (
            "11.2/close-is-last",
            "4/non-canonical-codes",
            "6.1/triggered-on-ack",
            "8.3/peer-reports-down",
            "9.1/no-preference",
            "9.3/detection",
            "9.3/detection-promptly",
            "9.3/mult-change",
            "9.3/only-valid-frames-count",
            "9.3/slow-start-floor",
            "9.5/too-frequent",
        ),
        "udp": (
            "6.4/linger-answers",
            "6.4/linger-ignores-close-and-ack",
            "9.5/too-frequent",
        ),
    },
    "skips-init": {
        "tcp": (
            "11.2/byte-at-a-time",
            "11.2/handshake-deadline",
            "11.2/largest-frame",
            "6.3/data-brings-up",
            "8.2/opening-repeated",
            "8.3/handshake",
            "9.3/slow-start-floor",
        ),
        "udp": (
            "11.1/largest-datagram",
            "6.1/silent-until-verified",
            "6.3/data-brings-up",
            "8.2/half-open-deleted",
            "8.2/opening-repeated",
            "8.3/handshake",
            "8.4/resume",
            "9.3/slow-start-floor",
        ),
    },
    "trusts-length": {
        "udp": ("7/V-4-in-session",),
    },
    "trusts-new-address": {
        "udp": ("11.1/rebinding",),
    },
}
