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

import functools
import itertools
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from dashboard import n_plus_one as n_plus_one_rules
from dashboard import rollups
from dashboard.levels import severity_text
from dashboard.otlp import SPAN_KIND_CLIENT, LogRecord, MetricPoint, SpanRecord
from dashboard.otlp_spans import SharedAttributes
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
from dashboard.store import schema_version
from dashboard.store.engine import (
    READ_OPTION,
    Checkpointer,
    create_store_engine,
    is_deadlock,
    sqlite_file,
)
from instrumentation import conventions as names

T = TypeVar("T")

SESSION_SPAN = names.DB_SESSION_SPAN
BACKUP_SPAN = names.BACKUP_RUN_SPAN
# Slowest statements kept per (service, summary) and minute / hour: a 6-hour range reads at most
# 360 rows per summary, a 30-day one 2,160, whatever the volume.
EXAMPLES_PER_GROUP = {rollups.MINUTE: 1, rollups.HOUR: 3}
_MOST_EXAMPLES = max(EXAMPLES_PER_GROUP.values())
_MINUTE_NS = rollups.MINUTE * 1_000_000_000


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
        examples_, groups = _example_rows(records)
        findings, deferred = _n_plus_one_rows(records)
        rows = [_span_row(r) for r in records]
        return PreparedSpans(
            series_ids=series_ids,
            rows=rows,
            sqlite_statements=[] if self.is_postgresql else _sqlite_span_statements(rows),
            rollups=rollups.aggregate_spans(records, series_ids),
            examples=examples_,
            example_groups=groups,
            backup_runs=_backup_rows(records),
            n_plus_one=findings,
            deferred_sessions=deferred,
            services=_latest_span_ends(records),
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
                    _merged_rollups([p.rollups for p in prepared]),
                    [row for p in prepared for row in p.examples],
                    {key: group for p in prepared for key, group in p.example_groups.items()},
                    [row for p in prepared for row in p.backup_runs],
                    [row for p in prepared for row in p.n_plus_one],
                    [session for p in prepared for session in p.deferred_sessions],
                    _merged_latest([p.services for p in prepared]),
                )
                return total
            new, series_ids = self._insert_new_spans(conn, prepared)
            if not new:
                return 0
            examples_, groups = _example_rows(new)
            findings, deferred = _n_plus_one_rows(new)
            self._write_derived(
                conn,
                rollups.aggregate_spans(new, series_ids),
                examples_,
                groups,
                _backup_rows(new),
                findings,
                deferred,
                _latest_span_ends(new),
            )
            return len(new)

        return self.transaction(work)

    def _write_derived(
        self,
        conn: sa.Connection,
        aggs: dict[rollups.RollupKey, rollups.RollupCell],
        example_rows: list[dict[str, Any]],
        example_groups: dict[tuple[int, str, str, int], dict[str, Any]],
        backup_rows: list[dict[str, Any]],
        findings: list[dict[str, Any]],
        deferred_sessions: list[SpanRecord],
        services: dict[tuple[str, str], int],
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
            _sqlite_execute(
                conn.connection.driver_connection,
                [
                    *_sqlite_example_statements(example_rows),
                    *_sqlite_trim_statements(sorted(example_groups)),
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
        _sqlite_execute(driver, (item for p in prepared for item in p.sqlite_statements))
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
        by_key: dict[tuple[str, str], tuple[SpanRecord, int, tuple[Any, ...]]] = {}
        for p in prepared:
            for series_id, row in zip(p.series_ids, p.rows, strict=True):
                by_key[(row[0], row[1])] = (_record_of_row(row), series_id, row)
        if self.is_postgresql:
            statement = (
                insert_for(self.engine, spans)
                .on_conflict_do_nothing()
                .returning(spans.c.trace_id, spans.c.span_id)
            )
            rows = [_span_params(row) for _, _, row in by_key.values()]
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
                _sqlite_execute(driver, _sqlite_span_statements([row for _, _, row in new]))
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
            self._touch_services(
                conn, _latest_seen((r.service, "logs", r.time_ns) for r in records)
            )
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
                conn, _latest_seen((p.service, "metrics", p.time_ns) for p in points)
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
            finding = _n_plus_one_finding(session, statements)
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

    def _touch_services(self, conn: sa.Connection, latest: dict[tuple[str, str], int]) -> None:
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
    rows: list[tuple[Any, ...]]
    # The rows as multi-row INSERT statements with their parameters (SQLite stores only).
    sqlite_statements: list[tuple[str, list[Any]]]
    rollups: dict[rollups.RollupKey, rollups.RollupCell]
    examples: list[dict[str, Any]]
    # (resolution, service, summary, start_s) -> the bind parameters that trim the group
    example_groups: dict[tuple[int, str, str, int], dict[str, Any]]
    backup_runs: list[dict[str, Any]]
    n_plus_one: list[dict[str, Any]]
    # Sessions whose statements are not all in the records: checked against the stored trace.
    deferred_sessions: list[SpanRecord]
    services: dict[tuple[str, str], int]


def _latest_seen(seen: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str], int]:
    latest: dict[tuple[str, str], int] = {}
    for service, source, time_ns in seen:
        key = (service, source)
        if time_ns > latest.get(key, 0):
            latest[key] = time_ns
    return latest


def _latest_span_ends(records: Iterable[SpanRecord]) -> dict[tuple[str, str], int]:
    """:func:`_latest_seen` of spans, spelled out: it runs for every span."""
    latest: dict[str, int] = {}
    for record in records:
        end = record.end_ns
        if end > latest.get(record.service, 0):
            latest[record.service] = end
    return {(service, "spans"): end for service, end in latest.items()}


def _merged_latest(parts: Sequence[dict[tuple[str, str], int]]) -> dict[tuple[str, str], int]:
    if len(parts) == 1:
        return parts[0]
    return _latest_seen((s, src, t) for part in parts for (s, src), t in part.items())


def _merged_rollups(
    parts: Sequence[dict[rollups.RollupKey, rollups.RollupCell]],
) -> dict[rollups.RollupKey, rollups.RollupCell]:
    """The sum of several requests' rollups, leaving theirs untouched (a request may be
    written again alone if its group fails)."""
    if len(parts) == 1:
        return parts[0]
    merged: dict[rollups.RollupKey, rollups.RollupCell] = {}
    for part in parts:
        for key, agg in part.items():
            total = merged.get(key)
            if total is None:
                total = merged[key] = rollups.RollupCell()
            total.merge(agg)
    return merged


def _example_rows(
    records: Iterable[SpanRecord],
) -> tuple[list[dict[str, Any]], dict[tuple[int, str, str, int], dict[str, Any]]]:
    """The slowest few statements per (service, summary) and minute, and hour, of ``records``,
    and the groups they touch (trimmed back to :data:`EXAMPLES_PER_GROUP` once inserted).

    This runs for every span: statements are grouped once, per minute, and each hour's slowest
    are taken from the slowest of its minutes. Of statements as slow as each other, the first
    in ``records`` is kept.
    """
    minutes: dict[tuple[str, str, int], list[tuple[int, int, SpanRecord, str]]] = {}
    for index, record in enumerate(records):
        if record.kind != SPAN_KIND_CLIENT:
            continue
        attrs = record.attributes
        text = attrs.get(names.DB_QUERY_TEXT)
        if isinstance(text, str):
            summary = str(attrs.get(names.DB_QUERY_SUMMARY) or record.name)
            key = (record.service, summary, record.start_ns // _MINUTE_NS * rollups.MINUTE)
            members = minutes.get(key)
            if members is None:
                members = minutes[key] = []
            members.append((record.end_ns - record.start_ns, -index, record, text))
    rows: list[dict[str, Any]] = []
    touched: dict[tuple[int, str, str, int], dict[str, Any]] = {}
    if not minutes:
        return rows, touched
    for members in minutes.values():
        members.sort(reverse=True)
        del members[_MOST_EXAMPLES:]
    for resolution, keep in EXAMPLES_PER_GROUP.items():
        groups = minutes
        if resolution != rollups.MINUTE:
            groups = {}
            for (service, summary, start_s), members in minutes.items():
                key = (service, summary, start_s // resolution * resolution)
                groups.setdefault(key, []).extend(members)
        for (service, summary, start_s), members in groups.items():
            if resolution != rollups.MINUTE:
                members.sort(reverse=True)
            touched[(resolution, service, summary, start_s)] = {
                "r": resolution,
                "service": service,
                "summary": summary,
                "start_s": start_s,
            }
            for duration, _, record, text in members[:keep]:
                rows.append(
                    {
                        "resolution": resolution,
                        "trace_id": record.trace_id,
                        "span_id": record.span_id,
                        "start_s": start_s,
                        "service": service,
                        "summary": summary,
                        "query_text": text,
                        "duration_ms": duration / 1e6,
                        "start_ns": record.start_ns,
                    }
                )
    return rows, touched


def _backup_rows(records: Iterable[SpanRecord]) -> list[dict[str, Any]]:
    rows = []
    for record in records:
        if record.name != BACKUP_SPAN:
            continue
        attrs = record.attributes
        rows.append(
            {
                "trace_id": record.trace_id,
                "span_id": record.span_id,
                "service": record.service,
                "backup_id": _text(attrs.get(names.VRP_BACKUP_ID)),
                "trigger": _text(attrs.get(names.VRP_BACKUP_TRIGGER)),
                "status": _text(attrs.get(names.VRP_BACKUP_STATUS)),
                "start_ns": record.start_ns,
                "duration_ms": (record.end_ns - record.start_ns) / 1e6,
                "bytes": _integer(attrs.get(names.VRP_BACKUP_BYTES)),
                "stored_bytes": _integer(attrs.get(names.VRP_BACKUP_STORED_BYTES)),
                "files": _integer(attrs.get(names.VRP_BACKUP_FILES)),
                "verified": attrs.get(names.VRP_BACKUP_VERIFIED)
                if isinstance(attrs.get(names.VRP_BACKUP_VERIFIED), bool)
                else None,
                "repository_id": _short_text(attrs.get(names.VRP_BACKUP_REPOSITORY_ID), 255),
                "database": _text(attrs.get(names.VRP_BACKUP_DATABASE)),
            }
        )
    return rows


def _n_plus_one_rows(
    records: Sequence[SpanRecord],
) -> tuple[list[dict[str, Any]], list[SpanRecord]]:
    """The N+1 findings (:mod:`dashboard.n_plus_one`) of the sessions in ``records``, and the
    sessions that need their stored trace to tell.

    Statement spans end before their session, so exporters send them in the same batch or
    an earlier one; when the records do not hold as many statements as the session says it
    ran (``vrp.db.session.statements``), the trace's stored spans must be read. A session
    that says it ran fewer statements than the threshold in all cannot have run one of them
    that often, and is not looked into (most sessions: this runs for every batch).
    """
    sessions = [
        r
        for r in records
        if r.name == SESSION_SPAN
        and not _fewer_than_threshold(r.attributes.get(names.VRP_DB_SESSION_STATEMENTS))
    ]
    if not sessions:
        return [], []
    children = n_plus_one_rules.children_of(records)
    findings = []
    deferred = []
    for session in sessions:
        statements = n_plus_one_rules.statements_below(session.span_id, children)
        declared = session.attributes.get(names.VRP_DB_SESSION_STATEMENTS)
        seen = sum(len(ids) for ids in statements.values())
        most = max((len(ids) for ids in statements.values()), default=0)
        if most < n_plus_one_rules.THRESHOLD and (
            not isinstance(declared, int)
            or (declared >= n_plus_one_rules.THRESHOLD and seen < declared)
        ):
            deferred.append(session)
            continue
        finding = _n_plus_one_finding(session, statements)
        if finding is not None:
            findings.append(finding)
    return findings, deferred


def _fewer_than_threshold(declared: Any) -> bool:
    return isinstance(declared, int) and declared < n_plus_one_rules.THRESHOLD


def _n_plus_one_finding(
    session: SpanRecord, statements: dict[str, list[str]]
) -> dict[str, Any] | None:
    found = n_plus_one_rules.most_repeated(statements)
    if found is None:
        return None
    return {
        "trace_id": session.trace_id,
        "session_span_id": session.span_id,
        "query_text": found.query_text,
        "count": found.count,
        "service": session.service,
        "start_ns": session.start_ns,
    }


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


# 100 rows of 9 values stay under SQLite's oldest limit of 999 bound values.
_EXAMPLE_ROWS_PER_INSERT = 100
_EXAMPLE_COLUMNS = tuple(column.name for column in examples.columns)


@functools.cache
def _sqlite_insert_example_sql(rows: int) -> str:
    row = f"({', '.join('?' for _ in _EXAMPLE_COLUMNS)})"
    return (
        f"INSERT OR IGNORE INTO {examples.name} ({', '.join(_EXAMPLE_COLUMNS)}) "
        f"VALUES {', '.join([row] * rows)}"
    )


def _sqlite_example_statements(rows: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    statements = []
    for start in range(0, len(rows), _EXAMPLE_ROWS_PER_INSERT):
        chunk = rows[start : start + _EXAMPLE_ROWS_PER_INSERT]
        values = [row[column] for row in chunk for column in _EXAMPLE_COLUMNS]
        statements.append((_sqlite_insert_example_sql(len(chunk)), values))
    return statements


# 200 groups of 4 values stay under SQLite's oldest limit of 999 bound values.
_TRIM_GROUPS_PER_STATEMENT = 200


@functools.cache
def _sqlite_trim_sql(groups: int) -> str:
    """Delete the rows of ``groups`` example groups beyond their slowest few, in one statement.

    A row goes when at least as many rows of its group as the group keeps are slower
    (``RANK() > keep``): rows as slow as the last one kept stay, as with :func:`_trim_examples`.
    """
    keep = " ".join(f"WHEN {r} THEN {k}" for r, k in EXAMPLES_PER_GROUP.items())
    groups_sql = ", ".join(["(?, ?, ?, ?)"] * groups)
    table = examples.name
    # The table's name and the CASE's integers are this module's own; values go as parameters.
    return (
        f"WITH touched (resolution, service, summary, start_s) AS (VALUES {groups_sql}) "
        f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM (SELECT e.rowid AS rowid, "
        "e.resolution AS resolution, RANK() OVER (PARTITION BY e.resolution, e.summary, "
        "e.service, e.start_s ORDER BY e.duration_ms DESC) AS place "
        f"FROM touched CROSS JOIN {table} AS e ON e.resolution = touched.resolution "
        "AND e.summary = touched.summary AND e.service = touched.service "
        "AND e.start_s = touched.start_s) "
        f"WHERE place > CASE resolution {keep} END)"  # nosec B608
    )


def _sqlite_trim_statements(
    groups: Sequence[tuple[int, str, str, int]],
) -> list[tuple[str, list[Any]]]:
    return [
        (_sqlite_trim_sql(len(chunk)), list(itertools.chain.from_iterable(chunk)))
        for chunk in (
            groups[i : i + _TRIM_GROUPS_PER_STATEMENT]
            for i in range(0, len(groups), _TRIM_GROUPS_PER_STATEMENT)
        )
    ]


_TRIM_EXAMPLES = {
    resolution: _trim_examples(keep) for resolution, keep in EXAMPLES_PER_GROUP.items()
}
_SPAN_COLUMNS = tuple(column.name for column in spans.columns)
# A span row holds these; duration_ms and is_root are derived from them (_span_params, and
# SQLite computes them itself, _sqlite_insert_span_sql: two values fewer to bind per span).
_ROW_FIELDS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "service",
    "name",
    "kind",
    "start_ns",
    "end_ns",
    "status_code",
    "status_message",
    "attributes",
    "events",
    "links",
)
# Rows per INSERT statement, at most (SQLite allows 32,766 bound values since 3.32, 999
# before): a group of up to 2,730 spans goes in one statement, one wait for the GIL.
_SQLITE_ROWS_PER_INSERT = 4096


def _sqlite_row_sql(row: int) -> str:
    """The values of row ``row`` (from 0) of a multi-row INSERT, in the order of the columns.

    ``(end_ns - start_ns) / 1e6`` is the same double in SQLite as in Python: both convert the
    integer difference to the nearest double and divide by 1e6.
    """
    n = {field: f"?{row * len(_ROW_FIELDS) + i}" for i, field in enumerate(_ROW_FIELDS, 1)}
    values = dict(n)
    values["duration_ms"] = f"({n['end_ns']} - {n['start_ns']}) / 1e6"
    values["is_root"] = f"{n['parent_span_id']} IS NULL"
    return f"({', '.join(values[column] for column in _SPAN_COLUMNS)})"


@functools.cache
def _sqlite_insert_span_sql(rows: int) -> str:
    return (
        f"INSERT OR IGNORE INTO {spans.name} ({', '.join(_SPAN_COLUMNS)}) "
        f"VALUES {', '.join(_sqlite_row_sql(row) for row in range(rows))}"
    )


@functools.cache
def _sqlite_rows_per_insert() -> int:
    connection = sqlite3.connect(":memory:")
    try:
        limit = connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    finally:
        connection.close()
    return min(_SQLITE_ROWS_PER_INSERT, limit // len(_ROW_FIELDS))


def _sqlite_span_statements(rows: Sequence[tuple[Any, ...]]) -> list[tuple[str, list[Any]]]:
    """``INSERT OR IGNORE`` statements of many rows each, with their flat parameter lists.

    ``executemany`` gives up the GIL and takes it back around every row; while the request
    threads decode bodies, taking it back waits for them, and the writer, which is the
    bottleneck, crawls (8,192 rows: 20 ms alone, 70 ms next to one busy Python thread in a
    microbenchmark). A statement of many rows gives it up once for all of them, and costs
    less CPU besides (9.0 against 10.3 us per span at 256 rows). The receiver builds them on
    the request's thread (:meth:`TelemetryStore.prepare_spans`).
    """
    per_statement = _sqlite_rows_per_insert()
    return [
        (
            _sqlite_insert_span_sql(len(chunk)),
            list(itertools.chain.from_iterable(chunk)),
        )
        for chunk in (rows[i : i + per_statement] for i in range(0, len(rows), per_statement))
    ]


def _sqlite_execute(driver: Any, statements: Iterable[tuple[str, list[Any]]]) -> None:
    cursor = driver.cursor()
    try:
        for sql, parameters in statements:
            cursor.execute(sql, parameters)
    finally:
        cursor.close()


def _record_of_row(row: tuple[Any, ...]) -> SpanRecord:
    """The inverse of :func:`_span_row`."""
    links = orjson.loads(row[12]) if row[12] != "[]" else ()
    return SpanRecord(*row[:10], orjson.loads(row[10]), orjson.loads(row[11]), links)


def _span_params(row: tuple[Any, ...]) -> dict[str, Any]:
    """A row as SQLAlchemy's parameters, with the values derived from it."""
    params = dict(zip(_ROW_FIELDS, row, strict=True))
    params["duration_ms"] = (params["end_ns"] - params["start_ns"]) / 1e6
    params["is_root"] = params["parent_span_id"] is None
    return params


def _span_row(record: SpanRecord) -> tuple[Any, ...]:
    """The span's values in the order of :data:`_ROW_FIELDS`: the record's first ten fields,
    then its attributes, events and links as JSON text."""
    attributes = record.attributes
    return (
        record.trace_id,
        record.span_id,
        record.parent_span_id,
        record.service,
        record.name,
        record.kind,
        record.start_ns,
        record.end_ns,
        record.status_code,
        record.status_message,
        attributes.json
        if type(attributes) is SharedAttributes
        else orjson.dumps(attributes).decode(),
        orjson.dumps(record.events).decode() if record.events else "[]",
        orjson.dumps(record.links).decode() if record.links else "[]",
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _short_text(value: Any, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
