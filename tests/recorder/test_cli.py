"""The ``vrp`` command: exit codes and messages as a user sees them, in a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _vrp(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    clean.update(env)
    clean["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.run(
        [sys.executable, "-m", "recorder.cli", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", [["api"], ["up"], ["db", "upgrade"]])
def test_bad_config_exits_2_with_one_line(tmp_path: Path, command: list[str]) -> None:
    result = _vrp(command, tmp_path, VRP_DB_POOL_SIZE="lots")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["vrp: invalid configuration: VRP_DB_POOL_SIZE='lots': Not a valid integer."]


def test_api_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    result = _vrp(["api"], tmp_path, OTEL_SDK_DISABLED="true", VRP_LOG_FORMAT="json")
    assert result.returncode == 1
    ours = [line for line in result.stderr.splitlines() if line.startswith("vrp:")]
    assert len(ours) == 1
    assert "run `vrp db upgrade`" in ours[0]


def test_db_upgrade_then_current_reports_up_to_date(tmp_path: Path) -> None:
    upgraded = _vrp(["db", "upgrade"], tmp_path, OTEL_SDK_DISABLED="true")
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / "var" / "vrp.db").exists()
    current = _vrp(["db", "current"], tmp_path, OTEL_SDK_DISABLED="true")
    assert current.returncode == 0
    assert "up to date" in current.stdout


def test_unwritable_log_dir_exits_2_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log folder should be")
    result = _vrp(["db", "upgrade"], tmp_path, VRP_LOG_DIR=str(blocker / "log"))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("vrp: invalid configuration: cannot write logs to")
