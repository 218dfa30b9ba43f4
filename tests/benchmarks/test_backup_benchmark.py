"""``benchmarks/backup.py --quick`` runs end to end and reports its figures in a stable shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
            "--remote-serial",
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
    remote = report["remote"]
    assert len(remote["first_copy_own_seconds"]) == len(remote["first_copy_serial_own_seconds"])
    assert remote["concurrency_speedup"] > 0
    assert remote["incremental_copy_objects"] == [2]  # the new blob and the new database
    assert list(tmp_path.iterdir()) == []


def test_vrp_runs_with_a_bytecode_cache_of_their_own_whatever_the_caller_sets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.backup import _env

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    env = _env(tmp_path, tmp_path / "vrp.db", tmp_path / "blobs", tmp_path / "backups")
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert Path(env["PYTHONPYCACHEPREFIX"]).parent == tmp_path
    done = subprocess.run(
        [sys.executable, "-c", "import sys; print(sys.dont_write_bytecode, sys.pycache_prefix)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["False", env["PYTHONPYCACHEPREFIX"]]
