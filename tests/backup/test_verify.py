"""Verify recomputes every checksum and names the damaged file with both hashes."""

from __future__ import annotations

import dataclasses
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


def _manifest_path(catalog: Catalog, backup_id: str) -> Path:
    return catalog.get(backup_id).path / "manifest.json"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('"stored_bytes": {stored}', '"stored_bytes": {stored_plus}'),
        ('"bytes": {blob}', '"bytes": {blob_minus}'),
        ('"bytes": {artifact}', '"bytes": {artifact_plus}'),
    ],
    ids=["artifact-stored-bytes", "blob-bytes", "artifact-bytes"],
)
def test_a_changed_size_in_the_manifest_fails_verify_naming_the_manifest(
    backed_up: tuple, old: str, new: str
) -> None:
    settings, backup_id, catalog = backed_up
    manifest = catalog.manifest(backup_id)
    sizes = {
        "stored": manifest.database_artifact.stored_bytes,
        "stored_plus": manifest.database_artifact.stored_bytes + 1,
        "blob": manifest.blobs[0].bytes,
        "blob_minus": manifest.blobs[0].bytes - 1,
        "artifact": manifest.database_artifact.bytes,
        "artifact_plus": manifest.database_artifact.bytes + 1,
    }
    path = _manifest_path(catalog, backup_id)
    text = path.read_text()
    assert old.format(**sizes) in text
    path.write_text(text.replace(old.format(**sizes), new.format(**sizes), 1))

    report = verify_backup(settings, backup_id)

    assert not report.ok
    assert any(p.file == f"runs/{backup_id}/manifest.json" for p in report.problems), report


def test_one_flipped_bit_anywhere_in_the_manifest_fails_verify_naming_it(
    backed_up: tuple,
) -> None:
    settings, backup_id, catalog = backed_up
    path = _manifest_path(catalog, backup_id)
    original = path.read_bytes()
    passed = []
    for offset in range(0, len(original), 3):
        for bit in (0x01, 0x02, 0x10):
            damaged = bytearray(original)
            damaged[offset] ^= bit
            path.write_bytes(bytes(damaged))
            report = verify_backup(settings, backup_id)
            if report.ok or not any(p.file.endswith("manifest.json") for p in report.problems):
                passed.append((offset, bit))
    path.write_bytes(original)
    assert passed == []
    assert verify_backup(settings, backup_id).ok


def test_a_manifest_whose_sizes_disagree_with_the_files_fails_verify(
    backed_up: tuple,
) -> None:
    # Sizes recorded wrong by the run itself (the manifest's own checksum is consistent).
    from backup import manifest as manifests
    from backup.manifest import Artifact, BlobEntry

    settings, backup_id, catalog = backed_up
    run_dir = catalog.get(backup_id).path
    manifest = manifests.read(run_dir)
    artifact = manifest.database_artifact
    wrong = dataclasses.replace(
        manifest,
        artifacts=(
            Artifact(
                artifact.path, artifact.sha256, artifact.bytes + 4096, artifact.stored_bytes + 1
            ),
        ),
        blobs=(
            BlobEntry(manifest.blobs[0].sha256, manifest.blobs[0].bytes + 1),
            *manifest.blobs[1:],
        ),
    )
    manifests.write(run_dir, wrong)

    messages = [str(p) for p in verify_backup(settings, backup_id).problems]

    assert any("database.sqlite.zst" in m and "bytes on disk" in m for m in messages), messages
    assert any("database.sqlite.zst" in m and "decompresses to" in m for m in messages), messages
    assert any(manifest.blobs[0].sha256 in m and "holds" in m for m in messages), messages


def test_an_old_manifest_without_its_own_checksum_lists_but_does_not_verify(
    backed_up: tuple,
) -> None:
    from backup import manifest as manifests

    settings, backup_id, catalog = backed_up
    run_dir = catalog.get(backup_id).path
    old = dataclasses.replace(manifests.read(run_dir), format=manifests.UNCHECKED_FORMAT)
    manifests.write(run_dir, old)
    assert b'"checksum"' not in (run_dir / "manifest.json").read_bytes()

    assert [b.id for b in catalog.list()] == [backup_id]
    (problem,) = verify_backup(settings, backup_id).problems
    assert problem.file == f"runs/{backup_id}/manifest.json"
    assert "no checksum" in problem.message
