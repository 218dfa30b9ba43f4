"""Repository checks: renew "verified" from the data, never from an old flag.

Three checks, each recording its outcome per backup in ``checks/`` (see :mod:`backup.checks`):

* :func:`verify_repository` (``vrp backup verify --all``, as ``restic check --read-data``):
  every manifest, every snapshot (opened as a verify does) and every archived blob, each blob
  read once however many backups share it; every backup's status is recomputed.
* :func:`rotating_check` (the scheduler, after each run): every manifest, and the blobs and
  snapshots of one slot out of ``VRP_BACKUP_CHECK_ROTATION``, the next slot each time, so the
  whole archive is read every N runs at a 1/N of the cost each. What it finds damaged fails
  every backup that needs it; what passes keeps the date of its last full check.
* :func:`prove_newest` (prune, before it deletes anything): checks backups newest first until
  one passes, so the backup prune keeps as "newest verified" passed a check in this prune.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from backup import checks
from backup import manifest as manifests
from backup.catalog import BackupInfo, Catalog
from backup.errors import ManifestError
from backup.progress import NullReporter, Reporter
from backup.settings import BackupSettings
from backup.stream import sha256_file
from backup.telemetry import ATTR_ID, ATTR_VERIFIED
from backup.verify import (
    BlobResults,
    Problem,
    VerifyReport,
    check_blob,
    fail_sharers,
    manifest_problems,
    verify_run_dir,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepositoryReport:
    """The outcome of a whole-repository check."""

    reports: tuple[VerifyReport, ...]
    unreadable: tuple[str, ...] = ()
    blobs_read: int = 0

    @property
    def failed(self) -> list[VerifyReport]:
        return [r for r in self.reports if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.unreadable


def verify_repository(
    settings: BackupSettings,
    *,
    database_url: str | None = None,
    reporter: Reporter | None = None,
) -> RepositoryReport:
    """Verify every backup, each blob read once, and record every backup's outcome."""
    catalog = Catalog(settings.backup_dir)
    archive = catalog.blob_archive()
    results: BlobResults = {}
    reports = []
    for info in catalog.list():
        report = verify_run_dir(
            info.path,
            archive,
            database_url=database_url,
            full=True,
            reporter=reporter or NullReporter(),
            blob_results=results,
        )
        problems = tuple(str(p) for p in report.problems)
        checks.record(
            settings.backup_dir,
            info.path,
            ok=report.ok,
            scope=checks.SCOPE_REPOSITORY,
            problems=problems,
        )
        _log(info.id, report.problems, "repository check")
        reports.append(report)
    unreadable = tuple(path.name for path in catalog.unreadable())
    for name in unreadable:
        logger.error("backup folder %s holds a manifest that cannot be read", name)
    return RepositoryReport(tuple(reports), unreadable, blobs_read=len(results))


@dataclass(frozen=True)
class RotationResult:
    """What one periodic check read and what it found."""

    slot: int
    slots: int
    manifests: int
    blobs_read: int
    artifacts_read: int
    problems: tuple[Problem, ...] = ()
    failed_backups: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def in_slot(name: str, slot: int, slots: int) -> bool:
    """Whether a blob (by sha256) or a backup (by id) belongs to ``slot`` of ``slots``: a
    stable, even spread, so that the slots together cover everything exactly once."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % slots == slot


def rotating_check(settings: BackupSettings) -> RotationResult:
    """Read every manifest and one slot of the blobs and snapshots; fail what is damaged.

    The caller holds the run lock (the scheduler, after its run), so no prune removes what
    this reads. The next call reads the next slot.
    """
    slots = settings.check_rotation
    slot = checks.read_rotation(settings.backup_dir) % slots
    catalog = Catalog(settings.backup_dir)
    archive = catalog.blob_archive()
    infos = catalog.list()
    failed: dict[str, list[Problem]] = {}
    sizes: dict[str, int] = {}
    artifacts_read = 0
    for info in infos:
        manifest = manifests.read(info.path)
        name = f"runs/{info.id}/{manifests.MANIFEST_NAME}"
        found = manifest_problems(info.path, manifest, name)
        for blob in manifest.blobs:
            sizes.setdefault(blob.sha256, blob.bytes)
        if in_slot(info.id, slot, slots):
            artifacts_read += len(manifest.artifacts)
            found += _artifact_problems(info, manifest)
        if found:
            failed.setdefault(info.id, []).extend(found)
    blob_problems = []
    chosen = sorted(sha for sha in sizes if in_slot(sha, slot, slots))
    for sha256 in chosen:
        problem = check_blob(archive, sha256, sizes[sha256])
        if problem is not None:
            blob_problems.append(problem)
    for info in infos:
        if info.id in failed:
            checks.record(
                settings.backup_dir,
                info.path,
                ok=False,
                scope=checks.SCOPE_ROTATION,
                problems=tuple(str(p) for p in failed[info.id]),
            )
            _log(info.id, failed[info.id], "periodic check")
    sharers = fail_sharers(catalog, blob_problems, checks.SCOPE_ROTATION)
    checks.write_rotation(settings.backup_dir, (slot + 1) % slots, slots)
    problems = tuple(p for found in failed.values() for p in found) + tuple(blob_problems)
    result = RotationResult(
        slot=slot,
        slots=slots,
        manifests=len(infos),
        blobs_read=len(chosen),
        artifacts_read=artifacts_read,
        problems=problems,
        failed_backups=tuple(sorted(set(failed) | set(sharers))),
    )
    logger.log(
        logging.INFO if result.ok else logging.ERROR,
        "periodic check, slot %d of %d: %d manifests, %d blobs and %d snapshots read, %d "
        "problem(s), %d backup(s) failed",
        slot + 1,
        slots,
        result.manifests,
        result.blobs_read,
        result.artifacts_read,
        len(problems),
        len(result.failed_backups),
    )
    return result


def _artifact_problems(info: BackupInfo, manifest: manifests.Manifest) -> list[Problem]:
    """The stored snapshot files against the manifest's sha256 (no decompression: cheap)."""
    found = []
    for artifact in manifest.artifacts:
        name = f"runs/{info.id}/{artifact.path}"
        try:
            with manifests.resolve_inside(info.path, artifact.path).open("rb") as stored:
                actual, _ = sha256_file(stored)
        except ManifestError as exc:
            found.append(Problem(name, str(exc)))
            continue
        except OSError as exc:
            found.append(Problem(name, f"unreadable: {exc.strerror}", artifact.sha256, None))
            continue
        if actual != artifact.sha256:
            found.append(Problem(name, "checksum mismatch", artifact.sha256, actual))
    return found


def prove_newest(
    settings: BackupSettings,
    *,
    database_url: str | None = None,
    checked_since: datetime | None = None,
) -> str | None:
    """The backup prune keeps as "newest verified", having passed a check now; None when no
    backup passes.

    The candidates are the backups whose recorded check passed, newest first, then the others,
    newest first; each is verified and its outcome recorded until one passes. A backup whose
    passing record was written at or after ``checked_since`` (the verify of the run that holds
    the lock) counts without a second verify.
    """
    catalog = Catalog(settings.backup_dir)
    archive = catalog.blob_archive()
    results: BlobResults = {}
    newest_first = catalog.list()[::-1]
    candidates = [b for b in newest_first if b.verified] + [
        b for b in newest_first if not b.verified
    ]
    for info in candidates:
        if (
            checked_since is not None
            and info.verified
            and info.checked_at is not None
            and info.checked_at >= checked_since
        ):
            return info.id
        report = verify_run_dir(
            info.path, archive, database_url=database_url, full=True, blob_results=results
        )
        checks.record(
            settings.backup_dir,
            info.path,
            ok=report.ok,
            scope=checks.SCOPE_PRUNE,
            problems=tuple(str(p) for p in report.problems),
        )
        if report.ok:
            return info.id
        _log(info.id, report.problems, "prune's check")
    return None


def _log(backup_id: str, problems: Collection[Problem], check: str) -> None:
    if not problems:
        return
    logger.error(
        "backup %s failed the %s: %s",
        backup_id,
        check,
        "; ".join(str(p) for p in list(problems)[:5]),
        extra={ATTR_ID: backup_id, ATTR_VERIFIED: False},
    )
