"""Run the codec benchmark in its quick mode, so the script cannot rot unnoticed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "codec.py"


def test_codec_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(
        r"^codec\s+frame\s+encode us\s+decode us\s+enc/base\s+dec/base$",
        result.stdout,
        re.MULTILINE,
    ), result.stdout
    for row in ("baseline (struct)", "hbproto encode/decode", "construct schema_*"):
        assert row in result.stdout
    assert "goal: hbproto within 2x of the baseline" in result.stdout
