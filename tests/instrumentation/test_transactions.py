"""Units of work without faults: commit, rollback, SAVEPOINT nesting, the decorator, telemetry.

Every test runs on a SQLite file and on the real PostgreSQL server (``database_url``) and ends by
checking that no pooled connection is left checked out.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

import psycopg
import pytest
import sqlalchemy as sa
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from instrumentation.database import Database
from instrumentation.errors import PoolExhaustedError, TransactionRetryError
from instrumentation.testing import InMemoryTelemetry
from instrumentation.transactions import (
    error_type,
    is_transient,
    run_transaction,
    transaction,
    transactional,
)
from tests.instrumentation.conftest import TRANSACTIONS_LOGGER, LogReader, field

LOGGER = TRANSACTIONS_LOGGER

metadata = sa.MetaData()
items = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False, unique=True),
)


def item_names(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return list(conn.scalars(sa.select(items.c.name).order_by(items.c.name)))


def add_item(session: Session, name: str) -> None:
    session.execute(sa.insert(items).values(name=name))


@pytest.fixture
def db(db: Database, telemetry: InMemoryTelemetry) -> Database:
    """The conftest's database (SQLite and PostgreSQL, pool checked at teardown) with tables."""
    metadata.create_all(db.engine)
    telemetry.clear()
    return db


def test_transaction_commits_when_the_block_ends(
    db: Database, telemetry: InMemoryTelemetry, unit_logs: LogReader
) -> None:
    with transaction(db) as session:
        add_item(session, "a")

    assert item_names(db) == ["a"]
    span = telemetry.span_named("db.transaction")
    assert span.kind is SpanKind.INTERNAL
    assert span.attributes is not None
    assert span.attributes["db.system.name"] == db.system
    assert span.attributes["vrp.db.transaction.attempts"] == 1
    assert span.attributes["vrp.db.transaction.outcome"] == "commit"
    assert span.status.status_code is StatusCode.UNSET
    (record,) = unit_logs()
    assert record.levelno == logging.INFO
    assert field(record, "vrp.db.transaction.outcome") == "commit"
    assert field(record, "vrp.db.transaction.attempts") == 1
    assert field(record, "db.system.name") == db.system
    assert field(record, "duration_ms") >= 0


def test_transaction_rolls_back_and_reraises_an_application_error(
    db: Database, telemetry: InMemoryTelemetry, unit_logs: LogReader
) -> None:
    with pytest.raises(ValueError, match="no thanks"), transaction(db) as session:
        add_item(session, "a")
        raise ValueError("no thanks")

    assert item_names(db) == []
    span = telemetry.span_named("db.transaction")
    assert span.attributes is not None
    assert span.attributes["vrp.db.transaction.outcome"] == "rollback"
    assert span.attributes["error.type"] == "ValueError"
    (record,) = unit_logs()
    assert record.levelno == logging.WARNING
    assert field(record, "vrp.db.transaction.outcome") == "rollback"
    assert field(record, "error.type") == "ValueError"


class RefusedError(Exception):
    """An application error that refuses the caller's request (a not-found, say)."""

    client_error = True


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RefusedError("no such item"), f"{__name__}.RefusedError"),
        (StaleDataError("UPDATE matched 0 rows"), "sqlalchemy.orm.exc.StaleDataError"),
    ],
    ids=["client-error-flag", "stale-version"],
)
def test_a_unit_refused_by_a_client_error_rolls_back_at_debug_not_warning(
    db: Database,
    telemetry: InMemoryTelemetry,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
    kind: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="instrumentation.transactions")

    with pytest.raises(type(error)), transaction(db) as session:
        add_item(session, "a")
        raise error

    assert item_names(db) == []
    span = telemetry.span_named("db.transaction")
    assert span.attributes is not None
    assert span.attributes["vrp.db.transaction.outcome"] == "rollback"
    assert span.attributes["error.type"] == kind
    assert span.status.status_code is StatusCode.UNSET
    (record,) = [r for r in caplog.records if r.name == "instrumentation.transactions"]
    assert record.levelno == logging.DEBUG
    assert field(record, "vrp.db.transaction.outcome") == "rollback"
    assert field(record, "error.type") == kind


def test_transaction_reports_a_database_failure_as_error_without_parameter_values(
    db: Database, telemetry: InMemoryTelemetry, unit_logs: LogReader
) -> None:
    with transaction(db) as session:
        add_item(session, "secret-name")

    with pytest.raises(sa.exc.IntegrityError), transaction(db) as session:
        add_item(session, "secret-name")

    assert item_names(db) == ["secret-name"]
    span = telemetry.spans("db.transaction")[-1]
    assert span.attributes is not None
    assert span.attributes["vrp.db.transaction.outcome"] == "error"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] in {"23505", "SQLITE_CONSTRAINT_UNIQUE"}
    assert not span.events
    record = unit_logs()[-1]
    assert record.levelno == logging.ERROR
    assert record.exc_info is None
    assert "secret-name" not in record.getMessage()


def test_inner_failure_rolls_back_to_the_savepoint_and_the_outer_unit_commits(
    db: Database, telemetry: InMemoryTelemetry, unit_logs: LogReader
) -> None:
    with transaction(db) as outer:
        add_item(outer, "outer-before")
        with pytest.raises(ValueError), transaction(db) as inner:
            assert inner is outer
            add_item(inner, "inner")
            raise ValueError("inner gives up")
        add_item(outer, "outer-after")

    assert item_names(db) == ["outer-after", "outer-before"]
    (span,) = telemetry.spans("db.transaction")
    assert span.attributes is not None
    assert span.attributes["vrp.db.transaction.outcome"] == "commit"
    assert [field(record, "vrp.db.transaction.outcome") for record in unit_logs()] == ["commit"]


def test_outer_failure_discards_what_a_committed_inner_unit_wrote(db: Database) -> None:
    with pytest.raises(RuntimeError), transaction(db) as outer:
        with transaction(db) as inner:
            add_item(inner, "inner")
        add_item(outer, "outer")
        raise RuntimeError("outer gives up")

    assert item_names(db) == []


def test_nested_run_transaction_joins_the_outer_unit_once(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    sessions: list[Session] = []

    def work(session: Session, name: str) -> str:
        sessions.append(session)
        add_item(session, name)
        return name

    with transaction(db) as outer:
        assert run_transaction(db, work, "inner") == "inner"
        assert sessions == [outer]
        with pytest.raises(sa.exc.IntegrityError):
            run_transaction(db, work, "inner")
        add_item(outer, "outer")

    assert len(sessions) == 2
    assert item_names(db) == ["inner", "outer"]
    assert len(telemetry.spans("db.transaction")) == 1


def test_run_transaction_returns_the_result_of_the_committed_attempt(
    db: Database, telemetry: InMemoryTelemetry, unit_logs: LogReader
) -> None:
    def create(session: Session, name: str, *, suffix: str) -> int:
        result = session.execute(sa.insert(items).values(name=name + suffix))
        (key,) = result.inserted_primary_key or (None,)
        assert isinstance(key, int)
        return key

    key = run_transaction(db, create, "a", suffix="-1")

    assert item_names(db) == ["a-1"]
    with db.engine.connect() as conn:
        assert conn.scalar(sa.select(items.c.id).where(items.c.name == "a-1")) == key
    span = telemetry.span_named("db.transaction")
    assert span.attributes is not None
    assert span.attributes["vrp.db.transaction.attempts"] == 1
    assert span.attributes["vrp.db.transaction.outcome"] == "commit"
    assert [record.levelno for record in unit_logs()] == [logging.INFO]


def test_span_tree_is_session_then_transaction_then_statements(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    def work(session: Session) -> None:
        add_item(session, "a")
        session.execute(sa.select(items.c.id))

    run_transaction(db, work)

    session_span = telemetry.span_named("db.session")
    transaction_span = telemetry.span_named("db.transaction")
    assert transaction_span.parent is not None
    assert session_span.context is not None
    assert transaction_span.parent.span_id == session_span.context.span_id
    assert transaction_span.context is not None
    statements = [
        span
        for span in telemetry.spans()
        if span.kind is SpanKind.CLIENT
        and span.parent is not None
        and span.parent.span_id == transaction_span.context.span_id
    ]
    assert len(statements) >= 2
    assert all(
        span.attributes is not None and span.attributes["db.system.name"] == db.system
        for span in statements
    )


def test_unit_commits_a_transaction_autobegun_by_earlier_statements(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    with db.session() as session:
        session.execute(sa.select(items.c.id)).all()
        assert session.in_transaction()
        run_transaction(db, add_item, "retried-unit")
        session.execute(sa.select(items.c.id)).all()
        with transaction(db) as inside:
            add_item(inside, "single-attempt")

    assert item_names(db) == ["retried-unit", "single-attempt"]
    outcomes = [
        span.attributes["vrp.db.transaction.outcome"]
        for span in telemetry.spans("db.transaction")
        if span.attributes is not None
    ]
    assert outcomes == ["commit", "commit"]


def test_transaction_reuses_the_current_session_and_leaves_it_open(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    with db.session() as session:
        with transaction(db) as inside:
            assert inside is session
            add_item(inside, "a")
        assert not session.in_transaction()
        run_transaction(db, add_item, "b")
        assert session.execute(sa.select(sa.func.count()).select_from(items)).scalar_one() == 2

    assert item_names(db) == ["a", "b"]
    assert len(telemetry.spans("db.session")) == 1
    assert len(telemetry.spans("db.transaction")) == 2


@transactional
def create_item(session: Session, name: str, *, fail: bool = False) -> str:
    """A service as the application writes them."""
    add_item(session, name)
    if fail:
        raise ValueError(name)
    return name


def test_transactional_keeps_the_service_name_and_doc() -> None:
    assert create_item.__name__ == "create_item"
    assert create_item.__doc__ == "A service as the application writes them."


def test_transactional_given_a_database_runs_a_unit_of_its_own(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    assert create_item(db, "a") == "a"
    with pytest.raises(ValueError):
        create_item(db, "b", fail=True)

    assert item_names(db) == ["a"]
    outcomes = [
        span.attributes["vrp.db.transaction.outcome"]
        for span in telemetry.spans("db.transaction")
        if span.attributes is not None
    ]
    assert outcomes == ["commit", "rollback"]


def test_transactional_given_a_session_joins_the_callers_unit(db: Database) -> None:
    with transaction(db) as session:
        create_item(session, "joined")
        with pytest.raises(ValueError):
            create_item(session, "undone", fail=True)
        add_item(session, "outer")

    with db.session() as session:
        create_item(session, "own-block")
        assert not session.in_transaction()

    assert item_names(db) == ["joined", "outer", "own-block"]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (psycopg.errors.SerializationFailure("could not serialize"), True),
        (psycopg.errors.DeadlockDetected("deadlock"), True),
        (psycopg.errors.AdminShutdown("terminating connection"), True),
        (psycopg.errors.ConnectionFailure("connection failure"), True),
        (psycopg.errors.UniqueViolation("duplicate key"), False),
        (psycopg.errors.QueryCanceled("statement timeout"), False),
        (sqlite3.OperationalError("database is locked"), True),
        (sqlite3.OperationalError("database table is locked"), True),
        (sqlite3.OperationalError("no such table: items"), False),
        (sqlite3.IntegrityError("UNIQUE constraint failed"), False),
        (ValueError("database is locked"), False),
        (PoolExhaustedError("main", 1.0), False),
    ],
)
def test_is_transient_sees_through_sqlalchemy_wrappers(exc: Exception, expected: bool) -> None:
    wrapped = sa.exc.DBAPIError.instance("SELECT 1", None, exc, type(exc))

    assert is_transient(exc) is expected
    assert is_transient(wrapped) is expected


def test_is_transient_follows_cause_chains_but_not_into_a_unit_that_gave_up() -> None:
    locked = sqlite3.OperationalError("database is locked")
    try:
        raise RuntimeError("service failed") from locked
    except RuntimeError as exc:
        chained = exc

    assert is_transient(chained)
    assert not is_transient(TransactionRetryError(3, 0.5, locked))


def test_is_transient_accepts_an_invalidated_connection() -> None:
    dropped = psycopg.OperationalError("server closed the connection unexpectedly")
    invalidated = sa.exc.OperationalError("SELECT 1", None, dropped, connection_invalidated=True)
    still_valid = sa.exc.OperationalError("SELECT 1", None, dropped)

    assert is_transient(invalidated)
    assert not is_transient(still_valid)


def test_error_type_prefers_the_database_code_then_the_driver_class() -> None:
    busy = sqlite3.connect(":memory:")
    try:
        busy.execute("SELECT * FROM missing")
    except sqlite3.OperationalError as exc:
        missing_table = exc
    finally:
        busy.close()
    serialization = psycopg.errors.SerializationFailure("x")

    assert error_type(sa.exc.DBAPIError.instance("SELECT 1", None, serialization, Exception)) == (
        "40001"
    )
    assert error_type(missing_table) == "SQLITE_ERROR"
    assert error_type(psycopg.OperationalError("closed")) == "psycopg.OperationalError"
    assert error_type(ValueError()) == "ValueError"
    assert error_type(TransactionRetryError(2, 0.1, serialization)) == (
        "instrumentation.errors.TransactionRetryError"
    )


def test_readonly_unit_reads_while_another_connection_holds_the_write_lock(
    tmp_path, make_database: Callable[..., Database]
) -> None:
    path = tmp_path / "readonly.db"
    db = make_database(f"sqlite:///{path}", sqlite_busy_timeout_ms=50, retry_deadline=0.3)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")

    def count(session: Session) -> int:
        return int(session.scalar(sa.text("SELECT count(*) FROM t")))

    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        assert transactional(readonly=True)(count)(db) == 1
        with pytest.raises(TransactionRetryError):
            transactional(count)(db)
    finally:
        writer.rollback()
        writer.close()
