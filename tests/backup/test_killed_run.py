"""A run killed with SIGKILL at any step leaves nothing that lists as a backup, and the next
run cleans up after it and succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from backup.catalog import Catalog
from backup.run import run_backup
from tests.backup.helpers import backup_settings, make_sqlite_app

RUNNER = """
import sys, time
from pathlib import Path
from backup.run import run_backup
from backup.source import BackupSource
from tests.backup.helpers import backup_settings, referenced_blobs

root, stop_at = Path(sys.argv[1]), sys.argv[2]
source = BackupSource(f"sqlite:///{root / 'app.db'}", root / "storage", referenced_blobs)

def on_event(name):
    if name == stop_at:
        (root / "paused").write_text(name)
        time.sleep(3600)

run_backup(backup_settings(root), source, on_event=on_event)
"""

REPO = Path(__file__).resolve().parents[2]


def _vrp_backup_list(root: Path) -> list[dict[str, object]]:
    env = {**os.environ, "VRP_BACKUP_DIR": str(root / "backups")}
    listed = subprocess.run(
        [sys.executable, "-m", "recorder.cli", "backup", "list", "--json"],
        cwd=root,
        env=env,
        capture_output=True,
        check=True,
    )
    return orjson.loads(listed.stdout)


@pytest.mark.parametrize(
    "stop_at",
    ["snapshot", "snapshot:copied", "blobs:copied", "manifest", "manifest:written", "verify",
     "publish"],
)  # fmt: skip
def test_a_run_killed_at_any_step_lists_nothing_and_the_next_run_succeeds(
    tmp_path: Path, stop_at: str
) -> None:
    source = make_sqlite_app(tmp_path, rows=500, blobs=3)
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(tmp_path), stop_at],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "paused").exists():
            assert runner.poll() is None, "the run ended before reaching the step"
            assert time.monotonic() < deadline, f"the run never reached {stop_at}"
            time.sleep(0.02)
        runner.send_signal(signal.SIGKILL)
    finally:
        runner.kill()
        runner.wait()

    settings = backup_settings(tmp_path)
    catalog = Catalog(settings.backup_dir)
    assert catalog.list() == []
    assert _vrp_backup_list(tmp_path) == []

    result = run_backup(settings, source)

    assert [b.id for b in catalog.list()] == [result.backup_id]
    assert [entry["id"] for entry in _vrp_backup_list(tmp_path)] == [result.backup_id]
    assert list(catalog.tmp_dir.iterdir()) == []
    assert not any((settings.backup_dir / "blobs" / "tmp").glob("*"))
    assert result.verified
