"""The write path: spans, logs and metrics into their tables and rollups, in one transaction.

The functions here run inside :meth:`TelemetryStore.transaction`, on its connection. A span is
inserted at most once, keyed by (trace id, span id); the rollups and derived tables count only
the spans that were new, so a batch delivered twice (an exporter retry, two receivers) is
stored and counted once. How the new spans are told apart is the dialect's
(:mod:`dashboard.store.span_inserts`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from dashboard import n_plus_one as n_plus_one_rules
from dashboard import rollups
from dashboard.levels import severity_text
from dashboard.otlp import LogRecord, MetricPoint, SpanRecord
from dashboard.schema import backup_runs, insert_for, logs, n_plus_one, services_seen, spans
from dashboard.store.derived_rows import (
    DerivedRows,
    LatestSeen,
    derive,
    latest_seen,
    merged,
    n_plus_one_finding,
)
from dashboard.store.span_rows import SpanRow, record_of_row, span_key, span_row
from dashboard.store.sqlite_sql import Statement

if TYPE_CHECKING:
    from dashboard.store import TelemetryStore


@dataclass(slots=True)
class PreparedSpans:
    """What :meth:`TelemetryStore.write_spans` derives from a list of span records alone."""

    series_ids: list[int]
    rows: list[SpanRow]
    # The rows as multi-row INSERT statements with their parameters (SQLite stores only).
    insert_statements: list[Statement]
    derived: DerivedRows


def prepare_spans(store: TelemetryStore, records: Sequence[SpanRecord]) -> PreparedSpans:
    """See :meth:`TelemetryStore.prepare_spans`."""
    series_ids = store.series.resolve_spans(records)
    rows = [span_row(r) for r in records]
    return PreparedSpans(
        series_ids=series_ids,
        rows=rows,
        insert_statements=store.span_inserts.span_statements(rows),
        derived=derive(records, series_ids),
    )


def insert_spans(
    conn: sa.Connection, store: TelemetryStore, prepared: Sequence[PreparedSpans]
) -> int:
    """Insert the spans of ``prepared`` not stored yet, with what they add to the rollups and
    derived tables; return how many were new.

    What :func:`prepare_spans` derived is used as it is when every span turns out new, which
    is the usual case; otherwise it is derived again from the new spans alone.
    """
    total = sum(len(p.rows) for p in prepared)
    statements = (statement for p in prepared for statement in p.insert_statements)
    if store.span_inserts.insert_if_all_new(conn, statements, total):
        _insert_derived(conn, store, merged([p.derived for p in prepared]))
        return total
    new, series_ids = _insert_new_spans(conn, store, prepared)
    if not new:
        return 0
    _insert_derived(conn, store, derive(new, series_ids))
    return len(new)


def log_rows(records: Sequence[LogRecord]) -> list[dict[str, Any]]:
    """The ``logs`` rows of ``records``."""
    return [
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


def insert_logs(
    conn: sa.Connection,
    store: TelemetryStore,
    records: Sequence[LogRecord],
    rows: list[dict[str, Any]],
) -> int:
    """Insert the :func:`log_rows` ``rows`` of ``records``; return how many."""
    conn.execute(logs.insert(), rows)
    touch_services(conn, store, latest_seen((r.service, "logs", r.time_ns) for r in records))
    return len(rows)


def insert_metrics(
    conn: sa.Connection, store: TelemetryStore, points: Sequence[MetricPoint]
) -> int:
    """Add ``points`` to the rollups (their series already resolved); return how many."""
    deltas = rollups.deltas_from_points(conn, store, points)
    rollups.add_cells(conn, store, rollups.aggregate_points(deltas, store.series))
    touch_services(conn, store, latest_seen((p.service, "metrics", p.time_ns) for p in points))
    return len(points)


def touch_services(conn: sa.Connection, store: TelemetryStore, latest: LatestSeen) -> None:
    """Move each service's last-seen time forward to ``latest`` (never back)."""
    if not latest:
        return
    statement = insert_for(store.engine, services_seen)
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


def _insert_new_spans(
    conn: sa.Connection, store: TelemetryStore, prepared: Sequence[PreparedSpans]
) -> tuple[list[SpanRecord], list[int]]:
    """Insert the spans not stored yet; return them and their series ids.

    A span sent twice within the records counts once (its last copy).
    """
    by_key: dict[tuple[str, str], tuple[int, SpanRow]] = {}
    for p in prepared:
        for series_id, row in zip(p.series_ids, p.rows, strict=True):
            by_key[span_key(row)] = (series_id, row)
    inserted = store.span_inserts.insert_new(conn, [row for _, row in by_key.values()])
    new = [by_key[key] for key in inserted]
    return [record_of_row(row) for _, row in new], [series_id for series_id, _ in new]


def _insert_derived(conn: sa.Connection, store: TelemetryStore, derived: DerivedRows) -> None:
    rollups.add_cells(conn, store, derived.rollups)
    if derived.examples:
        store.span_inserts.insert_examples(conn, derived.examples, derived.example_groups)
    if derived.backup_runs:
        conn.execute(
            insert_for(store.engine, backup_runs).on_conflict_do_nothing(), derived.backup_runs
        )
    findings = derived.n_plus_one + _stored_n_plus_one(conn, derived.deferred_sessions)
    if findings:
        conn.execute(insert_for(store.engine, n_plus_one).on_conflict_do_nothing(), findings)
    touch_services(conn, store, derived.services)


def _stored_n_plus_one(conn: sa.Connection, sessions: Sequence[SpanRecord]) -> list[dict[str, Any]]:
    """N+1 findings of ``sessions`` whose statements must be read from the stored trace."""
    findings = []
    for session in sessions:
        statements = n_plus_one_rules.statements_below(
            session.span_id, _trace_children(conn, session)
        )
        finding = n_plus_one_finding(session, statements)
        if finding is not None:
            findings.append(finding)
    return findings


def _trace_children(conn: sa.Connection, session: SpanRecord) -> dict[str, list[SpanRecord]]:
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
