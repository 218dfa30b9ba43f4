"""The scheduler with real backups in-process: a real SQLite database, real blobs, real runs.

Retry after a broken database, the prune after each run inside the run's span, and what
``vrp backup status`` prints afterwards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from backup.catalog import Catalog
from backup.cli import BackupHost, mount
from backup.scheduler import Backoff, BackupScheduler, JobResult, backup_job, newest_backup_at
from backup.settings import BackupSettings, Schedule
from backup.source import BackupSource, fan_out_path
from backup.state import SchedulerState, read_state, write_state
from backup.telemetry import BackupTelemetry
from instrumentation.testing import InMemoryTelemetry
from tests.backup.helpers import repository_dir

HOURLY = Schedule(kind="interval", interval=timedelta(hours=1), text="every 1 hour")


def _clips(connection: sa.Connection) -> list[str]:
    return [row[0] for row in connection.execute(sa.text("SELECT sha256 FROM clips"))]


def make_app_data(root: Path, clips: int = 3) -> None:
    """A small application: a SQLite file whose rows reference audio blobs in a folder."""
    root.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(root / "app.db") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS clips (sha256 TEXT NOT NULL)")
        for i in range(clips):
            content = f"clip {i} ".encode() * 200
            sha = hashlib.sha256(content).hexdigest()
            path = fan_out_path(root / "audio", sha)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            conn.execute("INSERT INTO clips VALUES (?)", (sha,))
    conn.close()


def app_source(root: Path) -> BackupSource:
    return BackupSource(
        database_url=f"sqlite:///{root / 'app.db'}",
        storage_dir=root / "audio",
        referenced_blobs=_clips,
    )


@pytest.fixture
def backup_settings(tmp_path: Path) -> BackupSettings:
    return BackupSettings(backup_dir=repository_dir(tmp_path / "backups"), schedule=HOURLY)


@pytest.fixture
def cli(backup_settings: BackupSettings, tmp_path: Path) -> Iterator[Callable[..., str]]:
    group = click.Group("vrp")
    mount(
        group,
        BackupHost(source=lambda: app_source(tmp_path / "app"), process=lambda _: nullcontext()),
    )
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(
            group, list(args), env={"VRP_BACKUP_DIR": str(backup_settings.backup_dir)}
        )
        assert result.exit_code == code, result.output
        return result.output

    yield invoke


def test_a_broken_database_fails_runs_until_fixed_then_the_loop_recovers(
    tmp_path: Path, backup_settings: BackupSettings, caplog: pytest.LogCaptureFixture
) -> None:
    app = tmp_path / "app"  # no database yet: every run fails until it exists
    real_job = backup_job(backup_settings, app_source(app))
    scheduler: BackupScheduler
    calls = 0

    def job(should_stop: Callable[[], bool]) -> JobResult:
        nonlocal calls
        calls += 1
        if calls == 3:
            make_app_data(app)  # the operator fixes it
        result = real_job(should_stop)
        scheduler.stop()
        return result

    scheduler = BackupScheduler(
        backup_settings,
        job,
        last_backup_at=newest_backup_at(backup_settings),
        backoff=Backoff(initial=0.05, cap=0.1),
        slice_seconds=0.02,
    )
    with caplog.at_level(logging.INFO):
        scheduler.serve()

    assert calls == 3
    [backup] = Catalog(backup_settings.backup_dir).list()
    assert backup.trigger == "schedule"
    assert backup.verified
    assert len(backup.blobs) == 3
    state = read_state(backup_settings.backup_dir)
    assert state is not None
    assert (state.last_outcome, state.last_run_id, state.consecutive_failures) == (
        "success",
        backup.id,
        0,
    )
    messages = [r.getMessage() for r in caplog.records]
    assert sum("scheduled backup failed" in m for m in messages) == 2
    assert any("does not exist" in m for m in messages), "the failure says what is wrong"
    assert "scheduled backups recovered after 2 failed run(s)" in messages


def test_each_run_prunes_inside_its_backup_run_span(
    tmp_path: Path, backup_settings: BackupSettings, telemetry: InMemoryTelemetry
) -> None:
    make_app_data(tmp_path / "app")
    settings = replace(backup_settings, keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    tel = BackupTelemetry(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    job = backup_job(settings, app_source(tmp_path / "app"), telemetry=tel)
    first = job(lambda: False)
    second = job(lambda: False)
    assert (first.pruned, second.pruned) == (0, 1)
    assert [b.id for b in Catalog(settings.backup_dir).list()] == [second.backup_id]
    runs = {s.context.span_id: s for s in telemetry.spans("backup.run")}
    prunes = telemetry.spans("backup.prune")
    assert len(prunes) == 2
    for prune_span in prunes:
        assert prune_span.parent is not None and prune_span.parent.span_id in runs
        assert runs[prune_span.parent.span_id].attributes["vrp.backup.trigger"] == "schedule"


def test_no_prune_after_the_run_when_switched_off_or_stopping(
    tmp_path: Path, backup_settings: BackupSettings
) -> None:
    make_app_data(tmp_path / "app")
    settings = replace(backup_settings, keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    source = app_source(tmp_path / "app")
    backup_job(settings, source)(lambda: False)
    assert backup_job(settings, source)(lambda: True).pruned is None
    assert (
        backup_job(replace(settings, prune_after_run=False), source)(lambda: False).pruned is None
    )
    assert len(Catalog(settings.backup_dir).list()) == 3


def test_status_says_plainly_when_no_scheduler_ever_ran(cli: Callable[..., str]) -> None:
    output = cli("backup", "status")
    assert "no scheduler has ever run here" in output
    assert "backups: none" in output
    data = json.loads(cli("backup", "status", "--json"))
    assert data["scheduler"] is None
    assert data["scheduler_running"] is False
    assert data["backups"] == 0


def test_status_after_a_scheduled_run(
    tmp_path: Path, backup_settings: BackupSettings, cli: Callable[..., str]
) -> None:
    make_app_data(tmp_path / "app")
    real_job = backup_job(backup_settings, app_source(tmp_path / "app"))
    scheduler: BackupScheduler

    def job(should_stop: Callable[[], bool]) -> JobResult:
        scheduler.stop()
        return real_job(should_stop)

    scheduler = BackupScheduler(
        backup_settings, job, last_backup_at=newest_backup_at(backup_settings)
    )
    scheduler.serve()
    [backup] = Catalog(backup_settings.backup_dir).list()

    output = cli("backup", "status")
    assert "scheduler: stopped" in output
    assert f"last run: success, {backup.id}" in output
    assert f"backups: 1; newest {backup.id}" in output
    assert "verified" in output
    data = json.loads(cli("backup", "status", "--json"))
    assert data["scheduler"]["last_outcome"] == "success"
    assert data["scheduler"]["last_run_id"] == backup.id
    assert data["scheduler"]["schedule"] == "every 1 hour"
    assert data["newest_backup"]["id"] == backup.id
    assert data["newest_verified_backup"]["id"] == backup.id


def test_status_shows_a_live_scheduler_and_its_next_run(
    tmp_path: Path, backup_settings: BackupSettings, cli: Callable[..., str]
) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        now = datetime.now(UTC)
        write_state(
            backup_settings.backup_dir,
            SchedulerState(
                pid=sleeper.pid,
                schedule="every 6 hours",
                status="idle",
                started_at=now,
                updated_at=now,
                last_outcome="failed",
                last_error="the SQLite database /x/app.db does not exist",
                consecutive_failures=2,
                next_run_at=now + timedelta(minutes=5),
            ),
        )
        output = cli("backup", "status")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert f"scheduler: running (pid {sleeper.pid}, idle), schedule 'every 6 hours'" in output
    assert "last error: the SQLite database /x/app.db does not exist" in output
    assert "failed runs in a row: 2" in output
    assert "next run: " in output and "(in 4m" in output
    after = cli("backup", "status")
    assert "not running (pid" in after and "without stopping cleanly" in after


def test_a_run_that_fails_before_its_span_is_a_failed_backup_run_span_and_warns_once(
    tmp_path: Path,
    backup_settings: BackupSettings,
    telemetry: InMemoryTelemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_app_data(tmp_path / "app")
    shutil.rmtree(backup_settings.backup_dir)
    backup_settings.backup_dir.write_text("a file where the backup folder should be")
    tel = BackupTelemetry(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    real_job = backup_job(backup_settings, app_source(tmp_path / "app"), telemetry=tel)
    scheduler: BackupScheduler
    calls = 0

    def job(should_stop: Callable[[], bool]) -> JobResult:
        nonlocal calls
        calls += 1
        if calls == 2:
            scheduler.stop()
        return real_job(should_stop)

    scheduler = BackupScheduler(
        backup_settings,
        job,
        last_backup_at=lambda: None,
        backoff=Backoff(initial=0.05, cap=0.1),
        slice_seconds=0.02,
    )
    with caplog.at_level(logging.INFO):
        scheduler.serve()

    assert calls == 2
    runs = telemetry.spans("backup.run")
    assert len(runs) == 2
    for span in runs:
        assert span.attributes is not None
        assert span.attributes["vrp.backup.status"] == "failed"
        assert span.attributes["vrp.backup.trigger"] == "schedule"
        assert span.attributes["error.type"] == "RepositoryError"
        assert "it is a file, not a folder" in (span.status.description or "")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("could not write the scheduler state file" in m for m in messages) == 1
    assert sum("scheduled backup failed" in m for m in messages) == 2


def test_status_on_a_backup_folder_that_is_a_file_is_one_line(
    backup_settings: BackupSettings, cli: Callable[..., str]
) -> None:
    shutil.rmtree(backup_settings.backup_dir)
    backup_settings.backup_dir.write_text("not a folder")
    output = cli("backup", "status", code=1)
    assert output.splitlines() == [
        f"vrp: the backup folder {backup_settings.backup_dir} cannot be used: it is a file, "
        "not a folder; set VRP_BACKUP_DIR to a folder this user can read and write"
    ]


def test_each_run_checks_the_next_slot_of_the_archive_and_prune_trusts_the_runs_own_verify(
    tmp_path: Path, backup_settings: BackupSettings, telemetry: InMemoryTelemetry
) -> None:
    make_app_data(tmp_path / "app", clips=12)
    settings = replace(backup_settings, check_rotation=2)
    tel = BackupTelemetry(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    job = backup_job(settings, app_source(tmp_path / "app"), telemetry=tel)
    slots = []
    for _ in range(3):
        result = job(lambda: False)
        slots.append(json.loads((settings.backup_dir / "checks" / "rotation.json").read_text()))
        record = json.loads(
            (settings.backup_dir / "checks" / f"{result.backup_id}.json").read_text()
        )
        assert (record["ok"], record["scope"]) == (True, "run")
    assert [s["next_slot"] for s in slots] == [1, 0, 1]
    runs = {s.context.span_id for s in telemetry.spans("backup.run")}
    check_spans = telemetry.spans("backup.check")
    assert len(check_spans) == 3
    assert all(s.parent is not None and s.parent.span_id in runs for s in check_spans)


def test_a_backup_disk_unmounted_under_a_running_scheduler_fails_its_runs_and_fills_nothing(
    tmp_path: Path,
    backup_settings: BackupSettings,
    telemetry: InMemoryTelemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_app_data(tmp_path / "app")
    every_second = Schedule(kind="interval", interval=timedelta(seconds=1), text="every 1 second")
    backup_settings = dataclasses.replace(backup_settings, schedule=every_second)
    tel = BackupTelemetry(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    real_job = backup_job(backup_settings, app_source(tmp_path / "app"), telemetry=tel)
    scheduler: BackupScheduler
    calls = 0

    def job(should_stop: Callable[[], bool]) -> JobResult:
        nonlocal calls
        calls += 1
        if calls == 2:
            shutil.rmtree(backup_settings.backup_dir)  # the disk is unmounted: an empty path
        if calls == 3:
            scheduler.stop()
        return real_job(should_stop)

    scheduler = BackupScheduler(
        backup_settings,
        job,
        last_backup_at=lambda: None,
        backoff=Backoff(initial=0.05, cap=0.1),
        slice_seconds=0.02,
    )
    with caplog.at_level(logging.INFO):
        scheduler.serve()

    assert calls == 3
    assert not backup_settings.backup_dir.exists(), "no run, nor the state file, made the folder"
    runs = telemetry.spans("backup.run")
    assert [s.attributes["vrp.backup.status"] for s in runs if s.attributes] == [
        "success",
        "failed",
        "failed",
    ]
    for span in runs[1:]:
        assert span.attributes is not None
        assert span.attributes["error.type"] == "NotARepositoryError"
        assert "is the backup disk mounted?" in (span.status.description or "")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("scheduled backup failed (" in m for m in messages) == 2
