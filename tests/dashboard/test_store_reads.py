"""Panel reads on the SQLite store do not wait behind a writer."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta

from dashboard.reads import traces, traffic
from dashboard.reads.window import TimeRange
from dashboard.store import TelemetryStore


def test_queries_answer_while_another_connection_holds_the_write_lock(
    store: TelemetryStore,
) -> None:
    path = store.engine.url.database
    assert path is not None
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        now = datetime.now(UTC)
        window = TimeRange(since=now - timedelta(hours=1), until=now)
        started = time.monotonic()
        assert traffic.services(store)["services"] == []
        assert traffic.summary(store, window) is not None
        assert traces.traces(store, window) is not None
        elapsed = time.monotonic() - started
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    # A read that took the write lock would wait out the 30 s busy timeout.
    assert elapsed < 5


def test_writes_still_take_the_write_lock_at_begin(store: TelemetryStore) -> None:
    with store.engine.begin() as conn:
        other = sqlite3.connect(store.engine.url.database, isolation_level=None, timeout=0)
        try:
            try:
                other.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                assert "locked" in str(exc)
            else:
                raise AssertionError("a write transaction began without the write lock")
        finally:
            other.close()
        conn.exec_driver_sql("SELECT 1")
