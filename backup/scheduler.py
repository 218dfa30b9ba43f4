"""``vrp scheduler``: backups on a schedule, verified and pruned, reported in a state file.

The ``schedule`` library says *when* (``every 6 hours``, ``daily at 02:00``, from
``VRP_BACKUP_SCHEDULE``); this module adds what it lacks:

* **No overlap.** The loop is single-threaded (a tick that falls due during a slow run waits
  for it), and every run takes the backup folder's run lock, so two scheduler processes (or a
  manual ``vrp backup run``) never run at once: the loser records ``skipped`` and waits for its
  next tick.
* **Catch-up.** On start, when the newest complete backup is older than the schedule's period
  (or there is none), a backup runs at once instead of waiting for the first tick.
* **Failures do not stop it.** A failed run is logged, recorded as ``failed`` in the state file
  and retried after an exponential backoff (capped), while the regular ticks go on; the first
  success after failures logs one line saying so. A run that fails before its ``backup.run``
  span could start (the backup folder or its lock unusable) still reports a failed
  ``backup.run`` span, so that the dashboard shows it. A state file that cannot be written is
  one warning per outage, and one line when it can be written again.
* **Clean stop.** SIGTERM or SIGINT sets a flag; the loop sleeps in short slices and stops after
  the step in progress (a backup run, or the prune after it). A second signal acts as if this
  module had not caught the first.

After each backup it verifies (``VRP_BACKUP_VERIFY``, done by the run itself), prunes
(``VRP_BACKUP_PRUNE``; the prune proves the backup it keeps, see :mod:`backup.prune`) and runs
the periodic check of one slot of the archive (``VRP_BACKUP_CHECK_ROTATION``, see
:func:`backup.check.rotating_check`) and, with a remote set (``VRP_BACKUP_REMOTE``, unless
``VRP_BACKUP_REMOTE_COPY=off``), copies what the remote lacks (:mod:`backup.offsite`: retried
with backoff, a failure logged and never failing the backup), all inside the run's lock. Each
step is written to :mod:`backup.state`, which ``vrp backup status`` reads.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING

import schedule

from backup.errors import BackupConfigError, BackupError, BackupLockedError
from backup.settings import BackupSettings, Schedule
from backup.state import SchedulerState, unusable_dir_error, write_state
from instrumentation import conventions
from instrumentation.redaction import redact_text

if TYPE_CHECKING:
    from backup.prune import PruneResult
    from backup.source import BackupSource
    from backup.telemetry import BackupTelemetry

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class Backoff:
    """Delay before retrying after ``failures`` consecutive failed runs: doubling, capped."""

    initial: float = 60.0
    cap: float = 3600.0

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.initial * 2 ** max(0, failures - 1)))


@dataclass(frozen=True)
class JobResult:
    """What one scheduled job did: the backup it made, whether it was verified, what it pruned."""

    backup_id: str
    verified: bool
    pruned: int | None = None


# A job runs one backup and what follows it; it is handed the stop flag so that it can skip
# the steps after the current one (the prune) once a stop was asked for.
Job = Callable[[Callable[[], bool]], JobResult]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _describe(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
    return redact_text(text)


class BackupScheduler:
    """The loop behind ``vrp scheduler``; :meth:`serve` runs it in the main thread."""

    def __init__(
        self,
        settings: BackupSettings,
        job: Job,
        *,
        last_backup_at: Callable[[], datetime | None],
        backoff: Backoff | None = None,
        slice_seconds: float = 0.5,
        on_next_run: Callable[[datetime | None], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_next_run = on_next_run
        self._job = job
        self._last_backup_at = last_backup_at
        self._backoff = backoff or Backoff()
        self._slice = slice_seconds
        # A plain flag, not a threading.Event: the signal handler runs in the main thread
        # between two bytecodes, possibly while that thread holds the Event's lock.
        self._stop_requested = False
        self._signals_seen = 0
        self._schedule = schedule.Scheduler()
        self._retry_at: datetime | None = None
        self._state_unwritable = False
        now = _utcnow()
        self._state = SchedulerState(
            pid=os.getpid(),
            schedule=str(settings.schedule),
            status="starting",
            started_at=now,
            updated_at=now,
        )

    @property
    def state(self) -> SchedulerState:
        return self._state

    def stop(self) -> None:
        """Ask the loop to stop after the step in progress (what the signal handler calls)."""
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def serve(self) -> None:
        """Run until stopped: catch up if overdue, then run on every tick. Main thread only."""
        with self._signal_handlers():
            self._register(self.settings.schedule)
            logger.info(
                "scheduler started: %s, backups in %s",
                self.settings.schedule,
                self.settings.backup_dir,
                extra={"pid": os.getpid()},
            )
            if self._overdue():
                self._attempt()
            while not self.stopping:
                self._record(status="idle")
                self._sleep_until(self._next_wake())
                if self.stopping:
                    break
                # A tick that is due covers a retry that is due too: one run, not two.
                if (self._schedule.idle_seconds or 0) <= 0:
                    self._schedule.run_pending()
                elif self._retry_at is not None and _utcnow() >= self._retry_at:
                    self._attempt()
            self._record(status="stopped", next_run_at=None)
            logger.info("scheduler stopped")

    def _register(self, when: Schedule) -> None:
        if when.kind == "daily" and when.at is not None:
            self._schedule.every().day.at(when.at.strftime("%H:%M")).do(self._tick)
        else:
            seconds = max(1, int(when.period.total_seconds()))
            self._schedule.every(seconds).seconds.do(self._tick)

    def _overdue(self) -> bool:
        last = self._last_backup_at()
        if last is None:
            logger.info("no backup yet: running one now")
            return True
        age = _utcnow() - last
        if age > self.settings.schedule.period:
            logger.info(
                "the newest backup is %s old, longer than the schedule's %s: running one now",
                _round(age),
                _round(self.settings.schedule.period),
            )
            return True
        logger.info(
            "the newest backup is %s old, within the schedule's %s: waiting for the next run",
            _round(age),
            _round(self.settings.schedule.period),
        )
        return False

    def _tick(self) -> None:
        if not self.stopping:
            self._attempt()

    def _next_wake(self) -> datetime:
        wake = self._scheduled_next()
        if self._retry_at is not None and (wake is None or self._retry_at < wake):
            wake = self._retry_at
        return wake if wake is not None else _utcnow() + timedelta(seconds=self._slice)

    def _scheduled_next(self) -> datetime | None:
        naive = self._schedule.next_run
        # ``schedule`` works in naive local time; astimezone() reads a naive value as local.
        return naive.astimezone(UTC) if naive is not None else None

    def _sleep_until(self, wake: datetime) -> None:
        self._record(next_run_at=wake)
        while not self.stopping:
            remaining = (wake - _utcnow()).total_seconds()
            if remaining <= 0:
                return
            time.sleep(min(self._slice, remaining))

    def _attempt(self) -> None:
        """One job: record it, run it, record the outcome; never raises a run's failure."""
        started = _utcnow()
        self._record(status="running", last_run_started_at=started, last_run_ended_at=None)
        logger.info("scheduled backup starting")
        try:
            result = self._job(lambda: self.stopping)
        except BackupLockedError as exc:
            logger.warning("scheduled backup skipped: %s", exc)
            self._record(
                status="idle",
                last_run_id=None,
                last_run_ended_at=_utcnow(),
                last_outcome="skipped",
                last_error=_describe(exc),
            )
            return
        except Exception as exc:
            # A scheduler must outlive any one run, whatever broke it: log it, record it, retry.
            failures = self._state.consecutive_failures + 1
            delay = self._backoff.delay(failures)
            self._retry_at = _utcnow() + timedelta(seconds=delay)
            expected = isinstance(exc, BackupError)  # the run has logged it at ERROR already
            logger.log(
                logging.WARNING if expected else logging.ERROR,
                "scheduled backup failed (%d in a row), retrying in %ss: %s",
                failures,
                f"{delay:g}",
                _describe(exc),
                exc_info=not expected,
                extra={
                    conventions.ERROR_TYPE: type(exc).__qualname__,
                    conventions.VRP_BACKUP_STATUS: conventions.BACKUP_STATUS_FAILED,
                },
            )
            self._record(
                status="idle",
                last_run_id=None,
                last_run_ended_at=_utcnow(),
                last_outcome="failed",
                last_error=_describe(exc),
                consecutive_failures=failures,
            )
            return
        ended = _utcnow()
        if self._state.consecutive_failures:
            logger.info(
                "scheduled backups recovered after %d failed run(s)",
                self._state.consecutive_failures,
            )
        self._retry_at = None
        logger.info(
            "scheduled backup %s done in %.1fs (verified: %s, pruned: %s)",
            result.backup_id,
            (ended - started).total_seconds(),
            result.verified,
            "skipped" if result.pruned is None else result.pruned,
            extra={
                conventions.VRP_BACKUP_ID: result.backup_id,
                conventions.VRP_BACKUP_STATUS: conventions.BACKUP_STATUS_SUCCESS,
            },
        )
        self._record(
            status="idle",
            last_run_id=result.backup_id,
            last_run_ended_at=ended,
            last_outcome="success",
            last_error=None,
            last_success_at=ended,
            consecutive_failures=0,
        )

    def _record(self, **changes: object) -> None:
        self._state = self._state.evolve(updated_at=_utcnow(), **changes)
        if "next_run_at" in changes and self._on_next_run is not None:
            self._on_next_run(self._state.next_run_at)
        try:
            write_state(self.settings.backup_dir, self._state)
        except OSError as exc:
            # The state file is a report; a full disk must not stop the backups themselves.
            # Written at every step: one warning per outage, not one per step.
            if not self._state_unwritable:
                logger.warning("could not write the scheduler state file: %s", exc)
            self._state_unwritable = True
            return
        if self._state_unwritable:
            logger.info("the scheduler state file is written again")
            self._state_unwritable = False

    @contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._signals_seen += 1
            if self._signals_seen > 1:
                # A second signal: give it back to whatever handled it before us.
                for number, handler in previous.items():
                    signal.signal(number, handler)
                signal.raise_signal(signum)
                return
            self.stop()

        for signum in STOP_SIGNALS:
            signal.signal(signum, on_signal)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _round(delta: timedelta) -> timedelta:
    return timedelta(seconds=round(delta.total_seconds()))


def backup_job(
    settings: BackupSettings,
    source: BackupSource,
    *,
    telemetry: BackupTelemetry | None = None,
    copy_attempts: int = 3,
    copy_backoff_seconds: float = 5.0,
) -> Job:
    """The real job: :func:`backup.run.run_backup` (which verifies when
    ``VRP_BACKUP_VERIFY``), then, inside the same lock and ``backup.run`` span, a prune when
    ``VRP_BACKUP_PRUNE`` and the periodic check, unless a stop was asked for."""
    from backup.run import run_backup
    from backup.telemetry import default

    tel = telemetry or default()
    names = _identity(settings, source)
    after = _steps_after_backup(
        settings,
        source,
        telemetry=telemetry,
        tel=tel,
        names=names,
        copy_attempts=copy_attempts,
        copy_backoff_seconds=copy_backoff_seconds,
    )

    def job(should_stop: Callable[[], bool]) -> JobResult:
        pruned: list[int] = []
        spans_before = tel.runs_started
        started_at = _utcnow()
        try:
            result = run_backup(
                settings,
                source,
                trigger=conventions.BACKUP_TRIGGER_SCHEDULE,
                verify=settings.verify_after_run,
                after_publish=partial(after.run, should_stop, started_at, pruned),
                telemetry=tel,
            )
        except BackupLockedError:
            raise  # another run holds the lock: skipped, not failed
        except Exception as exc:
            if tel.runs_started != spans_before:
                raise  # the run's span reported the failure
            error = _report_failed_start(settings, tel, names, exc)
            if error is exc:
                raise
            raise error from exc
        return JobResult(result.backup_id, result.verified, pruned[0] if pruned else None)

    return job


@dataclass(frozen=True, kw_only=True)
class _StepsAfterBackup:
    """What a scheduled job does once its backup is published, inside the run's lock and
    ``backup.run`` span: each step bound to what stays the same from one run to the next."""

    settings: BackupSettings
    tel: BackupTelemetry
    prune: Callable[..., PruneResult]
    check: Callable[[], object]
    copy: Callable[..., object]

    def run(self, should_stop: Callable[[], bool], started_at: datetime, pruned: list[int]) -> None:
        """The prune (how many backups it deleted appended to ``pruned``), the periodic check
        and the copy to the remote, each skipped once a stop was asked for; a failed step is
        logged, not raised."""
        if self.settings.prune_after_run and not should_stop():
            with _logged("prune after the backup"):
                result = self.prune(checked_since=started_at)
                pruned.append(len(result.deleted_backups))
        if not should_stop():
            with _logged("periodic check after the backup"), self.tel.phase("check"):
                self.check()
        remote = self.settings.remote
        if remote is not None and remote.copy_after_run and not should_stop():
            # After the local backup is published and its success recorded: a remote that
            # is down, full or slow (every wait bounded by VRP_BACKUP_REMOTE_TIMEOUT) fails
            # only the copy, which the next run retries.
            with _logged("copy to the remote after the backup"):
                self.copy(should_stop=should_stop)


def _steps_after_backup(
    settings: BackupSettings,
    source: BackupSource,
    *,
    telemetry: BackupTelemetry | None,
    tel: BackupTelemetry,
    names: dict[str, str],
    copy_attempts: int,
    copy_backoff_seconds: float,
) -> _StepsAfterBackup:
    """The steps after each of :func:`backup_job`'s backups; the prune is handed ``telemetry``
    as the job was (None: the prune's default)."""
    from backup.check import rotating_check
    from backup.offsite import copy_offsite
    from backup.prune import prune_locked

    return _StepsAfterBackup(
        settings=settings,
        tel=tel,
        prune=partial(prune_locked, settings, tel=telemetry, database_url=source.database_url),
        check=partial(rotating_check, settings),
        copy=partial(
            copy_offsite,
            settings,
            locked=True,
            attempts=copy_attempts,
            backoff_seconds=copy_backoff_seconds,
            telemetry=tel,
            identity=names,
        ),
    )


def _report_failed_start(
    settings: BackupSettings, tel: BackupTelemetry, names: dict[str, str], exc: Exception
) -> Exception:
    """Report a scheduled run that failed before its ``backup.run`` span could start (the
    backup folder or its lock unusable) with a failed span and an error log; the error to
    raise for it."""
    error: Exception = exc
    if isinstance(exc, OSError):
        error = unusable_dir_error(settings.backup_dir, exc)
    tel.run_failed_to_start(conventions.BACKUP_TRIGGER_SCHEDULE, error, names)
    # As run_backup logs a run that failed once started.
    logger.error(
        "backup failed before it could start: %s",
        _describe(error),
        extra={
            conventions.VRP_BACKUP_STATUS: conventions.BACKUP_STATUS_FAILED,
            conventions.VRP_BACKUP_TRIGGER: conventions.BACKUP_TRIGGER_SCHEDULE,
            conventions.ERROR_TYPE: type(error).__qualname__,
        },
    )
    return error


@contextmanager
def _logged(step: str) -> Iterator[None]:
    """Log a failed step after a published backup; it is tried again after the next run."""
    try:
        yield
    except Exception as exc:
        logger.error(
            "%s failed: %s",
            step,
            _describe(exc),
            exc_info=not isinstance(exc, BackupError),
            extra={conventions.ERROR_TYPE: type(exc).__qualname__},
        )


def _identity(settings: BackupSettings, source: BackupSource) -> dict[str, str]:
    """What the scheduler's runs back up, for the telemetry of a run that could not start."""
    from backup.repository import RepositoryError, open_repository
    from backup.telemetry import identity

    try:
        repository_id: str | None = open_repository(settings.backup_dir).id
    except RepositoryError:
        repository_id = None
    return identity(repository_id, source.database_url)


def newest_backup_at(settings: BackupSettings) -> Callable[[], datetime | None]:
    """When the newest complete backup in the catalog started, or None when there is none."""
    from backup.catalog import Catalog

    def newest() -> datetime | None:
        backups = Catalog(settings.backup_dir).list()
        return backups[-1].created_at if backups else None

    return newest


def check_backup_dir(settings: BackupSettings) -> None:
    """Refuse a ``VRP_BACKUP_DIR`` that exists and is not a folder: no run could succeed."""
    path = settings.backup_dir
    if path.exists() and not path.is_dir():
        raise BackupConfigError(
            f"VRP_BACKUP_DIR={str(path)!r}: exists and is not a folder; set it to a backup "
            "repository (`vrp backup init` makes one)"
        )


def run_scheduler(settings: BackupSettings, source: BackupSource) -> None:
    """What ``vrp scheduler`` does: serve until SIGTERM or SIGINT.

    Raises :class:`~backup.repository.RepositoryError` before serving when the backup folder is
    not a repository (and ``settings.init_if_missing`` does not make it one); each run checks
    again, so a backup disk unmounted later fails those runs instead of filling another disk.
    """
    from backup.repository import repository_for
    from backup.telemetry import default, identity

    repository = repository_for(settings.backup_dir, init_if_missing=settings.init_if_missing)
    names = identity(repository.id, source.database_url)
    tel = default()

    def next_run(at: datetime | None) -> None:
        tel.record_next_run(None if at is None else at.timestamp(), names)

    BackupScheduler(
        settings,
        backup_job(settings, source),
        last_backup_at=newest_backup_at(settings),
        on_next_run=next_run,
    ).serve()
