"""Cumulative streams, resets included, roll up to the same per-minute counts as deltas."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.schema import rollup, series
from dashboard.server import create_server
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from instrumentation import conventions as c
from tests.dashboard.otlp_bodies import (
    TEMPORALITY_CUMULATIVE,
    TEMPORALITY_DELTA,
    histogram_request,
)

MINUTE_NS = 60 * 10**9
T0 = 1_790_000_000 * 10**9 // MINUTE_NS * MINUTE_NS
values = st.floats(min_value=1e-4, max_value=30.0, allow_nan=False)
minutes = st.lists(
    st.tuples(st.lists(values, max_size=20), st.booleans()),  # (values, reset before this minute)
    min_size=1,
    max_size=10,
)


def post(app: object, body: bytes) -> None:
    with app.test_client() as client:  # type: ignore[attr-defined]
        response = client.post("/v1/metrics", data=body, content_type="application/x-protobuf")
    assert response.status_code == 200, response.data


def per_minute(store: TelemetryStore, service: str) -> dict[int, tuple[int, list[int], int]]:
    query = (
        sa.select(rollup.c.start_s, rollup.c.count, rollup.c.buckets, rollup.c.bucket_offset)
        .join(series, series.c.id == rollup.c.series_id)
        .where(series.c.service == service, rollup.c.resolution == 60, rollup.c.count > 0)
    )
    with store.engine.connect() as conn:
        return {t: (n, offset, buckets) for t, n, buckets, offset in conn.execute(query)}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(minutes)
def test_cumulative_streams_with_resets_roll_up_like_deltas(
    store: TelemetryStore, plan: list[tuple[list[float], bool]]
) -> None:
    app = create_server(DashboardSettings(store_url=store.url), store=store)
    run = uuid.uuid4().hex[:8]
    delta_service, cumulative_service = f"delta-{run}", f"cumulative-{run}"
    start = T0
    since_start: list[float] = []
    for minute, (batch, reset) in enumerate(plan):
        time_ns = T0 + minute * MINUTE_NS + 30 * 10**9
        if reset and minute:
            start, since_start = time_ns - 10**9, []
        since_start = since_start + batch
        post(
            app,
            histogram_request(
                c.HTTP_SERVER_REQUEST_DURATION,
                [(time_ns - 10**9, time_ns, batch)],
                temporality=TEMPORALITY_DELTA,
                service=delta_service,
            ).SerializeToString(),
        )
        post(
            app,
            histogram_request(
                c.HTTP_SERVER_REQUEST_DURATION,
                [(start, time_ns, since_start)],
                temporality=TEMPORALITY_CUMULATIVE,
                service=cumulative_service,
            ).SerializeToString(),
        )
    expected = per_minute(store, delta_service)
    assert sum(n for n, _, _ in expected.values()) == sum(len(b) for b, _ in plan)
    assert per_minute(store, cumulative_service) == expected


def test_a_smaller_count_with_the_same_start_is_a_reset_not_a_negative_delta(
    store: TelemetryStore,
) -> None:
    app = create_server(DashboardSettings(store_url=store.url), store=store)
    name = c.HTTP_SERVER_REQUEST_DURATION
    points = [
        (T0, T0 + 30 * 10**9, [0.1, 0.2, 0.3, 0.4]),
        (T0, T0 + MINUTE_NS + 30 * 10**9, [0.5]),  # restarted without a new start time
        (T0, T0 + 2 * MINUTE_NS + 30 * 10**9, [0.5, 0.6, 0.7]),
        (T0, T0 + 2 * MINUTE_NS + 30 * 10**9, [0.5, 0.6, 0.7]),  # a repeat adds nothing
    ]
    for point in points:
        post(
            app,
            histogram_request(
                name, [point], temporality=TEMPORALITY_CUMULATIVE, service="restarted"
            ).SerializeToString(),
        )
    counts = {t: n for t, (n, _, _) in per_minute(store, "restarted").items()}
    first = T0 // 10**9
    assert counts == {first: 4, first + 60: 1, first + 120: 2}
