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

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from dashboard import rollups
from dashboard.errors import StoreError
from dashboard.otlp import SPAN_KIND_CLIENT, LogRecord, MetricPoint, SpanRecord
from dashboard.schema import (
    backup_runs,
    examples,
    insert_for,
    logs,
    n_plus_one,
    services_seen,
    spans,
)
from instrumentation import conventions as names

logger = logging.getLogger(__name__)
T = TypeVar("T")

VERSION_TABLE = "dashboard_alembic_version"
SESSION_SPAN = names.DB_SESSION_SPAN
BACKUP_SPAN = names.BACKUP_RUN_SPAN
N_PLUS_ONE_THRESHOLD = 5
# Slowest statements kept per (service, summary) and minute / hour: a 6-hour range reads at most
# 360 rows per summary, a 30-day one 2,160, whatever the volume.
EXAMPLES_PER_GROUP = {rollups.MINUTE: 1, rollups.HOUR: 3}


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "dashboard:migrations")
    config.set_main_option("version_table", VERSION_TABLE)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def create_store_engine(url: str) -> sa.Engine:
    """An engine for ``url``; SQLite files get WAL, relaxed fsync and immediate write locks.

    ``BEGIN IMMEDIATE`` takes SQLite's write lock when a transaction starts, so two writers
    queue on ``busy_timeout`` instead of failing when one upgrades a read lock.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        if parsed.drivername == "postgresql":
            # postgresql:// means psycopg 3 here, as in the rest of the project.
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_pre_ping=True, pool_size=8, max_overflow=8)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
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
        # all over the file, and every checkpoint pays an fsync.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA wal_autocheckpoint=4000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _is_deadlock(exc: BaseException) -> bool:
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    code = getattr(exc.orig, "sqlstate", None)
    return code in ("40P01", "40001") or "database is locked" in str(exc.orig)


class TelemetryStore:
    """Batched writes of OTLP records, and the engine the queries read through."""

    def __init__(self, url: str, *, engine: sa.Engine | None = None) -> None:
        self.url = url
        self.engine = engine or create_store_engine(url)
        self.is_postgresql = self.engine.dialect.name == "postgresql"
        # SQLite has one writer at a time: queue this process's writers here, not on the file.
        self._write_lock: threading.Lock | None = None if self.is_postgresql else threading.Lock()
        self.series = rollups.SeriesCatalog(self)

    # -- schema -------------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Create or upgrade the schema to the newest revision (idempotent)."""
        config = alembic_config()
        with self.engine.begin() as conn:
            if self.is_postgresql:
                # Receivers starting together on one PostgreSQL store upgrade one at a time.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(8050)"))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def check_current(self) -> None:
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        with self.engine.connect() as conn:
            current = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE}
            ).get_current_revision()
        if current != head:
            raise StoreError(
                f"telemetry store schema is at revision {current or 'none'}, this version "
                f"needs {head}: start the dashboard once to upgrade it"
            )

    def dispose(self) -> None:
        self.engine.dispose()

    # -- writing ------------------------------------------------------------------------------

    def transaction(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` in one write transaction, retried on deadlocks between writers."""

        @retry(
            retry=retry_if_exception(_is_deadlock),
            stop=stop_after_attempt(8),
            wait=wait_random_exponential(multiplier=0.02, max=1.0),
            reraise=True,
        )
        def attempt() -> T:
            if self._write_lock is None:
                with self.engine.begin() as conn:
                    return work(conn)
            with self._write_lock, self.engine.begin() as conn:
                return work(conn)

        return attempt()

    def prepare_spans(self, records: Sequence[SpanRecord]) -> list[tuple[tuple[Any, ...], int]]:
        """Each record's row and rollup series id, for :meth:`write_spans`.

        Callers may build them beforehand on their own thread (the receiver does, so that the
        one writer thread has less to do); series seen for the first time are created here, in
        their own short transaction.
        """
        series_ids = self.series.resolve_spans(records)
        return [(_span_row(r), s) for r, s in zip(records, series_ids, strict=True)]

    def write_spans(
        self,
        records: Sequence[SpanRecord],
        prepared: Sequence[tuple[tuple[Any, ...], int]] | None = None,
    ) -> int:
        """Store spans not stored yet, with their rollups; return how many were new."""
        if not records:
            return 0
        if prepared is None:
            prepared = self.prepare_spans(records)
        by_key = {(record.trace_id, record.span_id): record for record in records}
        rows = {(row[0], row[1]): row for row, _ in prepared}
        series_of = {(row[0], row[1]): series_id for row, series_id in prepared}

        def work(conn: sa.Connection) -> int:
            new = self._insert_new_spans(conn, by_key, rows)
            if not new:
                return 0
            series_ids = [series_of[(r.trace_id, r.span_id)] for r in new]
            rollups.apply(conn, self, rollups.aggregate_spans(new, series_ids))
            self._write_examples(conn, new)
            self._write_backup_runs(conn, new)
            self._detect_n_plus_one(conn, new)
            self._touch_services(conn, [(r.service, "spans", r.end_ns) for r in new])
            return len(new)

        return self.transaction(work)

    def _insert_new_spans(
        self,
        conn: sa.Connection,
        by_key: dict[tuple[str, str], SpanRecord],
        prepared: dict[tuple[str, str], tuple[Any, ...]],
    ) -> list[SpanRecord]:
        """Insert the spans not stored yet; return them.

        PostgreSQL: ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` tells which rows were new
        even with other writers at work. SQLite: this transaction holds the database's one
        write lock, so reading which keys exist and inserting the rest is just as exact, and
        a plain ``executemany`` on the driver costs a third of SQLAlchemy's multi-row insert.
        """
        if self.is_postgresql:
            statement = (
                insert_for(self.engine, spans)
                .on_conflict_do_nothing()
                .returning(spans.c.trace_id, spans.c.span_id)
            )
            rows = [dict(zip(_SPAN_COLUMNS, row, strict=True)) for row in prepared.values()]
            return [by_key[(row[0], row[1])] for row in conn.execute(statement, rows)]
        # Usually every span is new: INSERT OR IGNORE them all under a savepoint, and only if
        # SQLite reports fewer changes than rows, undo it and sort new from stored first.
        driver = conn.connection.driver_connection
        before = driver.total_changes
        conn.exec_driver_sql("SAVEPOINT new_spans")
        conn.exec_driver_sql(_SQLITE_INSERT_SPAN_OR_IGNORE, list(prepared.values()))
        if driver.total_changes - before == len(prepared):
            conn.exec_driver_sql("RELEASE new_spans")
            return list(by_key.values())
        conn.exec_driver_sql("ROLLBACK TO new_spans")
        conn.exec_driver_sql("RELEASE new_spans")
        trace_ids = sorted({trace_id for trace_id, _ in by_key})
        existing: set[tuple[str, str]] = set()
        for start in range(0, len(trace_ids), 500):
            query = sa.select(spans.c.trace_id, spans.c.span_id).where(
                spans.c.trace_id.in_(trace_ids[start : start + 500])
            )
            existing.update((row[0], row[1]) for row in conn.execute(query))
        new_keys = [key for key in by_key if key not in existing]
        if new_keys:
            conn.exec_driver_sql(_SQLITE_INSERT_SPAN, [prepared[key] for key in new_keys])
        return [by_key[key] for key in new_keys]

    def write_logs(self, records: Sequence[LogRecord]) -> int:
        if not records:
            return 0
        rows = [
            {
                "time_ns": r.time_ns,
                "service": r.service,
                "severity_number": r.severity_number,
                "severity_text": r.severity_text or _severity_name(r.severity_number),
                "body": r.body,
                "trace_id": r.trace_id,
                "span_id": r.span_id,
                "attributes": orjson.dumps(r.attributes).decode(),
            }
            for r in records
        ]

        def work(conn: sa.Connection) -> int:
            conn.execute(logs.insert(), rows)
            self._touch_services(conn, [(r.service, "logs", r.time_ns) for r in records])
            return len(rows)

        return self.transaction(work)

    def write_metrics(self, points: Sequence[MetricPoint]) -> int:
        if not points:
            return 0
        self.series.resolve_points(points)

        def work(conn: sa.Connection) -> int:
            deltas = rollups.deltas_from_points(conn, self, points)
            rollups.apply(conn, self, rollups.aggregate_points(deltas, self.series))
            self._touch_services(conn, [(p.service, "metrics", p.time_ns) for p in points])
            return len(points)

        return self.transaction(work)

    # -- derived tables -----------------------------------------------------------------------

    def _write_examples(self, conn: sa.Connection, records: Iterable[SpanRecord]) -> None:
        """Keep the slowest few statements per (service, summary) and minute, and hour.

        The batch's slowest few per group are inserted, then each touched group is trimmed
        back to :data:`EXAMPLES_PER_GROUP` rows.
        """
        statements = []
        for record in records:
            if record.kind != SPAN_KIND_CLIENT:
                continue
            text = record.attributes.get(names.DB_QUERY_TEXT)
            if isinstance(text, str):
                summary = str(record.attributes.get(names.DB_QUERY_SUMMARY) or record.name)
                statements.append((record, summary, text))
        if not statements:
            return
        rows = []
        touched: dict[int, list[dict[str, Any]]] = {}
        for resolution, keep in EXAMPLES_PER_GROUP.items():
            step = resolution * 1_000_000_000
            groups: dict[tuple[str, str, int], list[tuple[SpanRecord, str]]] = defaultdict(list)
            for record, summary, text in statements:
                key = (record.service, summary, record.start_ns // step * resolution)
                groups[key].append((record, text))
            for (service, summary, start_s), members in groups.items():
                members.sort(key=lambda m: m[0].end_ns - m[0].start_ns, reverse=True)
                touched.setdefault(resolution, []).append(
                    {"r": resolution, "service": service, "summary": summary, "start_s": start_s}
                )
                for record, text in members[:keep]:
                    rows.append(
                        {
                            "resolution": resolution,
                            "trace_id": record.trace_id,
                            "span_id": record.span_id,
                            "start_s": start_s,
                            "service": service,
                            "summary": summary,
                            "query_text": text,
                            "duration_ms": (record.end_ns - record.start_ns) / 1e6,
                            "start_ns": record.start_ns,
                        }
                    )
        conn.execute(insert_for(self.engine, examples).on_conflict_do_nothing(), rows)
        for resolution, groups_touched in touched.items():
            conn.execute(_TRIM_EXAMPLES[resolution], groups_touched)

    def _write_backup_runs(self, conn: sa.Connection, records: Iterable[SpanRecord]) -> None:
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
                }
            )
        if rows:
            conn.execute(insert_for(self.engine, backup_runs).on_conflict_do_nothing(), rows)

    def _detect_n_plus_one(self, conn: sa.Connection, records: Sequence[SpanRecord]) -> None:
        """Flag sessions that ran one statement text five or more times.

        Statement spans end before their session, so exporters send them in the same batch or
        an earlier one; when this batch does not hold as many statements as the session says
        it ran (``vrp.db.session.statements``), the trace's stored spans are read.
        """
        sessions = [r for r in records if r.name == SESSION_SPAN]
        if not sessions:
            return
        children: dict[str, list[SpanRecord]] = defaultdict(list)
        for record in records:
            if record.parent_span_id:
                children[record.parent_span_id].append(record)
        rows = []
        for session in sessions:
            counts = _statement_counts(session.span_id, children)
            declared = session.attributes.get(names.VRP_DB_SESSION_STATEMENTS)
            seen = sum(counts.values())
            needs_store = (max(counts.values(), default=0) < N_PLUS_ONE_THRESHOLD) and (
                not isinstance(declared, int)
                or (declared >= N_PLUS_ONE_THRESHOLD and seen < declared)
            )
            if needs_store:
                counts = _statement_counts(session.span_id, self._trace_children(conn, session))
            text, count = max(counts.items(), key=lambda item: item[1], default=("", 0))
            if count >= N_PLUS_ONE_THRESHOLD:
                rows.append(
                    {
                        "trace_id": session.trace_id,
                        "session_span_id": session.span_id,
                        "query_text": text,
                        "count": count,
                        "service": session.service,
                        "start_ns": session.start_ns,
                    }
                )
        if rows:
            conn.execute(insert_for(self.engine, n_plus_one).on_conflict_do_nothing(), rows)

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
                    [],
                )
                children[parent].append(record)
        return children

    def _touch_services(self, conn: sa.Connection, seen: Iterable[tuple[str, str, int]]) -> None:
        latest: dict[tuple[str, str], int] = {}
        for service, source, time_ns in seen:
            key = (service, source)
            if time_ns > latest.get(key, 0):
                latest[key] = time_ns
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


def _statement_counts(session_id: str, children: dict[str, list[SpanRecord]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    stack = list(children.get(session_id, ()))
    while stack:
        span = stack.pop()
        if span.kind == SPAN_KIND_CLIENT:
            text = span.attributes.get(names.DB_QUERY_TEXT)
            if isinstance(text, str):
                counts[text] += 1
        stack.extend(children.get(span.span_id, ()))
    return counts


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
_SPAN_COLUMNS = tuple(column.name for column in spans.columns)
_SQLITE_INSERT_SPAN_OR_IGNORE = (
    f"INSERT OR IGNORE INTO {spans.name} ({', '.join(_SPAN_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _SPAN_COLUMNS)})"
)
_SQLITE_INSERT_SPAN = (
    f"INSERT INTO {spans.name} ({', '.join(_SPAN_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _SPAN_COLUMNS)})"
)


def _span_row(record: SpanRecord) -> tuple[Any, ...]:
    """The span's values in the order of :data:`_SPAN_COLUMNS`."""
    return (
        record.trace_id,
        record.span_id,
        record.parent_span_id,
        record.service,
        record.name,
        record.kind,
        record.start_ns,
        record.end_ns,
        (record.end_ns - record.start_ns) / 1e6,
        record.status_code,
        record.status_message,
        record.parent_span_id is None,
        orjson.dumps(record.attributes).decode(),
        orjson.dumps(record.events).decode() if record.events else "[]",
    )


_SEVERITY_NAMES = (
    (21, "FATAL"),
    (17, "ERROR"),
    (13, "WARN"),
    (9, "INFO"),
    (5, "DEBUG"),
    (1, "TRACE"),
)


def _severity_name(number: int) -> str:
    for floor, name in _SEVERITY_NAMES:
        if number >= floor:
            return name
    return "UNSPECIFIED"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
