"""``benchmarks/capacity.py --quick`` serves both configurations over HTTP and rates them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_quick(*options: str) -> str:
    """What ``capacity.py --quick`` with ``options`` prints; it must exit 0."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "capacity.py"), "--quick", *options],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_quick_run_alternates_both_configurations_without_errors_and_exports() -> None:
    out = run_quick()
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
    assert "breakdown" not in out
    assert "fewer log records" not in out


def test_breakdown_adds_on_without_access_records_and_on_without_spans() -> None:
    out = run_quick("--breakdown")
    rows = {
        match["name"]: (int(match["requests"]), float(match["rate"]), int(match["errors"]))
        for match in re.finditer(
            r"^(?P<name>on|nolog|nospans|off)\s+(?P<requests>\d+)\s+(?P<rate>\d+\.\d)\s+"
            r"\d+\.\d \d+\.\d\s+\d+\.\d\s+\d+\.\d\d\s+(?P<errors>\d+)$",
            out,
            re.MULTILINE,
        )
    }
    assert list(rows) == ["on", "nolog", "nospans", "off"]
    assert all(requests > 0 and errors == 0 for requests, _, errors in rows.values())
    sinks = {
        match[3]: (int(match[1]), int(match[2]))
        for match in re.finditer(
            r"^sink received (\d+) spans and (\d+) log records from (\w+)", out, re.M
        )
    }
    assert set(sinks) == {"on", "nolog", "nospans"}
    # Each server's own sink: nolog exports spans but no access records, nospans the reverse.
    assert sinks["on"][0] > rows["on"][0] and sinks["on"][1] >= rows["on"][0]
    assert sinks["nolog"][0] > rows["nolog"][0] and sinks["nolog"][1] < rows["nolog"][0]
    assert sinks["nospans"][0] == 0 and sinks["nospans"][1] >= rows["nospans"][0]
    breakdown = re.search(
        r"^breakdown, each / off  nolog (\d\.\d{3})  nospans (\d\.\d{3})$", out, re.M
    )
    assert breakdown is not None
    assert abs(float(breakdown[1]) - rows["nolog"][1] / rows["off"][1]) < 0.01
    assert abs(float(breakdown[2]) - rows["nospans"][1] / rows["off"][1]) < 0.01


def test_workers_adds_on_and_off_under_gunicorn_and_their_ratios() -> None:
    out = run_quick("--workers", "2")
    rows = {
        match["name"]: (int(match["requests"]), float(match["rate"]), float(match["cpu"]))
        for match in re.finditer(
            r"^(?P<name>on|off|on-w2|off-w2)\s+(?P<requests>\d+)\s+(?P<rate>\d+\.\d)\s+"
            r"\d+\.\d \d+\.\d\s+\d+\.\d\s+(?P<cpu>\d+\.\d\d)\s+0$",
            out,
            re.MULTILINE,
        )
    }
    assert list(rows) == ["on", "off", "on-w2", "off-w2"]
    # The workers' CPU is counted with the master's.
    assert all(requests > 0 and cpu > 0 for requests, _, cpu in rows.values())
    exported = re.search(r"^sink received (\d+) spans and (\d+) log records from on-w2", out, re.M)
    assert exported is not None and int(exported[2]) >= rows["on-w2"][0]
    at_two = re.search(r"^at 2 workers \(gunicorn\), capacity on / off\s+(\d+\.\d{3})$", out, re.M)
    assert at_two is not None
    assert abs(float(at_two[1]) - rows["on-w2"][1] / rows["off-w2"][1]) < 0.01
    for name in ("on", "off"):
        ratio = re.search(rf"^2 workers / 1 \(waitress\), {name}\s+(\d+\.\d{{3}})", out, re.M)
        assert ratio is not None
        assert abs(float(ratio[1]) - rows[f"{name}-w2"][1] / rows[name][1]) < 0.01


def test_read_mix_runs_the_list_request_alone() -> None:
    out = run_quick("--mix", "read")
    assert "16 client threads running the read mix" in out
    rows = re.findall(
        r"^(on|off)\s+(\d+)\s+\d+\.\d\s+\d+\.\d \d+\.\d\s+\d+\.\d\s+\d+\.\d\d\s+0$", out, re.M
    )
    assert [name for name, _ in rows] == ["on", "off"]
    assert all(int(requests) > 0 for _, requests in rows)
