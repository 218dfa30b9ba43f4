"""The database seen from the services: statement shapes with their slowest examples and N+1
sessions, connection pools, and transactions (``/api/queries``, ``/api/pool``,
``/api/transactions``)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from dashboard.otlp import SPAN_KIND_CLIENT
from dashboard.reads.rollups import duration_series, read_rows, select_series, window_totals
from dashboard.reads.totals import RollupRow, RollupTotal, Series, grouped
from dashboard.reads.window import TimeRange, idle_buckets, iso, iso_ns
from dashboard.schema import examples, n_plus_one
from dashboard.store import TelemetryStore
from instrumentation import conventions as names

EXAMPLES_LIMIT = 20
N_PLUS_ONE_LIMIT = 50


def queries(store: TelemetryStore, window: TimeRange, summary: str | None = None) -> dict[str, Any]:
    with store.read() as conn:
        metric_series, span_series = duration_series(
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
            over_time = read_rows(conn, found, window)
            for t, acc in sorted(grouped(over_time, lambda r: r.t).items()):
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
                idle = idle_buckets(grouped(over_time, lambda r: r.t), window)
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
        rows = read_rows(conn, select_series(conn, "metric", wanted, window.service), window)

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

    totals = grouped(rows, lambda r: (*pool_of(r), field_of(r)))
    by_time = grouped(rows, lambda r: (r.t, *pool_of(r), field_of(r)))
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
            for s in select_series(conn, "span", [names.DB_TRANSACTION_SPAN], window.service)
            if s.attributes.get(names.VRP_DB_TRANSACTION_OUTCOME) is not None
        ]
        outcome_rows = read_rows(conn, span_series, window)
        retry_rows = read_rows(
            conn,
            select_series(conn, "metric", [names.VRP_DB_TRANSACTION_RETRIES], window.service),
            window,
        )

    def outcome(row: RollupRow) -> str:
        return str(row.series.attributes[names.VRP_DB_TRANSACTION_OUTCOME])

    outcomes = [
        {"service": service, "outcome": name, "count": acc.count}
        for (service, name), acc in sorted(
            grouped(outcome_rows, lambda r: (r.series.service, outcome(r))).items()
        )
    ]
    retries = [
        {"service": service, "error_type": error_type, "count": int(acc.sum)}
        for (service, error_type), acc in sorted(
            grouped(
                retry_rows,
                lambda r: (r.series.service, str(r.series.attributes.get(names.ERROR_TYPE, ""))),
            ).items()
        )
    ]
    points = [
        {"t": iso(t), "outcome": name, "count": acc.count}
        for (t, name), acc in sorted(grouped(outcome_rows, lambda r: (r.t, outcome(r))).items())
    ]
    return {"outcomes": outcomes, "retries": retries, "series": points}
