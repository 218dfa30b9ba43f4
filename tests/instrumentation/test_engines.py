"""``instrument_engine`` on engines the application created, and units of work on a plain
``sessionmaker``: SQLite files, the real PostgreSQL and the real MariaDB (a real deadlock
between two connections, a real lock wait timeout)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from instrumentation import (
    instrument_engine,
    is_transient,
    run_transaction,
    transactional,
    uninstrument_engine,
)
from instrumentation.engines import instrumentation_of
from instrumentation.testing import InMemoryTelemetry

OPERATION_DURATION = "db.client.operation.duration"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def app_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """An engine built the way an application builds its own, with a fresh ``accounts`` table."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
    elif request.param == "postgresql":
        url = request.getfixturevalue("postgres_url").replace(
            "postgresql://", "postgresql+psycopg://", 1
        )
    else:
        url = request.getfixturevalue("mariadb_url")
    engine = sa.create_engine(url, pool_size=3, max_overflow=2)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS accounts"))
        conn.execute(sa.text("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER)"))
        conn.execute(sa.text("INSERT INTO accounts (id, balance) VALUES (1, 100), (2, 100)"))
    yield engine
    uninstrument_engine(engine)
    engine.dispose()


def test_an_apps_own_engine_gets_statement_spans_metrics_and_pool_metrics(
    app_engine: sa.Engine, telemetry: InMemoryTelemetry
) -> None:
    instrument_engine(
        app_engine,
        pool_name="app",
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    with app_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT balance FROM accounts WHERE id = 1")).scalar() == 100

    span = telemetry.span_named("SELECT accounts")
    system = app_engine.dialect.name
    expected = {"mysql": "mariadb"}.get(system, system)
    assert span.attributes is not None
    assert span.attributes["db.system.name"] == expected
    assert span.attributes["db.query.text"] == "SELECT balance FROM accounts WHERE id = 1"
    [duration] = telemetry.metric_points(OPERATION_DURATION)
    assert duration.attributes["db.query.summary"] == "SELECT accounts"
    assert {
        p.attributes["db.client.connection.state"]: p.value
        for p in telemetry.metric_points("db.client.connection.count")
    } == {"idle": 1, "used": 0}
    [maximum] = telemetry.metric_points("db.client.connection.max")
    assert maximum.value == 5
    [wait] = telemetry.metric_points("db.client.connection.wait_time")
    assert wait.count == 1


def test_uninstrument_takes_every_listener_and_the_pool_wrapper_off(
    app_engine: sa.Engine, telemetry: InMemoryTelemetry
) -> None:
    instrument_engine(app_engine, tracer_provider=telemetry.tracer_provider)
    assert "connect" in app_engine.pool.__dict__

    uninstrument_engine(app_engine)
    uninstrument_engine(app_engine)
    with app_engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))

    assert telemetry.spans() == []
    assert "connect" not in app_engine.pool.__dict__
    assert instrumentation_of(app_engine) is None


def test_the_wait_time_survives_a_pool_swap_by_dispose(
    tmp_path: Path, telemetry: InMemoryTelemetry
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'swap.db'}")
    instrument_engine(engine, meter_provider=telemetry.meter_provider)
    with engine.connect():
        pass
    engine.dispose()
    with engine.connect():
        pass

    [wait] = telemetry.metric_points("db.client.connection.wait_time")
    assert wait.count == 2
    uninstrument_engine(engine)
    engine.dispose()


def test_a_connection_held_too_long_is_reported_as_a_leak(
    app_engine: sa.Engine, telemetry: InMemoryTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    instrumented = instrument_engine(
        app_engine, leak_seconds=0.05, meter_provider=telemetry.meter_provider
    )
    with app_engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
        deadline = time.monotonic() + 5
        # The watch thread wakes every leak_seconds / 2 and reports the checkout once.
        while not telemetry.metric_points("vrp.db.connection.leaks"):
            assert time.monotonic() < deadline, "no leak reported within 5 s"
            time.sleep(0.02)
        assert instrumented.pool.report_leaks() == 0

    [leaks] = telemetry.metric_points("vrp.db.connection.leaks")
    assert leaks.value == 1
    assert any("held for" in record.getMessage() for record in caplog.records)


def _transfer(session: Session, source: int, target: int, pause: threading.Barrier) -> None:
    session.execute(
        sa.text("UPDATE accounts SET balance = balance - 10 WHERE id = :id"), {"id": source}
    )
    # Both units hold their first row before either asks for its second: one must be chosen as
    # the deadlock victim (only on its first attempt; the retry finds the other one gone).
    if not pause.broken:
        with contextlib.suppress(threading.BrokenBarrierError):
            pause.wait(timeout=5)
    session.execute(
        sa.text("UPDATE accounts SET balance = balance + 10 WHERE id = :id"), {"id": target}
    )


def test_a_real_mariadb_deadlock_is_retried_on_a_plain_sessionmaker(
    mariadb_url: str, telemetry: InMemoryTelemetry
) -> None:
    engine = sa.create_engine(mariadb_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS accounts"))
        conn.execute(
            sa.text("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER) ENGINE=InnoDB")
        )
        conn.execute(sa.text("INSERT INTO accounts (id, balance) VALUES (1, 100), (2, 100)"))
    instrument_engine(
        engine, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    factory = sessionmaker(engine)
    pause = threading.Barrier(2)
    errors: list[BaseException] = []

    def unit(source: int, target: int) -> None:
        try:
            run_transaction(factory, _transfer, source, target, pause)
        except BaseException as exc:
            errors.append(exc)

    workers = [
        threading.Thread(target=unit, args=(1, 2)),
        threading.Thread(target=unit, args=(2, 1)),
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)

    assert errors == []
    with engine.connect() as conn:
        balances = conn.execute(sa.text("SELECT balance FROM accounts ORDER BY id")).scalars()
        assert list(balances) == [100, 100]
    [retries] = telemetry.metric_points("vrp.db.transaction.retries")
    assert retries.attributes["error.type"] == "1213"
    assert retries.value == 1
    attempts = sorted(
        span.attributes["vrp.db.transaction.attempts"]  # type: ignore[index]
        for span in telemetry.spans("db.transaction")
    )
    assert attempts == [1, 2]
    uninstrument_engine(engine)
    engine.dispose()


def test_a_real_mariadb_lock_wait_timeout_is_transient(mariadb_url: str) -> None:
    engine = sa.create_engine(mariadb_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS accounts"))
        conn.execute(
            sa.text("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER) ENGINE=InnoDB")
        )
        conn.execute(sa.text("INSERT INTO accounts (id, balance) VALUES (1, 100)"))
    with engine.connect() as holder, engine.connect() as waiter:
        holder.execute(sa.text("SELECT balance FROM accounts WHERE id = 1 FOR UPDATE"))
        waiter.execute(sa.text("SET SESSION innodb_lock_wait_timeout = 1"))
        with pytest.raises(sa.exc.OperationalError) as caught:
            waiter.execute(sa.text("UPDATE accounts SET balance = 0 WHERE id = 1"))
        holder.rollback()
        waiter.rollback()

    assert caught.value.orig.args[0] == 1205  # type: ignore[union-attr]
    assert is_transient(caught.value)
    engine.dispose()


@transactional
def _deposit(session: Session, account: int, amount: int) -> int:
    session.execute(
        sa.text("UPDATE accounts SET balance = balance + :amount WHERE id = :id"),
        {"amount": amount, "id": account},
    )
    return int(
        session.execute(
            sa.text("SELECT balance FROM accounts WHERE id = :id"), {"id": account}
        ).scalar_one()
    )


def test_transactional_services_run_on_an_apps_own_sessionmaker(
    app_engine: sa.Engine, telemetry: InMemoryTelemetry
) -> None:
    instrument_engine(
        app_engine,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    factory = sessionmaker(app_engine)

    assert _deposit(factory, 1, 5) == 105
    with factory() as session:
        assert _deposit(session, 1, 5) == 110
        session.commit()

    [unit] = telemetry.spans("db.transaction")
    assert unit.attributes is not None
    assert unit.attributes["vrp.db.transaction.outcome"] == "commit"
    update = telemetry.span_named("UPDATE accounts")
    assert update.parent is not None
    assert update.parent.span_id == unit.context.span_id
