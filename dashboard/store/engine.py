"""The store's engine: SQLite's pragmas and write lock, and WAL checkpoints from a thread.

PostgreSQL gets a plain pooled engine. A SQLite file gets WAL, relaxed fsync and ``BEGIN
IMMEDIATE`` for writers; readers opt out of the write lock with :data:`READ_OPTION`. A receiver
checkpoints the WAL beside its writer (:class:`Checkpointer`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from instrumentation.urls import with_default_driver

logger = logging.getLogger(__name__)

READ_OPTION: Final = "vrp_store_read"
WAL_AUTOCHECKPOINT_PAGES = 16000
# The checkpoint thread copies the WAL once it holds this much, looking every CHECKPOINT_EVERY_S.
CHECKPOINT_WAL_BYTES = 8 * 1024 * 1024
CHECKPOINT_EVERY_S = 0.05


def sqlite_file(url: sa.URL) -> str | None:
    """The path of the SQLite file ``url`` names; None for other databases, for in-memory
    ones and for ``file:`` URIs (whose path SQLite parses itself)."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def create_store_engine(url: str) -> sa.Engine:
    """An engine for ``url``; SQLite files get WAL, relaxed fsync and immediate write locks.

    ``BEGIN IMMEDIATE`` takes SQLite's write lock when a transaction starts, so two writers
    queue on ``busy_timeout`` instead of failing when one upgrades a read lock. Connections
    opened with :meth:`TelemetryStore.read` begin deferred and never take it.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(
            with_default_driver(parsed), pool_pre_ping=True, pool_size=8, max_overflow=8
        )
    database = sqlite_file(parsed)
    if database is not None:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        # A 64 MiB page cache and fewer, larger checkpoints: span inserts touch index pages
        # all over the file, and every checkpoint pays an fsync. A receiver copies the WAL
        # into the database from a thread of its own (TelemetryStore.start_checkpoints), so
        # the committing writer rarely reaches this threshold, which only bounds the WAL.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Readers (TelemetryStore.read) take a deferred BEGIN: in WAL mode it pins one snapshot
        # for the panel's queries without waiting behind the writer's lock.
        reading = conn.get_execution_options().get(READ_OPTION, False)
        conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")

    return engine


def is_deadlock(exc: BaseException) -> bool:
    """Whether ``exc`` is a deadlock or a busy lock between writers: another attempt may pass."""
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    code = getattr(exc.orig, "sqlstate", None)
    return code in ("40P01", "40001") or "database is locked" in str(exc.orig)


class Checkpointer:
    """``PRAGMA wal_checkpoint(PASSIVE)`` from a thread and connection of its own.

    A checkpoint run by the commit that crosses ``wal_autocheckpoint`` is paid by the writer
    thread, the receiver's bottleneck (3.5 us per span of the ingest benchmark); here it runs
    beside it, without the GIL while SQLite copies pages. A passive checkpoint takes no lock
    the writer or the readers wait for; it copies what is committed and leaves the rest to the
    next one, and to the writer's own checkpoint at :data:`WAL_AUTOCHECKPOINT_PAGES`.
    """

    def __init__(self, database: str) -> None:
        self._database = database
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telemetry-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        wal = Path(f"{self._database}-wal")
        connection = sqlite3.connect(self._database, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(CHECKPOINT_EVERY_S):
                try:
                    if wal.stat().st_size >= CHECKPOINT_WAL_BYTES:
                        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except (OSError, sqlite3.Error) as exc:
                    logger.debug("background checkpoint skipped: %s", type(exc).__name__)
        finally:
            connection.close()
