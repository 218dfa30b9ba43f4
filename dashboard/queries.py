"""The reads behind ``/api/``: each function returns one JSON document of the API contract.

Rates and percentiles come from rollups (minute rollups for ranges up to 6 h, hour rollups
beyond), so their cost depends on the number of series and time buckets in the range, not on
the number of spans. Raw spans serve drill-down only: examples, traces, waterfalls, N+1.
Durations are milliseconds; times are ISO 8601 UTC; a percentile with no data is ``None``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from dashboard import n_plus_one as n_plus_one_rules
from dashboard import trace_search
from dashboard.errors import TraceNotFoundError
from dashboard.histograms import (
    STORE_SCALE,
    ExpHistogram,
    ExplicitHistogram,
    PackedSum,
    quantiles,
    unpack_counts,
)
from dashboard.levels import SEVERITIES, level_of
from dashboard.otlp import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR
from dashboard.rollups import DAY, HOUR, MINUTE, PERCENTILES
from dashboard.schema import (
    examples,
    logs,
    n_plus_one,
    rollup,
    series,
    services_seen,
    spans,
)
from dashboard.store import TelemetryStore
from dashboard.trace_search import AttributeCondition
from instrumentation import conventions as names

MINUTE_ROLLUPS_UP_TO_S = 6 * 3600
SPAN_KINDS = {
    0: "UNSPECIFIED",
    1: "INTERNAL",
    2: "SERVER",
    3: "CLIENT",
    4: "PRODUCER",
    5: "CONSUMER",
}
EXAMPLES_LIMIT = 20
N_PLUS_ONE_LIMIT = 50
_CHUNK = 500


@dataclass(frozen=True)
class TimeRange:
    """A validated ``since``/``until`` pair (aware datetimes) and the optional service."""

    since: datetime
    until: datetime
    service: str | None = None

    @property
    def seconds(self) -> float:
        return max((self.until - self.since).total_seconds(), 1.0)

    @property
    def resolution(self) -> int:
        return MINUTE if self.seconds <= MINUTE_ROLLUPS_UP_TO_S else HOUR

    @property
    def first_bucket(self) -> int:
        start = int(self.since.timestamp())
        return start // self.resolution * self.resolution

    @property
    def last_bucket(self) -> int:
        return int(self.until.timestamp())

    def total_plan(self) -> list[tuple[int, int, int]]:
        """(resolution, first bucket, last bucket) segments whose rows add up to the range.

        Ranges over two days take their whole days from day rollups and only the edges from
        hour rollups, so a total over 7 days reads some 30 rows per series, not 168. Ranges at
        minute resolution likewise take the hours they cover whole from hour rollups.
        """
        first, last = self.first_bucket, self.last_bucket
        if self.resolution == MINUTE:
            whole_from = -(-first // HOUR) * HOUR
            whole_to = (last // MINUTE + 1) * MINUTE // HOUR * HOUR
            if whole_from >= whole_to:
                # No whole hour: one range of the key reads faster than two (SQLite then
                # merges the ranges' rows through a temporary table).
                return [(MINUTE, first, last)]
            plan = [
                (MINUTE, first, whole_from - 1),
                (HOUR, whole_from, whole_to - HOUR),
                (MINUTE, whole_to, last),
            ]
        elif self.seconds <= 2 * DAY:
            return [(self.resolution, first, last)]
        else:
            day_start = -(-first // DAY) * DAY
            day_end = last // DAY * DAY
            plan = [
                (HOUR, first, day_start - 1),
                (DAY, day_start, day_end - 1),
                (HOUR, day_end, last),
            ]
        return [(resolution, a, b) for resolution, a, b in plan if a <= b]

    @property
    def since_ns(self) -> int:
        return int(self.since.timestamp() * 1e9)

    @property
    def until_ns(self) -> int:
        return int(self.until.timestamp() * 1e9)


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def iso_ns(nanoseconds: int) -> str:
    return iso(nanoseconds / 1e9)


@dataclass(frozen=True, slots=True)
class Series:
    id: int
    service: str
    name: str
    span_kind: int | None
    attributes: dict[str, Any]
    histogram: str | None
    bounds: tuple[float, ...]
    to_ms: float


def _series(
    conn: sa.Connection,
    source: str,
    metric_names: Sequence[str] | None,
    service: str | None,
    span_kinds: Sequence[int] | None = None,
) -> list[Series]:
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


@dataclass(slots=True)
class RollupRow:
    series: Series
    t: int
    count: int
    sum: float
    min: float | None
    max: float | None
    errors: int
    client_errors: int
    redirects: int
    zero_count: int
    offset: int
    buckets: bytes | None
    last_value: float | None
    last_time: int | None
    precomputed: tuple[float, float, float] | None

    @property
    def counts(self) -> list[int]:
        return unpack_counts(self.buckets)


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


def _rows(conn: sa.Connection, found: Sequence[Series], window: TimeRange) -> list[RollupRow]:
    """The non-empty rollup rows of ``found`` in the window, one per series and time bucket.

    Read as plain tuples: a 7-day panel reads hundreds of rows per call.
    """
    by_id = {s.id: s for s in found}
    ids = sorted(by_id)
    plan = [(window.resolution, window.first_bucket, window.last_bucket)]
    result: list[RollupRow] = []
    for start in range(0, len(ids), _CHUNK):
        query = sa.select(*_ROLLUP_COLUMNS).where(
            _segments(ids[start : start + _CHUNK], plan), rollup.c.count > 0
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


@dataclass(slots=True)
class RollupTotal:
    """Adds up rollup rows of one quantity; quantiles in milliseconds.

    Exponential buckets are summed as they come (:class:`PackedSum`), never kept per row, so a
    row costs a few additions whatever its width.
    """

    count: int = 0
    errors: int = 0
    client_errors: int = 0
    redirects: int = 0
    sum: float = 0.0
    last_value: float | None = None
    last_time: int = -1
    to_ms: float = 1000.0
    exp_rows: int = 0
    zero_count: int = 0
    low: float | None = None
    high: float | None = None
    # p50/p95/p99 of the one exponential row, kept for when it stays the only one, and its
    # buckets, added only once a second row comes (most groups over time have one row).
    precomputed: tuple[float, float, float] | None = None
    pending: tuple[int, bytes | None] | None = None
    buckets: PackedSum = field(default_factory=PackedSum)
    explicit: list[ExplicitHistogram] = field(default_factory=list)

    def add(self, row: RollupRow) -> None:
        self.count += row.count
        self.errors += row.errors
        self.client_errors += row.client_errors
        self.redirects += row.redirects
        self.sum += row.sum
        self.to_ms = row.series.to_ms
        if row.last_time is not None and row.last_time > self.last_time:
            self.last_value, self.last_time = row.last_value, row.last_time
        kind = row.series.histogram
        if kind == "exponential":
            self.add_exponential(1, row.zero_count, row.min, row.max, row.precomputed)
            if self.exp_rows == 1:
                self.pending = (row.offset, row.buckets)
            else:
                self._flush()
                self.buckets.add(row.offset, row.buckets)
        elif kind == "explicit":
            self.explicit.append(
                _explicit(row.series, row.offset, row.counts, row.count, row.sum, row.min, row.max)
            )

    def add_exponential(
        self,
        rows: int,
        zero_count: int,
        low: float | None,
        high: float | None,
        precomputed: tuple[float, float, float] | None,
    ) -> None:
        self.exp_rows += rows
        self.zero_count += zero_count
        if low is not None and (self.low is None or low < self.low):
            self.low = low
        if high is not None and (self.high is None or high > self.high):
            self.high = high
        self.precomputed = precomputed

    def _flush(self) -> None:
        if self.pending is not None:
            self.buckets.add(*self.pending)
            self.pending = None

    def percentiles(self, qs: Sequence[float] = PERCENTILES) -> list[float | None]:
        if (
            self.exp_rows == 1
            and self.precomputed is not None
            and not self.explicit
            and tuple(qs) == PERCENTILES
        ):
            return [value * self.to_ms for value in self.precomputed]
        parts: list[ExpHistogram | ExplicitHistogram] = list(self.explicit)
        if self.exp_rows:
            self._flush()
            parts.append(
                ExpHistogram(
                    scale=STORE_SCALE,
                    offset=self.buckets.offset,
                    counts=self.buckets.counts(),
                    zero_count=self.zero_count,
                    min=self.low,
                    max=self.high,
                )
            )
        return [None if v is None else v * self.to_ms for v in quantiles(parts, qs)]

    def stats(self, seconds: float) -> dict[str, Any]:
        p50, p95, p99 = self.percentiles()
        return {
            "count": self.count,
            "rate_per_s": self.count / seconds,
            "errors": self.errors,
            "error_rate": self.errors / self.count if self.count else None,
            "p50_ms": p50,
            "p95_ms": p95,
            "p99_ms": p99,
        }

    def http_stats(self, seconds: float) -> dict[str, Any]:
        """:meth:`stats` with the client errors (4xx) beside the errors (5xx), and the count
        per status class (the 2xx are the rest: a response without a status counts there)."""
        stats = self.stats(seconds)
        stats["client_errors"] = self.client_errors
        stats["client_error_rate"] = self.client_errors / self.count if self.count else None
        stats["status_classes"] = {
            "2xx": self.count - self.redirects - self.client_errors - self.errors,
            "3xx": self.redirects,
            "4xx": self.client_errors,
            "5xx": self.errors,
        }
        return stats


def _explicit(
    found: Series,
    offset: int,
    counts: list[int],
    count: int,
    total: float,
    low: float | None,
    high: float | None,
) -> ExplicitHistogram:
    """An explicit histogram of ``found``'s bounds, its counts padded to one per bucket."""
    size = len(found.bounds) + 1
    dense = ([0] * offset + counts)[:size]
    dense.extend([0] * (size - len(dense)))
    return ExplicitHistogram(found.bounds, dense, count, total, low, high)


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
    for start in range(0, len(ids), _CHUNK):
        query = (
            sa.select(*aggregates)
            .where(_segments(ids[start : start + _CHUNK], plan), rollup.c.count > 0)
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
    for start in range(0, len(wanted), _CHUNK):
        query = sa.select(
            rollup.c.series_id, rollup.c.zero_count, rollup.c.bucket_offset, rollup.c.buckets
        ).where(_segments(wanted[start : start + _CHUNK], plan), rollup.c.count > 0)
        # all(): one fetchall; iterating the result fetches row by row (0.25 us a row more).
        for sid, zero, offset, packed in conn.execute(query).all():
            acc = targets[sid]
            acc.zero_count += zero
            acc.buckets.add(offset, packed)
    for sid, summed in explicit.items():
        s = by_id[sid]
        _, count, _, _, _, total, low, high = per_series[sid][:8]
        groups[key(s)].explicit.append(
            _explicit(s, summed.buckets.offset, summed.buckets.counts(), count, total, low, high)
        )
    return groups


def _segments(ids: Sequence[int], plan: Sequence[tuple[int, int, int]]) -> sa.ColumnElement[bool]:
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


def _service(found: Series) -> str:
    return found.service


def _grouped(rows: Iterable[RollupRow], key: Any) -> dict[Any, RollupTotal]:
    groups: dict[Any, RollupTotal] = defaultdict(RollupTotal)
    for row in rows:
        groups[key(row)].add(row)
    return groups


def _duration_series(
    conn: sa.Connection,
    window: TimeRange,
    metric: str,
    span_kinds: Sequence[int],
    source: str = "metric",
) -> tuple[list[Series], list[Series]]:
    """Series of ``metric``, and span series of ``span_kinds`` for services without it."""
    metric_series = _series(conn, source, [metric], window.service)
    with_metric = {s.service for s in metric_series}
    span_series = [
        s
        for s in _series(conn, "span", None, window.service, span_kinds)
        if s.service not in with_metric
    ]
    return metric_series, span_series


# -- panels -----------------------------------------------------------------------------------


def services(store: TelemetryStore) -> dict[str, Any]:
    found: dict[str, dict[str, Any]] = {}
    with store.read() as conn:
        for service, source, last_seen in conn.execute(
            sa.select(services_seen).order_by(services_seen.c.service, services_seen.c.source)
        ):
            entry = found.setdefault(service, {"name": service, "last_seen": 0, "sources": []})
            entry["sources"].append(source)
            entry["last_seen"] = max(entry["last_seen"], last_seen)
    for entry in found.values():
        entry["last_seen"] = iso_ns(entry["last_seen"])
    return {"services": list(found.values())}


def summary(store: TelemetryStore, window: TimeRange) -> dict[str, Any]:
    with store.read() as conn:
        # The service-wide series: one row per time bucket and service.
        metric_series, span_series = _duration_series(
            conn, window, names.HTTP_SERVER_REQUEST_DURATION, [SPAN_KIND_SERVER], source="total"
        )
        fetched = [
            (source, _rows(conn, found, window), window_totals(conn, found, window, _service))
            for source, found in (("metrics", metric_series), ("spans", span_series))
        ]
    result = []
    points = []
    for source, rows, totals in fetched:
        for service, acc in sorted(totals.items()):
            result.append({"service": service, "source": source, **acc.http_stats(window.seconds)})
        by_bucket: dict[tuple[int, str], list[RollupRow]] = defaultdict(list)
        for row in rows:
            by_bucket[(row.t, row.series.service)].append(row)
        for (t, service), members in by_bucket.items():
            point = {"_t": t, "t": iso(t), "service": service}
            point.update(_summary_point(members, window.resolution))
            points.append(point)
    busy_by_service: dict[str, list[int]] = {}
    for point in points:
        busy_by_service.setdefault(point["service"], []).append(point["_t"])
    for service, busy in busy_by_service.items():
        points.extend(
            {"_t": t, "t": iso(t), "service": service, "rate_per_s": 0.0}
            | dict.fromkeys(("error_rate", "client_error_rate", "p50_ms", "p95_ms", "p99_ms"))
            for t in _idle_buckets(busy, window)
        )
    for point in points:
        del point["_t"]
    points.sort(key=lambda p: (p["t"], p["service"]))
    return {
        "since": window.since.isoformat(),
        "until": window.until.isoformat(),
        "services": result,
        "series": points,
    }


def _summary_point(rows: Sequence[RollupRow], seconds: float) -> dict[str, Any]:
    """Rate, error and client error rates and percentiles of one service's rows in one time
    bucket.

    Usually one row of the service-wide series, whose percentiles are stored with it: that
    point is built from the row alone, as cheaply as an idle bucket's.
    """
    row = rows[0]
    if len(rows) == 1 and row.precomputed is not None and row.series.histogram == "exponential":
        to_ms = row.series.to_ms
        p50, p95, p99 = row.precomputed
        return {
            "rate_per_s": row.count / seconds,
            "error_rate": row.errors / row.count if row.count else None,
            "client_error_rate": row.client_errors / row.count if row.count else None,
            "p50_ms": p50 * to_ms,
            "p95_ms": p95 * to_ms,
            "p99_ms": p99 * to_ms,
        }
    acc = RollupTotal()
    for member in rows:
        acc.add(member)
    stats = acc.http_stats(seconds)
    del stats["count"], stats["errors"], stats["client_errors"], stats["status_classes"]
    return stats


# Series over time get explicit points for idle buckets (no rows: rate 0, error rate and
# percentiles null), so that plots drop to zero and break their lines over idle time instead of
# drawing traffic through it. Past this many buckets in the range only the bucket either side of
# each busy one is filled, which plots the same and keeps the document bounded.
MAX_FILLED_BUCKETS = 1500


def _idle_buckets(busy: Iterable[int], window: TimeRange) -> list[int]:
    """The window's buckets without a row, among ``busy`` (bucket starts, seconds)."""
    step, first, last = window.resolution, window.first_bucket, window.last_bucket
    taken = set(busy)
    if (last - first) // step <= MAX_FILLED_BUCKETS:
        return [t for t in range(first, last + 1, step) if t not in taken]
    edges = {n for t in taken for n in (t - step, t + step) if first <= n <= last}
    return sorted(edges - taken)


def _operation_name(attributes: dict[str, Any]) -> str:
    method = attributes.get(names.HTTP_REQUEST_METHOD) or "HTTP"
    route = attributes.get(names.HTTP_ROUTE)
    return f"{method} {route}" if route else str(method)


def _is_backup(found: Series) -> bool:
    return found.span_kind is not None and found.name.startswith(names.BACKUP_PHASE_SPAN_PREFIX)


def operations(store: TelemetryStore, window: TimeRange, top: int = 5) -> dict[str, Any]:
    """Per HTTP route and method (or server span name), the ``top`` busiest of them over time,
    and the backup spans (``backup.*``) of every service apart from the HTTP operations."""
    with store.read() as conn:
        metric_series, span_series = _duration_series(
            conn, window, names.HTTP_SERVER_REQUEST_DURATION, [1, 2, 5]
        )
        span_series = [s for s in span_series if not _is_backup(s)]
        backup_series = [
            s for s in _series(conn, "span", None, window.service, [1]) if _is_backup(s)
        ]

        def operation_of(found: Series) -> tuple[str, str]:
            if found.span_kind is None:
                return found.service, _operation_name(found.attributes)
            return found.service, found.name

        by_operation = window_totals(conn, metric_series, window, operation_of)
        by_span = window_totals(
            conn, span_series, window, lambda s: (s.service, s.name, s.span_kind)
        )
        by_backup = window_totals(conn, backup_series, window, lambda s: (s.service, s.name))
        busiest = {
            key
            for key, _ in sorted(
                [*by_operation.items(), *(((k[0], k[1]), a) for k, a in by_span.items())],
                key=lambda item: (-item[1].count, item[0]),
            )[:top]
        }
        points = _latency_points(
            conn,
            [s for s in metric_series + span_series if operation_of(s) in busiest],
            window,
            operation_of,
        )
    result = []
    for (service, operation), acc in by_operation.items():
        result.append(
            {
                "service": service,
                "operation": operation,
                "kind": "SERVER",
                "source": "metrics",
                **acc.http_stats(window.seconds),
            }
        )
    for (service, name, kind), acc in by_span.items():
        result.append(
            {
                "service": service,
                "operation": name,
                "kind": SPAN_KINDS.get(kind or 0, "UNSPECIFIED"),
                "source": "spans",
                **acc.http_stats(window.seconds),
            }
        )
    result.sort(key=lambda o: (-o["count"], o["service"], o["operation"]))
    backups = [
        {"service": service, "operation": name, **acc.stats(window.seconds)}
        for (service, name), acc in sorted(by_backup.items())
    ]
    return {
        "operations": result,
        "series": points,
        "backups": backups,
    }


def _latency_points(
    conn: sa.Connection,
    found: Sequence[Series],
    window: TimeRange,
    key: Callable[[Series], tuple[str, str]],
) -> list[dict[str, Any]]:
    """p50/p95 per ``key`` (service, operation) and time bucket; idle buckets are points
    without latency.

    A bucket whose operation has one exponential row takes the percentiles stored with it, so
    the rows are first read without their bucket arrays (a 7-day chart reads hundreds of rows);
    only the series of buckets that merge several rows are read again whole.
    """
    by_id = {s.id: s for s in found}
    keys = {s.id: key(s) for s in found}
    ids = sorted(by_id)
    plan = [(window.resolution, window.first_bucket, window.last_bucket)]
    lean: dict[tuple[tuple[str, str], int], list[tuple[Series, int, Any, Any]]] = defaultdict(list)
    for start in range(0, len(ids), _CHUNK):
        query = sa.select(
            rollup.c.series_id, rollup.c.start_s, rollup.c.count, rollup.c.p50, rollup.c.p95
        ).where(_segments(ids[start : start + _CHUNK], plan), rollup.c.count > 0)
        for sid, t, count, p50, p95 in conn.execute(query).all():
            lean[(keys[sid], t)].append((by_id[sid], count, p50, p95))
    merged: dict[tuple[tuple[str, str], int], tuple[int, float | None, float | None]] = {}
    whole: set[int] = set()
    for group, members in lean.items():
        owner, count, p50, p95 = members[0]
        if (
            len(members) == 1
            and owner.histogram == "exponential"
            and p50 is not None
            and p95 is not None
        ):
            merged[group] = (count, p50 * owner.to_ms, p95 * owner.to_ms)
        else:
            whole.update(member[0].id for member in members)
    if whole:
        rows = _rows(conn, [by_id[sid] for sid in sorted(whole)], window)
        for group, acc in _grouped(rows, lambda r: (key(r.series), r.t)).items():
            if group not in merged:
                p50, p95, _ = acc.percentiles()
                merged[group] = (acc.count, p50, p95)
    busy: dict[tuple[str, str], list[int]] = defaultdict(list)
    for operation, t in merged:
        busy[operation].append(t)
    times: dict[int, str] = {}
    points = []
    for (service, operation), buckets in sorted(busy.items()):
        for t in buckets:
            count, p50, p95 = merged[((service, operation), t)]
            stamp = times.get(t) or times.setdefault(t, iso(t))
            points.append(
                {
                    "t": stamp,
                    "service": service,
                    "operation": operation,
                    "count": count,
                    "p50_ms": p50,
                    "p95_ms": p95,
                }
            )
        for t in _idle_buckets(buckets, window):
            stamp = times.get(t) or times.setdefault(t, iso(t))
            points.append(
                {
                    "t": stamp,
                    "service": service,
                    "operation": operation,
                    "count": 0,
                    "p50_ms": None,
                    "p95_ms": None,
                }
            )
    points.sort(key=lambda p: (p["t"], p["service"], p["operation"]))
    return points


def queries(store: TelemetryStore, window: TimeRange, summary: str | None = None) -> dict[str, Any]:
    with store.read() as conn:
        metric_series, span_series = _duration_series(
            conn, window, names.DB_CLIENT_OPERATION_DURATION, [SPAN_KIND_CLIENT]
        )

        def summary_of(series: Series) -> str:
            if series.span_kind is not None:
                return series.name
            attrs = series.attributes
            return str(attrs.get(names.DB_QUERY_SUMMARY) or attrs.get(names.DB_SYSTEM_NAME) or "")

        found = metric_series + span_series
        if summary is not None:
            found = [s for s in found if summary_of(s) == summary]
        result = []
        for (service, text), acc in window_totals(
            conn, found, window, lambda s: (s.service, summary_of(s))
        ).items():
            stats = acc.stats(window.seconds)
            del stats["error_rate"]
            # count x mean: what the statement shape cost in all, the ranking that matters.
            stats["total_ms"] = acc.sum * acc.to_ms
            stats["mean_ms"] = acc.sum * acc.to_ms / acc.count if acc.count else None
            result.append({"service": service, "summary": text, **stats})
        result.sort(key=lambda q: (-q["total_ms"], q["service"], q["summary"]))
        points = []
        if summary is not None:
            over_time = _rows(conn, found, window)
            for t, acc in sorted(_grouped(over_time, lambda r: r.t).items()):
                p50, p95, p99 = acc.percentiles()
                points.append(
                    {
                        "t": iso(t),
                        "summary": summary,
                        "count": acc.count,
                        "p50_ms": p50,
                        "p95_ms": p95,
                        "p99_ms": p99,
                    }
                )
            if points:
                idle = _idle_buckets(_grouped(over_time, lambda r: r.t), window)
                points.extend(
                    {"t": iso(t), "summary": summary, "count": 0}
                    | dict.fromkeys(("p50_ms", "p95_ms", "p99_ms"))
                    for t in idle
                )
                points.sort(key=lambda p: p["t"])
        return {
            "queries": result,
            "series": points,
            "examples": _examples(conn, window, summary),
            "n_plus_one": _n_plus_one(conn, window),
        }


def _examples(conn: sa.Connection, window: TimeRange, summary: str | None) -> list[dict[str, Any]]:
    query = (
        sa.select(examples)
        .where(
            examples.c.resolution == window.resolution,
            examples.c.start_s >= window.first_bucket,
            examples.c.start_s <= window.last_bucket,
            examples.c.start_ns >= window.since_ns,
            examples.c.start_ns <= window.until_ns,
        )
        .order_by(examples.c.duration_ms.desc())
        .limit(EXAMPLES_LIMIT)
    )
    if summary is not None:
        query = query.where(examples.c.summary == summary)
    if window.service is not None:
        query = query.where(examples.c.service == window.service)
    return [
        {
            "summary": r.summary,
            "query_text": r.query_text,
            "duration_ms": r.duration_ms,
            "trace_id": r.trace_id,
            "span_id": r.span_id,
            "start": iso_ns(r.start_ns),
            "service": r.service,
        }
        for r in conn.execute(query).all()
    ]


def _n_plus_one_row(r: Any) -> dict[str, Any]:
    return {
        "trace_id": r.trace_id,
        "session_span_id": r.session_span_id,
        "query_text": r.query_text,
        "count": r.count,
        "service": r.service,
        "start": iso_ns(r.start_ns),
    }


def _n_plus_one(conn: sa.Connection, window: TimeRange) -> list[dict[str, Any]]:
    query = (
        sa.select(n_plus_one)
        .where(n_plus_one.c.start_ns >= window.since_ns, n_plus_one.c.start_ns <= window.until_ns)
        .order_by(n_plus_one.c.start_ns.desc())
        .limit(N_PLUS_ONE_LIMIT)
    )
    if window.service is not None:
        query = query.where(n_plus_one.c.service == window.service)
    return [_n_plus_one_row(r) for r in conn.execute(query)]


def pool(store: TelemetryStore, window: TimeRange) -> dict[str, Any]:
    wanted = [
        names.DB_CLIENT_CONNECTION_COUNT,
        names.DB_CLIENT_CONNECTION_MAX,
        names.DB_CLIENT_CONNECTION_WAIT_TIME,
        names.DB_CLIENT_CONNECTION_TIMEOUTS,
        names.VRP_DB_CONNECTION_LEAKS,
    ]
    with store.read() as conn:
        rows = _rows(conn, _series(conn, "metric", wanted, window.service), window)

    def field_of(row: RollupRow) -> str:
        name = row.series.name
        if name == names.DB_CLIENT_CONNECTION_COUNT:
            return str(row.series.attributes.get(names.DB_CLIENT_CONNECTION_STATE, "used"))
        return {
            names.DB_CLIENT_CONNECTION_MAX: "max",
            names.DB_CLIENT_CONNECTION_WAIT_TIME: "wait",
            names.DB_CLIENT_CONNECTION_TIMEOUTS: "timeouts",
            names.VRP_DB_CONNECTION_LEAKS: "leaks",
        }[name]

    def pool_of(row: RollupRow) -> tuple[str, str]:
        attrs = row.series.attributes
        return row.series.service, str(attrs.get(names.DB_CLIENT_CONNECTION_POOL_NAME, ""))

    totals = _grouped(rows, lambda r: (*pool_of(r), field_of(r)))
    by_time = _grouped(rows, lambda r: (r.t, *pool_of(r), field_of(r)))
    pools = sorted({(s, p) for s, p, _ in totals})

    def gauge(acc: RollupTotal | None) -> float | None:
        return None if acc is None else acc.last_value

    result = []
    for service, name in pools:
        wait = totals.get((service, name, "wait"))
        timeouts = totals.get((service, name, "timeouts"))
        leaks = totals.get((service, name, "leaks"))
        result.append(
            {
                "service": service,
                "pool": name,
                "used": gauge(totals.get((service, name, "used"))),
                "idle": gauge(totals.get((service, name, "idle"))),
                "max": gauge(totals.get((service, name, "max"))),
                "wait_p95_ms": wait.percentiles((0.95,))[0] if wait else None,
                "timeouts": int(timeouts.sum) if timeouts else 0,
                "leaks": int(leaks.sum) if leaks else 0,
            }
        )
    points = []
    for t, service, name in sorted({(t, s, p) for t, s, p, _ in by_time}):
        wait = by_time.get((t, service, name, "wait"))
        points.append(
            {
                "t": iso(t),
                "service": service,
                "pool": name,
                "used": gauge(by_time.get((t, service, name, "used"))),
                "idle": gauge(by_time.get((t, service, name, "idle"))),
                "max": gauge(by_time.get((t, service, name, "max"))),
                "wait_p95_ms": wait.percentiles((0.95,))[0] if wait else None,
            }
        )
    return {"pools": result, "series": points}


def transactions(store: TelemetryStore, window: TimeRange) -> dict[str, Any]:
    with store.read() as conn:
        span_series = [
            s
            for s in _series(conn, "span", [names.DB_TRANSACTION_SPAN], window.service)
            if s.attributes.get(names.VRP_DB_TRANSACTION_OUTCOME) is not None
        ]
        outcome_rows = _rows(conn, span_series, window)
        retry_rows = _rows(
            conn,
            _series(conn, "metric", [names.VRP_DB_TRANSACTION_RETRIES], window.service),
            window,
        )

    def outcome(row: RollupRow) -> str:
        return str(row.series.attributes[names.VRP_DB_TRANSACTION_OUTCOME])

    outcomes = [
        {"service": service, "outcome": name, "count": acc.count}
        for (service, name), acc in sorted(
            _grouped(outcome_rows, lambda r: (r.series.service, outcome(r))).items()
        )
    ]
    retries = [
        {"service": service, "error_type": error_type, "count": int(acc.sum)}
        for (service, error_type), acc in sorted(
            _grouped(
                retry_rows,
                lambda r: (r.series.service, str(r.series.attributes.get(names.ERROR_TYPE, ""))),
            ).items()
        )
    ]
    points = [
        {"t": iso(t), "outcome": name, "count": acc.count}
        for (t, name), acc in sorted(_grouped(outcome_rows, lambda r: (r.t, outcome(r))).items())
    ]
    return {"outcomes": outcomes, "retries": retries, "series": points}


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def log_records(
    store: TelemetryStore,
    window: TimeRange,
    *,
    level: str | None = None,
    trace_id: str | None = None,
    text: str | None = None,
    limit: int = 200,
    offset: int = 0,
) -> dict[str, Any]:
    """One page of records (``limit`` from ``offset``, newest first), how many match in all,
    and their count per level and time bucket (the volume histogram), all with the filters."""
    conditions = [logs.c.time_ns >= window.since_ns, logs.c.time_ns <= window.until_ns]
    if window.service is not None:
        conditions.append(logs.c.service == window.service)
    if level is not None:
        conditions.append(logs.c.severity_number >= SEVERITIES[level])
    if trace_id is not None:
        conditions.append(logs.c.trace_id == trace_id)
    if text:
        conditions.append(logs.c.body.like(_like_pattern(text), escape="\\"))
    page = (
        sa.select(logs)
        .where(*conditions)
        .order_by(logs.c.time_ns.desc(), logs.c.id.desc())
        .limit(limit + 1)  # one more than asked tells whether more follow this page
        .offset(offset)
    )
    step = window.resolution
    bucket = (logs.c.time_ns // (step * 1_000_000_000)).label("bucket")
    volume = (
        sa.select(bucket, logs.c.severity_number, logs.c.severity_text, sa.func.count())
        .where(*conditions)
        .group_by(bucket, logs.c.severity_number, logs.c.severity_text)
    )
    with store.read() as conn:
        found = conn.execute(page).all()
        counted = conn.execute(volume).all()
    histogram: dict[tuple[int, str], int] = defaultdict(int)
    for t, number, severity_text, count in counted:
        histogram[(int(t) * step, level_of(number, severity_text))] += count
    return {
        "offset": offset,
        "limit": limit,
        "total": sum(histogram.values()),
        "truncated": len(found) > limit,
        "logs": [
            {
                "time": iso_ns(r.time_ns),
                "service": r.service,
                "level": level_of(r.severity_number, r.severity_text),
                "severity_number": r.severity_number,
                "severity_text": r.severity_text,
                "message": r.body,
                "trace_id": r.trace_id,
                "span_id": r.span_id,
                "attributes": orjson.loads(r.attributes),
            }
            for r in found[:limit]
        ],
        "histogram": [
            {"t": iso(t), "level": name, "count": count}
            for (t, name), count in sorted(histogram.items())
        ],
    }


# Above this many spans in the range, SQLite finds the slowest roots by their duration index.
ROOTS_BY_DURATION_FROM_SPANS = 20_000


def traces(
    store: TelemetryStore,
    window: TimeRange,
    *,
    operation: str | None = None,
    min_duration_ms: float | None = None,
    status: str | None = None,
    attributes: Sequence[AttributeCondition] = (),
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """Traces by root span, slowest first, ``limit`` from ``offset`` on (``has_more`` says
    whether more match). ``operation`` is the root span's name in any case; ``attributes`` a
    span of the trace must match (:mod:`dashboard.trace_search`, a bounded scan: ``search``
    says which spans it read). ``operations`` lists root span names to suggest."""
    roots = spans.alias("roots")
    errored = sa.exists().where(
        spans.c.trace_id == roots.c.trace_id, spans.c.status_code == STATUS_ERROR
    )
    with store.read() as conn:
        since_ns = window.since_ns
        scan_from = None
        if attributes:
            scan_from = trace_search.nth_newest_start(
                conn, window.since_ns, window.until_ns, trace_search.SCAN_SPANS
            )
            since_ns = max(since_ns, scan_from or since_ns)
        start, name = roots.c.start_ns, roots.c.name
        sqlite = store.engine.dialect.name == "sqlite"
        wide = (
            sqlite
            and trace_search.nth_newest_start(
                conn, since_ns, window.until_ns, ROOTS_BY_DURATION_FROM_SPANS
            )
            is not None
        )
        if sqlite and not wide:
            # A narrow range: its spans by the start-time index, not every root of the
            # operation by the name index (0.5 s for an hour of 7 days of 1M spans).
            name = sa.literal_column("+roots.name", sa.String)
        if wide:
            # SQLite plans with no statistics and reads a range of the start-time index
            # whatever its width, then sorts every root in it (1.4 s for 7 days of 1M spans).
            # Over a range this full, walking the roots' duration index from the slowest and
            # skipping those outside the range finds a page sooner (0.3 ms): the unary "+"
            # keeps SQLite off the start-time index (https://sqlite.org/optoverview.html).
            start = sa.literal_column("+roots.start_ns", sa.BigInteger)
        query = (
            sa.select(roots)
            .where(roots.c.is_root == sa.true(), start >= since_ns, start <= window.until_ns)
            .order_by(roots.c.duration_ms.desc(), roots.c.trace_id)
            .limit(limit + 1)  # one more than asked tells whether more match
            .offset(offset)
        )
        if window.service is not None:
            query = query.where(roots.c.service == window.service)
        if operation is not None:
            query = query.where(sa.func.lower(name) == operation.lower())
        if min_duration_ms is not None:
            query = query.where(roots.c.duration_ms >= min_duration_ms)
        if status == "error":
            query = query.where(errored)
        elif status == "ok":
            query = query.where(~errored)
        if attributes:
            matching = trace_search.matching_trace_ids(conn, attributes, since_ns, window.until_ns)
            query = query.where(trace_search.among(roots.c.trace_id, matching, store.engine))
        found = conn.execute(query).all()
        has_more = len(found) > limit
        found = found[:limit]
        ids = [r.trace_id for r in found]
        counts: dict[str, tuple[int, int]] = {}
        flagged: set[str] = set()
        if ids:
            stats = (
                sa.select(
                    spans.c.trace_id,
                    sa.func.count(),
                    sa.func.sum(sa.case((spans.c.status_code == STATUS_ERROR, 1), else_=0)),
                )
                .where(spans.c.trace_id.in_(ids))
                .group_by(spans.c.trace_id)
            )
            counts = {trace: (n, errors or 0) for trace, n, errors in conn.execute(stats)}
            flagged = set(
                conn.execute(
                    sa.select(n_plus_one.c.trace_id).where(n_plus_one.c.trace_id.in_(ids))
                ).scalars()
            )
        suggestions = _operations(conn, window.service)
    return {
        "traces": [
            {
                "trace_id": r.trace_id,
                "service": r.service,
                "root_name": r.name,
                "start": iso_ns(r.start_ns),
                "duration_ms": r.duration_ms,
                "span_count": counts.get(r.trace_id, (1, 0))[0],
                "error": counts.get(r.trace_id, (1, 0))[1] > 0,
                "n_plus_one": r.trace_id in flagged,
            }
            for r in found
        ],
        "offset": offset,
        "limit": limit,
        "has_more": has_more,
        "next_offset": offset + limit if has_more else None,
        "search": {
            "attributes": [str(condition) for condition in attributes],
            "scan_limit_spans": trace_search.SCAN_SPANS,
            # Set when the range holds more spans than an attribute search reads: traces that
            # started before this were not searched.
            "searched_since": None if scan_from is None else iso_ns(scan_from),
        },
        "operations": suggestions,
    }


# Span kinds whose names are suggested as operations: requests served and messages consumed,
# the roots of most traces; and the backup runs, the INTERNAL roots of the scheduler's traces.
_OPERATION_KINDS = tuple(k for k, name in SPAN_KINDS.items() if name in ("SERVER", "CONSUMER"))
_OPERATION_NAMES = (names.BACKUP_RUN_SPAN, names.BACKUP_RESTORE_SPAN)
OPERATIONS_LIMIT = 500


def _operations(conn: sa.Connection, service: str | None) -> list[str]:
    """Span names to suggest for the operation field (from the rollup series, not the spans)."""
    query = (
        sa.select(series.c.name)
        .where(
            series.c.source == "span",
            sa.or_(series.c.span_kind.in_(_OPERATION_KINDS), series.c.name.in_(_OPERATION_NAMES)),
        )
        .distinct()
        .order_by(series.c.name)
        .limit(OPERATIONS_LIMIT)
    )
    if service is not None:
        query = query.where(series.c.service == service)
    return list(conn.execute(query).scalars())


def trace(store: TelemetryStore, trace_id: str) -> dict[str, Any]:
    """The span tree of one trace; raises :class:`TraceNotFoundError` if none of it is stored.

    ``n_plus_one`` holds the trace's findings (:mod:`dashboard.n_plus_one`), each with the ids
    of the statement spans that make it up.
    """
    with store.read() as conn:
        rows = conn.execute(sa.select(spans).where(spans.c.trace_id == trace_id)).all()
    if not rows:
        raise TraceNotFoundError(
            f"no span of trace {trace_id} is in the store (never received, or pruned by retention)"
        )
    present = {r.span_id for r in rows}
    nodes = [_Node(r, orjson.loads(r.attributes)) for r in rows]
    children: dict[str | None, list[_Node]] = defaultdict(list)
    for node in nodes:
        parent = node.row.parent_span_id if node.row.parent_span_id in present else None
        children[parent].append(node)
    for members in children.values():
        members.sort(key=lambda n: (n.row.start_ns, n.span_id))
    origin = min(r.start_ns for r in rows)
    ordered: list[dict[str, Any]] = []
    stack = [(n, 0) for n in reversed(children[None])]
    while stack:
        node, depth = stack.pop()
        r = node.row
        ordered.append(
            {
                "span_id": r.span_id,
                "parent_span_id": r.parent_span_id,
                "service": r.service,
                "name": r.name,
                "kind": SPAN_KINDS.get(r.kind, "UNSPECIFIED"),
                "start": iso_ns(r.start_ns),
                "offset_ms": (r.start_ns - origin) / 1e6,
                "duration_ms": r.duration_ms,
                "status": "error" if r.status_code == STATUS_ERROR else "ok",
                "attributes": node.attributes,
                "events": [
                    {
                        "name": event.get("name", ""),
                        "time": iso_ns(event.get("time_ns", 0)),
                        "attributes": event.get("attributes", {}),
                    }
                    for event in orjson.loads(r.events)
                ],
                "links": orjson.loads(r.links),
                "depth": depth,
            }
        )
        stack.extend((child, depth + 1) for child in reversed(children.get(r.span_id, [])))
    return {"trace_id": trace_id, "spans": ordered, "n_plus_one": _trace_n_plus_one(nodes)}


@dataclass(frozen=True, slots=True)
class _Node:
    """A stored span with its attributes decoded, as :mod:`dashboard.n_plus_one` reads it."""

    row: Any
    attributes: dict[str, Any]

    @property
    def span_id(self) -> str:
        return str(self.row.span_id)

    @property
    def kind(self) -> int:
        return int(self.row.kind)

    @property
    def parent_span_id(self) -> str | None:
        return self.row.parent_span_id


def _trace_n_plus_one(nodes: Sequence[_Node]) -> list[dict[str, Any]]:
    children = n_plus_one_rules.children_of(nodes)
    result = []
    for session in sorted(nodes, key=lambda n: (n.row.start_ns, n.span_id)):
        if session.row.name != names.DB_SESSION_SPAN:
            continue
        found = n_plus_one_rules.finding(session.span_id, children)
        if found is not None:
            result.append(
                {
                    "trace_id": session.row.trace_id,
                    "session_span_id": session.span_id,
                    "query_text": found.query_text,
                    "count": found.count,
                    "service": session.row.service,
                    "start": iso_ns(session.row.start_ns),
                    "span_ids": list(found.span_ids),
                }
            )
    return result
