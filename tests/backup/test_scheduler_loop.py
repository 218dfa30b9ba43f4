"""The scheduler loop in-process, with jobs that record what they see and short intervals.

The real ``vrp scheduler`` in a subprocess, with real backups, is in ``test_scheduler_process.py``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backup.errors import BackupError, BackupLockedError
from backup.scheduler import Backoff, BackupScheduler, JobResult
from backup.settings import BackupSettings, Schedule
from backup.state import read_state
from tests.backup.helpers import repository_dir

HOURLY = Schedule(kind="interval", interval=timedelta(hours=1), text="every 1 hour")
EVERY_SECOND = Schedule(kind="interval", interval=timedelta(seconds=1), text="every 1 second")


def _settings(tmp_path: Path, schedule: Schedule = HOURLY) -> BackupSettings:
    return BackupSettings(backup_dir=repository_dir(tmp_path / "backups"), schedule=schedule)


class RecordingJob:
    """A job that logs its calls, can fail on chosen calls and can act during a call."""

    def __init__(
        self,
        *,
        fail_on: set[int] | None = None,
        duration: float = 0.0,
        during: Callable[[int], None] | None = None,
    ) -> None:
        self.calls: list[tuple[float, float]] = []
        self.fail_on = fail_on or set()
        self.duration = duration
        self.during = during
        self.active = 0
        self.max_active = 0
        self.stop_seen_after: list[bool] = []

    def __call__(self, should_stop: Callable[[], bool]) -> JobResult:
        number = len(self.calls) + 1
        start = time.monotonic()
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.during is not None:
                self.during(number)
            time.sleep(self.duration)
            if number in self.fail_on:
                raise BackupError(f"injected failure of run {number}")
            self.stop_seen_after.append(should_stop())
            return JobResult(backup_id=f"run-{number}", verified=True, pruned=0)
        finally:
            self.active -= 1
            self.calls.append((start, time.monotonic()))


@pytest.fixture
def stop_after() -> Iterator[Callable[[BackupScheduler, float], None]]:
    timers: list[threading.Timer] = []

    def arm(scheduler: BackupScheduler, seconds: float) -> None:
        timer = threading.Timer(seconds, scheduler.stop)
        timer.start()
        timers.append(timer)

    yield arm
    for timer in timers:
        timer.cancel()


def test_catches_up_at_once_when_there_is_no_backup(tmp_path: Path) -> None:
    scheduler: BackupScheduler

    def stop_during(number: int) -> None:
        scheduler.stop()

    job = RecordingJob(during=stop_during)
    scheduler = BackupScheduler(_settings(tmp_path), job, last_backup_at=lambda: None)
    scheduler.serve()
    assert len(job.calls) == 1
    state = read_state(tmp_path / "backups")
    assert state is not None
    assert (state.status, state.last_outcome, state.last_run_id) == ("stopped", "success", "run-1")
    assert state.pid == os.getpid()


def test_catches_up_when_the_newest_backup_is_older_than_the_interval(tmp_path: Path) -> None:
    scheduler: BackupScheduler
    job = RecordingJob(during=lambda n: scheduler.stop())
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    scheduler = BackupScheduler(_settings(tmp_path), job, last_backup_at=lambda: two_hours_ago)
    scheduler.serve()
    assert len(job.calls) == 1


def test_waits_for_the_schedule_when_the_newest_backup_is_recent(
    tmp_path: Path, stop_after: Callable[[BackupScheduler, float], None]
) -> None:
    job = RecordingJob()
    recent = datetime.now(UTC) - timedelta(minutes=5)
    scheduler = BackupScheduler(
        _settings(tmp_path), job, last_backup_at=lambda: recent, slice_seconds=0.05
    )
    stop_after(scheduler, 0.5)
    scheduler.serve()
    assert job.calls == []
    state = read_state(tmp_path / "backups")
    assert state is not None and state.last_outcome is None
    assert state.status == "stopped"


def test_next_run_is_recorded_while_idle(
    tmp_path: Path, stop_after: Callable[[BackupScheduler, float], None]
) -> None:
    recent = datetime.now(UTC)
    scheduler = BackupScheduler(
        _settings(tmp_path), RecordingJob(), last_backup_at=lambda: recent, slice_seconds=0.05
    )
    seen: list[datetime | None] = []

    def look() -> None:
        state = read_state(tmp_path / "backups")
        seen.append(state.next_run_at if state else None)
        scheduler.stop()

    timer = threading.Timer(0.4, look)
    timer.start()
    stop_after(scheduler, 10)
    scheduler.serve()
    timer.join()
    [next_run] = seen
    assert next_run is not None
    assert timedelta(minutes=59) < next_run - recent <= timedelta(hours=1, minutes=1)


def test_a_failing_run_is_recorded_retried_with_backoff_and_recovery_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler: BackupScheduler
    states = []

    def snapshot_and_maybe_stop(number: int) -> None:
        states.append(read_state(tmp_path / "backups"))
        if number == 4:
            scheduler.stop()

    job = RecordingJob(fail_on={1, 2, 3}, during=snapshot_and_maybe_stop)
    scheduler = BackupScheduler(
        _settings(tmp_path),
        job,
        last_backup_at=lambda: None,
        backoff=Backoff(initial=0.1, cap=0.3),
        slice_seconds=0.02,
    )
    with caplog.at_level(logging.INFO, logger="backup.scheduler"):
        scheduler.serve()
    assert len(job.calls) == 4
    # the state before runs 2, 3 and 4 records the failure before them
    assert [s.consecutive_failures for s in states[1:]] == [1, 2, 3]
    assert all(s.last_outcome == "failed" for s in states[1:])
    assert "injected failure of run 3" in (states[3].last_error or "")
    gaps = [job.calls[i + 1][0] - job.calls[i][1] for i in range(3)]
    # backoff 0.1, 0.2, then capped at 0.3 (lower bounds only: the machine may be slow)
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.29
    final = read_state(tmp_path / "backups")
    assert final is not None
    assert (final.last_outcome, final.consecutive_failures, final.last_error) == (
        "success",
        0,
        None,
    )
    recovered = [r for r in caplog.records if "recovered" in r.getMessage()]
    assert [r.getMessage() for r in recovered] == [
        "scheduled backups recovered after 3 failed run(s)"
    ]
    failures = [r for r in caplog.records if "scheduled backup failed" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.WARNING] * 3
    assert "(3 in a row), retrying in 0.3s" in failures[-1].getMessage()


def test_an_unexpected_exception_does_not_end_the_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler: BackupScheduler
    calls = 0

    def job(should_stop: Callable[[], bool]) -> JobResult:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in a run")
        scheduler.stop()
        return JobResult(backup_id="ok", verified=False)

    scheduler = BackupScheduler(
        _settings(tmp_path),
        job,
        last_backup_at=lambda: None,
        backoff=Backoff(initial=0.05, cap=0.05),
        slice_seconds=0.02,
    )
    with caplog.at_level(logging.INFO, logger="backup.scheduler"):
        scheduler.serve()
    assert calls == 2
    [failure] = [r for r in caplog.records if "scheduled backup failed" in r.getMessage()]
    assert failure.levelno == logging.ERROR
    assert failure.exc_info is not None, "an unexpected error is logged with its traceback"
    assert "RuntimeError: a bug in a run" in failure.getMessage()


def test_a_run_locked_by_another_process_is_skipped_without_backoff(
    tmp_path: Path, stop_after: Callable[[BackupScheduler, float], None]
) -> None:
    calls = 0

    def job(should_stop: Callable[[], bool]) -> JobResult:
        nonlocal calls
        calls += 1
        raise BackupLockedError(str(tmp_path / "backups" / ".lock"), 4242)

    scheduler = BackupScheduler(
        _settings(tmp_path),
        job,
        last_backup_at=lambda: None,
        backoff=Backoff(initial=0.01, cap=0.01),
        slice_seconds=0.02,
    )
    stop_after(scheduler, 0.5)
    scheduler.serve()
    assert calls == 1, "a locked run is not a failure to retry: the other run makes the backup"
    state = read_state(tmp_path / "backups")
    assert state is not None
    assert (state.last_outcome, state.consecutive_failures) == ("skipped", 0)
    assert "pid 4242" in (state.last_error or "")


def test_a_slow_run_and_a_due_tick_never_overlap(
    tmp_path: Path, stop_after: Callable[[BackupScheduler, float], None]
) -> None:
    job = RecordingJob(duration=1.3)
    scheduler = BackupScheduler(
        _settings(tmp_path, EVERY_SECOND),
        job,
        last_backup_at=lambda: None,
        slice_seconds=0.05,
    )
    stop_after(scheduler, 3.5)
    scheduler.serve()
    assert len(job.calls) >= 2
    assert job.max_active == 1
    for (_, end), (start, _) in zip(job.calls, job.calls[1:], strict=False):
        assert start >= end


def test_sigterm_during_a_run_finishes_it_skips_the_prune_and_stops(tmp_path: Path) -> None:
    job = RecordingJob(during=lambda n: os.kill(os.getpid(), signal.SIGTERM), duration=0.2)
    previous = signal.getsignal(signal.SIGTERM)
    scheduler = BackupScheduler(_settings(tmp_path, EVERY_SECOND), job, last_backup_at=lambda: None)
    scheduler.serve()
    assert len(job.calls) == 1
    assert job.stop_seen_after == [True], "the job is told to skip the steps after the backup"
    state = read_state(tmp_path / "backups")
    assert state is not None
    assert (state.status, state.last_outcome) == ("stopped", "success")
    assert signal.getsignal(signal.SIGTERM) is previous, "the previous handler is put back"


def test_sigint_while_idle_stops_within_a_slice(tmp_path: Path) -> None:
    recent = datetime.now(UTC)
    scheduler = BackupScheduler(
        _settings(tmp_path), RecordingJob(), last_backup_at=lambda: recent, slice_seconds=0.05
    )
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    scheduler.serve()
    timer.join()
    state = read_state(tmp_path / "backups")
    assert state is not None and state.status == "stopped"
