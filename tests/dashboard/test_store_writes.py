"""Batched span writes store each span once and count it once in the rollups."""

from __future__ import annotations

import random
import time

import sqlalchemy as sa

from dashboard.otlp import decode_traces
from dashboard.schema import spans
from dashboard.store import TelemetryStore
from dashboard.store.span_rows import record_of_row, span_row
from tests.dashboard.conftest import Live
from tests.dashboard.otlp_bodies import kv, request_trace, traces_request


def records(seed: int, requests: int) -> list:
    rng = random.Random(seed)
    now = time.time_ns() - 60 * 10**9
    spans_ = [s for i in range(requests) for s in request_trace(rng, now + i * 10**6)]
    body = traces_request(spans_).SerializeToString()
    return decode_traces(body, "application/x-protobuf").records


def test_a_batch_sent_again_or_overlapping_adds_nothing_twice(live: Live) -> None:
    store: TelemetryStore = live.store
    first, second = records(1, 10), records(2, 10)
    assert store.write_spans(first) == 60
    assert store.write_spans(first) == 0
    assert store.write_spans(first[:30] + second) == 60
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(spans)).scalar() == 120
    operations = live.get("/api/operations")["operations"]
    assert sum(o["count"] for o in operations if o["kind"] == "SERVER") == 20
    assert sum(q["count"] for q in live.get("/api/queries")["queries"]) == 60


def stored_keys(store: TelemetryStore) -> set[tuple[str, str]]:
    with store.engine.connect() as conn:
        return {
            (row[0], row[1]) for row in conn.execute(sa.select(spans.c.trace_id, spans.c.span_id))
        }


def test_prepared_requests_written_in_one_group_store_each_span_once(live: Live) -> None:
    """The receiver's path: requests prepared apart and written together. A group whose spans
    are all new takes what was prepared as it is; one overlapping what is stored, or itself
    (two requests carrying the same spans), stores and counts only the new ones."""
    store: TelemetryStore = live.store
    first, second, third = records(3, 50), records(4, 50), records(5, 50)
    assert store.write_prepared_spans([store.prepare_spans(first), store.prepare_spans(second)])
    assert stored_keys(store) == {(r.trace_id, r.span_id) for r in first + second}
    again = [
        store.prepare_spans(second[:120]),
        store.prepare_spans(third),
        store.prepare_spans(third),
    ]
    assert store.write_prepared_spans(again) == 300
    assert len(stored_keys(store)) == 900
    operations = live.get("/api/operations")["operations"]
    assert sum(o["count"] for o in operations if o["kind"] == "SERVER") == 150
    assert sum(q["count"] for q in live.get("/api/queries")["queries"]) == 450


def test_spans_beyond_one_insert_statement_are_all_stored(store: TelemetryStore) -> None:
    """1,000 spans take several multi-row INSERT statements and a shorter last one."""
    many = records(6, 170)[:1000]
    assert store.write_spans(many) == 1000
    assert stored_keys(store) == {(r.trace_id, r.span_id) for r in many}


def test_a_row_says_all_its_record_does() -> None:
    """Prepared spans keep rows, not records; the rare path that needs records rebuilds them."""
    rng = random.Random(7)
    now = time.time_ns()
    spans_ = request_trace(rng, now)
    event = spans_[0].events.add()
    event.name, event.time_unix_nano = "retry", now + 5
    event.attributes.append(kv("error.type", "OperationalError"))
    spans_[1].attributes.append(kv("tags", "a"))
    link = spans_[2].links.add(trace_id=b"\x0a" * 16, span_id=b"\x0b" * 8)
    link.attributes.append(kv("messaging.operation", "process"))
    body = traces_request(spans_).SerializeToString()
    records = decode_traces(body, "application/x-protobuf").records
    assert records[2].links == [
        {
            "trace_id": "0a" * 16,
            "span_id": "0b" * 8,
            "attributes": {"messaging.operation": "process"},
        }
    ]
    for record in records:
        assert record_of_row(span_row(record)) == record._replace(events=list(record.events))
