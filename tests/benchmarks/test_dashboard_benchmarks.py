"""``benchmarks/ingest.py`` and ``benchmarks/panels.py`` run end to end in ``--quick`` mode and
print their reports (the figures themselves are the benchmarks' business, not the tests')."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NUMBER = r"[\d,]+(?:\.\d+)?"


def run(module: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", module, "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return completed.stdout


def test_ingest_quick_reports_ingest_floor_and_their_ratio() -> None:
    report = run("benchmarks.ingest")

    assert re.search(rf"^  ingest +{NUMBER} spans/s", report, re.M), report
    assert re.search(rf"^  floor +{NUMBER} spans/s", report, re.M), report
    assert re.search(rf"^  ingest/floor +{NUMBER} +>= 0\.3 +(PASS|MISS)$", report, re.M), report


def test_panels_quick_reports_every_call_and_range_against_both_stores() -> None:
    report = run("benchmarks.panels")

    rows = re.findall(
        rf"^  (/api/\w+) +(1h|24h|7d) +{NUMBER} +{NUMBER} +{NUMBER}  (PASS|MISS)$", report, re.M
    )
    assert {(call, window) for call, window, _ in rows} == {
        (call, window)
        for call in ("/api/summary", "/api/operations", "/api/queries")
        for window in ("1h", "24h", "7d")
    }, report
    assert re.search(rf"^  worst ratio +{NUMBER} +<= 1\.5 +(PASS|MISS)$", report, re.M), report
    assert re.search(rf"^  worst median ms +{NUMBER} +< 100 +(PASS|MISS)$", report, re.M), report
