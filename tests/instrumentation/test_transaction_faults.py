"""Retried units of work under real faults: a held SQLite write lock, a PostgreSQL serialization
failure between two threads, the unit's own backend killed mid-transaction, and errors that must
not be retried. Each test counts the rows afterwards: a unit commits exactly once or not at all.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import ReadableSpan
from sqlalchemy.orm import Session

from instrumentation.database import Database
from instrumentation.errors import PoolExhaustedError, TransactionRetryError
from instrumentation.testing import InMemoryTelemetry
from instrumentation.transactions import is_transient, run_transaction
from tests.instrumentation.conftest import TRANSACTIONS_LOGGER, LogReader, MakeDatabase, field

LOGGER = TRANSACTIONS_LOGGER
BUSY_TIMEOUT_MS = 50

metadata = sa.MetaData()
ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("entry", sa.String(50), nullable=False, unique=True),
)
counters = sa.Table(
    "counters",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)


def prepared(db: Database, telemetry: InMemoryTelemetry) -> Database:
    """``db`` with this module's tables created, empty, and the set-up telemetry forgotten."""
    metadata.create_all(db.engine)
    with db.engine.begin() as conn:
        conn.execute(sa.delete(ledger))
        conn.execute(sa.delete(counters))
    telemetry.clear()
    return db


def open_fast_retrying(
    make_database: MakeDatabase, telemetry: InMemoryTelemetry, url: str, **settings: Any
) -> Database:
    """A prepared Database whose retries back off in milliseconds unless told otherwise."""
    settings.setdefault("retry_initial_delay", 0.005)
    settings.setdefault("retry_max_delay", 0.05)
    return prepared(make_database(url, **settings), telemetry)


class HeldSqliteLock:
    """A second connection holding the write lock of a SQLite file, in its own thread.

    It releases the lock ``hold`` seconds after taking it, or when :meth:`release` is called.
    """

    def __init__(self, path: Path, hold: float | None = None) -> None:
        self._path = path
        self._hold = hold
        self._taken = threading.Event()
        self._released = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-lock-holder")

    def __enter__(self) -> HeldSqliteLock:
        self._thread.start()
        assert self._taken.wait(5), "the lock holder never took the write lock"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
        self._thread.join(5)

    def release(self) -> None:
        self._released.set()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._taken.set()
            self._released.wait(self._hold)
            conn.execute("ROLLBACK")
        finally:
            conn.close()


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "faults.db"


def entries(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return list(conn.scalars(sa.select(ledger.c.entry).order_by(ledger.c.entry)))


def transaction_spans(telemetry: InMemoryTelemetry) -> list[ReadableSpan]:
    return telemetry.spans("db.transaction")


def attribute(span: ReadableSpan, name: str) -> Any:
    assert span.attributes is not None
    return span.attributes[name]


def retries_counted(telemetry: InMemoryTelemetry) -> dict[str, int]:
    return {
        str(point.attributes["error.type"]): int(point.value)  # type: ignore[union-attr]
        for point in telemetry.metric_points("vrp.db.transaction.retries")
        if point.attributes is not None
    }


def at_level(records: list[logging.LogRecord], level: int) -> list[logging.LogRecord]:
    return [record for record in records if record.levelno == level]


def test_retries_while_another_connection_holds_the_sqlite_write_lock(
    make_database: MakeDatabase,
    telemetry: InMemoryTelemetry,
    sqlite_path: Path,
    unit_logs: LogReader,
) -> None:
    db = open_fast_retrying(
        make_database,
        telemetry,
        f"sqlite:///{sqlite_path}",
        sqlite_busy_timeout_ms=BUSY_TIMEOUT_MS,
        retry_attempts=100,
        retry_deadline=10.0,
    )
    calls = 0

    def record(session: Session) -> None:
        nonlocal calls
        calls += 1
        session.execute(sa.insert(ledger).values(entry="once"))

    with HeldSqliteLock(sqlite_path, hold=0.3):
        run_transaction(db, record)

    assert entries(db) == ["once"]
    (span,) = transaction_spans(telemetry)
    attempts = attribute(span, "vrp.db.transaction.attempts")
    assert attempts == calls > 1
    assert attribute(span, "vrp.db.transaction.outcome") == "commit"
    retries = [event for event in span.events if event.name == "retry"]
    assert len(retries) == attempts - 1
    for event in retries:
        assert event.attributes is not None
        assert event.attributes["error.type"] == "SQLITE_BUSY"
        assert 0 <= float(event.attributes["vrp.db.transaction.retry_delay_s"]) <= 0.05  # type: ignore[arg-type]
    assert retries_counted(telemetry) == {"SQLITE_BUSY": attempts - 1}
    warnings = at_level(unit_logs(), logging.WARNING)
    assert len(warnings) == attempts - 1
    assert all(field(record, "error.type") == "SQLITE_BUSY" for record in warnings)
    assert all(field(record, "db.system.name") == "sqlite" for record in warnings)
    final = at_level(unit_logs(), logging.INFO)
    assert [field(r, "vrp.db.transaction.attempts") for r in final] == [attempts]


def test_retry_gives_up_at_the_deadline_without_sleeping_past_it(
    make_database: MakeDatabase,
    telemetry: InMemoryTelemetry,
    sqlite_path: Path,
    unit_logs: LogReader,
) -> None:
    deadline = 0.5
    db = open_fast_retrying(
        make_database,
        telemetry,
        f"sqlite:///{sqlite_path}",
        sqlite_busy_timeout_ms=BUSY_TIMEOUT_MS,
        retry_attempts=1000,
        retry_deadline=deadline,
        retry_initial_delay=0.02,
        retry_max_delay=0.2,
    )

    with HeldSqliteLock(sqlite_path):
        started = time.monotonic()
        with pytest.raises(TransactionRetryError) as raised:
            run_transaction(
                db, lambda session: session.execute(sa.insert(ledger).values(entry="x"))
            )
        elapsed = time.monotonic() - started

    # The attempt running when the deadline passes may finish (one busy_timeout), no sleep after;
    # and it gives up only once the next sleep (at most retry_max_delay) would cross the deadline.
    assert deadline - 0.2 <= elapsed < deadline + BUSY_TIMEOUT_MS / 1000 + 0.15
    error = raised.value
    assert 2 <= error.attempts < 1000
    assert error.elapsed <= elapsed
    assert error.__cause__ is error.last
    assert is_transient(error.last)
    assert entries(db) == []
    (span,) = transaction_spans(telemetry)
    assert attribute(span, "vrp.db.transaction.attempts") == error.attempts
    assert attribute(span, "vrp.db.transaction.outcome") == "error"
    assert len([event for event in span.events if event.name == "retry"]) == error.attempts - 1
    failure = at_level(unit_logs(), logging.ERROR)
    assert [field(r, "vrp.db.transaction.attempts") for r in failure] == [error.attempts]


def test_retry_gives_up_after_the_configured_attempts(
    make_database: MakeDatabase, telemetry: InMemoryTelemetry, sqlite_path: Path
) -> None:
    db = open_fast_retrying(
        make_database,
        telemetry,
        f"sqlite:///{sqlite_path}",
        sqlite_busy_timeout_ms=BUSY_TIMEOUT_MS,
        retry_attempts=3,
        retry_deadline=30.0,
    )
    calls = 0

    def record(session: Session) -> None:
        nonlocal calls
        calls += 1
        session.execute(sa.insert(ledger).values(entry="x"))

    with HeldSqliteLock(sqlite_path), pytest.raises(TransactionRetryError) as raised:
        run_transaction(db, record)

    assert raised.value.attempts == calls == 3
    assert retries_counted(telemetry) == {"SQLITE_BUSY": 2}
    assert entries(db) == []


@pytest.mark.parametrize(
    ("entry", "error"),
    [("taken", sa.exc.IntegrityError), ("fresh", ValueError)],
    ids=["unique-violation", "application-error"],
)
def test_non_transient_errors_are_raised_unchanged_after_one_attempt(
    make_database: MakeDatabase,
    telemetry: InMemoryTelemetry,
    database_url: str,
    entry: str,
    error: type[Exception],
) -> None:
    db = open_fast_retrying(make_database, telemetry, database_url)
    run_transaction(db, lambda session: session.execute(sa.insert(ledger).values(entry="taken")))
    telemetry.clear()
    calls = 0

    def record(session: Session) -> None:
        nonlocal calls
        calls += 1
        session.execute(sa.insert(ledger).values(entry=entry))
        session.flush()
        raise ValueError("the service refuses")

    with pytest.raises(error):
        run_transaction(db, record)

    assert calls == 1
    assert entries(db) == ["taken"]
    (span,) = transaction_spans(telemetry)
    assert attribute(span, "vrp.db.transaction.attempts") == 1
    assert not span.events
    assert retries_counted(telemetry) == {}


def test_exhausted_pool_is_not_retried(
    make_database: MakeDatabase, telemetry: InMemoryTelemetry, database_url: str
) -> None:
    db = open_fast_retrying(
        make_database, telemetry, database_url, pool_size=1, max_overflow=0, pool_timeout=0.1
    )
    calls = 0

    def record(session: Session) -> None:
        nonlocal calls
        calls += 1
        session.execute(sa.insert(ledger).values(entry="x"))

    with db.engine.connect(), pytest.raises(PoolExhaustedError):
        run_transaction(db, record)

    assert calls == 1
    assert entries(db) == []
    (span,) = transaction_spans(telemetry)
    assert attribute(span, "vrp.db.transaction.attempts") == 1
    assert attribute(span, "vrp.db.transaction.outcome") == "error"
    assert retries_counted(telemetry) == {}


@pytest.mark.postgres
def test_serialization_failure_between_two_writers_is_retried_until_both_commit_once(
    make_database: MakeDatabase, telemetry: InMemoryTelemetry, postgres_url: str
) -> None:
    db = open_fast_retrying(make_database, telemetry, postgres_url, retry_attempts=10)
    with db.engine.begin() as conn:
        conn.execute(sa.insert(counters).values(id=1, value=0))
    both_read = threading.Barrier(2, timeout=10)
    attempts: dict[str, int] = {}
    failures: list[BaseException] = []

    def increment(session: Session, writer: str) -> None:
        attempts[writer] = attempts.get(writer, 0) + 1
        session.connection(execution_options={"isolation_level": "SERIALIZABLE"})
        value = session.scalars(sa.select(counters.c.value).where(counters.c.id == 1)).one()
        if attempts[writer] == 1:
            both_read.wait()
        session.execute(sa.update(counters).where(counters.c.id == 1).values(value=value + 1))
        session.execute(sa.insert(ledger).values(entry=writer))

    def writer(name: str) -> None:
        try:
            run_transaction(db, increment, name)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert failures == []
    assert entries(db) == ["w1", "w2"]
    with db.engine.connect() as conn:
        assert conn.scalar(sa.select(counters.c.value).where(counters.c.id == 1)) == 2
    assert sorted(attempts.values()) == [1, 2]
    spans = transaction_spans(telemetry)
    assert sorted(attribute(span, "vrp.db.transaction.attempts") for span in spans) == [1, 2]
    assert {attribute(span, "vrp.db.transaction.outcome") for span in spans} == {"commit"}
    (retried,) = [span for span in spans if span.events]
    (event,) = retried.events
    assert event.name == "retry"
    assert event.attributes is not None
    assert event.attributes["error.type"] == "40001"
    assert retries_counted(telemetry) == {"40001": 1}


def terminate_backend(postgres_url: str, pid: int) -> None:
    """Kill backend ``pid`` from a separate admin connection and wait until it is gone."""
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


@pytest.mark.postgres
def test_unit_whose_backend_is_killed_mid_transaction_reruns_on_a_fresh_connection(
    make_database: MakeDatabase, telemetry: InMemoryTelemetry, postgres_url: str
) -> None:
    db = open_fast_retrying(make_database, telemetry, postgres_url)
    backends: list[int] = []

    def record(session: Session) -> None:
        session.execute(sa.insert(ledger).values(entry="once"))
        backends.append(session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
        if len(backends) == 1:
            terminate_backend(postgres_url, backends[0])
            session.execute(sa.text("SELECT 1"))

    run_transaction(db, record)

    assert entries(db) == ["once"]
    assert len(backends) == 2
    assert backends[0] != backends[1]
    (span,) = transaction_spans(telemetry)
    assert attribute(span, "vrp.db.transaction.attempts") == 2
    assert attribute(span, "vrp.db.transaction.outcome") == "commit"
    (event,) = span.events
    assert event.attributes is not None
    assert event.attributes["error.type"] in {"57P01", "psycopg.OperationalError"}


@pytest.mark.postgres
def test_commit_answered_with_admin_shutdown_did_not_commit_and_is_retried(
    make_database: MakeDatabase, telemetry: InMemoryTelemetry, postgres_url: str
) -> None:
    db = open_fast_retrying(make_database, telemetry, postgres_url)
    calls = 0

    def record(session: Session) -> None:
        nonlocal calls
        calls += 1
        session.execute(sa.insert(ledger).values(entry="once"))
        pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        if calls == 1:
            # The backend dies before it reads COMMIT; it answers COMMIT with FATAL 57P01.
            sa.event.listen(
                session,
                "before_commit",
                lambda _session: terminate_backend(postgres_url, pid),
                once=True,
            )

    run_transaction(db, record)

    assert calls == 2
    assert entries(db) == ["once"]
    (span,) = transaction_spans(telemetry)
    assert attribute(span, "vrp.db.transaction.attempts") == 2
    assert attribute(span, "vrp.db.transaction.outcome") == "commit"
    (event,) = span.events
    assert event.attributes is not None
    assert event.attributes["error.type"] == "57P01"
    assert retries_counted(telemetry) == {"57P01": 1}
