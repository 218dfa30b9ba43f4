"""Decodable but unusable values (64-bit times and counts beyond the store's signed integers,
NaN, spans ending before they start, inconsistent histogram buckets) are refused item by item
through ``partial_success``; the rest of the batch is stored, and one request's records never
fail another request written in the same group transaction."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from dashboard import schema
from dashboard.errors import RecordsRefusedError
from dashboard.otlp import LogRecord
from dashboard.writer import GroupWriter, _Pending
from tests.dashboard.conftest import Live

MAX_UINT64 = str(2**64 - 1)
RESOURCE = {"attributes": [{"key": "service.name", "value": {"stringValue": "vrp-api"}}]}


def post(live: Live, signal: str, document: dict[str, Any]) -> dict[str, Any]:
    with live.app.test_client() as client:
        response = client.post(
            f"/v1/{signal}", data=orjson.dumps(document), content_type="application/json"
        )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def count(live: Live, table: sa.Table) -> int:
    with live.store.engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(table))


def span_json(span_id: str, start: str, end: str) -> dict[str, Any]:
    return {
        "traceId": "0102030405060708090a0b0c0d0e0f12",
        "spanId": span_id,
        "name": f"span {span_id}",
        "startTimeUnixNano": start,
        "endTimeUnixNano": end,
    }


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("1", MAX_UINT64, "2^63-1"),
        (MAX_UINT64, MAX_UINT64, "2^63-1"),
        ("2000000000000000000", "1000000000000000000", "end time is before its start"),
    ],
)
def test_span_with_unstorable_or_negative_times_is_rejected_and_the_rest_stored(
    live: Live, start: str, end: str, message: str
) -> None:
    now = time.time_ns()
    good = span_json("010203040506070a", str(now), str(now + 1000))
    bad = span_json("010203040506070b", start, end)
    document = {"resourceSpans": [{"resource": RESOURCE, "scopeSpans": [{"spans": [bad, good]}]}]}
    reply = post(live, "traces", document)
    assert reply["partialSuccess"]["rejectedSpans"] == "1"
    assert message in reply["partialSuccess"]["errorMessage"]
    assert count(live, schema.spans) == 1


def test_log_record_with_a_time_beyond_int64_is_rejected_and_the_rest_stored(live: Live) -> None:
    records = [
        {"timeUnixNano": MAX_UINT64, "body": {"stringValue": "from the far future"}},
        {"timeUnixNano": str(time.time_ns()), "body": {"stringValue": "now"}},
    ]
    document = {"resourceLogs": [{"resource": RESOURCE, "scopeLogs": [{"logRecords": records}]}]}
    reply = post(live, "logs", document)
    assert reply["partialSuccess"]["rejectedLogRecords"] == "1"
    assert count(live, schema.logs) == 1


def histogram_point(**fields: Any) -> dict[str, Any]:
    now = time.time_ns()
    point = {
        "startTimeUnixNano": str(now - 10**9),
        "timeUnixNano": str(now),
        "count": "2",
        "sum": 0.3,
        "explicitBounds": [0.1, 1.0],
        "bucketCounts": ["1", "1", "0"],
    }
    point.update(fields)
    return point


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"count": MAX_UINT64, "bucketCounts": [MAX_UINT64, "0", "0"]}, "beyond 2^63-1"),
        ({"count": "1", "bucketCounts": [MAX_UINT64, "2", "0"]}, "beyond 2^63-1"),
        ({"sum": "NaN"}, "NaN or infinite"),
        ({"sum": "Infinity"}, "NaN or infinite"),
        ({"max": "-Infinity"}, "NaN or infinite"),
        ({"explicitBounds": ["NaN"], "bucketCounts": ["1", "1"]}, "bounds are not finite"),
        ({"explicitBounds": [1.0, 0.1]}, "bounds are not finite and increasing"),
        ({"explicitBounds": [0.1], "bucketCounts": ["1", "1", "0"]}, "3 bucket counts for 1"),
        ({"count": "2", "bucketCounts": ["3", "4", "0"]}, "add up to 7, not its count"),
        ({"timeUnixNano": MAX_UINT64}, "2^63-1 ns"),
    ],
)
def test_unusable_histogram_point_is_rejected_and_the_rest_stored(
    live: Live, fields: dict[str, Any], message: str
) -> None:
    metrics = [
        {
            "name": name,
            "unit": "s",
            "histogram": {"aggregationTemporality": 1, "dataPoints": [point]},
        }
        for name, point in (("bad.duration", histogram_point(**fields)), ("good.duration", {}))
    ]
    metrics[1]["histogram"]["dataPoints"] = [histogram_point()]
    metrics.append(
        {"name": "bad.gauge", "gauge": {"dataPoints": [{"asDouble": "NaN", "timeUnixNano": "1"}]}}
    )
    document = {"resourceMetrics": [{"resource": RESOURCE, "scopeMetrics": [{"metrics": metrics}]}]}
    reply = post(live, "metrics", document)
    assert reply["partialSuccess"]["rejectedDataPoints"] == "2"
    assert message in reply["partialSuccess"]["errorMessage"]
    with live.store.engine.connect() as conn:
        names = set(conn.scalars(sa.select(schema.series.c.name)))
    assert names == {"good.duration"}


def test_one_requests_unstorable_records_do_not_fail_others_in_the_same_group(
    live: Live,
) -> None:
    """Records that got past decoding but that the store cannot hold (built directly here) are
    written in one group with a good request: the good one is stored, the bad one is refused
    (not a store failure, which would make the exporter retry it forever)."""

    def log(time_ns: int, body: str) -> LogRecord:
        return LogRecord(time_ns, "vrp-api", 9, "INFO", body, None, None, {})

    writer = GroupWriter(live.store)
    good = _Pending("logs", 1, [log(time.time_ns(), "good")])
    bad = _Pending("logs", 1, [log(2**64 - 1, "too far")])
    writer._write([good, bad])
    assert good.done.is_set() and bad.done.is_set()
    assert good.error is None
    assert isinstance(bad.error, RecordsRefusedError)
    assert "dropped, not retried" in str(bad.error)
    assert count(live, schema.logs) == 1
