"""Prune: carry out the retention plan (or, for a dry run, only show it).

A real prune holds the run lock for its whole length, so it never races a backup: a run in
flight may have archived blobs that no manifest lists yet, and a prune that ran beside it would
take them for garbage. It plans inside the lock (the catalog it reads cannot change under it),
deletes the backups the plan drops (each manifest first, so a crash halfway leaves a folder
that no longer lists) and only then the blobs no remaining manifest references. A dry run reads
the catalog without the lock and changes nothing.

Before it deletes anything, a real prune proves the backup it keeps as "newest verified": it
verifies backups newest first until one passes (:func:`backup.check.prove_newest`), records
each outcome, and keeps that one whatever the counts say. When none passes it deletes nothing
and raises :class:`~backup.errors.NoVerifiedBackupError`: a stale or hand-edited flag never
decides what is deleted. A dry run shows the plan from the recorded checks without proving.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from backup import checks, telemetry
from backup.catalog import LOCK, Catalog
from backup.check import prove_newest
from backup.errors import NoVerifiedBackupError
from backup.lock import run_lock
from backup.repository import repository_for
from backup.retention import RetentionPlan, RetentionPolicy, plan_retention
from backup.scratch import remove_leftovers
from backup.settings import BackupSettings
from backup.telemetry import BackupTelemetry
from instrumentation import conventions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneResult:
    """The plan, and what was actually removed (nothing for a dry run)."""

    plan: RetentionPlan
    dry_run: bool
    deleted_backups: tuple[str, ...] = ()
    deleted_blobs: int = 0
    freed_bytes: int = 0


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def plan(settings: BackupSettings, *, newest_verified: str | None = None) -> RetentionPlan:
    """The retention plan for the backups on disk now, under the configured policy.

    ``newest_verified`` names the backup proven just now; without it the recorded checks
    decide (a dry run).

    While a run folder holds a manifest that cannot be read, no blob is planned for deletion:
    that folder may reference any of them, and a blob is deleted only when no manifest does.
    """
    catalog = Catalog(settings.backup_dir)
    current = plan_retention(
        catalog.list(),
        RetentionPolicy.from_settings(settings),
        catalog.blob_archive().list_blobs(),
        newest_verified=newest_verified,
    )
    refused = catalog.unreadable()
    if refused and current.blobs_to_delete:
        logger.warning(
            "no blob is pruned while %d backup folder(s) hold a manifest that cannot be read "
            "(%s): verify them, then remove the ones that are damaged",
            len(refused),
            ", ".join(path.name for path in refused),
        )
        current = replace(current, blobs_to_delete=frozenset())
    return current


def prune(
    settings: BackupSettings,
    *,
    dry_run: bool = False,
    tel: BackupTelemetry | None = None,
    database_url: str | None = None,
) -> PruneResult:
    """Apply the retention policy; raises BackupLockedError while a run holds the lock, and a
    RepositoryError when the backup folder is not a repository."""
    repository_for(settings.backup_dir, init_if_missing=settings.init_if_missing)
    if dry_run:
        return PruneResult(plan=plan(settings), dry_run=True)
    with run_lock(settings.backup_dir / LOCK):
        catalog = Catalog(settings.backup_dir)
        remove_leftovers(catalog.tmp_dir, catalog.blob_archive())
        return prune_locked(settings, tel=tel, database_url=database_url)


def prune_locked(
    settings: BackupSettings,
    *,
    tel: BackupTelemetry | None = None,
    database_url: str | None = None,
    checked_since: datetime | None = None,
) -> PruneResult:
    """Prove the backup to keep, then plan and apply, under the run lock, which the caller
    holds; one ``backup.prune`` span (a child of the current span, so of ``backup.run`` when a
    run prunes). ``database_url`` lets the proof restore a PostgreSQL snapshot into a scratch
    database; ``checked_since``: see :func:`backup.check.prove_newest`."""
    catalog = Catalog(settings.backup_dir)
    archive = catalog.blob_archive()
    with (tel or telemetry.default()).phase("prune") as span:
        proven = prove_newest(settings, database_url=database_url, checked_since=checked_since)
        if proven is None and catalog.list():
            raise NoVerifiedBackupError(
                "no backup passes its check, so nothing was pruned; `vrp backup verify --all` "
                "lists the problems, and a new `vrp backup run` gives a good backup"
            )
        current = plan(settings, newest_verified=proven)
        freed = 0
        for decision in current.decisions:
            if decision.keep:
                continue
            freed += _size(decision.backup.path)
            catalog.delete(decision.backup.id)
            logger.info(
                "pruned backup %s (%s)",
                decision.backup.id,
                "; ".join(decision.reasons),
                extra={conventions.VRP_BACKUP_ID: decision.backup.id},
            )
        checks.remove_orphans(settings.backup_dir, {b.id for b in current.kept})
        deleted_blobs = 0
        for sha256 in sorted(current.blobs_to_delete):
            path = archive.path_for(sha256)
            size = _size(path) if path.exists() else 0
            if archive.delete(sha256):
                deleted_blobs += 1
                freed += size
        span.set_attributes(
            {
                conventions.VRP_BACKUP_PRUNED: len(current.deleted),
                conventions.VRP_BACKUP_PRUNED_BLOBS: deleted_blobs,
                conventions.VRP_BACKUP_FREED_BYTES: freed,
            }
        )
    logger.info(
        "prune done: %d backup(s) and %d blob(s) removed, %d bytes freed, %d backup(s) kept",
        len(current.deleted),
        deleted_blobs,
        freed,
        len(current.kept),
    )
    return PruneResult(
        plan=current,
        dry_run=False,
        deleted_backups=tuple(b.id for b in current.deleted),
        deleted_blobs=deleted_blobs,
        freed_bytes=freed,
    )
