"""The offsite copy as commands and the scheduler use it: settings, retries, telemetry, locks.

:func:`copy_offsite` connects to the remote named by the settings (or ``url``), copies what the
remote lacks (:func:`backup.remote.copy_backups`) and applies the remote's retention, inside a
``backup.copy`` span; a success sets ``vrp.backup.remote.last_success`` for that remote. A
remote that is unreachable, full or slow raises :class:`~backup.remote_store.RemoteError` after
``attempts`` tries with exponential backoff (tenacity); every wait is bounded by
``VRP_BACKUP_REMOTE_TIMEOUT``. The scheduler calls it after a published, verified backup and
logs a failure without failing the run (see :mod:`backup.scheduler`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pyrage import x25519
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from backup.catalog import LOCK
from backup.copies import LastCopy, record_copy
from backup.encryption import load_identities, load_recipients
from backup.errors import BackupConfigError
from backup.lock import run_lock
from backup.remote import (
    CopyResult,
    NotARemoteError,
    Remote,
    copy_backups,
    open_remote,
    prune_remote,
)
from backup.remote_store import RemoteError, RemoteStore, open_store
from backup.retention import RetentionPolicy
from backup.settings import BackupSettings, RemoteSettings
from backup.telemetry import NO_IDENTITY, BackupTelemetry, Identity, default
from instrumentation import conventions

logger = logging.getLogger(__name__)


def remote_settings(settings: BackupSettings, url: str | None = None) -> RemoteSettings:
    """The remote settings, with ``url`` (``--to``) in place of VRP_BACKUP_REMOTE if given."""
    if settings.remote is None:
        if url is None:
            raise BackupConfigError(
                "VRP_BACKUP_REMOTE is not set; set it to sftp://user@host/path, file:///path "
                "or s3://bucket/prefix (or give --to URL)"
            )
        return RemoteSettings(url=url)
    if url is None:
        return settings.remote
    from dataclasses import replace

    return replace(settings.remote, url=url)


def remote_policy(remote: RemoteSettings) -> RetentionPolicy:
    return RetentionPolicy(
        keep_last=remote.keep_last,
        keep_daily=remote.keep_daily,
        keep_weekly=remote.keep_weekly,
        keep_monthly=remote.keep_monthly,
    )


@contextmanager
def connected(remote: RemoteSettings) -> Iterator[RemoteStore]:
    """The remote's store, closed on the way out."""
    store = open_store(remote)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def opened(remote: RemoteSettings) -> Iterator[Remote]:
    with connected(remote) as store:
        yield open_remote(store)


def copy_offsite(
    settings: BackupSettings,
    *,
    url: str | None = None,
    locked: bool = False,
    attempts: int = 3,
    backoff_seconds: float = 2.0,
    telemetry: BackupTelemetry | None = None,
    identity: Identity = NO_IDENTITY,
    should_stop: Callable[[], bool] = lambda: False,
) -> CopyResult:
    """Copy the local backups the remote lacks, then prune the remote by its own policy.

    ``locked`` says the caller holds the local run lock (the scheduler, after a run); otherwise
    it is taken here. Raises BackupConfigError for a missing or bad key file (no retry),
    RemoteError once every attempt failed.
    """
    remote = remote_settings(settings, url)
    recipients = load_recipients(remote.recipients_file)
    tel = telemetry or default()

    def once() -> CopyResult:
        with opened(remote) as target:
            policy = remote_policy(remote)
            result = copy_backups(
                settings.backup_dir,
                target,
                recipients,
                policy=policy,
                concurrency=remote.concurrency,
                should_stop=should_stop,
            )
            prune_remote(target, policy, objects=result.objects, snapshots=result.snapshots)
            return result

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "copy to the remote failed (attempt %d of %d), retrying in %.1fs: %s",
            state.attempt_number,
            attempts,
            wait,
            error,
            extra={conventions.ERROR_TYPE: type(error).__qualname__},
        )

    started = time.monotonic()
    with tel.copy_span(remote.url, identity) as span:
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential_jitter(multiplier=backoff_seconds, max=backoff_seconds * 30),
            # A remote that is not one (no marker) stays so: only faults of the way are retried.
            retry=retry_if_exception(
                lambda exc: isinstance(exc, RemoteError) and not isinstance(exc, NotARemoteError)
            ),
            before_sleep=before_sleep,
            reraise=True,
        )
        with _held(settings.backup_dir, locked):
            result = retrying(once)
        tel.copy_succeeded(span, result, retrying.statistics.get("attempt_number", 1))
    tel.record_copy_success(remote.url, time.time(), identity)
    record_copy(
        settings.backup_dir,
        LastCopy(result.remote_id, result.remote, datetime.now(UTC), result.newest),
    )
    logger.info(
        "copy to %s done in %.1fs: %d backup(s) copied, %d already there, %d object(s) sent "
        "(%d bytes), %d already there",
        result.remote,
        time.monotonic() - started,
        len(result.snapshots_copied),
        result.snapshots_present,
        result.objects_sent,
        result.bytes_sent,
        result.objects_skipped,
        extra={conventions.VRP_BACKUP_REMOTE: result.remote},
    )
    return result


@contextmanager
def _held(backup_dir: Path, locked: bool) -> Iterator[None]:
    if locked:
        yield
        return
    with run_lock(backup_dir / LOCK):
        yield


def identities_for(remote: RemoteSettings) -> list[x25519.Identity]:
    """The age identities restoring and verifying need (exit 2 through BackupConfigError)."""
    return load_identities(remote.identity_file)
