"""What the Queries, Requests and Logs pages read from ``/api/``: total time per statement shape,
sub-millisecond durations, per-route latency over time, backup spans apart, log levels in one
spelling, log paging and volume, and N+1 findings that agree wherever they are read."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest

from dashboard.histograms import ExpHistogram
from dashboard.otlp import LogRecord, MetricPoint, decode_traces
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from instrumentation import conventions as c
from tests.dashboard.conftest import Live, serve
from tests.dashboard.otlp_bodies import span, traces_request

PROTOBUF = "application/x-protobuf"
US = 1_000  # nanoseconds
MS = 1_000_000
SERVER, CLIENT, INTERNAL = 2, 3, 1


@pytest.fixture
def any_live(database_url: str) -> Iterator[Live]:
    """A dashboard on a SQLite file or on the real PostgreSQL server."""
    store = TelemetryStore(database_url)
    store.upgrade()
    try:
        yield from serve(DashboardSettings(store_url=database_url), store)
    finally:
        store.dispose()


def write(store: TelemetryStore, spans_: list, service: str = "vrp-api") -> None:
    body = traces_request(spans_, service).SerializeToString()
    store.write_spans(decode_traces(body, PROTOBUF).records)


def statements(rng: random.Random, name: str, count: int, duration_ns: int, start: int) -> list:
    return [
        span(
            rng.randbytes(16),
            rng.randbytes(8),
            name,
            start + i * MS,
            duration_ns,
            kind=CLIENT,
            attributes={c.DB_QUERY_TEXT: f"{name} ...", c.DB_QUERY_SUMMARY: name},
        )
        for i in range(count)
    ]


def test_queries_rank_by_total_time_and_keep_microseconds(live: Live) -> None:
    rng = random.Random(3)
    start = time.time_ns() - 5 * 60 * 10**9
    # Many fast statements cost more in all than a few slow ones.
    write(live.store, statements(rng, "SELECT tags", 400, 37 * US, start), "spans-only")
    write(live.store, statements(rng, "SELECT recordings", 3, 4 * MS, start), "spans-only")
    found = live.get("/api/queries", service="spans-only")["queries"]
    assert [q["summary"] for q in found] == ["SELECT tags", "SELECT recordings"]
    tags, recordings = found
    assert tags["total_ms"] == pytest.approx(400 * 0.037, rel=1e-6)
    assert recordings["total_ms"] == pytest.approx(12.0, rel=1e-6)
    assert tags["mean_ms"] == pytest.approx(0.037, rel=1e-6)
    assert tags["p50_ms"] == pytest.approx(0.037, rel=0.02)
    assert recordings["rate_per_s"] == pytest.approx(3 / 3600, rel=0.01)


def backup_trace(rng: random.Random, start: int, status: str) -> list:
    trace_id, run = rng.randbytes(16), rng.randbytes(8)
    attributes = {c.VRP_BACKUP_ID: f"b-{start}", c.VRP_BACKUP_STATUS: status}
    result = [span(trace_id, run, c.BACKUP_RUN_SPAN, start, 900 * MS, attributes=attributes)]
    for index, phase in enumerate(c.BACKUP_PHASES[:3]):
        result.append(
            span(
                trace_id,
                rng.randbytes(8),
                c.BACKUP_PHASE_SPAN_PREFIX + phase,
                start + index * 300 * MS,
                250 * MS,
                parent=run,
                attributes={c.VRP_BACKUP_PHASE: phase},
            )
        )
    return result


def server_span(rng: random.Random, route: str, start: int, duration_ns: int) -> object:
    return span(
        rng.randbytes(16),
        rng.randbytes(8),
        f"GET {route}",
        start,
        duration_ns,
        kind=SERVER,
        attributes={c.HTTP_REQUEST_METHOD: "GET", c.HTTP_ROUTE: route},
    )


def test_operations_list_backup_spans_apart_and_the_busiest_routes_over_time(
    any_live: Live,
) -> None:
    live = any_live
    rng = random.Random(4)
    minute = 60 * 10**9
    now = time.time_ns() // minute * minute
    busy = [
        server_span(rng, "/busy", now - m * minute + i * MS, (5 + m) * MS)
        for m in (10, 6)
        for i in range(20)
    ]
    quiet = [server_span(rng, "/quiet", now - 6 * minute, 50 * MS)]
    write(live.store, busy + quiet, "spans-api")
    write(live.store, backup_trace(rng, now - 20 * minute, "success"), "spans-scheduler")
    found = live.get("/api/operations", since="30m")
    names = {o["operation"] for o in found["operations"]}
    assert names == {"GET /busy", "GET /quiet"}
    backups = {b["operation"]: b for b in found["backups"]}
    assert set(backups) == {c.BACKUP_RUN_SPAN, "backup.snapshot", "backup.blobs", "backup.manifest"}
    assert backups[c.BACKUP_RUN_SPAN]["count"] == 1
    assert backups[c.BACKUP_RUN_SPAN]["p50_ms"] == pytest.approx(900, rel=0.02)
    by_route: dict[str, list[dict]] = {}
    for point in found["series"]:
        by_route.setdefault(point["operation"], []).append(point)
    assert set(by_route) == {"GET /busy", "GET /quiet"}
    busy_points = [p for p in by_route["GET /busy"] if p["count"]]
    assert [p["count"] for p in busy_points] == [20, 20]
    assert [round(p["p50_ms"]) for p in busy_points] == [15, 11]
    idle = [p for p in by_route["GET /busy"] if not p["count"]]
    assert idle and all(p["p95_ms"] is None for p in idle)
    top = live.get("/api/operations", since="30m", top=1)["series"]
    assert {p["operation"] for p in top} == {"GET /busy"}


def test_levels_have_one_spelling_and_the_filter_takes_any_case(live: Live) -> None:
    now = time.time_ns()
    sent = [
        (9, "INFO"),
        (13, "WARN"),
        (13, "WARNING"),
        (17, "ERROR"),
        (21, "FATAL"),
        (0, "warning"),  # a sender without severity numbers
    ]
    live.store.write_logs(
        [
            LogRecord(now - i * MS, "vrp-api", number, text, f"m{i}", None, None, {})
            for i, (number, text) in enumerate(sent)
        ]
    )
    levels = [r["level"] for r in live.get("/api/logs", since="1h")["logs"]]
    assert levels == ["INFO", "WARNING", "WARNING", "ERROR", "CRITICAL", "WARNING"]
    for spelling in ("warn", "Warning", "WARNING", "WARN"):
        found = live.get("/api/logs", since="1h", level=spelling)["logs"]
        assert [r["message"] for r in found] == ["m1", "m2", "m3", "m4"], spelling
    with live.app.test_client() as client:
        response = client.get("/api/logs", query_string={"level": "loud"})
    assert response.status_code == 422
    assert "WARNING" in response.get_json()["errors"]["query"]["level"][0]


def test_logs_page_past_200_records_and_count_them_per_level(any_live: Live) -> None:
    live = any_live
    minute = 60 * 10**9
    now = time.time_ns()
    levels = [(9, "INFO"), (13, "WARNING"), (17, "ERROR")]
    records = [
        LogRecord(
            now - (i % 30) * minute - i * MS,
            "vrp-api",
            *levels[i % 3],
            f"record {i}",
            None,
            None,
            {c.HTTP_ROUTE: f"/r/{i}"},
        )
        for i in range(450)
    ]
    live.store.write_logs(records)
    seen: list[str] = []
    offset = 0
    while True:
        page = live.get("/api/logs", since="1h", limit=200, offset=offset)
        assert page["total"] == 450
        seen.extend(r["message"] for r in page["logs"])
        if not page["truncated"]:
            break
        offset += 200
    assert offset == 400 and len(seen) == 450 == len(set(seen))
    assert seen == [r.body for r in sorted(records, key=lambda r: -r.time_ns)]
    histogram = live.get("/api/logs", since="1h")["histogram"]
    per_level: dict[str, int] = {}
    for bar in histogram:
        per_level[bar["level"]] = per_level.get(bar["level"], 0) + bar["count"]
    assert per_level == {"INFO": 150, "WARNING": 150, "ERROR": 150}
    assert len({bar["t"] for bar in histogram}) == 30
    errors = live.get("/api/logs", since="1h", level="error")
    assert errors["total"] == 150
    assert sum(bar["count"] for bar in errors["histogram"]) == 150


TAGS = "SELECT tags.name FROM tags WHERE tags.recording_id = ?"
AUTHORS = "SELECT authors.name FROM authors WHERE authors.id = ?"


def two_repeats_trace(rng: random.Random, start: int) -> tuple[str, list, set[str]]:
    """A request whose one session ran two statements again and again (6 and 5 times): one
    finding, the one run most; returns the trace id, its spans and that finding's span ids."""
    trace_id, root, session, transaction = (rng.randbytes(n) for n in (16, 8, 8, 8))
    result = [
        span(trace_id, root, "GET /api/recordings", start, 60 * MS, kind=SERVER),
        span(
            trace_id,
            session,
            c.DB_SESSION_SPAN,
            start + MS,
            50 * MS,
            parent=root,
            attributes={c.VRP_DB_SESSION_STATEMENTS: 11},
        ),
        span(trace_id, transaction, c.DB_TRANSACTION_SPAN, start + 2 * MS, 45 * MS, parent=session),
    ]
    tags = set()
    for i, text in enumerate([TAGS] * 6 + [AUTHORS] * 5):
        span_id = rng.randbytes(8)
        if text == TAGS:
            tags.add(span_id.hex())
        result.append(
            span(
                trace_id,
                span_id,
                "SELECT",
                start + (3 + i) * MS,
                MS,
                parent=transaction,
                kind=CLIENT,
                attributes={c.DB_QUERY_TEXT: text},
            )
        )
    return trace_id.hex(), result, tags


def test_an_n_plus_one_finding_reads_the_same_from_every_endpoint(any_live: Live) -> None:
    live = any_live
    rng = random.Random(21)
    trace_id, spans_, tags = two_repeats_trace(rng, time.time_ns() - 60 * 10**9)
    # The statements arrive in a batch before their session's, as exporters send them.
    write(live.store, [s for s in spans_ if s.kind == CLIENT])
    write(live.store, [s for s in spans_ if s.kind != CLIENT])
    listed = live.get("/api/queries")["n_plus_one"]
    tree = live.get(f"/api/traces/{trace_id}")["n_plus_one"]
    assert [(n["trace_id"], n["query_text"], n["count"]) for n in listed] == [(trace_id, TAGS, 6)]
    assert [(n["trace_id"], n["query_text"], n["count"]) for n in tree] == [(trace_id, TAGS, 6)]
    assert tree[0]["session_span_id"] == listed[0]["session_span_id"]
    assert set(tree[0]["span_ids"]) == tags
    flagged = {t["trace_id"]: t["n_plus_one"] for t in live.get("/api/traces")["traces"]}
    assert flagged == {trace_id: True}


def status_point(status: int, end_s: float, value_s: float, count: int) -> MetricPoint:
    """A delta point of ``http.server.request.duration``: ``count`` responses of ``GET /m``
    with ``status``, each taking ``value_s``, over the 10 s ending at ``end_s``."""
    attributes = {
        c.HTTP_REQUEST_METHOD: "GET",
        c.HTTP_ROUTE: "/m",
        c.HTTP_RESPONSE_STATUS_CODE: status,
    }
    histogram = ExpHistogram(scale=10)
    for _ in range(count):
        histogram.record(value_s)
    return MetricPoint(
        "svc", f"/m|{status}", c.HTTP_SERVER_REQUEST_DURATION, "s", "exponential_histogram",
        1, False, attributes, int((end_s - 10) * 1e9), int(end_s * 1e9), count=count,
        sum=value_s * count, min=value_s, max=value_s, bucket_counts=histogram.counts, scale=10,
        offset=histogram.offset,
    )  # fmt: skip


def test_route_latency_merges_the_status_series_of_a_minute(any_live: Live) -> None:
    minute = 60
    now = time.time() // minute * minute
    merged_minute, single_minute = now - 10 * minute + 30, now - 5 * minute + 30
    any_live.store.write_metrics(
        [
            status_point(200, merged_minute, 0.010, 80),
            status_point(500, merged_minute, 0.200, 20),
            status_point(200, single_minute, 0.040, 10),
        ]
    )
    series = any_live.get("/api/operations", since="30m")["series"]
    busy = [p for p in series if p["count"]]
    assert [(p["operation"], p["count"]) for p in busy] == [("GET /m", 100), ("GET /m", 10)]
    merged, single = busy
    assert merged["p50_ms"] == pytest.approx(10, rel=0.02)
    assert merged["p95_ms"] == pytest.approx(200, rel=0.02)
    assert single["p50_ms"] == pytest.approx(40, rel=0.02)
    assert len(series) >= 30 and all(p["p50_ms"] is None for p in series if not p["count"])
