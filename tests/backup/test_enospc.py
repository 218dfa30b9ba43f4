"""A full disk fails the run cleanly: recorded as failed, earlier backups intact."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from backup import stream
from backup.catalog import Catalog
from backup.engines.sqlite import database_path
from backup.errors import BackupSpaceError
from backup.run import run_backup
from backup.telemetry import BackupTelemetry
from backup.verify import verify_backup
from instrumentation.testing import InMemoryTelemetry
from tests.backup.helpers import backup_settings, make_sqlite_app, write_blob


@pytest.fixture
def recorded() -> Iterator[InMemoryTelemetry]:
    telemetry = InMemoryTelemetry()
    yield telemetry
    telemetry.shutdown()


def test_enospc_during_a_run_records_a_failed_run_and_leaves_earlier_backups_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded: InMemoryTelemetry
) -> None:
    source = make_sqlite_app(tmp_path, rows=100, blobs=2)
    settings = backup_settings(tmp_path)
    telemetry = BackupTelemetry(recorded.tracer_provider, recorded.meter_provider)
    first = run_backup(settings, source, telemetry=telemetry)
    # New audio, so the second run has a blob to write; the disk fills up while it writes.
    new_sha = write_blob(source.storage_dir, os.urandom(300_000))
    connection = sqlite3.connect(database_path(source.database_url))
    connection.execute("INSERT INTO items (sha256, payload) VALUES (?, x'00')", (new_sha,))
    connection.commit()
    connection.close()
    budget = [200_000]
    real_write = os.write

    def filling_write(fd: int, data: bytes | memoryview) -> int:
        budget[0] -= len(data)
        if budget[0] < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(stream.os, "write", filling_write)
    with pytest.raises(BackupSpaceError, match="no space left"):
        run_backup(settings, source, telemetry=telemetry)
    monkeypatch.setattr(stream.os, "write", real_write)

    catalog = Catalog(settings.backup_dir)
    assert [b.id for b in catalog.list()] == [first.backup_id]
    assert verify_backup(settings, first.backup_id).ok
    assert list(catalog.tmp_dir.iterdir()) == []
    runs = [s for s in recorded.span_exporter.get_finished_spans() if s.name == "backup.run"]
    assert [s.attributes["vrp.backup.status"] for s in runs] == ["success", "failed"]
    assert runs[1].attributes["error.type"] == "BackupSpaceError"
    durations = [dict(p.attributes) for p in recorded.metric_points("vrp.backup.duration")]
    assert {
        "vrp.backup.status": "failed",
        "vrp.backup.repository.id": first.repository_id,
        "vrp.backup.database": source.database_url,
    } in durations
    # The next run, with space again, succeeds and copies what the failed one could not.
    assert run_backup(settings, source, telemetry=telemetry).blobs_copied == 1
