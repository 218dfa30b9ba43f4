"""The JSON API: parameter validation, N+1 detection, span trees, backups, spans-only services."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboard.app import create_app
from dashboard.histograms import ExpHistogram
from dashboard.intervals import parse_interval
from dashboard.otlp import LogRecord, MetricPoint, decode_traces
from dashboard.reads.window import TimeRange
from dashboard.rollups import DAY, HOUR, MINUTE
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from instrumentation import conventions as c
from tests.dashboard.conftest import Live, serve
from tests.dashboard.otlp_bodies import request_trace, span, traces_request

PROTOBUF = "application/x-protobuf"
MS = 10**6
CLIENT = 3
QS = (0.5, 0.95, 0.99)


def write(store: TelemetryStore, spans_: list) -> None:
    body = traces_request(spans_).SerializeToString()
    store.write_spans(decode_traces(body, PROTOBUF).records)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-11-28T10:00:00"}, "since"),
        ({"until": "12x"}, "until"),
        ({"since": "1h", "until": "2h"}, "until"),
        ({"service": ""}, "service"),
        ({"service": "x" * 300}, "service"),
        ({"service": "bad\nname"}, "service"),
    ],
)
@pytest.mark.parametrize("path", ["/api/summary", "/api/operations", "/api/queries", "/api/logs"])
def test_bad_range_or_service_is_a_422_naming_the_parameter(
    live: Live, path: str, params: dict[str, str], field: str
) -> None:
    with live.app.test_client() as client:
        response = client.get(path, query_string=params)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]["query"]


@pytest.mark.parametrize("back", ["15m", "6h", "24h", "7d"])
def test_a_relative_range_spans_exactly_its_length(live: Live, back: str) -> None:
    with live.app.test_client() as client:
        body = client.get("/api/summary", query_string={"since": back}).get_json()
    since, until = (datetime.fromisoformat(body[key]) for key in ("since", "until"))
    assert until - since == timedelta(seconds=parse_interval(back))


def test_a_relative_since_with_an_iso_until_counts_back_from_that_instant(live: Live) -> None:
    until = "2026-11-28T20:00:00+00:00"
    with live.app.test_client() as client:
        body = client.get("/api/summary", query_string={"since": "1h", "until": until}).get_json()
    assert (body["since"], body["until"]) == ("2026-11-28T19:00:00+00:00", until)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/logs", {"level": "LOUD"}, "level"),
        ("/api/logs", {"limit": "5000"}, "limit"),
        ("/api/logs", {"trace_id": "xyz"}, "trace_id"),
        ("/api/traces", {"status": "maybe"}, "status"),
        ("/api/traces", {"min_duration_ms": "-1"}, "min_duration_ms"),
    ],
)
def test_bad_filters_are_422s(live: Live, path: str, params: dict[str, str], field: str) -> None:
    with live.app.test_client() as client:
        response = client.get(path, query_string=params)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]["query"]


RANGE_PANELS = [
    "/api/summary",
    "/api/operations",
    "/api/queries",
    "/api/pool",
    "/api/transactions",
    "/api/logs",
    "/api/traces",
    "/api/backups",
]


@pytest.mark.parametrize(
    "params",
    [
        {"since": "0m"},
        {"since": "0s"},
        {"since": "0h"},
        {"since": "3000000d"},
        {"since": "99999999999999999999d"},
        {"until": "0d"},
        {"until": "4000d"},
    ],
)
@pytest.mark.parametrize("path", RANGE_PANELS)
def test_zero_or_huge_relative_range_is_a_422_naming_the_parameter(
    live: Live, path: str, params: dict[str, str]
) -> None:
    with live.app.test_client() as client:
        response = client.get(path, query_string=params)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert set(response.get_json()["errors"]["query"]) == set(params)


@pytest.mark.parametrize(
    "params",
    [
        {"since": "1000-01-01T00:00:00Z"},
        {"since": "0001-01-01T00:00:00+14:00"},
        {"until": "9999-01-01T00:00:00Z"},
        {"since": "1000-01-01T00:00:00Z", "until": "9999-12-31T23:59:59-14:00"},
    ],
)
@pytest.mark.parametrize("path", RANGE_PANELS)
def test_far_past_or_future_dates_are_clamped_to_what_the_store_holds(
    live: Live, path: str, params: dict[str, str]
) -> None:
    now = time.time_ns()
    trace_id, root = b"\x01" * 16, b"\x02" * 8
    write(live.store, [span(trace_id, root, "GET /r", now - 1000 * MS, 5 * MS, kind=2)])
    with live.app.test_client() as client:
        response = client.get(path, query_string=params)
    assert response.status_code == 200, response.get_data(as_text=True)
    if path == "/api/traces" and "since" in params:
        assert [t["trace_id"] for t in response.get_json()["traces"]] == ["01" * 16]


def test_idle_minutes_are_explicit_points_with_zero_rate_and_no_latency(live: Live) -> None:
    minute = 60 * 10**9
    now = time.time_ns() // minute * minute
    busy = {now - 10 * minute + 30 * 10**9, now - 6 * minute + 30 * 10**9}
    for index, start in enumerate(sorted(busy)):
        write(live.store, [span(bytes([index + 1]) * 16, b"\x02" * 8, "GET /r", start, MS, kind=2)])
    series = live.get("/api/summary", since="30m")["series"]
    times = [p["t"] for p in series]
    assert times == sorted(times) and len(times) == len(set(times)) >= 30
    busy_points = [p for p in series if p["rate_per_s"] > 0]
    assert len(busy_points) == 2
    assert all(p["p95_ms"] is not None for p in busy_points)
    idle = [p for p in series if p["rate_per_s"] == 0]
    assert len(idle) == len(series) - 2
    assert all(p["p50_ms"] is None and p["p99_ms"] is None and not p["error_rate"] for p in idle)
    between = [p for p in idle if busy_points[0]["t"] < p["t"] < busy_points[1]["t"]]
    assert len(between) == 3


def test_logs_say_when_the_limit_cut_the_list(live: Live) -> None:
    now = time.time_ns()
    live.store.write_logs(
        [LogRecord(now - i * MS, "vrp-api", 9, "INFO", f"n{i}", None, None, {}) for i in range(5)]
    )
    cut = live.get("/api/logs", since="1h", limit=3)
    assert cut["truncated"] is True
    assert [r["message"] for r in cut["logs"]] == ["n0", "n1", "n2"]
    whole = live.get("/api/logs", since="1h", limit=5)
    assert whole["truncated"] is False
    assert len(whole["logs"]) == 5


def test_unknown_trace_is_404_and_malformed_id_422(live: Live) -> None:
    with live.app.test_client() as client:
        assert client.get(f"/api/traces/{'0' * 31}1").status_code == 404
        assert client.get("/api/traces/not-a-trace").status_code == 422
        assert client.get("/api/openapi.json").get_json()["info"]["title"]


def n_plus_one_trace(rng: random.Random, repeats: int, now: int) -> tuple[str, list]:
    trace_id, root, session = rng.randbytes(16), rng.randbytes(8), rng.randbytes(8)
    text = "SELECT tags.name FROM tags WHERE tags.recording_id = ?"
    result = [
        span(trace_id, root, "GET /r", now, 50 * MS, kind=2),
        span(
            trace_id,
            session,
            c.DB_SESSION_SPAN,
            now + MS,
            40 * MS,
            parent=root,
            attributes={c.VRP_DB_SESSION_STATEMENTS: repeats + 1},
        ),
        span(
            trace_id,
            rng.randbytes(8),
            "SELECT recordings",
            now + 2 * MS,
            MS,
            parent=session,
            kind=CLIENT,
            attributes={c.DB_QUERY_TEXT: "SELECT recordings.id FROM recordings"},
        ),
    ]
    transaction = rng.randbytes(8)
    result.append(
        span(trace_id, transaction, c.DB_TRANSACTION_SPAN, now + 3 * MS, 30 * MS, parent=session)
    )
    for i in range(repeats):
        result.append(
            span(
                trace_id,
                rng.randbytes(8),
                "SELECT tags",
                now + (3 + i) * MS,
                MS,
                parent=transaction,
                kind=CLIENT,
                attributes={c.DB_QUERY_TEXT: text},
            )
        )
    return trace_id.hex(), result


def test_n_plus_one_is_flagged_at_five_repeats_in_one_session_even_across_batches(
    live: Live,
) -> None:
    rng = random.Random(5)
    now = time.time_ns() - 60 * 10**9
    flagged, flagged_spans = n_plus_one_trace(rng, 5, now)
    clean, clean_spans = n_plus_one_trace(rng, 4, now + 10**9)
    split, split_spans = n_plus_one_trace(rng, 7, now + 2 * 10**9)
    write(live.store, flagged_spans + clean_spans)
    # Statements exported in an earlier batch than the session that ran them.
    statements = [s for s in split_spans if s.kind == CLIENT]
    write(live.store, statements)
    write(live.store, [s for s in split_spans if s.kind != CLIENT])

    found = live.get("/api/queries")["n_plus_one"]
    assert {(n["trace_id"], n["count"]) for n in found} == {(flagged, 5), (split, 7)}
    traces = {t["trace_id"]: t["n_plus_one"] for t in live.get("/api/traces")["traces"]}
    assert traces == {flagged: True, clean: False, split: True}
    tree = live.get(f"/api/traces/{split}")
    assert [n["count"] for n in tree["n_plus_one"]] == [7]
    depths = [(s["name"], s["depth"]) for s in tree["spans"][:5]]
    assert depths == [
        ("GET /r", 0),
        (c.DB_SESSION_SPAN, 1),
        ("SELECT recordings", 2),
        (c.DB_TRANSACTION_SPAN, 2),
        ("SELECT tags", 3),
    ]
    offsets = [s["offset_ms"] for s in tree["spans"]]
    assert offsets[0] == 0 and all(o >= 0 for o in offsets)


def test_a_spans_only_service_gets_rollups_from_its_server_spans(live: Live) -> None:
    rng = random.Random(11)
    now = time.time_ns() - 120 * 10**9
    batch = []
    for i in range(50):
        batch += request_trace(rng, now + i * 10**8)
    write(live.store, batch)
    [service] = live.get("/api/summary", since="1h")["services"]
    assert (service["service"], service["source"], service["count"]) == ("vrp-api", "spans", 50)
    durations = sorted(
        (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6 for s in batch if s.kind == 2
    )
    assert service["p50_ms"] == pytest.approx(durations[24], rel=0.02)
    operations = live.get("/api/operations")["operations"]
    assert {o["source"] for o in operations} == {"spans"}
    assert sum(o["count"] for o in operations if o["kind"] == "SERVER") == 50
    outcomes = live.get("/api/transactions")["outcomes"]
    assert outcomes == [{"service": "vrp-api", "outcome": "commit", "count": 50}]
    queries = live.get("/api/queries")
    assert {q["summary"] for q in queries["queries"]} == {
        "SELECT recordings",
        "SELECT tags",
        "SELECT recording_tags",
    }
    durations_ms = [e["duration_ms"] for e in queries["examples"]]
    assert durations_ms == sorted(durations_ms, reverse=True)


def test_backups_state_follows_the_age_of_the_last_success(live: Live) -> None:
    assert live.get("/api/backups")["state"] == "none"
    rng = random.Random(2)
    now = time.time_ns()
    runs = [
        span(
            rng.randbytes(16),
            rng.randbytes(8),
            c.BACKUP_RUN_SPAN,
            now - 30 * 3600 * 10**9,
            5 * 10**9,
            attributes={
                c.VRP_BACKUP_STATUS: "success",
                c.VRP_BACKUP_BYTES: 1000,
                c.VRP_BACKUP_ID: "b1",
                c.VRP_BACKUP_VERIFIED: True,
            },
        ),
        span(
            rng.randbytes(16),
            rng.randbytes(8),
            c.BACKUP_RUN_SPAN,
            now - 3600 * 10**9,
            10**9,
            attributes={c.VRP_BACKUP_STATUS: "failed", c.VRP_BACKUP_ID: "b2"},
        ),
    ]
    write(live.store, runs)
    backups = live.get("/api/backups")
    assert [r["backup_id"] for r in backups["runs"]] == ["b2", "b1"]
    assert backups["runs"][1]["verified"] is True
    assert backups["state"] == "late"  # 30 h against the default 24 h
    assert backups["has_telemetry"] is True
    assert 29 * 3600 < backups["last_success_age_s"] < 31 * 3600


def _duration_point(
    route: str, end_s: float, values: list[float], bounds: tuple[float, ...] = ()
) -> MetricPoint:
    """A delta point of ``http.server.request.duration`` over the 10 s ending at ``end_s``."""
    attributes = {c.HTTP_REQUEST_METHOD: "GET", c.HTTP_ROUTE: route}
    common = {"count": len(values), "sum": sum(values), "min": min(values), "max": max(values)}
    kind = "histogram" if bounds else "exponential_histogram"
    stream = f"{route}|{kind}"
    start_ns, end_ns = int((end_s - 10) * 1e9), int(end_s * 1e9)
    if bounds:
        counts = [0] * (len(bounds) + 1)
        for value in values:
            counts[sum(1 for b in bounds if value > b)] += 1
        return MetricPoint(
            "svc", stream, c.HTTP_SERVER_REQUEST_DURATION, "s", kind, 1, False, attributes,
            start_ns, end_ns, bounds=bounds, bucket_counts=counts, **common,
        )  # fmt: skip
    histogram = ExpHistogram(scale=10)
    for value in values:
        histogram.record(value)
    return MetricPoint(
        "svc", stream, c.HTTP_SERVER_REQUEST_DURATION, "s", kind, 1, False, attributes,
        start_ns, end_ns, bucket_counts=histogram.counts, scale=10, offset=histogram.offset,
        **common,
    )  # fmt: skip


@pytest.fixture
def any_live(database_url: str) -> Iterator[Live]:
    """A dashboard on a SQLite file or on PostgreSQL."""
    store = TelemetryStore(database_url)
    store.upgrade()
    try:
        yield from serve(DashboardSettings(store_url=database_url), store)
    finally:
        store.dispose()


def test_totals_over_minutes_hours_and_days_count_every_point_once(any_live: Live) -> None:
    """1 h totals add minute rows, 6 h ones whole hours and minutes at the edges, 7 d ones hours
    at the edges and days between: each observation counts once, and percentiles merged from
    many rows stay within 2%."""
    rng = random.Random(7)
    now = time.time()
    ago = {"30m": 1800, "3h": 3 * 3600, "30h": 30 * 3600, "3.5d": 84 * 3600, "6d": 144 * 3600}
    ago |= {"8d": 192 * 3600}
    values = {label: [rng.uniform(0.001, 0.5) for _ in range(200)] for label in ago}
    points = []
    for label, seconds in ago.items():
        # Spread over ten minutes, so the rows of several minutes (and hours) are merged.
        for part in range(10):
            end = now - seconds + 60 * part
            chunk = values[label][part * 20 : (part + 1) * 20]
            points.append(_duration_point("/exp", end, chunk))
            points.append(_duration_point("/mixed", end, chunk, bounds=(0.1, 0.25)))
            points.append(_duration_point("/mixed", end, chunk))
    any_live.store.write_metrics(sorted(points, key=lambda p: p.time_ns))
    expected = {"1h": ["30m"], "6h": ["30m", "3h"], "24h": ["30m", "3h"]}
    expected["7d"] = ["30m", "3h", "30h", "3.5d", "6d"]
    for since, labels in expected.items():
        inside = [value for label in labels for value in values[label]]
        found = {
            o["operation"]: o for o in any_live.get("/api/operations", since=since)["operations"]
        }
        assert found["GET /exp"]["count"] == len(inside)
        assert found["GET /mixed"]["count"] == 2 * len(inside)
        for q, name in zip(QS, ("p50_ms", "p95_ms", "p99_ms"), strict=True):
            truth = sorted(inside)[max(1, math.ceil(q * len(inside))) - 1] * 1000
            assert found["GET /exp"][name] == pytest.approx(truth, rel=0.02)
            assert min(inside) * 1000 <= found["GET /mixed"][name] <= max(inside) * 1000
        (service,) = any_live.get("/api/summary", since=since)["services"]
        assert service["count"] == 3 * len(inside)


@given(
    st.integers(min_value=0, max_value=3 * 86400),
    st.integers(min_value=1, max_value=6 * 3600),
)
def test_a_minute_range_total_plan_covers_each_minute_of_the_range_once(
    start: int, length: int
) -> None:
    base = 1_795_000_000 // DAY * DAY
    window = TimeRange(
        datetime.fromtimestamp(base + start, UTC),
        datetime.fromtimestamp(base + start + length, UTC),
    )
    covered: list[int] = []
    for resolution, a, b in window.total_plan():
        if resolution == HOUR:
            assert a % HOUR == 0
            covered += [m for h in range(a, b + 1, HOUR) for m in range(h, h + HOUR, MINUTE)]
        else:
            assert resolution == MINUTE
            covered += range(-(-a // MINUTE) * MINUTE, b + 1, MINUTE)
    assert covered == list(range(window.first_bucket, window.last_bucket + 1, MINUTE))


def _status_point(
    route: str, status: int, end_s: float, count: int, *, cumulative_from: float | None = None
) -> MetricPoint:
    """A point of ``http.server.request.duration`` for ``count`` responses with ``status``:
    a delta over the 10 s ending at ``end_s``, or cumulative since ``cumulative_from``."""
    attributes = {
        c.HTTP_REQUEST_METHOD: "GET",
        c.HTTP_ROUTE: route,
        c.HTTP_RESPONSE_STATUS_CODE: status,
    }
    histogram = ExpHistogram(scale=10)
    for _ in range(count):
        histogram.record(0.01)
    start_s = end_s - 10 if cumulative_from is None else cumulative_from
    return MetricPoint(
        "svc", f"{route}|{status}", c.HTTP_SERVER_REQUEST_DURATION, "s",
        "exponential_histogram", 2 if cumulative_from is not None else 1, False, attributes,
        int(start_s * 1e9), int(end_s * 1e9), count=count, sum=0.01 * count, min=0.01,
        max=0.01, bucket_counts=histogram.counts, scale=10, offset=histogram.offset,
    )  # fmt: skip


def test_client_errors_are_counted_apart_from_errors_per_service_and_route(
    any_live: Live,
) -> None:
    """A 4xx is a client error, a 5xx an error: the summary and every route carry both, and
    the routes their responses per status class (cumulative streams counted by delta)."""
    now = time.time() - 60
    statuses = {200: 70, 301: 5, 404: 20, 422: 3, 500: 2}
    points = [_status_point("/r", status, now, n) for status, n in statuses.items()]
    points.append(_status_point("/c", 404, now - 20, 4, cumulative_from=now - 100))
    points.append(_status_point("/c", 404, now, 10, cumulative_from=now - 100))
    points.append(_status_point("/c", 200, now, 30))
    any_live.store.write_metrics(sorted(points, key=lambda p: p.time_ns))

    (service,) = any_live.get("/api/summary", since="1h")["services"]
    assert (service["count"], service["errors"], service["client_errors"]) == (140, 2, 33)
    assert service["error_rate"] == pytest.approx(2 / 140)
    assert service["client_error_rate"] == pytest.approx(33 / 140)
    busy = [p for p in any_live.get("/api/summary", since="1h")["series"] if p["rate_per_s"]]
    assert sum(p["client_error_rate"] * p["rate_per_s"] * 60 for p in busy) == pytest.approx(33)

    found = {o["operation"]: o for o in any_live.get("/api/operations")["operations"]}
    route = found["GET /r"]
    assert (route["errors"], route["client_errors"]) == (2, 23)
    assert route["client_error_rate"] == pytest.approx(23 / 100)
    assert route["status_classes"] == {"2xx": 70, "3xx": 5, "4xx": 23, "5xx": 2}
    assert found["GET /c"]["status_classes"] == {"2xx": 30, "3xx": 0, "4xx": 10, "5xx": 0}


def test_a_spans_only_service_counts_4xx_server_spans_as_client_errors(live: Live) -> None:
    now = time.time_ns() - 60 * 10**9
    spans_ = [
        span(
            bytes([i + 1]) * 16,
            b"\x02" * 8,
            "GET /r",
            now + i * MS,
            MS,
            kind=2,
            attributes={c.HTTP_RESPONSE_STATUS_CODE: status},
            error=status >= 500,
        )
        for i, status in enumerate([200, 200, 302, 404, 409, 503])
    ]
    write(live.store, spans_)
    (service,) = live.get("/api/summary", since="1h")["services"]
    assert (service["source"], service["errors"], service["client_errors"]) == ("spans", 1, 2)
    (operation,) = live.get("/api/operations")["operations"]
    assert operation["status_classes"] == {"2xx": 2, "3xx": 1, "4xx": 2, "5xx": 1}


@pytest.mark.parametrize(
    ("path", "params", "unknown"),
    [
        ("/api/services", {"since": "1h"}, "since"),
        ("/api/summary", {"sinse": "1h"}, "sinse"),
        ("/api/operations", {"since": "1h", "route": "/x"}, "route"),
        ("/api/queries", {"summry": "SELECT x"}, "summry"),
        ("/api/pool", {"pool": "vrp"}, "pool"),
        ("/api/transactions", {"outcome": "commit"}, "outcome"),
        ("/api/logs", {"levl": "ERROR"}, "levl"),
        ("/api/traces", {"min_duration": "5"}, "min_duration"),
        (f"/api/traces/{'0' * 32}", {"depth": "2"}, "depth"),
        ("/api/backups", {"repo": "r1"}, "repo"),
    ],
)
def test_an_unknown_query_parameter_is_a_422_naming_it(
    live: Live, path: str, params: dict[str, str], unknown: str
) -> None:
    with live.app.test_client() as client:
        response = client.get(path, query_string=params)
    assert response.status_code == 422, response.get_data(as_text=True)
    errors = response.get_json()["errors"]["query"]
    assert list(errors) == [unknown]
    assert "unknown parameter" in errors[unknown][0]


@pytest.mark.parametrize("path", ["/api", "/api/", "/api/nope", "/api/summary/extra", "/v1"])
def test_an_unknown_path_under_api_is_a_404_json_not_the_ui(live: Live, path: str) -> None:
    app = create_app(live.settings, store=live.store)
    with app.server.test_client() as client:
        response = client.get(path)
        assert client.get("/").content_type.startswith("text/html")
    assert response.status_code == 404
    assert response.is_json
    assert path in response.get_json()["message"]


def test_metrics_not_enabled_is_a_404_json(live: Live) -> None:
    app = create_app(live.settings, store=live.store)
    with app.server.test_client() as client:
        response = client.get("/metrics")
    assert response.status_code == 404
    assert "VRP_DASHBOARD_METRICS_ENABLED" in response.get_json()["message"]
