"""SQLite connection setup: WAL, busy timeout, foreign keys and transactions that are real.

Python 3.11's ``sqlite3`` runs in "legacy transaction control": it emits BEGIN only before
INSERT/UPDATE/DELETE, so SELECTs are not repeatable, DDL autocommits and a SAVEPOINT before the
first write lives outside any transaction. Following SQLAlchemy's documented workaround (SQLite
dialect docs, "Enabling Non-Legacy SQLite Transactional Modes"), every new connection gets
``isolation_level = None`` (the driver never emits BEGIN) and the engine's ``begin`` event emits
BEGIN itself. COMMIT and ROLLBACK still go through the driver.

The BEGIN rule. Every transaction starts with ``BEGIN IMMEDIATE``, which takes the write lock up
front. A DEFERRED transaction that reads and then writes has to upgrade its lock; when two do so
at once in WAL mode, the loser's snapshot is stale and SQLite answers SQLITE_BUSY immediately,
without waiting ``busy_timeout`` (the "deadlock on lock upgrade"). With IMMEDIATE, writers queue
on BEGIN, where ``busy_timeout`` applies, and a unit of work never fails half way because another
one wrote. The price is that read-only units queue behind writers too. A unit that only reads can
opt out with the connection execution option :data:`READONLY_OPTION`::

    session.connection(execution_options={READONLY_OPTION: True})  # before its first statement

which begins DEFERRED: in WAL mode such a reader never waits for writers, but if it writes after
all it may fail at once with "database is locked". PostgreSQL ignores the option.

One consequence to design around: a session that has begun a transaction holds the write lock
until it ends, so a *second, independent* session opened meanwhile in the same thread waits
``busy_timeout`` for a lock its own caller holds, then fails. Nest units of work through the
current session (as :mod:`instrumentation.transactions` does) or mark the inner one read-only.

With a tiny ``sqlite_busy_timeout_ms`` a held write lock makes BEGIN fail promptly with
``sqlite3.OperationalError: database is locked`` (wrapped by SQLAlchemy as
:class:`sqlalchemy.exc.OperationalError`), which is what the retry layer treats as transient.

These listeners are part of the engine's correctness, not telemetry: they stay on the engine when
the owning :class:`~instrumentation.database.Database` is disposed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.pool import Pool, QueuePool, StaticPool

from instrumentation.settings import DatabaseSettings

READONLY_OPTION = "vrp_readonly"
"""Connection execution option: ``True`` begins the transaction DEFERRED instead of IMMEDIATE."""


def is_memory_database(url: URL) -> bool:
    """Whether ``url`` names a private in-memory database rather than a file."""
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def engine_arguments(url: URL, settings: DatabaseSettings) -> tuple[type[Pool], dict[str, Any]]:
    """The pool class and ``create_engine`` keyword arguments for a SQLite ``url``.

    A file database gets a :class:`QueuePool` sized by ``settings`` (SQLAlchemy 2's default for
    file SQLite) and its parent directory is created. Pre-ping is off: a local file cannot drop
    the connection, so the ping would only add a query to every checkout. An in-memory database
    exists once per connection, so it gets a :class:`StaticPool` that shares the one connection
    (across threads too, which suits tests and tools, not concurrent serving).
    """
    connect_args: dict[str, Any] = {"timeout": settings.sqlite_busy_timeout_ms / 1000}
    if is_memory_database(url):
        connect_args["check_same_thread"] = False
        return StaticPool, {"connect_args": connect_args}
    if not url.query.get("uri"):
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
    return QueuePool, {
        "connect_args": connect_args,
        "pool_size": settings.pool_size,
        "max_overflow": settings.max_overflow,
        "pool_timeout": settings.pool_timeout,
        "pool_recycle": settings.pool_recycle,
        "pool_pre_ping": False,
    }


def install(engine: sa.Engine, settings: DatabaseSettings, *, file_database: bool) -> None:
    """Register the connect-time pragmas and the BEGIN rule on ``engine``."""
    busy_timeout = int(settings.sqlite_busy_timeout_ms)

    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL needs a lock and must wait like anything else.
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if file_database:
                cursor.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable in WAL mode except for the last transactions before a power loss.
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", _begin)


def _begin(conn: sa.Connection) -> None:
    options = conn.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        return
    dbapi_connection = conn.connection.driver_connection
    # SQLAlchemy's isolation-level reset (after a connection used an isolation_level option)
    # sets the driver back to legacy mode; put it back before emitting our own BEGIN.
    if dbapi_connection.isolation_level is not None:
        dbapi_connection.isolation_level = None
    conn.exec_driver_sql("BEGIN" if options.get(READONLY_OPTION) else "BEGIN IMMEDIATE")
