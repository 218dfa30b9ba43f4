"""Retention prunes raw spans and logs by age and by count, rollups by age, in the background."""

from __future__ import annotations

import random
import time

import sqlalchemy as sa

from dashboard.otlp import LogRecord, decode_traces
from dashboard.retention import Pruner, prune
from dashboard.schema import examples, logs, rollup, spans
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from tests.dashboard.otlp_bodies import request_trace, traces_request

HOUR_NS = 3600 * 10**9


def store_traces(store: TelemetryStore, starts: list[int], seed: int = 1) -> None:
    rng = random.Random(seed)
    records = []
    for start in starts:
        body = traces_request(request_trace(rng, start)).SerializeToString()
        records += decode_traces(body, "application/x-protobuf").records
    store.write_spans(records)


def count(store: TelemetryStore, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0


def log(time_ns: int) -> LogRecord:
    return LogRecord(time_ns, "svc", 9, "INFO", "hello", None, None, {})


def test_spans_and_logs_older_than_their_retention_are_pruned(store: TelemetryStore) -> None:
    now = time.time()
    now_ns = int(now * 1e9)
    store_traces(store, [now_ns - 30 * HOUR_NS, now_ns - 2 * HOUR_NS, now_ns - 60 * 10**9])
    store.write_logs([log(now_ns - 30 * HOUR_NS), log(now_ns - HOUR_NS)])
    settings = DashboardSettings(
        store_url=store.url, span_retention_hours=24, log_retention_hours=24
    )

    result = prune(store, settings, now=now)

    assert (result.spans, result.logs) == (6, 1)
    assert count(store, spans) == 12
    assert count(store, logs) == 1
    with store.engine.connect() as conn:
        oldest_example = conn.execute(sa.select(sa.func.min(examples.c.start_ns))).scalar()
    assert oldest_example >= now_ns - 24 * HOUR_NS
    # The rollups of pruned spans stay: percentiles outlive raw spans.
    assert count(store, rollup) > 0


def test_the_oldest_spans_and_logs_go_first_beyond_the_size_limit(store: TelemetryStore) -> None:
    now_ns = time.time_ns()
    store_traces(store, [now_ns - i * 60 * 10**9 for i in range(10)])
    store.write_logs([log(now_ns - i * 10**9) for i in range(50)])
    settings = DashboardSettings(store_url=store.url, max_spans=30, max_logs=20)

    prune(store, settings)

    assert count(store, spans) == 30
    assert count(store, logs) == 20
    with store.engine.connect() as conn:
        oldest = conn.execute(sa.select(sa.func.min(spans.c.start_ns))).scalar()
        newest_log = conn.execute(sa.select(sa.func.max(logs.c.time_ns))).scalar()
    assert oldest >= now_ns - 4 * 60 * 10**9 - HOUR_NS // 60
    assert newest_log == now_ns


def test_rollups_beyond_their_retention_are_pruned(store: TelemetryStore) -> None:
    now = time.time()
    store_traces(store, [int((now - 40 * 86400) * 1e9), int((now - 3 * 86400) * 1e9)])
    settings = DashboardSettings(store_url=store.url, rollup_retention_days=30)

    prune(store, settings, now=now)

    with store.engine.connect() as conn:
        kept = conn.execute(sa.select(rollup.c.resolution, rollup.c.start_s)).all()
    assert kept and all(t >= now - 30 * 86400 for _, t in kept)
    assert {resolution for resolution, _ in kept} == {3600, 86400}  # minutes live two days


def test_the_background_pruner_prunes_and_stops(store: TelemetryStore) -> None:
    now_ns = time.time_ns()
    store_traces(store, [now_ns - 48 * HOUR_NS])
    pruner = Pruner(store, DashboardSettings(store_url=store.url), interval=0.05)
    pruner.start()
    try:
        deadline = time.monotonic() + 10
        while count(store, spans) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pruner.stop()
    assert count(store, spans) == 0
