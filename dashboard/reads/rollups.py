"""Selecting series and reading their rollup rows: per time bucket, or totalled over a window.

What the panels and the alert rules share: both read the same series the same way, so that an
alert and the page that explains it agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from dashboard.reads.totals import RollupRow, RollupTotal, Series, explicit_histogram
from dashboard.reads.window import TimeRange
from dashboard.schema import rollup, series
from instrumentation import conventions as names

# Series ids per statement: the rows of more series are read in several.
SERIES_PER_QUERY = 500


def select_series(
    conn: sa.Connection,
    source: str,
    metric_names: Sequence[str] | None,
    service: str | None,
    span_kinds: Sequence[int] | None = None,
) -> list[Series]:
    """The series of ``source`` (``"span"``, ``"metric"`` or the service-wide ``"total"``),
    narrowed to ``metric_names``, ``service`` and ``span_kinds`` where given."""
    query = sa.select(series).where(series.c.source == source)
    if metric_names is not None:
        query = query.where(series.c.name.in_(metric_names))
    if service is not None:
        query = query.where(series.c.service == service)
    if span_kinds is not None:
        query = query.where(series.c.span_kind.in_(span_kinds))
    result = []
    for row in conn.execute(query).all():
        unit = row.unit or "s"
        result.append(
            Series(
                row.id,
                row.service,
                row.name,
                row.span_kind,
                orjson.loads(row.attributes),
                row.histogram,
                tuple(orjson.loads(row.bounds)) if row.bounds else (),
                1.0 if unit == "ms" else 1000.0,
            )
        )
    return result


_ROLLUP_COLUMNS = (
    rollup.c.series_id,
    rollup.c.start_s,
    rollup.c.count,
    rollup.c.sum,
    rollup.c.min,
    rollup.c.max,
    rollup.c.errors,
    rollup.c.client_errors,
    rollup.c.redirects,
    rollup.c.zero_count,
    rollup.c.bucket_offset,
    rollup.c.buckets,
    rollup.c.last_value,
    rollup.c.last_time,
    rollup.c.p50,
    rollup.c.p95,
    rollup.c.p99,
)


def read_rows(conn: sa.Connection, found: Sequence[Series], window: TimeRange) -> list[RollupRow]:
    """The non-empty rollup rows of ``found`` in the window, one per series and time bucket.

    Read as plain tuples: a 7-day panel reads hundreds of rows per call.
    """
    by_id = {s.id: s for s in found}
    ids = sorted(by_id)
    plan = [(window.resolution, window.first_bucket, window.last_bucket)]
    result: list[RollupRow] = []
    for start in range(0, len(ids), SERIES_PER_QUERY):
        query = sa.select(*_ROLLUP_COLUMNS).where(
            in_segments(ids[start : start + SERIES_PER_QUERY], plan), rollup.c.count > 0
        )
        for values in conn.execute(query).all():
            p50, p95, p99 = values[14:17]
            result.append(
                RollupRow(
                    by_id[values[0]],
                    *values[1:14],
                    None if p50 is None or p95 is None or p99 is None else (p50, p95, p99),
                )
            )
    return result


def window_totals(
    conn: sa.Connection, found: Sequence[Series], window: TimeRange, key: Callable[[Series], Any]
) -> dict[Any, RollupTotal]:
    """Totals over the window, along :meth:`TimeRange.total_plan`, of ``found`` grouped by ``key``.

    Counts, sums and extremes are added up by the database, one row per series; bucket arrays
    are read only for the groups whose percentiles cannot come from one row's precomputed ones,
    and added as they are read (a 1-hour range reads 60 minute rows per series).
    """
    by_id = {s.id: s for s in found}
    ids = sorted(by_id)
    plan = window.total_plan()
    aggregates = (
        rollup.c.series_id,
        sa.cast(sa.func.sum(rollup.c.count), sa.BigInteger),
        sa.cast(sa.func.sum(rollup.c.errors), sa.BigInteger),
        sa.cast(sa.func.sum(rollup.c.client_errors), sa.BigInteger),
        sa.cast(sa.func.sum(rollup.c.redirects), sa.BigInteger),
        sa.func.sum(rollup.c.sum),
        sa.func.min(rollup.c.min),
        sa.func.max(rollup.c.max),
        sa.cast(sa.func.sum(rollup.c.zero_count), sa.BigInteger),
        sa.func.count(),
        # With count() = 1 these are the one row's own values.
        sa.func.max(rollup.c.p50),
        sa.func.max(rollup.c.p95),
        sa.func.max(rollup.c.p99),
    )
    groups: dict[Any, RollupTotal] = defaultdict(RollupTotal)
    per_series: dict[int, tuple[Any, ...]] = {}
    for start in range(0, len(ids), SERIES_PER_QUERY):
        query = (
            sa.select(*aggregates)
            .where(in_segments(ids[start : start + SERIES_PER_QUERY], plan), rollup.c.count > 0)
            .group_by(rollup.c.series_id)
        )
        for values in conn.execute(query).all():
            sid, count, errors, client_errors, redirects, total, low, high = values[:8]
            zero, rows, p50, p95, p99 = values[8:]
            s = by_id[sid]
            acc = groups[key(s)]
            acc.count += count
            acc.errors += errors
            acc.client_errors += client_errors
            acc.redirects += redirects
            acc.sum += total
            acc.to_ms = s.to_ms
            if s.histogram == "exponential":
                single = rows == 1 and p50 is not None and p95 is not None and p99 is not None
                acc.add_exponential(rows, zero, low, high, (p50, p95, p99) if single else None)
            per_series[sid] = values
    # Where a bucket array goes as it is read: the group's sum for exponential series, the
    # series' own for explicit ones (their bounds may differ between series of one group). Zero
    # counts are taken from the same rows, so that a histogram is of one snapshot even where
    # the totals above were read from an earlier one (PostgreSQL's read committed).
    targets: dict[int, RollupTotal] = {}
    explicit: dict[int, RollupTotal] = {}
    mixed = {key(by_id[sid]) for sid in per_series if by_id[sid].histogram == "explicit"}
    for sid in per_series:
        s = by_id[sid]
        group = key(s)
        acc = groups[group]
        if s.histogram == "exponential" and (
            acc.exp_rows > 1 or acc.precomputed is None or group in mixed
        ):
            acc.zero_count = 0
            targets[sid] = acc
        elif s.histogram == "explicit":
            targets[sid] = explicit[sid] = RollupTotal()
    wanted = sorted(targets)
    for start in range(0, len(wanted), SERIES_PER_QUERY):
        query = sa.select(
            rollup.c.series_id, rollup.c.zero_count, rollup.c.bucket_offset, rollup.c.buckets
        ).where(in_segments(wanted[start : start + SERIES_PER_QUERY], plan), rollup.c.count > 0)
        # all(): one fetchall; iterating the result fetches row by row (0.25 us a row more).
        for sid, zero, offset, packed in conn.execute(query).all():
            acc = targets[sid]
            acc.zero_count += zero
            acc.buckets.add(offset, packed)
    for sid, summed in explicit.items():
        s = by_id[sid]
        _, count, _, _, _, total, low, high = per_series[sid][:8]
        groups[key(s)].explicit.append(
            explicit_histogram(
                s, summed.buckets.offset, summed.buckets.counts(), count, total, low, high
            )
        )
    return groups


def in_segments(ids: Sequence[int], plan: Sequence[tuple[int, int, int]]) -> sa.ColumnElement[bool]:
    """Rows of series ``ids`` in the plan's segments, each term a range of the primary key.

    The series test is repeated inside every term: with it outside the OR, SQLite searched the
    key by series alone and read all of a series' rows (every minute of 7 days: 0.9 ms against
    0.02 ms on the panels benchmark's 1,000,000-span store).
    """
    return sa.or_(
        *(
            sa.and_(
                rollup.c.series_id.in_(ids),
                rollup.c.resolution == r,
                rollup.c.start_s >= a,
                rollup.c.start_s <= b,
            )
            for r, a, b in plan
        )
    )


def service_of(found: Series) -> str:
    """The key of :func:`window_totals` that totals series per service."""
    return found.service


def duration_series(
    conn: sa.Connection,
    window: TimeRange,
    metric: str,
    span_kinds: Sequence[int],
    source: str = "metric",
) -> tuple[list[Series], list[Series]]:
    """Series of ``metric``, and span series of ``span_kinds`` for services without it."""
    metric_series = select_series(conn, source, [metric], window.service)
    with_metric = {s.service for s in metric_series}
    span_series = [
        s
        for s in select_series(conn, "span", None, window.service, span_kinds)
        if s.service not in with_metric
    ]
    return metric_series, span_series


def operation_name(attributes: dict[str, Any]) -> str:
    """The operation of an HTTP server metric series: ``"GET /api/tags"``, as the server span
    of the same request is named (the method alone without a route, ``HTTP`` without either)."""
    method = attributes.get(names.HTTP_REQUEST_METHOD) or "HTTP"
    route = attributes.get(names.HTTP_ROUTE)
    return f"{method} {route}" if route else str(method)
