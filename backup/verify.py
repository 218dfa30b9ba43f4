"""Verify: prove a backup can be restored, or say precisely what is wrong with it.

Every checksum is recomputed: the stored database artifact's sha256 against the manifest, then
the snapshot is opened (SQLite: written out and ``PRAGMA integrity_check``, row counts compared
with the manifest; PostgreSQL: ``pg_restore --list``, and with a server at hand a restore into a
scratch database with row counts compared per table), and every referenced blob is decompressed
and its content hashed against its name. Each problem names the file, the expected and the
actual hash (or what else is wrong). The outcome is noted in ``verified.json`` next to the
manifest, so retention knows which backups were proven.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import zstandard

from backup import manifest as manifests
from backup.blobs import BlobArchive
from backup.catalog import Catalog
from backup.engines import engine_named
from backup.errors import BackupNotFoundError, ManifestError
from backup.progress import NullReporter, Reporter
from backup.settings import BackupSettings
from backup.stream import Progress, sha256_file
from backup.telemetry import ATTR_ID, ATTR_VERIFIED

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a backup. ``file`` is relative to the backup folder."""

    file: str
    message: str
    expected: str | None = None
    actual: str | None = None

    def __str__(self) -> str:
        text = f"{self.file}: {self.message}"
        if self.expected is not None or self.actual is not None:
            text += f" (expected sha256 {self.expected}, actual {self.actual})"
        return text


@dataclass(frozen=True)
class VerifyReport:
    backup_id: str
    problems: tuple[Problem, ...] = ()
    files: int = 0
    bytes: int = 0
    full: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_run_dir(
    run_dir: Path,
    archive: BlobArchive,
    *,
    database_url: str | None = None,
    full: bool = True,
    reporter: Reporter | None = None,
) -> VerifyReport:
    """Verify the backup in ``run_dir`` (published or still in the temporary folder)."""
    reporter = reporter or NullReporter()
    backup_id = run_dir.name
    relative_run = f"runs/{backup_id}"
    try:
        manifest = manifests.read(run_dir)
    except ManifestError as exc:
        return VerifyReport(
            backup_id, (Problem(f"{relative_run}/{manifests.MANIFEST_NAME}", str(exc)),)
        )
    problems = _manifest_problems(run_dir, manifest, f"{relative_run}/{manifests.MANIFEST_NAME}")
    checked_bytes = 0
    engine = engine_named(manifest.engine)
    scratch_url = database_url if database_url and full else None
    for artifact in manifest.artifacts:
        name = f"{relative_run}/{artifact.path}"
        try:
            path = manifests.resolve_inside(run_dir, artifact.path)
            label = f"verify {artifact.path}"
            with reporter.task(label, artifact.stored_bytes, "bytes") as adv, path.open("rb") as f:
                actual, size = sha256_file(f, adv)
        except ManifestError as exc:
            problems.append(Problem(name, str(exc)))
            continue
        except OSError as exc:
            problems.append(Problem(name, f"unreadable: {exc.strerror}", artifact.sha256, None))
            continue
        checked_bytes += size
        if actual != artifact.sha256:
            problems.append(Problem(name, "checksum mismatch", artifact.sha256, actual))
            continue
        if size != artifact.stored_bytes:
            problems.append(
                Problem(name, f"{size} bytes on disk, the manifest records {artifact.stored_bytes}")
            )
        plain = _Counter()
        with reporter.task(f"open {artifact.path}", artifact.bytes, "bytes") as adv:
            findings = engine.check(
                path, manifest.tables, full=full, progress=plain.wrap(adv), scratch_url=scratch_url
            )
        problems += [Problem(name, finding) for finding in findings]
        if not findings and plain.total != artifact.bytes:
            problems.append(
                Problem(
                    name,
                    f"decompresses to {plain.total} bytes, the manifest records {artifact.bytes}",
                )
            )
    with reporter.task("verify blobs", len(manifest.blobs), "files") as advance:
        for blob in manifest.blobs:
            problem = _check_blob(archive, blob.sha256, blob.bytes)
            if problem is not None:
                problems.append(problem)
            checked_bytes += blob.bytes
            advance(1)
    return VerifyReport(
        backup_id, tuple(problems), files=manifest.files, bytes=checked_bytes, full=full
    )


class _Counter:
    """Counts the decompressed bytes an engine's check reports through its progress callback
    (every engine decompresses the whole artifact through :func:`backup.stream.decompress_stream`
    to check it), so verify compares the length with the manifest without another pass."""

    def __init__(self) -> None:
        self.total = 0

    def wrap(self, progress: Progress) -> Progress:
        def counted(amount: int) -> None:
            self.total += amount
            progress(amount)

        return counted


def _manifest_problems(run_dir: Path, manifest: manifests.Manifest, name: str) -> list[Problem]:
    """What reading the manifest could not catch: an unchecked (format 1) manifest, or a byte
    changed outside its values (the checksum covers the values, this covers the rest)."""
    if manifest.format == manifests.UNCHECKED_FORMAT:
        return [
            Problem(
                name,
                f"manifest format {manifest.format} carries no checksum of itself, so damage to "
                "it cannot be detected; take a new backup",
            )
        ]
    try:
        data = (run_dir / manifests.MANIFEST_NAME).read_bytes()
    except OSError as exc:
        return [Problem(name, f"unreadable: {exc.strerror}")]
    if data != manifest.to_json():
        return [
            Problem(
                name,
                "the file differs from its canonical form (a changed byte outside its values); "
                "the manifest was changed or damaged",
            )
        ]
    return []


def _check_blob(archive: BlobArchive, sha256: str, size: int) -> Problem | None:
    path = archive.path_for(sha256)
    name = f"blobs/{path.parent.name}/{path.name}"
    if path.is_symlink():
        return Problem(name, "is a symlink; refusing to follow it", sha256, None)
    try:
        result = archive.check(sha256)
    except FileNotFoundError:
        return Problem(name, "missing from the blob archive", sha256, "missing")
    except OSError as exc:
        return Problem(name, f"unreadable: {exc.strerror}", sha256, None)
    except zstandard.ZstdError as exc:
        with path.open("rb") as stored:
            stored_sha, _ = sha256_file(stored)
        return Problem(
            name,
            f"damaged compressed data ({exc}); stored file sha256 {stored_sha}",
            sha256,
            "unreadable",
        )
    if result.plain_sha256 != sha256:
        return Problem(name, "content checksum mismatch", sha256, result.plain_sha256)
    if result.plain_bytes != size:
        return Problem(name, f"holds {result.plain_bytes} bytes, the manifest records {size}")
    return None


def verify_backup(
    settings: BackupSettings,
    backup_id: str,
    *,
    database_url: str | None = None,
    full: bool = True,
    reporter: Reporter | None = None,
) -> VerifyReport:
    """Verify a complete backup and record the outcome next to its manifest.

    ``database_url`` names a PostgreSQL server on which a full verify may create (and drop) a
    scratch database; without it a PostgreSQL snapshot is checked with ``pg_restore --list``.
    """
    catalog = Catalog(settings.backup_dir)
    run_dir = catalog.runs_dir / backup_id
    if not (run_dir / manifests.MANIFEST_NAME).exists() and not run_dir.is_symlink():
        raise BackupNotFoundError(backup_id)
    if run_dir.is_symlink():
        raise ManifestError(f"{run_dir} is a symlink; refusing to verify through it")
    report = verify_run_dir(
        run_dir,
        catalog.blob_archive(),
        database_url=database_url,
        full=full,
        reporter=reporter,
    )
    manifests.record_verified(run_dir, report.ok, len(report.problems))
    if report.ok:
        logger.info(
            "backup %s verified: %d files, %d bytes",
            backup_id,
            report.files,
            report.bytes,
            extra={ATTR_ID: backup_id, ATTR_VERIFIED: True},
        )
    else:
        logger.error(
            "backup %s failed verification: %s",
            backup_id,
            "; ".join(str(p) for p in report.problems[:5]),
            extra={ATTR_ID: backup_id, ATTR_VERIFIED: False},
        )
    return report
