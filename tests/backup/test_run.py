"""What a run writes, what it copies, and what makes it fail without publishing anything."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from backup import blobs as blob_module
from backup.catalog import Catalog
from backup.errors import BackupError, BlobSourceError, VerifyError
from backup.run import run_backup
from backup.source import fan_out_path
from tests.backup.helpers import backup_settings, make_sqlite_app


def _modes(root: Path) -> set[tuple[str, int]]:
    return {
        ("dir" if path.is_dir() else "file", stat.S_IMODE(path.stat().st_mode))
        for path in root.rglob("*")
    }


def test_files_are_0600_and_folders_0700_whatever_the_umask(tmp_path: Path) -> None:
    source = make_sqlite_app(tmp_path)
    settings = backup_settings(tmp_path)
    previous = os.umask(0o022)
    try:
        run_backup(settings, source)
    finally:
        os.umask(previous)
    assert _modes(settings.backup_dir) == {("dir", 0o700), ("file", 0o600)}
    assert stat.S_IMODE(settings.backup_dir.stat().st_mode) == 0o700


def test_a_second_run_over_unchanged_audio_copies_no_blob(tmp_path: Path) -> None:
    source = make_sqlite_app(tmp_path, blobs=5)
    settings = backup_settings(tmp_path)
    first = run_backup(settings, source, verify=False)
    second = run_backup(settings, source, verify=False)
    assert (first.blobs_copied, first.blobs_skipped) == (5, 0)
    assert (second.blobs_copied, second.blobs_skipped) == (0, 5)
    assert second.stored_bytes < first.stored_bytes / 10
    assert second.bytes == first.bytes
    info = Catalog(settings.backup_dir).get(second.backup_id)
    assert len(info.blobs) == 5 and not info.verified


def test_a_referenced_blob_missing_from_storage_fails_the_run_naming_it(tmp_path: Path) -> None:
    source = make_sqlite_app(tmp_path, blobs=2)
    settings = backup_settings(tmp_path)
    missing = sorted(p for p in source.storage_dir.rglob("*") if p.is_file())[0]
    missing.unlink()
    with pytest.raises(BlobSourceError, match=missing.name):
        run_backup(settings, source)
    catalog = Catalog(settings.backup_dir)
    assert catalog.list() == [] and list(catalog.tmp_dir.iterdir()) == []


def test_a_run_whose_verify_fails_is_not_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_sqlite_app(tmp_path, blobs=2)
    settings = backup_settings(tmp_path)
    real_add = blob_module.BlobArchive.add

    def add_then_damage(self, sha256, path, **kwargs):  # type: ignore[no-untyped-def]
        result = real_add(self, sha256, path, **kwargs)
        self.path_for(sha256).write_bytes(b"damaged on its way to the disk")
        return result

    monkeypatch.setattr(blob_module.BlobArchive, "add", add_then_damage)
    with pytest.raises(VerifyError, match="failed its verification"):
        run_backup(settings, source)
    catalog = Catalog(settings.backup_dir)
    assert catalog.list() == [] and list(catalog.tmp_dir.iterdir()) == []


def test_a_blob_whose_content_does_not_match_its_name_is_refused(tmp_path: Path) -> None:
    source = make_sqlite_app(tmp_path, blobs=1)
    (blob,) = [p for p in source.storage_dir.rglob("*") if p.is_file()]
    blob.write_bytes(b"something else")
    assert fan_out_path(source.storage_dir, blob.name) == blob
    with pytest.raises(BlobSourceError, match="does not match its name"):
        run_backup(backup_settings(tmp_path), source)


def test_a_failing_referenced_blobs_query_is_a_one_line_backup_error_naming_the_database(
    tmp_path: Path,
) -> None:
    import dataclasses

    import sqlalchemy as sa

    from backup.scheduler import _describe

    def broken_query(connection: sa.Connection) -> list[str]:
        return [row[0] for row in connection.execute(sa.text("SELECT sha256 FROM no_such_table"))]

    source = dataclasses.replace(make_sqlite_app(tmp_path), referenced_blobs=broken_query)

    with pytest.raises(BackupError) as caught:
        run_backup(backup_settings(tmp_path), source)

    message = _describe(caught.value)
    assert "\n" not in message and "SELECT" not in message, message
    assert str(tmp_path / "app.db") in message and "no such table: no_such_table" in message
    assert Catalog(tmp_path / "backups").list() == []
