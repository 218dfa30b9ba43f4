"""Restore goes somewhere new by default and follows only a sound manifest."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from backup.catalog import Catalog
from backup.errors import BackupError, ManifestError, RestoreError
from backup.restore import plan_restore, restore_backup
from backup.run import run_backup
from backup.settings import BackupSettings
from backup.source import BackupSource, fan_out_path
from backup.verify import verify_backup
from tests.backup.helpers import (
    backup_settings,
    flip_byte,
    make_sqlite_app,
    sqlite_rows,
    tamper_manifest,
)
from tests.backup.test_leftovers import hold_partial


@pytest.fixture
def backed_up(tmp_path: Path) -> tuple[BackupSettings, BackupSource, str]:
    source = make_sqlite_app(tmp_path, rows=30, blobs=2)
    settings = backup_settings(tmp_path)
    return settings, source, run_backup(settings, source).backup_id


def _tamper(settings: BackupSettings, backup_id: str, path: str) -> None:
    manifest_path = settings.backup_dir / "runs" / backup_id / "manifest.json"
    tamper_manifest(manifest_path, lambda doc: doc["artifacts"][0].update(path=path))


def test_restore_writes_the_database_and_every_referenced_blob(
    backed_up: tuple[BackupSettings, BackupSource, str], tmp_path: Path
) -> None:
    settings, source, backup_id = backed_up
    target, audio = tmp_path / "new.db", tmp_path / "new-audio"
    result = restore_backup(
        settings, plan_restore(settings, backup_id, to_path=target, storage_dir=audio)
    )
    assert sqlite_rows(target) == 30
    assert sorted(p.name for p in tmp_path.iterdir() if "new.db" in p.name) == ["new.db"]
    blobs = Catalog(settings.backup_dir).get(backup_id).blobs
    for sha256 in blobs:
        assert (
            fan_out_path(audio, sha256).read_bytes()
            == fan_out_path(source.storage_dir, sha256).read_bytes()
        )
    assert result.blobs_written == len(blobs) == 2
    assert oct(target.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    "path", ["../../outside.zst", "/etc/passwd", "sub/../../x.zst", "..", "./database.sqlite.zst"]
)
def test_a_manifest_with_an_escaping_or_absolute_path_is_refused(
    backed_up: tuple[BackupSettings, BackupSource, str], tmp_path: Path, path: str
) -> None:
    settings, _, backup_id = backed_up
    _tamper(settings, backup_id, path)
    with pytest.raises(ManifestError, match=r"refusing|absolute|escapes"):
        plan_restore(settings, backup_id, to_path=tmp_path / "x.db", storage_dir=tmp_path / "a")
    assert not (tmp_path / "x.db").exists()
    assert not verify_backup(settings, backup_id).ok


def test_a_manifest_whose_artifact_is_a_symlink_is_refused(
    backed_up: tuple[BackupSettings, BackupSource, str], tmp_path: Path
) -> None:
    settings, _, backup_id = backed_up
    run_dir = settings.backup_dir / "runs" / backup_id
    outside = tmp_path / "elsewhere.zst"
    os.replace(run_dir / "database.sqlite.zst", outside)
    (run_dir / "database.sqlite.zst").symlink_to(outside)
    plan = plan_restore(settings, backup_id, to_path=tmp_path / "x.db", storage_dir=tmp_path / "a")
    with pytest.raises(ManifestError, match="symlink"):
        restore_backup(settings, plan)
    assert not (tmp_path / "x.db").exists()
    problems = verify_backup(settings, backup_id).problems
    assert any("symlink" in p.message for p in problems)


def test_restoring_over_an_existing_file_needs_force(
    backed_up: tuple[BackupSettings, BackupSource, str], tmp_path: Path
) -> None:
    settings, _, backup_id = backed_up
    target = tmp_path / "existing.db"
    target.write_bytes(b"precious")
    plan = plan_restore(settings, backup_id, to_path=target, storage_dir=tmp_path / "a")
    assert plan.replaces == f"the SQLite database {target}"
    with pytest.raises(RestoreError, match="--force"):
        restore_backup(settings, plan)
    assert target.read_bytes() == b"precious"
    restore_backup(settings, plan, force=True)
    assert sqlite_rows(target) == 30


def test_replacing_the_live_database_needs_force_and_says_so(
    backed_up: tuple[BackupSettings, BackupSource, str],
) -> None:
    settings, source, backup_id = backed_up
    live = Path(source.database_url.removeprefix("sqlite:///"))
    plan = plan_restore(
        settings,
        backup_id,
        to_path=live,
        storage_dir=source.storage_dir,
        live_database_url=source.database_url,
    )
    assert plan.replaces.startswith("the LIVE database")
    with pytest.raises(RestoreError, match="--force"):
        restore_backup(settings, plan)
    restore_backup(settings, plan, force=True)
    assert sqlite_rows(live) == 30


def test_a_sqlite_backup_cannot_be_restored_into_a_database_url(
    backed_up: tuple[BackupSettings, BackupSource, str], tmp_path: Path
) -> None:
    settings, _, backup_id = backed_up
    with pytest.raises(BackupError, match="--to PATH"):
        plan_restore(
            settings,
            backup_id,
            database_url="postgresql://postgres@127.0.0.1/x",
            storage_dir=tmp_path,
        )


def _leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if name in p.name) if folder.exists() else []


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_a_restore_that_fails_its_row_count_check_leaves_nothing_at_the_target(
    backed_up: tuple[BackupSettings, BackupSource, str], tmp_path: Path
) -> None:
    settings, _, backup_id = backed_up
    manifest_path = settings.backup_dir / "runs" / backup_id / "manifest.json"
    tamper_manifest(manifest_path, lambda doc: doc["tables"].update(items=31))
    target, audio = tmp_path / "restored.db", tmp_path / "restored-audio"
    plan = plan_restore(settings, backup_id, to_path=target, storage_dir=audio)

    with pytest.raises(RestoreError, match="31 rows in the manifest") as caught:
        restore_backup(settings, plan)

    assert f"nothing was written to {target}" in str(caught.value)
    assert _leftovers(tmp_path, "restored.db") == []
    assert _files(audio) == []


def test_a_damaged_blob_fails_the_restore_and_removes_what_it_wrote(
    backed_up: tuple[BackupSettings, BackupSource, str], tmp_path: Path
) -> None:
    settings, _, backup_id = backed_up
    catalog = Catalog(settings.backup_dir)
    blobs = [b.sha256 for b in catalog.manifest(backup_id).blobs]
    flip_byte(catalog.blob_archive().path_for(blobs[-1]), 30)
    target, audio = tmp_path / "restored.db", tmp_path / "restored-audio"
    plan = plan_restore(settings, backup_id, to_path=target, storage_dir=audio)

    with pytest.raises(RestoreError, match=f"blob {blobs[-1]} is damaged") as caught:
        restore_backup(settings, plan)

    assert "blob(s) it wrote were removed" in str(caught.value)
    assert _leftovers(tmp_path, "restored.db") == []
    assert _files(audio) == []


def test_a_failed_forced_restore_leaves_the_existing_database_as_it_was(
    backed_up: tuple[BackupSettings, BackupSource, str], tmp_path: Path
) -> None:
    settings, source, backup_id = backed_up
    target = tmp_path / "existing.db"
    target.write_bytes(Path(source.database_url.removeprefix("sqlite:///")).read_bytes())
    before = target.read_bytes()
    manifest_path = settings.backup_dir / "runs" / backup_id / "manifest.json"
    tamper_manifest(manifest_path, lambda doc: doc["tables"].update(items=29))
    plan = plan_restore(settings, backup_id, to_path=target, storage_dir=tmp_path / "audio")

    with pytest.raises(RestoreError, match="29 rows in the manifest"):
        restore_backup(settings, plan, force=True)

    assert target.read_bytes() == before
    assert _leftovers(tmp_path, "existing.db") == ["existing.db"]


def test_a_failed_restore_removes_the_folders_it_created(
    backed_up: tuple[BackupSettings, BackupSource, str], tmp_path: Path
) -> None:
    settings, _, backup_id = backed_up
    catalog = Catalog(settings.backup_dir)
    blobs = sorted(b.sha256 for b in catalog.manifest(backup_id).blobs)
    flip_byte(catalog.blob_archive().path_for(blobs[-1]), 30)
    kept = tmp_path / "kept"
    kept.mkdir()
    target = kept / "new" / "deeper" / "restored.db"
    audio = kept / "audio" / "nested"
    plan = plan_restore(settings, backup_id, to_path=target, storage_dir=audio)

    with pytest.raises(RestoreError, match=f"blob {blobs[-1]} is damaged") as caught:
        restore_backup(settings, plan)

    assert "nothing was written to" in str(caught.value)
    assert sorted(p.name for p in kept.iterdir()) == []


def test_a_restore_removes_the_blob_partials_a_killed_restore_left_in_the_storage_folder(
    backed_up: tuple[BackupSettings, BackupSource, str], tmp_path: Path
) -> None:
    settings, _, backup_id = backed_up
    blobs = [b.sha256 for b in Catalog(settings.backup_dir).manifest(backup_id).blobs]
    audio = tmp_path / "restored-audio"
    blob_target = fan_out_path(audio, blobs[0])
    blob_target.parent.mkdir(parents=True)
    holder, partial = hold_partial(blob_target)  # a restore writing that blob ...
    holder.send_signal(signal.SIGKILL)  # ... killed
    holder.wait()
    assert partial.exists()

    plan = plan_restore(settings, backup_id, to_path=tmp_path / "restored.db", storage_dir=audio)
    restore_backup(settings, plan)

    assert sorted(p.name for p in blob_target.parent.iterdir()) == [blob_target.name]
    assert sorted(p.relative_to(audio) for p in _files(audio)) == sorted(
        fan_out_path(Path(), sha) for sha in blobs
    )
