"""A SQLite backup taken while another process keeps writing is consistent and restorable."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from backup.engines.sqlite import STEP_BYTES, SqliteEngine, database_path
from backup.restore import plan_restore, restore_backup
from backup.run import run_backup
from backup.settings import BackupSettings
from backup.stream import decompress_stream
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


def _restored_rows(tmp_path: Path, settings: BackupSettings, backup_id: str) -> list[tuple]:
    target = tmp_path / "restored.db"
    restore_backup(
        settings, plan_restore(settings, backup_id, to_path=target, storage_dir=tmp_path / "a")
    )
    connection = sqlite3.connect(target)
    try:
        return connection.execute("SELECT id, sha256, payload FROM items ORDER BY id").fetchall()
    finally:
        connection.close()


def test_pages_changed_in_the_wal_are_copied_from_the_wal_not_the_mapped_file(
    tmp_path: Path,
) -> None:
    # The source is read through SQLite's memory map: rows rewritten since the last checkpoint
    # live only in the WAL, and the copy must hold those versions, not the file's older ones.
    source = make_sqlite_app(tmp_path, rows=30_000, blobs=2)
    db = database_path(source.database_url)
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("UPDATE items SET payload = randomblob(300) WHERE id % 7 = 0")
        writer.execute("DELETE FROM items WHERE id % 11 = 0")
        assert Path(f"{db}-wal").stat().st_size > STEP_BYTES // 8
        expected = writer.execute("SELECT id, sha256, payload FROM items ORDER BY id").fetchall()
        settings = backup_settings(tmp_path)
        result = run_backup(settings, source, verify=True)
    finally:
        writer.close()
    assert _restored_rows(tmp_path, settings, result.backup_id) == expected


def test_a_rollback_journal_database_is_one_snapshot_while_a_writer_waits_for_the_copy(
    tmp_path: Path,
) -> None:
    source = make_sqlite_app(tmp_path, rows=60_000, blobs=1)
    db = database_path(source.database_url)
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute("PRAGMA journal_mode=DELETE")
    expected = connection.execute("SELECT id, sha256, payload FROM items ORDER BY id").fetchall()
    connection.close()
    assert db.stat().st_size > 2 * STEP_BYTES
    events: dict[str, float] = {}

    def write() -> None:
        writer = sqlite3.connect(db, isolation_level=None, timeout=30)
        try:
            writer.execute("INSERT INTO items (sha256, payload) VALUES (NULL, x'00')")
        finally:
            writer.close()
        events["written"] = time.monotonic()

    thread = threading.Thread(target=write)

    def start_writing_after_the_first_step(done: int) -> None:
        if not thread.is_alive() and "written" not in events:
            thread.start()
            time.sleep(0.1)

    def note(name: str) -> None:
        events.setdefault(name, time.monotonic())

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    try:
        snapshot = SqliteEngine().snapshot(
            source.database_url,
            run_dir,
            level=3,
            referenced_blobs=source.referenced_blobs,
            progress=start_writing_after_the_first_step,
            on_event=note,
        )
    finally:
        if thread.ident is not None:
            thread.join()
    assert events["snapshot:copied"] < events["written"]
    assert snapshot.tables == {"items": len(expected)}
    copy = tmp_path / "copy.db"
    with (run_dir / snapshot.artifact.path).open("rb") as stored, copy.open("wb") as out:
        decompress_stream(stored, out.write)
    copied = sqlite3.connect(copy)
    try:
        rows = copied.execute("SELECT id, sha256, payload FROM items ORDER BY id").fetchall()
    finally:
        copied.close()
    assert rows == expected
    assert sqlite_rows(db) == len(expected) + 1
