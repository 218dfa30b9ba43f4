"""Batched span writes store each span once and count it once in the rollups."""

from __future__ import annotations

import random
import time

import sqlalchemy as sa

from dashboard.otlp import decode_traces
from dashboard.schema import spans
from dashboard.store import TelemetryStore
from tests.dashboard.conftest import Live
from tests.dashboard.otlp_bodies import request_trace, traces_request


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
