"""PostgreSQL on the real server: pg_dump in the snapshot of the blob query, full verify,
restore into a scratch database with equal row counts per table, clear tool errors."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from backup.catalog import Catalog
from backup.engines.postgresql import row_counts
from backup.errors import EngineError, RestoreError
from backup.restore import plan_restore, restore_backup
from backup.run import run_backup
from backup.source import BackupSource, fan_out_path
from backup.verify import verify_backup
from tests.backup.helpers import backup_settings, referenced_blobs, tamper_manifest, write_blob
from tests.conftest import reset_postgres

pytestmark = pytest.mark.postgres


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
