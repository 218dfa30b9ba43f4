"""A SQLite store's writer reuses the rollup rows it wrote last, and never a stale one."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dashboard import rollup_cache, rollups
from dashboard.otlp import SpanRecord, decode_traces
from dashboard.schema import rollup
from dashboard.store import TelemetryStore, writes
from tests.dashboard.otlp_bodies import request_trace, traces_request

START_NS = (time.time_ns() - 3600 * 10**9) // 60_000_000_000 * 60_000_000_000


def records(seed: int, requests: int = 5) -> list[SpanRecord]:
    """Spans of ``requests`` requests, all in the same minute (the same rollup rows)."""
    rng = random.Random(seed)
    spans_ = [s for i in range(requests) for s in request_trace(rng, START_NS + i * 10**6)]
    body = traces_request(spans_).SerializeToString()
    return decode_traces(body, "application/x-protobuf").records


def minute_count(store: TelemetryStore) -> int:
    with store.engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.sum(rollup.c.count)).where(rollup.c.resolution == rollups.MINUTE)
        ).scalar_one()


@pytest.fixture
def path(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    TelemetryStore(url).upgrade()
    return url


@pytest.fixture
def store(path: str) -> Iterator[TelemetryStore]:
    store = TelemetryStore(path)
    yield store
    store.dispose()


def rollup_reads(store: TelemetryStore) -> list[str]:
    reads: list[str] = []

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def _seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and rollup.name in statement:
            reads.append(statement)

    return reads


def test_a_second_write_to_the_same_rollups_reads_none_of_them(store: TelemetryStore) -> None:
    store.write_spans(records(1))
    reads = rollup_reads(store)
    store.write_spans(records(2))
    assert reads == []
    assert minute_count(store) == 60


def test_a_write_by_another_process_is_never_overwritten(path: str, store: TelemetryStore) -> None:
    other = TelemetryStore(path)  # its own engine and connections, as another process has
    try:
        store.write_spans(records(1))
        other.write_spans(records(2))
        store.write_spans(records(3))
        other.write_spans(records(4))
        store.write_spans(records(5))
    finally:
        other.dispose()
    assert minute_count(store) == 150


def test_a_commit_of_this_process_elsewhere_empties_the_cache(store: TelemetryStore) -> None:
    store.write_spans(records(1))
    with store.engine.begin() as conn:  # e.g. retention deleting rollups
        conn.execute(rollup.delete())
    store.write_spans(records(2))
    assert minute_count(store) == 30


def test_a_failed_write_leaves_nothing_behind_in_the_cache(
    store: TelemetryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write_spans(records(1))

    def fail(*_args: object) -> None:
        raise RuntimeError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(writes, "touch_services", fail)
        with pytest.raises(RuntimeError):
            store.write_spans(records(2))
    store.write_spans(records(3))
    assert minute_count(store) == 60


def test_the_cache_stays_bounded(store: TelemetryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollup_cache, "MAX_ENTRIES", 5)
    for seed in range(3):
        store.write_spans(records(seed))
        assert store.rollup_cache is not None
        assert len(store.rollup_cache._entries) <= 5
    assert minute_count(store) == 90


def test_postgresql_stores_have_no_cache(postgres_url: str) -> None:
    store = TelemetryStore(postgres_url)
    try:
        assert store.rollup_cache is None
    finally:
        store.dispose()
