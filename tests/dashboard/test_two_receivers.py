"""Two receiver processes on one real PostgreSQL store: nothing lost, nothing counted twice."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from dashboard.schema import spans
from dashboard.store import TelemetryStore
from instrumentation import conventions as c
from tests.conftest import reset_postgres
from tests.dashboard.otlp_bodies import (
    TEMPORALITY_CUMULATIVE,
    histogram_request,
    request_trace,
    traces_request,
)

ROOT = Path(__file__).resolve().parents[2]
PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def receivers(postgres_url: str) -> Iterator[tuple[TelemetryStore, list[str]]]:
    reset_postgres(postgres_url)
    store = TelemetryStore(postgres_url)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.dashboard.receiver_process", postgres_url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        urls = [f"http://127.0.0.1:{int(p.stdout.readline())}" for p in processes]  # type: ignore[union-attr]
        yield store, urls
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
        store.dispose()


def test_two_receivers_store_every_span_once_and_count_rollups_exactly(
    receivers: tuple[TelemetryStore, list[str]],
) -> None:
    store, urls = receivers
    rng = random.Random(7)
    now = time.time_ns()
    batches = []
    for _ in range(40):
        trace_spans = []
        for _ in range(10):
            trace_spans.extend(request_trace(rng, now - rng.randrange(0, 600 * 10**9)))
        batches.append(traces_request(trace_spans).SerializeToString())
    # Every batch goes to one receiver; every fourth goes to both (an exporter's retry after a
    # timeout, a load balancer's duplicate), all at once from eight threads.
    posts = [(urls[i % 2], body) for i, body in enumerate(batches)]
    posts += [(urls[(i + 1) % 2], body) for i, body in enumerate(batches) if i % 4 == 0]
    rng.shuffle(posts)

    def send(post: tuple[str, bytes]) -> int:
        url, body = post
        return requests.post(
            f"{url}/v1/traces", data=body, headers=PROTOBUF, timeout=60
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(send, posts)) == {200}

    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(spans)).scalar()
        distinct = conn.execute(
            sa.select(sa.func.count()).select_from(
                sa.select(spans.c.trace_id, spans.c.span_id).distinct().subquery()
            )
        ).scalar()
    assert stored == distinct == 40 * 10 * 6
    operations = requests.get(
        f"{urls[0]}/api/operations", params={"since": "1h"}, timeout=30
    ).json()
    counts = {o["operation"]: o["count"] for o in operations["operations"]}
    assert sum(counts[name] for name in counts if name.startswith("GET ")) == 400
    assert counts[c.DB_SESSION_SPAN] == counts[c.DB_TRANSACTION_SPAN] == 400
    queries = requests.get(f"{urls[1]}/api/queries", params={"since": "1h"}, timeout=30).json()
    assert sum(q["count"] for q in queries["queries"]) == 1200


def test_a_cumulative_stream_alternating_between_receivers_is_counted_once(
    receivers: tuple[TelemetryStore, list[str]],
) -> None:
    _store, urls = receivers
    start = time.time_ns() - 300 * 10**9
    seen: list[float] = []
    rng = random.Random(3)
    for step in range(12):
        seen += [rng.uniform(0.001, 0.5) for _ in range(rng.randrange(0, 8))]
        body = histogram_request(
            c.HTTP_SERVER_REQUEST_DURATION,
            [(start, start + (step + 1) * 10 * 10**9, list(seen))],
            temporality=TEMPORALITY_CUMULATIVE,
            attributes={c.HTTP_REQUEST_METHOD: "GET", c.HTTP_ROUTE: "/r"},
        ).SerializeToString()
        # Sent to both: the second copy of a point is a repeat and adds nothing.
        for url in (urls[step % 2], urls[(step + 1) % 2]):
            response = requests.post(f"{url}/v1/metrics", data=body, headers=PROTOBUF, timeout=30)
            assert response.status_code == 200
    summary = requests.get(f"{urls[0]}/api/summary", params={"since": "1h"}, timeout=30).json()
    assert [s["count"] for s in summary["services"]] == [len(seen)]
