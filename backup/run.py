"""One backup run: snapshot, blobs, manifest, verify, publish; all or nothing.

A run takes the lock (``backup_dir/.lock``), removes what killed runs left in ``tmp/``, and
builds the backup in ``tmp/<id>/``: the database snapshot (see :mod:`backup.engines`), then the
referenced blobs the archive does not hold yet, then the manifest, written last and atomically,
then (by default) a verify of what was written. Only then is the folder renamed into
``runs/<id>`` and ``runs/`` fsynced. A run killed at any point leaves nothing in ``runs/``, so
nothing that lists as a backup; blobs it archived are whole files (each is renamed into place),
and retention deletes them if no manifest ever references them. A full disk fails the run
(:class:`~backup.errors.BackupSpaceError`) after removing its temporary folder; earlier backups
are never touched.

A run holds the application's blobs (see :class:`~backup.source.BackupSource`) from before the
snapshot until it is published: a blob the application deletes meanwhile stays readable, so
every blob the snapshot references is copied, whatever the application does.

Every run is reported: a ``backup.run`` span with a child span per phase, the
``vrp.backup.duration`` histogram, ``vrp.backup.last_success`` on success, and one log record
for the outcome.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import zstandard
from opentelemetry.trace import Span

from backup import checks
from backup import manifest as manifests
from backup.blobs import BlobArchive
from backup.catalog import LOCK, Catalog
from backup.engines import Engine, Event, Snapshot, backend_name, engine_for
from backup.errors import (
    BackupError,
    BackupSpaceError,
    BlobSourceError,
    EngineError,
    SourceNotReadyError,
    VerifyError,
)
from backup.files import fsync_dir, make_private_dir
from backup.lock import run_lock
from backup.manifest import BlobEntry, Manifest
from backup.progress import NullReporter, Reporter
from backup.repository import repository_for
from backup.scratch import remove_leftovers
from backup.settings import BackupSettings
from backup.source import BackupSource
from backup.telemetry import (
    ATTR_BYTES,
    ATTR_ERROR_TYPE,
    ATTR_FILES,
    ATTR_ID,
    ATTR_STATUS,
    ATTR_STORED_BYTES,
    ATTR_TRIGGER,
    ATTR_VERIFIED,
    STATUS_FAILED,
    STATUS_SUCCESS,
    BackupTelemetry,
    Identity,
    default,
    failed,
    identity,
)
from backup.verify import fail_sharers, verify_run_dir
from instrumentation import conventions
from instrumentation.urls import database_label, without_secrets

logger = logging.getLogger(__name__)

__all__ = ["BackupResult", "BackupSource", "new_backup_id", "run_backup"]


@dataclass(frozen=True)
class BackupResult:
    """A successful run (a failed one raises a :class:`~backup.errors.BackupError`)."""

    backup_id: str
    path: Path
    trigger: str
    bytes: int
    stored_bytes: int
    files: int
    blobs_copied: int
    blobs_skipped: int
    verified: bool
    seconds: float
    repository_id: str = ""


def new_backup_id(now: datetime) -> str:
    """Sortable by time, unique across runs started in the same second."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _blob_size(archive: BlobArchive, sources: tuple[Path, ...], sha256: str) -> int:
    for source in sources:
        try:
            return source.stat().st_size
        except FileNotFoundError:
            continue
    with archive.path_for(sha256).open("rb") as stored:
        size = zstandard.frame_content_size(stored.read(18))
    return max(size, 0)


def _copy_blobs(
    source: BackupSource,
    snapshot: Snapshot,
    archive: BlobArchive,
    level: int,
    reporter: Reporter,
    on_event: Event | None,
) -> tuple[list[BlobEntry], int, int]:
    """Archive the referenced blobs it lacks; (entries, stored bytes added, copied count)."""
    missing = [sha for sha in snapshot.blobs if not archive.has(sha)]
    entries = []
    stored = copied = 0
    with reporter.task("blobs", len(missing), "files") as advance:
        for sha256 in snapshot.blobs:
            paths = source.blob_candidates(sha256)
            result = archive.add(sha256, paths, level=level) if sha256 in missing else None
            if result is not None:
                stored += result.stored_bytes
                copied += 1
                entries.append(BlobEntry(sha256, result.plain_bytes))
                advance(1)
                if on_event is not None:
                    on_event("blobs:copied")
            else:
                if not archive.has(sha256):
                    raise BlobSourceError(f"audio blob {sha256} vanished from the archive")
                entries.append(BlobEntry(sha256, _blob_size(archive, paths, sha256)))
    return entries, stored, copied


def run_backup(
    settings: BackupSettings,
    source: BackupSource,
    *,
    trigger: str = conventions.BACKUP_TRIGGER_MANUAL,
    verify: bool = True,
    reporter: Reporter | None = None,
    on_event: Event | None = None,
    after_publish: Callable[[], object] | None = None,
    telemetry: BackupTelemetry | None = None,
) -> BackupResult:
    """Take one backup; raise a :class:`~backup.errors.BackupError` when the run fails.

    Raises :class:`~backup.repository.NotARepositoryError` before starting when the backup
    folder is not a repository (unless ``settings.init_if_missing``), and
    :class:`~backup.errors.BackupLockedError` when another run holds the lock.
    ``on_event`` is called with the name of each step as it starts (``snapshot``, ``blobs``,
    ``manifest``, ``verify``, ``publish``, and a few inside them), which tests use to stop a
    run at a chosen point; it may be called from the snapshot's worker thread.
    ``after_publish`` runs inside the run's span and lock once the backup is in place (the
    scheduler prunes there).
    """
    reporter = reporter or NullReporter()
    telemetry = telemetry or default()
    repository = repository_for(settings.backup_dir, init_if_missing=settings.init_if_missing)
    names = identity(repository.id, source.database_url)
    catalog = Catalog(settings.backup_dir)
    started_at = datetime.now(UTC)
    run = _Run(
        settings=settings,
        source=source,
        catalog=catalog,
        archive=catalog.blob_archive(),
        backup_id=new_backup_id(started_at),
        started_at=started_at,
        trigger=trigger,
        verify=verify,
        reporter=reporter,
        on_event=on_event,
        telemetry=telemetry,
    )
    with run_lock(settings.backup_dir / LOCK):
        started = time.monotonic()
        with telemetry.run_span(run.backup_id, trigger, names) as span:
            result, seconds = _run_and_report(run, span, names, started)
            if after_publish is not None:
                after_publish()
    return BackupResult(**{**result.__dict__, "seconds": seconds, "repository_id": repository.id})


def _run_and_report(
    run: _Run, span: Span, names: Identity, started: float
) -> tuple[BackupResult, float]:
    """Run the steps and report the outcome on ``span``, in the metrics and in one log record;
    the result and the seconds since ``started``. A failed run's folder is removed and its
    error raised (an OSError as the :class:`BackupError` that says what to do)."""
    try:
        # Held from before the snapshot until the backup is published: the application
        # keeps what it deletes meanwhile, so every blob the snapshot references is there.
        with run.source.hold_blobs():
            result = _run(run)
    except BaseException as exc:
        error = _discard_failed_run(run, exc, span, names, started)
        if error is exc:
            raise
        raise error from exc
    seconds = time.monotonic() - started
    _report_success(run, result, span, names, seconds)
    return result, seconds


def _discard_failed_run(
    run: _Run, exc: BaseException, span: Span, names: Identity, started: float
) -> BaseException:
    """Remove the failed run's folder and report its failure; the error to raise for it."""
    shutil.rmtree(run.work, ignore_errors=True)
    error = _as_backup_error(exc, run.settings.backup_dir)
    failed(span, error)
    seconds = time.monotonic() - started
    run.telemetry.record_run(STATUS_FAILED, seconds, None, names)
    logger.error(
        "backup %s failed after %.1fs: %s",
        run.backup_id,
        seconds,
        error,
        extra={ATTR_ID: run.backup_id, ATTR_STATUS: STATUS_FAILED,
               ATTR_TRIGGER: run.trigger, ATTR_ERROR_TYPE: type(error).__name__},
    )  # fmt: skip
    return error


def _report_success(
    run: _Run, result: BackupResult, span: Span, names: Identity, seconds: float
) -> None:
    """Report the published run on ``span``, in the metrics and in one log record."""
    span.set_attributes(
        {
            ATTR_STATUS: STATUS_SUCCESS,
            ATTR_BYTES: result.bytes,
            ATTR_STORED_BYTES: result.stored_bytes,
            ATTR_FILES: result.files,
            ATTR_VERIFIED: result.verified,
        }
    )
    run.telemetry.record_run(STATUS_SUCCESS, seconds, time.time(), names)
    logger.info(
        "backup %s done in %.1fs: %d files, %d bytes, %d stored (%d blobs copied, "
        "%d already archived)%s",
        run.backup_id, seconds, result.files, result.bytes, result.stored_bytes,
        result.blobs_copied, result.blobs_skipped, ", verified" if result.verified else "",
        extra={ATTR_ID: run.backup_id, ATTR_STATUS: STATUS_SUCCESS, ATTR_TRIGGER: run.trigger,
               ATTR_BYTES: result.bytes, ATTR_STORED_BYTES: result.stored_bytes,
               ATTR_VERIFIED: result.verified},
    )  # fmt: skip


def _as_backup_error(exc: BaseException, backup_dir: Path) -> BaseException:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return BackupSpaceError(
            f"no space left on the disk of {backup_dir}; the run was discarded and earlier "
            "backups are intact; free space or point VRP_BACKUP_DIR at a larger disk"
        )
    if isinstance(exc, OSError):
        return BackupError(
            f"the backup run failed on {exc.filename or backup_dir}: {exc.strerror or exc}; "
            "the run was discarded and earlier backups are intact"
        )
    return exc


@dataclass(frozen=True, kw_only=True)
class _Run:
    """One run in progress: what its steps share, from the lock to the publication."""

    settings: BackupSettings
    source: BackupSource
    catalog: Catalog
    archive: BlobArchive
    backup_id: str
    started_at: datetime
    trigger: str
    verify: bool
    reporter: Reporter
    on_event: Event | None
    telemetry: BackupTelemetry

    @property
    def work(self) -> Path:
        """Where the run is written until it is published (removed by the caller on failure)."""
        return self.catalog.tmp_dir / self.backup_id

    def event(self, name: str) -> None:
        if self.on_event is not None:
            self.on_event(name)


def _run(run: _Run) -> BackupResult:
    """The steps of a run, each a phase span: snapshot, blobs, manifest, verify, publish."""
    engine = engine_for(run.source.database_url)
    make_private_dir(run.settings.backup_dir)
    # We hold the lock: no other run is alive.
    remove_leftovers(
        run.catalog.tmp_dir, run.archive, partial(engine.drop_scratch, run.source.database_url)
    )
    make_private_dir(run.work)
    snapshot = _snapshot(run, engine)
    blobs, blob_stored, copied = _archive_blobs(run, snapshot)
    manifest = _write_manifest(run, engine.name, snapshot, blobs, blob_stored)
    if run.verify:
        _verify(run)
    final = _publish(run)
    return BackupResult(
        backup_id=run.backup_id,
        path=final,
        trigger=run.trigger,
        bytes=manifest.bytes,
        stored_bytes=manifest.stored_bytes,
        files=manifest.files,
        blobs_copied=copied,
        blobs_skipped=len(blobs) - copied,
        verified=run.verify,
        seconds=0.0,
    )


def _snapshot(run: _Run, engine: Engine) -> Snapshot:
    url = run.source.database_url
    run.event("snapshot")
    with run.telemetry.phase("snapshot") as span:
        size = _database_size(url)
        with run.reporter.task("snapshot", size, "bytes") as advance, _naming(url):
            snapshot = engine.snapshot(
                url,
                run.work,
                level=run.settings.compression_level,
                referenced_blobs=run.source.referenced_blobs,
                progress=advance,
                on_event=run.on_event,
            )
        span.set_attribute(ATTR_BYTES, snapshot.artifact.bytes)
        span.set_attribute(ATTR_STORED_BYTES, snapshot.artifact.stored_bytes)
    return snapshot


def _archive_blobs(run: _Run, snapshot: Snapshot) -> tuple[list[BlobEntry], int, int]:
    run.event("blobs")
    with run.telemetry.phase("blobs") as span:
        blobs, blob_stored, copied = _copy_blobs(
            run.source,
            snapshot,
            run.archive,
            run.settings.compression_level,
            run.reporter,
            run.on_event,
        )
        span.set_attribute(conventions.VRP_BACKUP_BLOBS_COPIED, copied)
        span.set_attribute(conventions.VRP_BACKUP_BLOBS_SKIPPED, len(blobs) - copied)
    return blobs, blob_stored, copied


def _write_manifest(
    run: _Run, engine_name: str, snapshot: Snapshot, blobs: list[BlobEntry], blob_stored: int
) -> Manifest:
    """The manifest, written last into the run's folder: without it the run is no backup."""
    run.event("manifest")
    with run.telemetry.phase("manifest"):
        manifest = Manifest(
            id=run.backup_id,
            created_at=run.started_at,
            finished_at=datetime.now(UTC),
            trigger=run.trigger,
            engine=engine_name,
            database=database_label(run.source.database_url),
            artifacts=(snapshot.artifact,),
            blobs=tuple(blobs),
            stored_bytes=snapshot.artifact.stored_bytes + blob_stored,
            tables=snapshot.tables,
        )
        manifests.write(run.work, manifest)
        fsync_dir(run.work)
    run.event("manifest:written")
    return manifest


def _verify(run: _Run) -> None:
    """Read the run back in full; raise :class:`VerifyError` when anything does not match."""
    run.event("verify")
    with run.telemetry.phase("verify") as span:
        report = verify_run_dir(
            run.work,
            run.archive,
            database_url=run.source.database_url,
            full=True,
            reporter=run.reporter,
        )
        span.set_attribute(ATTR_VERIFIED, report.ok)
        if not report.ok:
            # A damaged archived blob fails the published backups that share it too.
            fail_sharers(run.catalog, report.problems, checks.SCOPE_RUN)
            raise VerifyError(
                f"backup {run.backup_id} failed its verification: "
                + "; ".join(str(p) for p in report.problems[:5]),
                report,
            )
        checks.record(run.settings.backup_dir, run.work, ok=True, scope=checks.SCOPE_RUN)


def _publish(run: _Run) -> Path:
    """Move the finished run among the backups (one rename) and return where it is now."""
    run.event("publish")
    make_private_dir(run.catalog.runs_dir)
    final = run.catalog.runs_dir / run.backup_id
    os.rename(run.work, final)
    fsync_dir(run.catalog.runs_dir)
    fsync_dir(run.catalog.tmp_dir)
    return final


@contextmanager
def _naming(url: str) -> Iterator[None]:
    """Name the database in what the application's query raises, on one line: a SQLAlchemy
    error's text holds the SQL and a link over several lines (and never its parameters)."""
    from sqlalchemy.exc import SQLAlchemyError

    shown = database_label(url)
    try:
        yield
    except SourceNotReadyError as exc:
        raise SourceNotReadyError(f"the database {shown} {exc}") from exc
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        reason = without_secrets(reason, url)
        raise EngineError(
            f"reading the database {shown} failed ({type(exc).__name__}: {reason}); check "
            "that it is the application's database and that it is migrated"
        ) from exc


def _database_size(url: str) -> int | None:
    if backend_name(url) != "sqlite":
        return None
    from backup.engines.sqlite import database_path

    try:
        return database_path(url).stat().st_size
    except OSError:
        return None
