"""A SQLite backup taken while another process keeps writing is consistent and restorable."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from backup.engines.sqlite import STEP_BYTES, database_path
from backup.restore import plan_restore, restore_backup
from backup.run import run_backup
from tests.backup.helpers import backup_settings, make_sqlite_app, sqlite_rows

WRITER = """
import os, sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
connection.execute("PRAGMA busy_timeout=30000")
open(sys.argv[2], "w").close()
while True:
    connection.execute("INSERT INTO items (sha256, payload) VALUES (NULL, ?)", (os.urandom(2000),))
"""


def test_backup_while_another_process_writes_restores_with_a_count_between_before_and_after(
    tmp_path: Path,
) -> None:
    source = make_sqlite_app(tmp_path, rows=20_000, blobs=3)
    db = database_path(source.database_url)
    settings = backup_settings(tmp_path)
    started = tmp_path / "writer-started"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(started)])
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        before = sqlite_rows(db)
        result = run_backup(settings, source, verify=True)
        after = sqlite_rows(db)
        assert writer.poll() is None, "the writer must still be running after the backup"
    finally:
        writer.kill()
        writer.wait()
    assert after > before, "the writer made no progress during the backup"

    target = tmp_path / "restored.db"
    plan = plan_restore(
        settings, result.backup_id, to_path=target, storage_dir=tmp_path / "restored-audio"
    )
    restore_backup(settings, plan)

    connection = sqlite3.connect(target)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        restored = connection.execute("SELECT count(*) FROM items").fetchone()[0]
    finally:
        connection.close()
    assert before <= restored <= after
    assert result.verified


def test_a_database_copied_in_many_steps_restores_identical(tmp_path: Path) -> None:
    source = make_sqlite_app(tmp_path, rows=100_000, blobs=1)
    db = database_path(source.database_url)
    assert db.stat().st_size > 2 * STEP_BYTES
    settings = backup_settings(tmp_path)
    result = run_backup(settings, source, verify=True)
    target = tmp_path / "restored.db"
    restore_backup(
        settings,
        plan_restore(settings, result.backup_id, to_path=target, storage_dir=tmp_path / "a"),
    )
    original, restored = sqlite3.connect(db), sqlite3.connect(target)
    try:
        query = "SELECT id, sha256, payload FROM items ORDER BY id"
        assert original.execute(query).fetchall() == restored.execute(query).fetchall()
    finally:
        original.close()
        restored.close()
