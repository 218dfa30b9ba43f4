from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from instrumentation.database import Database
from instrumentation.sqlite import READONLY_OPTION
from instrumentation.testing import InMemoryTelemetry
from tests.instrumentation.conftest import MakeDatabase


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'vrp.db'}"


def pragma(session: sa.orm.Session, name: str) -> object:
    return session.connection().exec_driver_sql(f"PRAGMA {name}").scalar_one()


def create_counter(db: Database) -> None:
    with db.session() as session:
        session.execute(sa.text("CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER)"))
        session.execute(sa.text("INSERT INTO counter (id, value) VALUES (1, 0)"))
        session.commit()


def counter_value(db: Database) -> int:
    with db.session() as session:
        return session.execute(sa.text("SELECT value FROM counter WHERE id = 1")).scalar_one()


def test_file_database_connections_get_the_pragmas(
    sqlite_url: str, make_database: MakeDatabase
) -> None:
    db = make_database(sqlite_url, sqlite_busy_timeout_ms=1234)

    with db.session() as session:
        settings = {
            name: pragma(session, name)
            for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
        }

    assert settings == {
        "journal_mode": "wal",
        "busy_timeout": 1234,
        "foreign_keys": 1,
        "synchronous": 1,
    }


def test_in_memory_database_shares_one_connection_with_foreign_keys_on(
    make_database: MakeDatabase,
) -> None:
    db = make_database("sqlite://")
    with db.session() as session:
        session.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        session.commit()

    def rows_seen_from_another_thread() -> list[int]:
        seen: list[int] = []

        def read() -> None:
            with db.session() as session:
                seen.extend(session.execute(sa.text("SELECT count(*) FROM t")).scalars())

        worker = threading.Thread(target=read)
        worker.start()
        worker.join()
        return seen

    assert isinstance(db.engine.pool, StaticPool)
    assert rows_seen_from_another_thread() == [0]
    with db.session() as session:
        assert pragma(session, "foreign_keys") == 1
        assert pragma(session, "journal_mode") == "memory"


def test_foreign_keys_are_enforced(sqlite_url: str, make_database: MakeDatabase) -> None:
    db = make_database(sqlite_url)
    with db.session() as session:
        session.execute(sa.text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        session.execute(sa.text("CREATE TABLE child (parent_id INTEGER REFERENCES parent(id))"))
        session.commit()

    with pytest.raises(sa.exc.IntegrityError), db.session() as session:
        session.execute(sa.text("INSERT INTO child (parent_id) VALUES (42)"))
        session.commit()


def test_savepoint_rollback_undoes_only_the_inner_part(
    sqlite_url: str, make_database: MakeDatabase
) -> None:
    db = make_database(sqlite_url)
    with db.session() as session:
        session.execute(sa.text("CREATE TABLE notes (body TEXT)"))
        session.commit()
    insert = sa.text("INSERT INTO notes (body) VALUES (:body)")

    with db.session() as session:
        session.execute(insert, {"body": "outer"})
        inner = session.begin_nested()
        session.execute(insert, {"body": "inner"})
        inner.rollback()
        session.execute(insert, {"body": "after"})
        session.commit()

    with db.session() as session:
        bodies = session.execute(sa.text("SELECT body FROM notes ORDER BY rowid")).scalars()
        assert list(bodies) == ["outer", "after"]


def test_ddl_is_transactional(sqlite_url: str, make_database: MakeDatabase) -> None:
    db = make_database(sqlite_url)

    with db.session() as session:
        session.execute(sa.text("CREATE TABLE doomed (id INTEGER)"))
        session.rollback()

    assert not sa.inspect(db.engine).has_table("doomed")


def test_a_released_savepoint_is_undone_by_the_outer_rollback(
    sqlite_url: str, make_database: MakeDatabase
) -> None:
    db = make_database(sqlite_url)
    create_counter(db)

    with db.session() as session:
        with session.begin_nested():
            session.execute(sa.text("UPDATE counter SET value = 99"))
        session.rollback()

    assert counter_value(db) == 0


def test_transactions_begin_immediate_unless_read_only(
    sqlite_url: str, make_database: MakeDatabase, telemetry: InMemoryTelemetry
) -> None:
    db = make_database(sqlite_url)

    with db.session() as session:
        session.execute(sa.text("SELECT 1"))
    with db.session() as session:
        session.connection(execution_options={READONLY_OPTION: True})
        session.execute(sa.text("SELECT 1"))

    begins = [s.attributes["db.query.text"] for s in telemetry.spans("BEGIN")]
    assert begins == ["BEGIN IMMEDIATE", "BEGIN"]


def test_concurrent_read_then_write_units_never_hit_a_locked_database(
    sqlite_url: str, make_database: MakeDatabase
) -> None:
    db = make_database(sqlite_url, pool_size=4)
    create_counter(db)
    threads, rounds = 4, 25
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def increment() -> None:
        start.wait()
        try:
            for _ in range(rounds):
                with db.session() as session:
                    # Read, pause so the threads interleave, then write from what was read: under
                    # DEFERRED most of these units fail at once with "database is locked".
                    value = session.execute(sa.text("SELECT value FROM counter")).scalar_one()
                    time.sleep(0.002)
                    session.execute(sa.text("UPDATE counter SET value = :v"), {"v": value + 1})
                    session.commit()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=increment) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    assert counter_value(db) == threads * rounds


def test_held_write_lock_fails_a_second_writer_promptly_with_a_tiny_busy_timeout(
    sqlite_url: str, make_database: MakeDatabase, telemetry: InMemoryTelemetry
) -> None:
    db = make_database(sqlite_url, sqlite_busy_timeout_ms=50)
    create_counter(db)

    with db.session() as holder:
        holder.execute(sa.text("UPDATE counter SET value = 1"))
        started = time.monotonic()
        with pytest.raises(sa.exc.OperationalError) as caught, db.session() as second:
            second.execute(sa.text("SELECT value FROM counter"))
        elapsed = time.monotonic() - started

    assert elapsed < 1
    assert isinstance(caught.value.orig, sqlite3.OperationalError)
    assert "database is locked" in str(caught.value.orig)
    failed_begin = telemetry.spans("BEGIN")[-1]
    assert failed_begin.attributes["error.type"] == "SQLITE_BUSY"


def test_read_only_unit_reads_committed_data_while_a_writer_holds_the_lock(
    sqlite_url: str, make_database: MakeDatabase
) -> None:
    db = make_database(sqlite_url, sqlite_busy_timeout_ms=50)
    create_counter(db)

    with db.session() as writer:
        writer.execute(sa.text("UPDATE counter SET value = 7"))
        with db.session() as reader:
            reader.connection(execution_options={READONLY_OPTION: True})
            seen = reader.execute(sa.text("SELECT value FROM counter")).scalar_one()
        writer.commit()

    assert seen == 0
    assert counter_value(db) == 7


def test_autocommit_connections_work_and_leave_later_transactions_real(
    sqlite_url: str, make_database: MakeDatabase
) -> None:
    db = make_database(sqlite_url, pool_size=1, max_overflow=0)
    create_counter(db)

    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("UPDATE counter SET value = 5")
    with db.session() as session:  # same pooled connection, isolation level reset
        session.execute(sa.text("UPDATE counter SET value = 6"))
        session.rollback()

    assert counter_value(db) == 5
