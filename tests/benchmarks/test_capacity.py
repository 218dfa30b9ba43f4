"""``benchmarks/capacity.py --quick`` serves both configurations over HTTP and rates them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_alternates_both_configurations_without_errors_and_exports() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "capacity.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    rows = {
        match["name"]: match
        for match in re.finditer(
            r"^(?P<name>on|off)\s+(?P<requests>\d+)\s+(?P<rate>\d+\.\d)\s+"
            r"(?P<phases>\d+\.\d \d+\.\d)\s+\d+\.\d\s+(?P<cpu>\d+\.\d\d)\s+(?P<errors>\d+)$",
            out,
            re.MULTILINE,
        )
    }
    assert set(rows) == {"on", "off"}
    for row in rows.values():
        assert int(row["requests"]) > 0
        assert int(row["errors"]) == 0
        assert float(row["cpu"]) > 0
    ratio = re.search(r"^capacity on / off\s+(\d+\.\d{3})\s+>= 0\.8\s+(PASS|MISS)$", out, re.M)
    assert ratio is not None
    expected = float(rows["on"]["rate"]) / float(rows["off"]["rate"])
    assert abs(float(ratio[1]) - expected) < 0.01
    pairs = re.search(r"^each pair, on / off  ([\d. ]+)  \(median (\d+\.\d{3})\)$", out, re.M)
    assert pairs is not None
    per_pair = [float(value) for value in pairs[1].split()]
    assert len(per_pair) == 2  # --quick alternates twice
    assert min(per_pair) <= float(pairs[2]) <= max(per_pair)
    exported = re.search(r"^sink received (\d+) spans and (\d+) log records from on", out, re.M)
    assert exported is not None
    # Every request of on is traced and logged once (the canonical line); off sends nothing.
    assert int(exported[1]) > int(rows["on"]["requests"])
    assert int(exported[2]) >= int(rows["on"]["requests"])
