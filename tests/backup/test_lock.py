"""One run at a time; the lock of a process that died is taken over and logged."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from backup.errors import BackupLockedError
from backup.lock import run_lock
from backup.run import run_backup
from tests.backup.helpers import backup_settings, make_sqlite_app


def test_a_second_run_is_refused_while_the_lock_is_held(tmp_path: Path) -> None:
    source = make_sqlite_app(tmp_path)
    settings = backup_settings(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from backup.lock import run_lock\n"
            "with run_lock(Path(sys.argv[1])):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
            str(settings.backup_dir / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(BackupLockedError, match=f"pid {holder.pid}"):
            run_backup(settings, source)
    finally:
        holder.kill()
        holder.wait()
    assert run_backup(settings, source).backup_id


def test_the_lock_of_a_dead_process_is_taken_over_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / "backups" / ".lock"
    lock.parent.mkdir()
    lock.write_text(f"{dead.pid}\n")
    with caplog.at_level(logging.WARNING, logger="backup.lock"), run_lock(lock) as previous:
        assert previous == dead.pid
        assert lock.read_text().strip() != str(dead.pid)
    assert f"left by process {dead.pid}" in caplog.text
