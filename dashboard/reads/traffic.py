"""The services that sent telemetry, and the requests they served: the Overview and Requests
pages (``/api/services``, ``/api/summary``, ``/api/operations``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from dashboard.otlp import SPAN_KIND_SERVER, SPAN_KINDS
from dashboard.reads.rollups import (
    SERIES_PER_QUERY,
    duration_series,
    in_segments,
    operation_name,
    read_rows,
    select_series,
    service_of,
    window_totals,
)
from dashboard.reads.totals import RollupRow, RollupTotal, Series, grouped
from dashboard.reads.window import TimeRange, idle_buckets, iso, iso_ns
from dashboard.schema import rollup, services_seen
from dashboard.store import TelemetryStore
from instrumentation import conventions as names


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
        metric_series, span_series = duration_series(
            conn, window, names.HTTP_SERVER_REQUEST_DURATION, [SPAN_KIND_SERVER], source="total"
        )
        fetched = [
            (source, read_rows(conn, found, window), window_totals(conn, found, window, service_of))
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
            for t in idle_buckets(busy, window)
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


def _is_backup(found: Series) -> bool:
    return found.span_kind is not None and found.name.startswith(names.BACKUP_PHASE_SPAN_PREFIX)


def operations(store: TelemetryStore, window: TimeRange, top: int = 5) -> dict[str, Any]:
    """Per HTTP route and method (or server span name), the ``top`` busiest of them over time,
    and the backup spans (``backup.*``) of every service apart from the HTTP operations."""
    with store.read() as conn:
        metric_series, span_series = duration_series(
            conn, window, names.HTTP_SERVER_REQUEST_DURATION, [1, 2, 5]
        )
        span_series = [s for s in span_series if not _is_backup(s)]
        backup_series = [
            s for s in select_series(conn, "span", None, window.service, [1]) if _is_backup(s)
        ]

        def operation_of(found: Series) -> tuple[str, str]:
            if found.span_kind is None:
                return found.service, operation_name(found.attributes)
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
    for start in range(0, len(ids), SERIES_PER_QUERY):
        query = sa.select(
            rollup.c.series_id, rollup.c.start_s, rollup.c.count, rollup.c.p50, rollup.c.p95
        ).where(in_segments(ids[start : start + SERIES_PER_QUERY], plan), rollup.c.count > 0)
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
        rows = read_rows(conn, [by_id[sid] for sid in sorted(whole)], window)
        for group, acc in grouped(rows, lambda r: (key(r.series), r.t)).items():
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
        for t in idle_buckets(buckets, window):
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
