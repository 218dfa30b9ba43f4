"""The telemetry store: schema, engine, and batched writes of decoded OTLP records.

SQLAlchemy Core over SQLite (WAL, the default) or PostgreSQL (by URL). The schema is versioned
by Alembic scripts in ``dashboard/migrations`` with their own version table, so the store can
share a database with an application. Raw spans and logs are kept for a bounded time and count
(:mod:`dashboard.retention`); per-minute and per-hour rollups (:mod:`dashboard.rollups`) carry
the numbers the panels show, so a panel's cost does not grow with the span count.

Every request's records are written in one transaction: the raw rows (one multi-row INSERT),
then the rollups of the rows that were new. A span is keyed by (trace id, span id) and inserted
with ``ON CONFLICT DO NOTHING``, so a batch delivered twice (an exporter retry, two receivers)
is stored and counted once. Several receivers may write to one PostgreSQL store; a deadlock
between them is retried.

:class:`TelemetryStore` holds the engine and the transactions; the rest is in the modules:
:mod:`~dashboard.store.engine` (SQLite's pragmas and WAL checkpoints),
:mod:`~dashboard.store.schema_version` (Alembic), :mod:`~dashboard.store.writes` (the write
path), :mod:`~dashboard.store.derived_rows` (what a batch of spans adds besides its rows),
:mod:`~dashboard.store.span_rows` (a span as a row), :mod:`~dashboard.store.span_inserts`
(each dialect's way of inserting spans once) and :mod:`~dashboard.store.sqlite_sql` (the
hand-built SQLite statements).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import sqlalchemy as sa
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from dashboard import rollups
from dashboard.otlp import LogRecord, MetricPoint, SpanRecord
from dashboard.rollup_cache import RollupCache
from dashboard.store import schema_version, writes
from dashboard.store.engine import (
    READ_OPTION,
    Checkpointer,
    create_store_engine,
    is_deadlock,
    sqlite_file,
)
from dashboard.store.span_inserts import PostgresqlSpanInserts, SpanInserts, SqliteSpanInserts
from dashboard.store.writes import PreparedSpans

__all__ = ["PreparedSpans", "TelemetryStore"]

T = TypeVar("T")


class TelemetryStore:
    """Batched writes of OTLP records, and the engine the queries read through."""

    def __init__(self, url: str, *, engine: sa.Engine | None = None) -> None:
        self.url = url
        self.engine = engine or create_store_engine(url)
        self.is_postgresql = self.engine.dialect.name == "postgresql"
        if self.is_postgresql:
            self.span_inserts: SpanInserts = PostgresqlSpanInserts(self.engine)
            self._write_lock: threading.Lock | None = None
            self.rollup_cache: RollupCache | None = None
        else:
            self.span_inserts = SqliteSpanInserts()
            # SQLite has one writer at a time: queue this process's writers here, not on the file.
            self._write_lock = threading.Lock()
            self.rollup_cache = RollupCache()
            sa.event.listen(self.engine, "commit", self._count_commit)
        self.series = rollups.SeriesCatalog(self)
        self._checkpointer: Checkpointer | None = None
        self._checkpointer_lock = threading.Lock()

    def read(self) -> sa.Connection:
        """A connection for queries: on SQLite it reads a snapshot without the write lock."""
        return self.engine.connect().execution_options(**{READ_OPTION: True})

    # -- schema -------------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Create or upgrade the schema to the newest revision (idempotent)."""
        schema_version.upgrade(self.engine)

    def check_current(self) -> None:
        """Raise :class:`~dashboard.errors.StoreError` unless the schema is the newest."""
        schema_version.check_current(self.engine)

    def start_checkpoints(self) -> None:
        """On a SQLite file, checkpoint the WAL from a thread of its own (idempotent)."""
        database = sqlite_file(self.engine.url)
        if database is None:
            return
        with self._checkpointer_lock:
            if self._checkpointer is None:
                self._checkpointer = Checkpointer(database)

    def stop_checkpoints(self) -> None:
        with self._checkpointer_lock:
            checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()

    def dispose(self) -> None:
        self.stop_checkpoints()
        self.engine.dispose()

    # -- writing ------------------------------------------------------------------------------

    def transaction(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` in one write transaction, retried on deadlocks between writers."""

        @retry(
            retry=retry_if_exception(is_deadlock),
            stop=stop_after_attempt(8),
            wait=wait_random_exponential(multiplier=0.02, max=1.0),
            reraise=True,
        )
        def attempt() -> T:
            if self._write_lock is None:
                with self.engine.begin() as conn:
                    return work(conn)
            with self._write_lock:
                cache = self.rollup_cache
                try:
                    with self.engine.begin() as conn:
                        transaction = conn.get_transaction()
                        result = work(conn)
                except BaseException:
                    if cache is not None:
                        cache.discard()
                    raise
                if cache is not None:
                    cache.committed(transaction)
                return result

        return attempt()

    def _count_commit(self, _conn: sa.Connection) -> None:
        if self.rollup_cache is not None:
            self.rollup_cache.count_commit()

    def prepare_spans(self, records: Sequence[SpanRecord]) -> PreparedSpans:
        """Everything :meth:`write_spans` derives from ``records`` alone, computed beforehand.

        Callers may build it on their own thread (the receiver does, so that the one writer
        thread is left with the SQL): the rows, the rollups, the statement examples, backup
        runs, N+1 findings and services seen, all as if every record were new. It holds no
        reference to ``records``, which the caller may drop: the rows say all a record does.
        Series seen for the first time are created here, in their own short transaction.
        """
        return writes.prepare_spans(self, records)

    def write_spans(self, records: Sequence[SpanRecord]) -> int:
        """Store spans not stored yet, with their rollups; return how many were new."""
        if not records:
            return 0
        return self.write_prepared_spans([self.prepare_spans(records)])

    def write_prepared_spans(self, prepared: Sequence[PreparedSpans]) -> int:
        """:meth:`write_spans` of the records ``prepared`` was made of, in one transaction."""
        if not any(p.rows for p in prepared):
            return 0
        return self.transaction(lambda conn: writes.insert_spans(conn, self, prepared))

    def write_logs(self, records: Sequence[LogRecord]) -> int:
        """Store log records; return how many."""
        if not records:
            return 0
        rows = writes.log_rows(records)
        return self.transaction(lambda conn: writes.insert_logs(conn, self, records, rows))

    def write_metrics(self, points: Sequence[MetricPoint]) -> int:
        """Add metric points to the rollups; return how many."""
        if not points:
            return 0
        self.series.resolve_points(points)
        return self.transaction(lambda conn: writes.insert_metrics(conn, self, points))
