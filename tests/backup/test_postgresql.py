"""PostgreSQL on the real server: pg_dump in the snapshot of the blob query, full verify,
restore into a scratch database with equal row counts per table, clear tool errors."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from backup.catalog import Catalog
from backup.engines.postgresql import row_counts
from backup.errors import EngineError, RestoreError
from backup.repository import open_repository
from backup.restore import plan_restore, restore_backup
from backup.run import run_backup
from backup.source import BackupSource, fan_out_path
from backup.telemetry import BackupTelemetry
from backup.verify import verify_backup
from instrumentation.testing import InMemoryTelemetry
from recorder import backup_source as recorder
from tests.backup.helpers import (
    backup_settings,
    referenced_blobs,
    repository_dir,
    tamper_manifest,
    write_blob,
)
from tests.backup.recordings import fill_recordings
from tests.conftest import reset_postgres

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(
        make_url(url).set(drivername="postgresql+psycopg"), poolclass=sa.NullPool
    )


@pytest.fixture
def pg_source(postgres_url: str, tmp_path: Path) -> Iterator[BackupSource]:
    reset_postgres(postgres_url)
    storage = tmp_path / "storage"
    shas = [write_blob(storage, os.urandom(10_000)) for _ in range(3)]
    engine = _engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE items (id serial PRIMARY KEY, sha256 text, note text)"))
        conn.execute(sa.text("CREATE TABLE tags (id serial PRIMARY KEY, name text UNIQUE)"))
        conn.execute(sa.text("DROP SCHEMA IF EXISTS extra CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA extra"))
        conn.execute(
            sa.text("CREATE TABLE extra.events (id bigserial PRIMARY KEY, at timestamptz)")
        )
        conn.execute(
            sa.text("INSERT INTO items (sha256, note) VALUES (:s, :n)"),
            [{"s": shas[i % 3], "n": f"row {i}"} for i in range(250)],
        )
        conn.execute(
            sa.text("INSERT INTO tags (name) SELECT 't' || g FROM generate_series(1, 17) g")
        )
        conn.execute(
            sa.text("INSERT INTO extra.events (at) SELECT now() FROM generate_series(1, 40)")
        )
    yield BackupSource(postgres_url, storage, referenced_blobs)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA extra CASCADE"))
    engine.dispose()
    reset_postgres(postgres_url)


@pytest.fixture
def scratch_url(postgres_url: str) -> Iterator[str]:
    name = f"vrp_restore_{uuid.uuid4().hex[:10]}"
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    yield url
    admin = sa.create_engine(
        make_url(postgres_url).set(drivername="postgresql+psycopg"),
        isolation_level="AUTOCOMMIT",
        poolclass=sa.NullPool,
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _shown(url: str) -> str:
    parsed = make_url(url)
    return f"{parsed.database} on {parsed.host}:{parsed.port or 5432}"


def _counts(url: str) -> dict[str, int]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return row_counts(conn)
    finally:
        engine.dispose()


def test_backup_then_restore_into_a_scratch_database_has_equal_row_counts_per_table(
    pg_source: BackupSource, scratch_url: str, tmp_path: Path
) -> None:
    settings = backup_settings(tmp_path)
    result = run_backup(settings, pg_source, verify=True)
    manifest = Catalog(settings.backup_dir).manifest(result.backup_id)
    assert manifest.engine == "postgresql"
    assert manifest.tables == {"extra.events": 40, "public.items": 250, "public.tags": 17}
    assert len(manifest.blobs) == 3 and result.verified

    audio = tmp_path / "restored-audio"
    plan = plan_restore(
        settings,
        result.backup_id,
        database_url=scratch_url,
        storage_dir=audio,
        live_database_url=pg_source.database_url,
    )
    assert plan.replaces == ""
    restore_backup(settings, plan)

    assert _counts(scratch_url) == _counts(pg_source.database_url) == manifest.tables
    for blob in manifest.blobs:
        assert fan_out_path(audio, blob.sha256).is_file()
    # A second restore into the now populated database is refused without --force.
    with pytest.raises(RestoreError, match="--force"):
        restore_backup(settings, plan)
    restore_backup(settings, plan, force=True)
    assert _counts(scratch_url) == manifest.tables


def test_full_verify_restores_into_a_scratch_database_and_compares_counts(
    pg_source: BackupSource, tmp_path: Path
) -> None:
    settings = backup_settings(tmp_path)
    backup_id = run_backup(settings, pg_source, verify=False).backup_id
    assert verify_backup(settings, backup_id, database_url=pg_source.database_url).ok
    # Counts in the manifest that the dump does not hold are found by the full verify only.
    manifest_path = settings.backup_dir / "runs" / backup_id / "manifest.json"
    tamper_manifest(manifest_path, lambda doc: doc["tables"].update({"public.tags": 18}))
    report = verify_backup(settings, backup_id, database_url=pg_source.database_url)
    assert [p.message for p in report.problems] == [
        "table public.tags: 18 rows in the manifest, 17 restored"
    ]
    assert verify_backup(settings, backup_id).ok  # pg_restore --list only


def test_a_missing_pg_dump_is_named(
    pg_source: BackupSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(EngineError, match="pg_dump is not on PATH"):
        run_backup(backup_settings(tmp_path), pg_source)


def test_a_pg_dump_older_than_the_server_is_a_clear_error(
    pg_source: BackupSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pg_dump"
    fake.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(EngineError, match=r"pg_dump 9 cannot dump .* PostgreSQL \d+ server"):
        run_backup(backup_settings(tmp_path), pg_source)
    assert Catalog(tmp_path / "backups").list() == []


def test_a_failed_restore_into_a_new_database_drops_it(
    pg_source: BackupSource, scratch_url: str, tmp_path: Path
) -> None:
    settings = backup_settings(tmp_path)
    backup_id = run_backup(settings, pg_source, verify=False).backup_id
    manifest_path = settings.backup_dir / "runs" / backup_id / "manifest.json"
    tamper_manifest(manifest_path, lambda doc: doc["tables"].update({"public.items": 251}))
    plan = plan_restore(
        settings, backup_id, database_url=scratch_url, storage_dir=tmp_path / "audio"
    )

    with pytest.raises(RestoreError, match="251 rows in the manifest") as caught:
        restore_backup(settings, plan)

    assert "that this restore created was dropped" in str(caught.value)
    name = make_url(scratch_url).database
    engine = _engine(pg_source.database_url)
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT count(*) FROM pg_database WHERE datname = :name"), {"name": name}
            ).scalar_one()
    finally:
        engine.dispose()
    assert exists == 0
    assert not (tmp_path / "audio").exists()


def test_the_small_dump_of_these_tests_stays_under_a_pipe_buffer(
    pg_source: BackupSource, tmp_path: Path
) -> None:
    """The other side of 64 KiB from the test below: a dump pg_restore reads in one gulp."""
    settings = backup_settings(tmp_path)
    result = run_backup(settings, pg_source, verify=True)
    assert result.verified
    manifest = Catalog(settings.backup_dir).manifest(result.backup_id)
    assert manifest.database_artifact.bytes < 64 * 1024
    assert verify_backup(settings, result.backup_id).ok
    assert verify_backup(settings, result.backup_id, database_url=pg_source.database_url).ok


@pytest.mark.slow
def test_thousands_of_recordings_back_up_verified_and_restore_with_equal_row_counts(
    postgres_url: str, scratch_url: str, tmp_path: Path
) -> None:
    reset_postgres(postgres_url)
    fill_recordings(postgres_url, tmp_path / "storage", recordings=12_000)
    source = BackupSource(
        postgres_url, tmp_path / "storage", recorder.referenced_blobs, recorder.blob_path
    )
    settings = backup_settings(tmp_path)

    result = run_backup(settings, source, verify=True)

    assert result.verified
    manifest = Catalog(settings.backup_dir).manifest(result.backup_id)
    assert manifest.database_artifact.bytes > 4 * 1024 * 1024
    assert manifest.tables["public.recordings"] == 12_000
    assert verify_backup(settings, result.backup_id).ok  # without a server: pg_restore only
    plan = plan_restore(
        settings, result.backup_id, database_url=scratch_url, storage_dir=tmp_path / "audio"
    )
    restore_backup(settings, plan)
    assert _counts(scratch_url) == _counts(postgres_url) == manifest.tables
    reset_postgres(postgres_url)


def _admin(url: str) -> sa.Engine:
    return sa.create_engine(
        make_url(url).set(drivername="postgresql+psycopg"),
        isolation_level="AUTOCOMMIT",
        poolclass=sa.NullPool,
    )


def test_a_refused_restore_says_nothing_was_written(
    pg_source: BackupSource, scratch_url: str, tmp_path: Path
) -> None:
    settings = backup_settings(tmp_path)
    backup_id = run_backup(settings, pg_source, verify=False).backup_id
    admin = _admin(pg_source.database_url)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{make_url(scratch_url).database}"'))
    admin.dispose()
    engine = _engine(scratch_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE precious (id int)"))
        conn.execute(sa.text("INSERT INTO precious VALUES (1), (2)"))
    engine.dispose()
    plan = plan_restore(
        settings, backup_id, database_url=scratch_url, storage_dir=tmp_path / "audio"
    )

    with pytest.raises(RestoreError) as caught:
        restore_backup(settings, plan)

    message = str(caught.value)
    assert "holds 1 table(s)" in message and "--force" in message
    assert message.endswith("nothing was written to the database " + _shown(scratch_url))
    assert "drop" not in message and "part of the restore" not in message
    assert _counts(scratch_url) == {"public.precious": 2}
    assert not (tmp_path / "audio").exists()


def test_a_failed_restore_into_an_existing_database_wrote_nothing_and_says_so(
    pg_source: BackupSource, scratch_url: str, tmp_path: Path
) -> None:
    """pg_restore runs as one transaction: a failure halfway leaves the database as it was."""
    settings = backup_settings(tmp_path)
    backup_id = run_backup(settings, pg_source, verify=False).backup_id
    admin = _admin(pg_source.database_url)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{make_url(scratch_url).database}"'))
    admin.dispose()
    engine = _engine(scratch_url)
    with engine.begin() as conn:  # no table, but a name the dump creates too
        conn.execute(sa.text("CREATE SEQUENCE public.tags_id_seq"))
    plan = plan_restore(
        settings, backup_id, database_url=scratch_url, storage_dir=tmp_path / "audio"
    )

    with pytest.raises(RestoreError, match=r"pg_restore into .* failed") as caught:
        restore_backup(settings, plan)

    assert str(caught.value).endswith("nothing was written to the database " + _shown(scratch_url))
    with engine.connect() as conn:
        assert _counts(scratch_url) == {}
        assert (
            conn.execute(sa.text("SELECT count(*) FROM pg_class WHERE relkind = 'S'")).scalar_one()
            == 1
        )
    engine.dispose()
    assert not (tmp_path / "audio").exists()


def _scratch_databases(url: str) -> list[str]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT datname FROM pg_database WHERE datname LIKE 'vrp_verify_%'")
            )
            return sorted(row[0] for row in rows)
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_killed_verify_leaves_a_scratch_database_that_the_next_run_drops(
    postgres_url: str, tmp_path: Path
) -> None:
    reset_postgres(postgres_url)
    fill_recordings(postgres_url, tmp_path / "storage", recordings=12_000)
    env = {
        **os.environ,
        "VRP_DATABASE_URL": postgres_url,
        "VRP_STORAGE_DIR": str(tmp_path / "storage"),
        "VRP_BACKUP_DIR": str(repository_dir(tmp_path / "backups")),
        "VRP_LOG_DIR": str(tmp_path / "log"),
        "OTEL_SDK_DISABLED": "true",
    }
    vrp = [sys.executable, "-m", "recorder.cli", "backup"]
    taken = subprocess.run([*vrp, "run", "--no-verify"], env=env, cwd=REPO, check=False)
    assert taken.returncode == 0
    (backup_id,) = [p.name for p in (tmp_path / "backups" / "runs").iterdir()]
    before = _scratch_databases(postgres_url)

    verify = subprocess.Popen([*vrp, "verify", backup_id], env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    while _scratch_databases(postgres_url) == before:
        assert verify.poll() is None, "the verify ended before it made its scratch database"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    verify.send_signal(signal.SIGKILL)
    verify.wait()
    (leaked,) = set(_scratch_databases(postgres_url)) - set(before)

    pruned = subprocess.run(
        [*vrp, "prune"], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    assert pruned.returncode == 0, pruned.stderr
    assert leaked in _scratch_databases(postgres_url)  # prune cannot reach the server: kept
    ran = subprocess.run(
        [*vrp, "run"], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert f"dropped the scratch database {leaked}" in ran.stderr
    assert _scratch_databases(postgres_url) == before
    assert list((tmp_path / "backups" / "tmp").iterdir()) == []
    reset_postgres(postgres_url)


def _waiting_in(admin_url: str, database: str) -> bool:
    """Whether a session of ``database`` waits for a lock."""
    engine = _engine(admin_url)
    try:
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = :name AND wait_event_type = 'Lock'"
                    ),
                    {"name": database},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _sessions_in(admin_url: str, database: str) -> int:
    engine = _engine(admin_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name"),
                    {"name": database},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_a_killed_restore_takes_its_pg_restore_along_and_the_next_restore_completes(
    pg_source: BackupSource, scratch_url: str, tmp_path: Path
) -> None:
    """The dump (under 64 KiB) is all in pg_restore's pipe when ``vrp`` is killed: pg_restore
    dies with it rather than go on and commit a restore that nothing checks."""
    settings = backup_settings(tmp_path)
    backup_id = run_backup(settings, pg_source, verify=False).backup_id
    name = str(make_url(scratch_url).database)
    admin = _admin(pg_source.database_url)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    env = {
        **os.environ,
        "VRP_DATABASE_URL": pg_source.database_url,
        "VRP_STORAGE_DIR": str(pg_source.storage_dir),
        "VRP_BACKUP_DIR": str(settings.backup_dir),
        "VRP_LOG_DIR": str(tmp_path / "log"),
        "OTEL_SDK_DISABLED": "true",
    }
    restore = [sys.executable, "-m", "recorder.cli", "backup", "restore", backup_id]
    restore += ["--database-url", scratch_url, "--storage-dir", str(tmp_path / "audio")]
    blocker = _engine(scratch_url)
    with blocker.connect() as held:
        held.execute(sa.text("CREATE SCHEMA extra"))  # uncommitted: pg_restore's waits on it
        killed = subprocess.Popen(restore, env=env, cwd=REPO)
        deadline = time.monotonic() + 60
        while not _waiting_in(pg_source.database_url, name):
            assert killed.poll() is None, "the restore ended before it reached the server"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        time.sleep(0.5)
        held.rollback()
    blocker.dispose()
    while _sessions_in(pg_source.database_url, name):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _counts(scratch_url) == {}  # nothing of the killed restore was committed

    done = subprocess.run(restore, env=env, cwd=REPO, capture_output=True, text=True, check=False)

    assert done.returncode == 0, done.stderr
    assert _counts(scratch_url) == _counts(pg_source.database_url)


def test_a_run_names_its_repository_and_its_database_without_credentials(
    pg_source: BackupSource, tmp_path: Path, telemetry: InMemoryTelemetry
) -> None:
    """Trust authentication ignores the password, so the URL can carry one the attributes must
    not show (nor the user, nor the query, which may hold ``password=``)."""
    url = make_url(pg_source.database_url).set(
        username="postgres", password="s3cret", query={"application_name": "vrp"}
    )
    source = dataclasses.replace(pg_source, database_url=url.render_as_string(hide_password=False))
    settings = backup_settings(tmp_path)
    tel = BackupTelemetry(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )

    result = run_backup(settings, source, verify=False, telemetry=tel)

    [span] = telemetry.spans("backup.run")
    assert span.attributes is not None
    expected = {
        "vrp.backup.repository.id": open_repository(settings.backup_dir).id,
        "vrp.backup.database": f"postgresql://{url.host}:{url.port}/{url.database}",
    }
    assert {k: span.attributes[k] for k in expected} == expected
    assert result.repository_id == expected["vrp.backup.repository.id"]
    points = telemetry.metric_points("vrp.backup.last_success")
    assert [dict(p.attributes or {}) for p in points] == [expected]
    assert "s3cret" not in repr(span.attributes) and "postgres@" not in repr(span.attributes)
