"""``benchmarks/backup.py --quick`` runs end to end and reports its figures in a stable shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_backup_benchmark_reports_both_comparisons(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "backup.py"),
            "--quick",
            "--json",
            "--db-mb",
            "4",
            "--audio-mb",
            "24",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["quick"] is True
    database = report["database"]
    assert database["bytes"] >= 4 * 1024 * 1024
    assert len(database["pipeline_seconds"]) == len(database["vrp_seconds"]) == 1
    assert database["ratio"] > 0 and database["target"] == 0.8
    assert isinstance(database["met"], bool)
    audio = report["audio"]
    assert audio["bytes"] >= 24 * 1024 * 1024
    assert audio["first"]["copied"] == 3 and audio["first"]["skipped"] == 0
    assert audio["second"]["copied"] == 0 and audio["second"]["skipped"] == 3
    assert audio["ratio"] >= 0 and audio["target"] == 0.05
    assert isinstance(audio["met"], bool)
    assert list(tmp_path.iterdir()) == []
