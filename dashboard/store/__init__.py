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
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from dashboard import n_plus_one as n_plus_one_rules
from dashboard import rollups
from dashboard.levels import severity_text
from dashboard.otlp import LogRecord, MetricPoint, SpanRecord
from dashboard.rollup_cache import RollupCache
from dashboard.schema import (
    backup_runs,
    examples,
    insert_for,
    logs,
    n_plus_one,
    services_seen,
    spans,
)
from dashboard.store import schema_version, sqlite_sql
from dashboard.store.derived_rows import (
    EXAMPLES_PER_GROUP,
    ExampleGroup,
    LatestSeen,
    backup_rows,
    example_rows,
    latest_seen,
    latest_span_ends,
    merged_latest,
    merged_rollups,
    n_plus_one_finding,
    n_plus_one_rows,
)
from dashboard.store.engine import (
    READ_OPTION,
    Checkpointer,
    create_store_engine,
    is_deadlock,
    sqlite_file,
)
from dashboard.store.span_rows import SpanRow, record_of_row, span_params, span_row
from dashboard.store.sqlite_sql import Statement

T = TypeVar("T")


class TelemetryStore:
    """Batched writes of OTLP records, and the engine the queries read through."""

    def __init__(self, url: str, *, engine: sa.Engine | None = None) -> None:
        self.url = url
        self.engine = engine or create_store_engine(url)
        self.is_postgresql = self.engine.dialect.name == "postgresql"
        # SQLite has one writer at a time: queue this process's writers here, not on the file.
        self._write_lock: threading.Lock | None = None if self.is_postgresql else threading.Lock()
        self.series = rollups.SeriesCatalog(self)
        self.rollup_cache: RollupCache | None = None
        if not self.is_postgresql:
            self.rollup_cache = RollupCache()
            sa.event.listen(self.engine, "commit", self._count_commit)
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
        series_ids = self.series.resolve_spans(records)
        examples_, groups = example_rows(records)
        findings, deferred = n_plus_one_rows(records)
        rows = [span_row(r) for r in records]
        return PreparedSpans(
            series_ids=series_ids,
            rows=rows,
            sqlite_statements=[] if self.is_postgresql else sqlite_sql.span_statements(rows),
            rollups=rollups.aggregate_spans(records, series_ids),
            examples=examples_,
            example_groups=groups,
            backup_runs=backup_rows(records),
            n_plus_one=findings,
            deferred_sessions=deferred,
            services=latest_span_ends(records),
        )

    def write_spans(self, records: Sequence[SpanRecord]) -> int:
        """Store spans not stored yet, with their rollups; return how many were new."""
        if not records:
            return 0
        return self.write_prepared_spans([self.prepare_spans(records)])

    def write_prepared_spans(self, prepared: Sequence[PreparedSpans]) -> int:
        """:meth:`write_spans` of the records ``prepared`` was made of, in one transaction.

        What :meth:`prepare_spans` derived is used as it is when every span turns out new,
        which is the usual case; otherwise it is derived again from the new spans alone.
        """
        total = sum(len(p.rows) for p in prepared)
        if not total:
            return 0

        def work(conn: sa.Connection) -> int:
            if self._insert_all_new(conn, prepared):
                self._write_derived(
                    conn,
                    merged_rollups([p.rollups for p in prepared]),
                    [row for p in prepared for row in p.examples],
                    {key: group for p in prepared for key, group in p.example_groups.items()},
                    [row for p in prepared for row in p.backup_runs],
                    [row for p in prepared for row in p.n_plus_one],
                    [session for p in prepared for session in p.deferred_sessions],
                    merged_latest([p.services for p in prepared]),
                )
                return total
            new, series_ids = self._insert_new_spans(conn, prepared)
            if not new:
                return 0
            examples_, groups = example_rows(new)
            findings, deferred = n_plus_one_rows(new)
            self._write_derived(
                conn,
                rollups.aggregate_spans(new, series_ids),
                examples_,
                groups,
                backup_rows(new),
                findings,
                deferred,
                latest_span_ends(new),
            )
            return len(new)

        return self.transaction(work)

    def _write_derived(
        self,
        conn: sa.Connection,
        aggs: dict[rollups.RollupKey, rollups.RollupCell],
        example_rows: list[dict[str, Any]],
        example_groups: dict[ExampleGroup, dict[str, Any]],
        backup_rows: list[dict[str, Any]],
        findings: list[dict[str, Any]],
        deferred_sessions: list[SpanRecord],
        services: LatestSeen,
    ) -> None:
        rollups.add_cells(conn, self, aggs)
        if example_rows and self.is_postgresql:
            conn.execute(insert_for(self.engine, examples).on_conflict_do_nothing(), example_rows)
            for resolution, trim in _TRIM_EXAMPLES.items():
                touched = [g for key, g in sorted(example_groups.items()) if key[0] == resolution]
                if touched:
                    conn.execute(trim, touched)
        elif example_rows:
            # Multi-row VALUES on the driver, not executemany: one step of SQLite, so the
            # writer gives up the GIL once (see dashboard.rollups.add_cells); not SQLAlchemy's
            # multi-values insert either, which compiles anew for every row count (10 ms).
            # The trim likewise: one statement for all groups, not one step per group.
            sqlite_sql.execute(
                conn.connection.driver_connection,
                [
                    *sqlite_sql.example_statements(example_rows),
                    *sqlite_sql.trim_statements(sorted(example_groups)),
                ],
            )
        if backup_rows:
            conn.execute(insert_for(self.engine, backup_runs).on_conflict_do_nothing(), backup_rows)
        findings = findings + self._stored_n_plus_one(conn, deferred_sessions)
        if findings:
            conn.execute(insert_for(self.engine, n_plus_one).on_conflict_do_nothing(), findings)
        self._touch_services(conn, services)

    def _insert_all_new(self, conn: sa.Connection, prepared: Sequence[PreparedSpans]) -> bool:
        """On SQLite, insert every row if none is stored yet and return True; else change nothing.

        This transaction holds the database's one write lock, so ``INSERT OR IGNORE`` under a
        savepoint and the count of rows it changed tell exactly whether all were new; usually
        they are, and if not the savepoint is undone. PostgreSQL always takes the exact path.
        """
        if self.is_postgresql:
            return False
        driver = conn.connection.driver_connection
        before = driver.total_changes
        conn.exec_driver_sql("SAVEPOINT new_spans")
        sqlite_sql.execute(driver, (item for p in prepared for item in p.sqlite_statements))
        if driver.total_changes - before == sum(len(p.rows) for p in prepared):
            conn.exec_driver_sql("RELEASE new_spans")
            return True
        conn.exec_driver_sql("ROLLBACK TO new_spans")
        conn.exec_driver_sql("RELEASE new_spans")
        return False

    def _insert_new_spans(
        self, conn: sa.Connection, prepared: Sequence[PreparedSpans]
    ) -> tuple[list[SpanRecord], list[int]]:
        """Insert the spans not stored yet; return them and their series ids.

        PostgreSQL: ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` tells which rows were new
        even with other writers at work. SQLite: this transaction holds the database's one
        write lock, so reading which keys exist and inserting the rest is just as exact.
        A span sent twice within the records counts once (its last copy).
        """
        by_key: dict[tuple[str, str], tuple[SpanRecord, int, SpanRow]] = {}
        for p in prepared:
            for series_id, row in zip(p.series_ids, p.rows, strict=True):
                by_key[(row[0], row[1])] = (record_of_row(row), series_id, row)
        if self.is_postgresql:
            statement = (
                insert_for(self.engine, spans)
                .on_conflict_do_nothing()
                .returning(spans.c.trace_id, spans.c.span_id)
            )
            rows = [span_params(row) for _, _, row in by_key.values()]
            new = [by_key[(row[0], row[1])] for row in conn.execute(statement, rows)]
        else:
            trace_ids = sorted({trace_id for trace_id, _ in by_key})
            existing: set[tuple[str, str]] = set()
            for start in range(0, len(trace_ids), 500):
                query = sa.select(spans.c.trace_id, spans.c.span_id).where(
                    spans.c.trace_id.in_(trace_ids[start : start + 500])
                )
                existing.update((row[0], row[1]) for row in conn.execute(query))
            new = [item for key, item in by_key.items() if key not in existing]
            if new:
                driver = conn.connection.driver_connection
                sqlite_sql.execute(driver, sqlite_sql.span_statements([row for _, _, row in new]))
        return [record for record, _, _ in new], [series_id for _, series_id, _ in new]

    def write_logs(self, records: Sequence[LogRecord]) -> int:
        if not records:
            return 0
        rows = [
            {
                "time_ns": r.time_ns,
                "service": r.service,
                "severity_number": r.severity_number,
                "severity_text": r.severity_text or severity_text(r.severity_number),
                "body": r.body,
                "trace_id": r.trace_id,
                "span_id": r.span_id,
                "attributes": orjson.dumps(r.attributes).decode(),
            }
            for r in records
        ]

        def work(conn: sa.Connection) -> int:
            conn.execute(logs.insert(), rows)
            self._touch_services(conn, latest_seen((r.service, "logs", r.time_ns) for r in records))
            return len(rows)

        return self.transaction(work)

    def write_metrics(self, points: Sequence[MetricPoint]) -> int:
        if not points:
            return 0
        self.series.resolve_points(points)

        def work(conn: sa.Connection) -> int:
            deltas = rollups.deltas_from_points(conn, self, points)
            rollups.add_cells(conn, self, rollups.aggregate_points(deltas, self.series))
            self._touch_services(
                conn, latest_seen((p.service, "metrics", p.time_ns) for p in points)
            )
            return len(points)

        return self.transaction(work)

    # -- derived tables -----------------------------------------------------------------------

    def _stored_n_plus_one(
        self, conn: sa.Connection, sessions: Sequence[SpanRecord]
    ) -> list[dict[str, Any]]:
        """N+1 findings of ``sessions`` whose statements must be read from the stored trace."""
        findings = []
        for session in sessions:
            statements = n_plus_one_rules.statements_below(
                session.span_id, self._trace_children(conn, session)
            )
            finding = n_plus_one_finding(session, statements)
            if finding is not None:
                findings.append(finding)
        return findings

    def _trace_children(
        self, conn: sa.Connection, session: SpanRecord
    ) -> dict[str, list[SpanRecord]]:
        children: dict[str, list[SpanRecord]] = defaultdict(list)
        query = sa.select(
            spans.c.span_id, spans.c.parent_span_id, spans.c.kind, spans.c.attributes
        ).where(spans.c.trace_id == session.trace_id)
        for span_id, parent, kind, attrs in conn.execute(query):
            if parent:
                record = SpanRecord(
                    session.trace_id,
                    span_id,
                    parent,
                    "",
                    "",
                    kind,
                    0,
                    0,
                    0,
                    "",
                    orjson.loads(attrs),
                    (),
                )
                children[parent].append(record)
        return children

    def _touch_services(self, conn: sa.Connection, latest: LatestSeen) -> None:
        if not latest:
            return
        statement = insert_for(self.engine, services_seen)
        statement = statement.on_conflict_do_update(
            index_elements=["service", "source"],
            set_={
                "last_seen_ns": sa.case(
                    (
                        statement.excluded.last_seen_ns > services_seen.c.last_seen_ns,
                        statement.excluded.last_seen_ns,
                    ),
                    else_=services_seen.c.last_seen_ns,
                )
            },
        )
        conn.execute(
            statement,
            [
                {"service": s, "source": src, "last_seen_ns": t}
                for (s, src), t in sorted(latest.items())
            ],
        )


@dataclass(slots=True)
class PreparedSpans:
    """What :meth:`TelemetryStore.write_spans` derives from a list of span records alone."""

    series_ids: list[int]
    rows: list[SpanRow]
    # The rows as multi-row INSERT statements with their parameters (SQLite stores only).
    sqlite_statements: list[Statement]
    rollups: dict[rollups.RollupKey, rollups.RollupCell]
    examples: list[dict[str, Any]]
    # (resolution, service, summary, start_s) -> the bind parameters that trim the group
    example_groups: dict[ExampleGroup, dict[str, Any]]
    backup_runs: list[dict[str, Any]]
    n_plus_one: list[dict[str, Any]]
    # Sessions whose statements are not all in the records: checked against the stored trace.
    deferred_sessions: list[SpanRecord]
    services: LatestSeen


_GROUP = sa.and_(
    examples.c.resolution == sa.bindparam("r"),
    examples.c.summary == sa.bindparam("summary"),
    examples.c.service == sa.bindparam("service"),
    examples.c.start_s == sa.bindparam("start_s"),
)
_KEPT = examples.alias("kept")


def _trim_examples(keep: int) -> sa.Delete:
    """Delete the rows of one example group beyond its ``keep`` slowest."""
    return examples.delete().where(
        _GROUP,
        examples.c.duration_ms
        < (
            sa.select(_KEPT.c.duration_ms)
            .where(
                _KEPT.c.resolution == sa.bindparam("r"),
                _KEPT.c.summary == sa.bindparam("summary"),
                _KEPT.c.service == sa.bindparam("service"),
                _KEPT.c.start_s == sa.bindparam("start_s"),
            )
            .order_by(_KEPT.c.duration_ms.desc())
            .limit(1)
            .offset(keep - 1)
            .scalar_subquery()
        ),
    )


_TRIM_EXAMPLES = {
    resolution: _trim_examples(keep) for resolution, keep in EXAMPLES_PER_GROUP.items()
}
