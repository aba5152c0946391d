"""The conformance suite's static HTML report."""

from __future__ import annotations

from html.parser import HTMLParser

from conformance.html import to_html
from conformance.model import FrameRecord, Outcome, Result, Role
from conformance.registry import catalogue
from conformance.report import Run


class _Checker(HTMLParser):
    """Collects text and checks that every opened element (but void ones) is closed."""

    VOID = frozenset({"meta", "br"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack.pop() == tag

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_html_report_shows_each_case_and_its_frames() -> None:
    cases = catalogue()
    failed = Result(cases[0], "udp", Role.RESPONDER, Outcome.FAIL, 0.5, "an <ACK>", "nothing")
    failed.frames = [
        FrameRecord(0.0, "out", b"\x11", "HEARTBEAT DOWN my=0a0a0a0a", ""),
        FrameRecord(0.01, "in", b"\x12", "ACK INIT your=0a0a0a0a", "late"),
    ]
    passed = Result(cases[1], "tcp", Role.RESPONDER, Outcome.PASS, 0.2)
    run = Run("udp://127.0.0.1:1", "responder", 1, 0.005, "2026-01-01T00:00:00+00:00", 0.7,
              [failed, passed], "0.1.0")  # fmt: skip
    page = to_html(run)
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    text = " ".join(checker.text)
    assert cases[0].id in text
    assert cases[1].id in text
    assert "an <ACK>" in text  # escaped in the page, itself again once parsed
    assert "ACK INIT your=0a0a0a0a" in text
    assert "&lt;ACK&gt;" in page
    assert page.count("<details") == 2
    assert '<details id="' in page
    assert " open>" in page  # the failed case is unfolded
