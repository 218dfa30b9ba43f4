"""Verify recomputes every checksum and names the damaged file with both hashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from backup.catalog import Catalog
from backup.run import run_backup
from backup.verify import verify_backup
from tests.backup.helpers import backup_settings, flip_byte, make_sqlite_app


@pytest.fixture
def backed_up(tmp_path: Path) -> tuple[object, str, Catalog]:
    source = make_sqlite_app(tmp_path, rows=200, blobs=3)
    settings = backup_settings(tmp_path)
    result = run_backup(settings, source)
    return settings, result.backup_id, Catalog(settings.backup_dir)


def _artifacts(catalog: Catalog, backup_id: str) -> list[Path]:
    info = catalog.get(backup_id)
    archive = catalog.blob_archive()
    return [info.path / "database.sqlite.zst"] + [archive.path_for(s) for s in sorted(info.blobs)]


def test_an_untouched_backup_verifies(backed_up: tuple) -> None:
    settings, backup_id, catalog = backed_up
    report = verify_backup(settings, backup_id)
    assert report.ok, report.problems
    assert report.files == 4
    assert catalog.get(backup_id).verified


@pytest.mark.parametrize("offset", [0, 100, -1, -9])
@pytest.mark.parametrize("which", [0, 1, 2, 3])
def test_one_flipped_byte_in_any_artifact_fails_verify_naming_the_file(
    backed_up: tuple, which: int, offset: int
) -> None:
    settings, backup_id, catalog = backed_up
    damaged = _artifacts(catalog, backup_id)[which]
    flip_byte(damaged, offset)

    report = verify_backup(settings, backup_id)

    assert not report.ok
    named = [p for p in report.problems if p.file.endswith(damaged.name)]
    assert named, report.problems
    assert named[0].expected is not None and named[0].actual is not None
    assert named[0].expected != named[0].actual
    assert not catalog.get(backup_id).verified


def test_a_checksum_mismatch_reports_expected_and_actual_sha256(backed_up: tuple) -> None:
    settings, backup_id, catalog = backed_up
    damaged = _artifacts(catalog, backup_id)[0]
    expected = catalog.manifest(backup_id).database_artifact.sha256
    flip_byte(damaged, 50)

    (problem,) = verify_backup(settings, backup_id).problems

    assert problem.file == f"runs/{backup_id}/database.sqlite.zst"
    assert problem.expected == expected
    assert problem.actual is not None and len(problem.actual) == 64
    assert expected in str(problem) and problem.actual in str(problem)


def test_a_missing_blob_is_reported_as_missing(backed_up: tuple) -> None:
    settings, backup_id, catalog = backed_up
    blob = _artifacts(catalog, backup_id)[1]
    blob.unlink()

    (problem,) = verify_backup(settings, backup_id).problems

    assert problem.file.endswith(blob.name)
    assert problem.actual == "missing"
