from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from opentelemetry.trace import SpanKind, StatusCode

from instrumentation.database import Database, PoolStatus, open_databases
from instrumentation.errors import ConfigurationError, PoolExhaustedError
from instrumentation.settings import DatabaseSettings
from instrumentation.testing import InMemoryTelemetry
from tests.instrumentation.conftest import MakeDatabase, create_recordings


def add_recording(session: sa.orm.Session, recording_id: int, title: str = "t") -> None:
    session.execute(
        sa.text("INSERT INTO recordings (id, title) VALUES (:id, :title)"),
        {"id": recording_id, "title": title},
    )


def count_recordings(db: Database) -> int:
    with db.session() as session:
        return session.execute(sa.text("SELECT count(*) FROM recordings")).scalar_one()


def test_session_span_is_internal_and_names_the_database_system(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    with db.session() as session:
        session.execute(sa.text("SELECT 1"))

    span = telemetry.span_named("db.session")
    assert span.kind is SpanKind.INTERNAL
    assert span.attributes["db.system.name"] == db.system
    assert span.attributes["vrp.db.session.statements"] == 1
    assert span.status.status_code is StatusCode.UNSET


def test_session_outcome_is_commit_when_its_last_transaction_committed(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    create_recordings(db)
    telemetry.clear()

    with db.session() as session:
        add_recording(session, 1)
        session.commit()

    span = telemetry.span_named("db.session")
    assert span.attributes["vrp.db.session.outcome"] == "commit"
    assert span.attributes["vrp.db.session.statements"] == 1
    assert count_recordings(db) == 1


def test_session_outcome_is_rollback_when_its_last_transaction_rolled_back(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    create_recordings(db)
    telemetry.clear()

    with db.session() as session:
        add_recording(session, 1)
        session.commit()
        add_recording(session, 2)
        session.rollback()

    assert telemetry.span_named("db.session").attributes["vrp.db.session.outcome"] == "rollback"
    assert count_recordings(db) == 1


def test_session_outcome_is_closed_when_nothing_was_committed_or_rolled_back(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    create_recordings(db)
    telemetry.clear()

    with db.session() as session:
        add_recording(session, 1)
    with db.session():
        pass

    outcomes = [s.attributes["vrp.db.session.outcome"] for s in telemetry.spans("db.session")]
    assert outcomes == ["closed", "closed"]
    assert count_recordings(db) == 0


def test_savepoint_release_does_not_count_as_the_session_committing(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    create_recordings(db)
    telemetry.clear()

    with db.session() as session:
        session.begin()
        with session.begin_nested():
            add_recording(session, 1)
        session.rollback()

    assert telemetry.span_named("db.session").attributes["vrp.db.session.outcome"] == "rollback"


def test_session_outcome_is_error_and_the_exception_propagates_when_the_body_raises(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    with pytest.raises(ValueError, match="boom"), db.session() as session:
        session.execute(sa.text("SELECT 1"))
        raise ValueError("boom")

    span = telemetry.span_named("db.session")
    assert span.attributes["vrp.db.session.outcome"] == "error"
    assert span.attributes["error.type"] == "ValueError"
    assert span.status.status_code is StatusCode.ERROR
    assert not span.events, "exception messages may quote values and are never recorded"


class _Refused(Exception):
    """An application's "not found": the caller's request was refused, the service is fine."""

    client_error = True


def test_session_refused_by_a_client_error_rolls_back_with_status_unset(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    with pytest.raises(_Refused), db.session() as session:
        session.execute(sa.text("SELECT 1"))
        raise _Refused

    span = telemetry.span_named("db.session")
    assert span.attributes["vrp.db.session.outcome"] == "rollback"
    assert span.attributes["error.type"].endswith("_Refused")
    assert span.status.status_code is StatusCode.UNSET


def test_session_always_closes_and_returns_its_connection_when_the_body_raises(
    db: Database,
) -> None:
    create_recordings(db)
    opened: list[sa.orm.Session] = []

    with pytest.raises(RuntimeError), db.session() as session:
        opened.append(session)
        add_recording(session, 1)
        assert db.pool_status().checked_out == 1
        raise RuntimeError

    assert db.pool_status().checked_out == 0
    assert not opened[0].in_transaction()
    assert count_recordings(db) == 0


def test_session_statement_count_excludes_transaction_control(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    create_recordings(db)
    telemetry.clear()

    with db.session() as session:
        with session.begin():
            add_recording(session, 1)
            with session.begin_nested():
                add_recording(session, 2)
        session.execute(sa.text("SELECT count(*) FROM recordings"))

    assert telemetry.span_named("db.session").attributes["vrp.db.session.statements"] == 3


def test_statements_count_into_the_innermost_session_only(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    with db.session() as outer:
        outer.execute(sa.text("SELECT 1"))
        # On SQLite an open transaction holds the write lock the inner session would wait for.
        outer.commit()
        with db.session() as inner:
            inner.execute(sa.text("SELECT 1"))
            inner.execute(sa.text("SELECT 2"))

    inner_span, outer_span = telemetry.spans("db.session")
    assert inner_span.attributes["vrp.db.session.statements"] == 2
    assert outer_span.attributes["vrp.db.session.statements"] == 1
    assert inner_span.parent.span_id == outer_span.context.span_id


def test_session_logs_one_debug_record(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="instrumentation.database")

    with db.session() as session:
        session.execute(sa.text("SELECT 1"))

    records = [r for r in caplog.records if r.name == "instrumentation.database"]
    assert len(records) == 1
    assert records[0].levelno == logging.DEBUG
    assert (records[0].outcome, records[0].statements) == ("closed", 1)


def test_current_session_is_the_innermost_open_session_of_that_database(
    db: Database, make_database: MakeDatabase, tmp_path: Path
) -> None:
    other = make_database(f"sqlite:///{tmp_path / 'other.db'}")
    assert db.current_session() is None

    with db.session() as outer:
        assert db.current_session() is outer
        with other.session() as foreign:
            assert db.current_session() is outer
            assert other.current_session() is foreign
            with db.session() as inner:
                assert db.current_session() is inner
            assert db.current_session() is outer
        assert other.current_session() is None

    assert db.current_session() is None


def test_current_session_is_reset_when_the_body_raises(db: Database) -> None:
    with pytest.raises(KeyError), db.session():
        raise KeyError

    assert db.current_session() is None


def test_pool_exhaustion_raises_pool_exhausted_within_the_timeout(
    database_url: str, make_database: MakeDatabase, telemetry: InMemoryTelemetry
) -> None:
    db = make_database(
        database_url, pool_size=1, max_overflow=0, pool_timeout=0.2, pool_name="tiny"
    )
    held = db.engine.connect()
    try:
        started = time.monotonic()
        with pytest.raises(PoolExhaustedError) as caught, db.session() as session:
            session.execute(sa.text("SELECT 1"))
        elapsed = time.monotonic() - started
    finally:
        held.close()

    assert 0.2 <= elapsed < 1.5
    assert (caught.value.pool_name, caught.value.timeout) == ("tiny", 0.2)
    assert isinstance(caught.value.__cause__, sa.exc.TimeoutError)
    [timeouts] = telemetry.metric_points("db.client.connection.timeouts")
    assert timeouts.value == 1
    assert timeouts.attributes == {"db.client.connection.pool.name": "tiny"}
    span = telemetry.span_named("db.session")
    assert span.attributes["vrp.db.session.outcome"] == "error"
    assert span.attributes["error.type"] == "instrumentation.errors.PoolExhaustedError"


def test_ping_runs_a_query(db: Database, telemetry: InMemoryTelemetry) -> None:
    db.ping()

    assert [s.attributes["db.query.text"] for s in telemetry.spans("SELECT")] == ["SELECT 1"]
    assert db.pool_status().checked_out == 0


def test_ping_raises_when_the_server_is_unreachable(make_database: MakeDatabase) -> None:
    db = make_database("postgresql://postgres@127.0.0.1:1/none", pool_pre_ping=False)

    with pytest.raises(sa.exc.OperationalError):
        db.ping()


def test_pool_status_reports_the_queue_pool(db: Database) -> None:
    with db.session() as session:
        session.execute(sa.text("SELECT 1"))
        during = db.pool_status()
    after = db.pool_status()

    assert during == PoolStatus(size=5, checked_out=1, overflow=0, checked_in=0)
    assert after == PoolStatus(size=5, checked_out=0, overflow=0, checked_in=1)


def test_pool_status_reports_a_static_pool_for_in_memory_sqlite(
    make_database: MakeDatabase,
) -> None:
    db = make_database("sqlite://")
    with db.session() as session:
        session.execute(sa.text("SELECT 1"))
        during = db.pool_status()

    assert during == PoolStatus(size=1, checked_out=1, overflow=0, checked_in=0)
    assert db.pool_status() == PoolStatus(size=1, checked_out=0, overflow=0, checked_in=1)


def test_open_databases_tracks_live_instances_and_forgets_disposed_ones(
    make_database: MakeDatabase, tmp_path: Path
) -> None:
    first = make_database(f"sqlite:///{tmp_path / 'a.db'}")
    second = make_database(f"sqlite:///{tmp_path / 'b.db'}")
    assert {first, second} <= set(open_databases())

    first.dispose()

    assert first not in open_databases()
    assert second in open_databases()


def test_open_databases_holds_instances_weakly(tmp_path: Path) -> None:
    db = Database(DatabaseSettings(url=f"sqlite:///{tmp_path / 'weak.db'}"))
    db.ping()
    name = db.name
    del db
    gc.collect()

    assert name not in [d.name for d in open_databases()]


def test_dispose_is_idempotent_and_removes_the_telemetry(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    db.dispose()
    db.dispose()

    with db.engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    assert telemetry.spans() == []
    assert {p.value for p in telemetry.metric_points("db.client.connection.count")} == {0}
    assert [p.value for p in telemetry.metric_points("db.client.connection.max")] == [0]


def test_name_is_the_pool_name_or_the_url_without_its_password(
    make_database: MakeDatabase,
) -> None:
    secret = make_database("postgresql://app:s3cret@127.0.0.1:1/vrp")
    named = make_database("postgresql://app:s3cret@127.0.0.1:1/vrp", pool_name="api")

    assert secret.name == "postgresql://app:***@127.0.0.1:1/vrp"
    assert named.name == "api"


def test_postgresql_url_uses_psycopg_3(make_database: MakeDatabase) -> None:
    db = make_database("postgresql://app@127.0.0.1:1/vrp")

    assert db.engine.url.drivername == "postgresql+psycopg"
    assert db.system == "postgresql"


def test_relative_sqlite_path_gets_its_directory_created(
    make_database: MakeDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = make_database("sqlite:///var/data/vrp.db")
    db.ping()

    assert (tmp_path / "var" / "data" / "vrp.db").is_file()
    assert db.system == "sqlite"


@pytest.mark.parametrize(
    "url", ["mysql://app:s3cret@db/vrp", "not a url at all s3cret", "oracle://app:s3cret@h/x"]
)
def test_unusable_url_is_a_configuration_error_that_hides_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Database(DatabaseSettings(url=url))

    assert "s3cret" not in str(caught.value)


@pytest.mark.postgres
def test_postgresql_statement_timeout_cancels_a_long_statement(
    postgres_url: str, make_database: MakeDatabase, telemetry: InMemoryTelemetry
) -> None:
    db = make_database(postgres_url, statement_timeout_ms=200)

    started = time.monotonic()
    with pytest.raises(sa.exc.OperationalError) as caught, db.session() as session:
        session.execute(sa.text("SELECT pg_sleep(5)"))

    assert time.monotonic() - started < 2
    assert caught.value.orig.sqlstate == "57014"
    span = telemetry.span_named("SELECT")
    assert span.attributes["error.type"] == "57014"
    assert span.attributes["db.response.status_code"] == "57014"


@pytest.mark.postgres
def test_postgresql_connections_carry_the_application_name_the_app_supplies(
    postgres_url: str, make_database: MakeDatabase
) -> None:
    unnamed = make_database(postgres_url, pool_name="unnamed")
    plain = make_database(postgres_url, application_name="vrp")
    named = make_database(postgres_url, application_name="vrp", pool_name="api")

    def application_name(db: Database) -> str:
        with db.session() as session:
            return session.execute(sa.text("SHOW application_name")).scalar_one()

    assert application_name(unnamed) == ""
    assert application_name(plain) == "vrp"
    assert application_name(named) == "vrp api"
