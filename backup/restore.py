"""Restore: a backup back into a database and a blob folder, proven before it is called done.

By default a restore goes somewhere new: a SQLite backup into a file that does not exist yet
(``--to PATH``), a PostgreSQL backup into a database that does not exist yet or holds no tables
(``--database-url URL``). Replacing anything, and above all the live database, needs
``force=True``; the caller is told what will be replaced before it happens. Before writing, the
database artifact's sha256 is checked against the manifest; afterwards the restored database
must pass its integrity check and hold the manifest's row counts per table. Every blob the
snapshot references is written into ``storage_dir`` (existing identical ones are kept) and its
content hash checked against its name.

Nothing unproven is left behind: a SQLite backup is restored into a hidden sibling
``.<target name>.restore-<pid>-<random>`` that is renamed onto the target only once the
integrity check, the row counts and every blob have passed; each blob is written under such a
temp name beside it and renamed when its hash matches (:mod:`backup.partials`: the restore
holds a lock on each while it writes, and the next restore to the same place removes what a
killed one left). On any failure the partial copy, the blobs this restore wrote and the folders
it created for them are removed (a PostgreSQL database the restore created is dropped) and the
error says so.

Only the validated manifest is followed: artifact paths are plain relative names inside the
run folder, never absolute, never through a symlink (see :mod:`backup.manifest`), and blobs are
addressed by sha256 digests, so a tampered manifest cannot read or write outside its folders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import zstandard
from sqlalchemy.engine import make_url

from backup import manifest as manifests
from backup.catalog import Catalog
from backup.engines import Engine, backend_name, engine_named
from backup.errors import BackupError, ManifestError, RestoreError
from backup.files import make_private_dir, remove_empty_dirs
from backup.progress import NullReporter, Reporter
from backup.settings import BackupSettings
from backup.source import BlobPath, fan_out_path
from backup.stream import sha256_file
from backup.telemetry import (
    ATTR_ID,
    ATTR_STATUS,
    NO_IDENTITY,
    STATUS_SUCCESS,
    BackupTelemetry,
    Identity,
    default,
)
from instrumentation.urls import database_address

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestorePlan:
    """What a restore will write, and what it will replace (empty: nothing)."""

    backup_id: str
    engine: str
    target: str
    storage_dir: Path
    blobs: int
    replaces: str


@dataclass(frozen=True)
class RestoreResult:
    backup_id: str
    target: str
    replaced: str
    blobs_written: int
    blobs_kept: int


def _same_sqlite_file(target: str, live_url: str | None) -> bool:
    if live_url is None or backend_name(live_url) != "sqlite":
        return False
    from backup.engines.sqlite import database_path

    return Path(target).absolute() == database_path(live_url)


def _same_pg_database(target: str, live_url: str | None) -> bool:
    if live_url is None or backend_name(live_url) != "postgresql":
        return False
    return database_address(target) == database_address(live_url)


def plan_restore(
    settings: BackupSettings,
    backup_id: str,
    *,
    to_path: Path | None = None,
    database_url: str | None = None,
    storage_dir: Path,
    live_database_url: str | None = None,
) -> RestorePlan:
    """Check the request against the backup and say what it would replace, changing nothing."""
    manifest = Catalog(settings.backup_dir).manifest(backup_id)
    if manifest.engine == "sqlite":
        if to_path is None or database_url is not None:
            raise RestoreError(
                f"backup {backup_id} is a SQLite snapshot; restore it with --to PATH"
            )
        target = str(to_path.absolute())
        exists = Path(target).exists()
        # The live database's file, when it exists: a missing one (a machine being rebuilt from
        # the offsite copy) is restored into as any new file is.
        live = exists and _same_sqlite_file(target, live_database_url)
        replaces = f"the SQLite database {target}" if exists else ""
    else:
        if database_url is None or to_path is not None:
            raise RestoreError(
                f"backup {backup_id} is a PostgreSQL dump; restore it with --database-url URL"
            )
        if backend_name(database_url) != "postgresql":
            raise RestoreError("--database-url must be a postgresql:// URL for this backup")
        target = database_url
        live = _same_pg_database(target, live_database_url)
        parsed = make_url(target)
        replaces = f"the database {parsed.database} on {parsed.host}:{parsed.port or 5432}"
    if live:
        replaces = f"the LIVE database (VRP_DATABASE_URL): {replaces.removeprefix('the ')}"
    elif manifest.engine == "postgresql":
        replaces = ""  # the engine tells whether the database holds tables when it restores
    return RestorePlan(
        backup_id=backup_id,
        engine=manifest.engine,
        target=target,
        storage_dir=storage_dir.absolute(),
        blobs=len(manifest.blobs),
        replaces=replaces,
    )


def _blob_matches(path: Path, sha256: str) -> bool:
    try:
        with path.open("rb") as existing:
            return sha256_file(existing)[0] == sha256
    except OSError:
        return False


@dataclass
class _Undo:
    """What a restore created in the storage folder: blob files, and folders for them."""

    files: list[Path] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)


def _restore_blobs(
    catalog: Catalog,
    manifest: manifests.Manifest,
    storage_dir: Path,
    blob_path: BlobPath,
    reporter: Reporter,
    undo: _Undo,
) -> tuple[int, int]:
    """Restore the blobs; the files and folders this call created go to ``undo``."""
    archive = catalog.blob_archive()
    root = storage_dir.resolve()
    written = kept = 0
    with reporter.task("restore blobs", len(manifest.blobs), "files") as advance:
        for blob in manifest.blobs:
            target = blob_path(storage_dir, blob.sha256)
            if target.is_symlink() or not target.resolve().is_relative_to(root):
                raise ManifestError(
                    f"blob {blob.sha256} would be written outside {storage_dir}; refusing"
                )
            if target.exists() and _blob_matches(target, blob.sha256):
                kept += 1
            else:
                existed = target.exists()
                if existed:
                    logger.warning("replacing damaged blob %s in %s", blob.sha256, storage_dir)
                undo.dirs += make_private_dir(target.parent)
                try:
                    actual = archive.restore_to(blob.sha256, target)
                except FileNotFoundError as exc:
                    raise RestoreError(
                        f"blob {blob.sha256} is missing from the backup archive; run "
                        f"`vrp backup verify {manifest.id}`"
                    ) from exc
                except zstandard.ZstdError as exc:
                    raise RestoreError(
                        f"blob {blob.sha256} is damaged in the backup archive ({exc}); run "
                        f"`vrp backup verify {manifest.id}`"
                    ) from exc
                if actual != blob.sha256:
                    raise RestoreError(
                        f"blob {blob.sha256} restored with content sha256 {actual}; the "
                        "archive copy is damaged"
                    )
                if not existed:
                    undo.files.append(target)
                written += 1
            advance(1)
    return written, kept


def _undo(engine: Engine, staged: str | None, target: str, undo: _Undo) -> str:
    """Remove what a failed restore wrote; a sentence saying what is left."""
    for path in undo.files:
        path.unlink(missing_ok=True)
    remove_empty_dirs(undo.dirs)
    blobs = f", and the {len(undo.files)} blob(s) it wrote were removed" if undo.files else ""
    if staged is None:
        return f"nothing was written{blobs}"
    try:
        return engine.discard(staged, target) + blobs
    except Exception as exc:
        logger.exception("cleaning up the failed restore into %s failed", staged)
        return f"cleaning up {staged} failed too ({type(exc).__name__}); remove it by hand{blobs}"


def restore_backup(
    settings: BackupSettings,
    plan: RestorePlan,
    *,
    force: bool = False,
    blob_path: BlobPath = fan_out_path,
    reporter: Reporter | None = None,
    telemetry: BackupTelemetry | None = None,
    identity: Identity = NO_IDENTITY,
) -> RestoreResult:
    """Carry out a plan from :func:`plan_restore`; RestoreError if refused or unproven.
    ``identity`` (:func:`backup.telemetry.identity`) goes on the ``backup.restore`` span."""
    reporter = reporter or NullReporter()
    telemetry = telemetry or default()
    catalog = Catalog(settings.backup_dir)
    with telemetry.restore_span(plan.backup_id, identity):
        if plan.replaces and not force:
            raise RestoreError(f"this restore would replace {plan.replaces}; add --force")
        info = catalog.get(plan.backup_id)
        manifest = manifests.read(info.path)
        artifact = manifest.database_artifact
        path = manifests.resolve_inside(info.path, artifact.path)
        checking = reporter.task("check snapshot", artifact.stored_bytes, "bytes")
        with checking as advance, path.open("rb") as stored:
            actual, _ = sha256_file(stored, advance)
        if actual != artifact.sha256:
            raise RestoreError(
                f"runs/{plan.backup_id}/{artifact.path}: checksum mismatch (expected sha256 "
                f"{artifact.sha256}, actual {actual}); this backup cannot be restored"
            )
        engine = engine_named(plan.engine)
        if plan.replaces:
            logger.warning("restore of backup %s replaces %s", plan.backup_id, plan.replaces)
        staged: str | None = None
        undo = _Undo()
        try:
            staged = engine.stage(plan.target)
            with reporter.task("restore database", artifact.bytes, "bytes") as advance:
                replaced = engine.restore(path, staged, force=force, progress=advance)
            problems = engine.check_restored(staged, manifest.tables)
            if problems:
                raise RestoreError(
                    f"the restored database does not match backup {plan.backup_id}: "
                    + "; ".join(problems[:5])
                )
            written, kept = _restore_blobs(
                catalog, manifest, plan.storage_dir, blob_path, reporter, undo
            )
            engine.publish(staged, plan.target)
        except BaseException as exc:
            undone = _undo(engine, staged, plan.target, undo)
            if isinstance(exc, ManifestError):
                raise ManifestError(f"{exc}; {undone}") from exc
            if isinstance(exc, BackupError):
                raise RestoreError(f"{exc}; {undone}") from exc
            if isinstance(exc, OSError):
                raise RestoreError(
                    f"writing {exc.filename or plan.target} failed: {exc.strerror or exc}; {undone}"
                ) from exc
            raise
    logger.info(
        "restored backup %s: database and %d blobs (%d written, %d already present)",
        plan.backup_id,
        len(manifest.blobs),
        written,
        kept,
        extra={ATTR_ID: plan.backup_id, ATTR_STATUS: STATUS_SUCCESS},
    )
    return RestoreResult(plan.backup_id, plan.target, replaced or plan.replaces, written, kept)
