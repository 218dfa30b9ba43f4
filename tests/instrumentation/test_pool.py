from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from instrumentation.database import Database, PoolStatus
from instrumentation.testing import InMemoryTelemetry
from tests.instrumentation.conftest import MakeDatabase

POOL_LOGGER = "instrumentation.pool"


def connection_counts(telemetry: InMemoryTelemetry, pool_name: str) -> dict[str, int]:
    return {
        p.attributes["db.client.connection.state"]: p.value
        for p in telemetry.metric_points("db.client.connection.count")
        if p.attributes["db.client.connection.pool.name"] == pool_name
    }


def metric_value(telemetry: InMemoryTelemetry, name: str) -> int:
    return sum(p.value for p in telemetry.metric_points(name))


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def leak_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == POOL_LOGGER and "without being returned" in r.msg
    ]


def test_connection_count_moves_between_idle_and_used(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    assert connection_counts(telemetry, db.name) == {"idle": 1, "used": 0}

    with db.engine.connect():
        assert connection_counts(telemetry, db.name) == {"idle": 0, "used": 1}
        with db.engine.connect():
            assert connection_counts(telemetry, db.name) == {"idle": 0, "used": 2}

    assert connection_counts(telemetry, db.name) == {"idle": 2, "used": 0}
    assert db.pool_status() == PoolStatus(size=5, checked_out=0, overflow=0, checked_in=2)


def test_connection_max_is_published_once_per_pool_and_removed_on_dispose(
    database_url: str, make_database: MakeDatabase, telemetry: InMemoryTelemetry
) -> None:
    api = make_database(database_url, pool_size=3, max_overflow=2, pool_name="api")
    make_database(database_url, pool_size=1, max_overflow=0, pool_name="worker")
    api.ping()
    api.ping()

    maxima = {
        p.attributes["db.client.connection.pool.name"]: p.value
        for p in telemetry.metric_points("db.client.connection.max")
    }
    assert maxima == {"api": 5, "worker": 1}

    api.dispose()

    [api_max] = [
        p.value
        for p in telemetry.metric_points("db.client.connection.max")
        if p.attributes["db.client.connection.pool.name"] == "api"
    ]
    assert api_max == 0
    assert connection_counts(telemetry, "api") == {"idle": 0, "used": 0}


def test_wait_time_gets_a_point_per_checkout(db: Database, telemetry: InMemoryTelemetry) -> None:
    before = sum(p.count for p in telemetry.metric_points("db.client.connection.wait_time"))

    for _ in range(3):
        db.ping()

    [point] = telemetry.metric_points("db.client.connection.wait_time")
    assert dict(point.attributes) == {"db.client.connection.pool.name": db.name}
    assert point.count == before + 3


def test_wait_time_includes_waiting_for_a_busy_pool(
    database_url: str, make_database: MakeDatabase, telemetry: InMemoryTelemetry
) -> None:
    db = make_database(database_url, pool_size=1, max_overflow=0, pool_timeout=5)
    db.ping()
    held = db.engine.connect()
    threading.Timer(0.3, held.close).start()

    started = time.perf_counter()
    db.ping()
    waited = time.perf_counter() - started

    [point] = telemetry.metric_points("db.client.connection.wait_time")
    assert point.max >= 0.25
    assert point.max <= waited


def test_wait_time_is_still_measured_after_the_engine_swaps_its_pool(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    db.engine.dispose()

    db.ping()
    db.ping()

    [point] = telemetry.metric_points("db.client.connection.wait_time")
    assert point.count == 3  # the fixture's ping, then two on the new pool
    assert connection_counts(telemetry, db.name) == {"idle": 1, "used": 0}


def test_leaked_connection_is_logged_once_with_where_it_was_taken(
    database_url: str,
    make_database: MakeDatabase,
    telemetry: InMemoryTelemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = make_database(database_url, leak_seconds=0.2, pool_name="leaky")
    here = inspect.currentframe()
    taken_at = f"test_pool.py:{here.f_lineno + 1} in {here.f_code.co_name}"
    conn = db.engine.connect()
    try:
        wait_until(lambda: metric_value(telemetry, "vrp.db.connection.leaks") == 1)
        time.sleep(0.4)  # several more watcher ticks: still reported once
        records = leak_records(caplog)
        leaks = telemetry.metric_points("vrp.db.connection.leaks")
    finally:
        conn.close()

    [record] = records
    assert record.levelno == logging.WARNING
    assert record.pool_name == "leaky"
    assert record.held_seconds >= 0.2
    assert record.taken_at.endswith(taken_at)
    assert not hasattr(record, "stack")
    [point] = leaks
    assert (point.value, dict(point.attributes)) == (
        1,
        {"db.client.connection.pool.name": "leaky"},
    )


def test_leak_report_carries_the_stack_when_asked(
    database_url: str, make_database: MakeDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    db = make_database(database_url, leak_seconds=0.1, leak_stack=True)

    def take_and_forget() -> sa.Connection:
        return db.engine.connect()

    conn = take_and_forget()
    try:
        wait_until(lambda: bool(leak_records(caplog)))
    finally:
        conn.close()

    [record] = leak_records(caplog)
    assert "in take_and_forget" in record.taken_at
    assert "take_and_forget" in record.stack
    assert "test_leak_report_carries_the_stack_when_asked" in record.stack
    innermost = record.stack.rstrip().splitlines()[-2]  # its "File ..., line ..., in" line
    assert innermost.strip().endswith("in take_and_forget"), "library frames are trimmed"


def test_connection_returned_in_time_is_never_reported(
    db: Database, make_database: MakeDatabase, database_url: str, telemetry: InMemoryTelemetry
) -> None:
    quick = make_database(database_url, leak_seconds=0.2, pool_name="quick")

    for _ in range(5):
        with quick.session() as session:
            session.execute(sa.text("SELECT 1"))
    time.sleep(0.4)

    assert metric_value(telemetry, "vrp.db.connection.leaks") == 0


def test_leak_watcher_thread_starts_on_first_checkout_and_stops_on_dispose(
    database_url: str, make_database: MakeDatabase
) -> None:
    db = make_database(database_url, leak_seconds=0.2, pool_name="watched")

    def watchers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "instrumentation-leak-watch watched"]

    assert watchers() == []
    db.ping()
    [watcher] = watchers()
    assert watcher.daemon

    db.dispose()

    assert not watcher.is_alive()


@pytest.fixture
def kill_backend(postgres_url: str) -> Callable[[int], None]:
    url = postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)

    def kill(pid: int) -> None:
        admin = sa.create_engine(url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        admin.dispose()
        time.sleep(0.05)  # let the server close the socket

    return kill


def backend_pid(db: Database) -> int:
    with db.session() as session:
        return session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()


@pytest.mark.postgres
def test_pre_ping_replaces_a_connection_the_server_killed_while_idle(
    postgres_url: str,
    make_database: MakeDatabase,
    telemetry: InMemoryTelemetry,
    kill_backend: Callable[[int], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = make_database(postgres_url, pool_size=1, max_overflow=0, pool_name="pinged")
    first = backend_pid(db)

    kill_backend(first)
    second = backend_pid(db)

    assert second != first
    assert any(r.name == POOL_LOGGER and "invalidated" in r.getMessage() for r in caplog.records)
    assert connection_counts(telemetry, "pinged") == {"idle": 1, "used": 0}
    assert db.pool_status() == PoolStatus(size=1, checked_out=0, overflow=0, checked_in=1)


@pytest.mark.postgres
def test_connection_killed_while_checked_out_is_counted_out_once(
    postgres_url: str,
    make_database: MakeDatabase,
    telemetry: InMemoryTelemetry,
    kill_backend: Callable[[int], None],
) -> None:
    db = make_database(postgres_url, pool_name="killed")

    with pytest.raises(sa.exc.OperationalError), db.session() as session:
        pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        kill_backend(pid)
        session.execute(sa.text("SELECT 1"))

    assert connection_counts(telemetry, "killed") == {"idle": 0, "used": 0}
    db.ping()
    assert connection_counts(telemetry, "killed") == {"idle": 1, "used": 0}
