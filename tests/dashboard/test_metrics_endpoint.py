"""The dashboard's ``/metrics``: off by default (404, not the UI), behind the token when one is
set (401 for a scraper, never the login redirect), and the numbers read from the store."""

from __future__ import annotations

import time
from typing import Any

from flask.testing import FlaskClient

from dashboard.app import create_app
from dashboard.schema import backup_runs
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore

TOKEN = "metrics-token-0123456789abcdef0123456789"


def _client(store: TelemetryStore, **settings: Any) -> FlaskClient:
    app = create_app(DashboardSettings(store_url=store.url, **settings), store=store)
    return app.server.test_client()


def _run(store: TelemetryStore, service: str, status: str, start_s: float, span: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            backup_runs.insert().values(
                trace_id="a" * 32,
                span_id=span,
                service=service,
                backup_id=f"b-{span}",
                trigger="schedule",
                status=status,
                start_ns=int(start_s * 1e9),
                duration_ms=2000.0,
            )
        )


def test_metrics_answer_404_when_not_enabled(store: TelemetryStore) -> None:
    response = _client(store).get("/metrics")
    assert response.status_code == 404
    assert response.get_json()["code"] == 404


def test_with_a_token_a_scraper_needs_it(store: TelemetryStore) -> None:
    client = _client(store, metrics_enabled=True, token=TOKEN)
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    right = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200
    assert right.content_type.startswith("text/plain; version=0.0.4")


def test_backup_age_and_status_per_service_come_from_the_store(store: TelemetryStore) -> None:
    now = time.time()
    _run(store, "stack-a", "success", now - 7200, "0000000000000001")
    _run(store, "stack-a", "failed", now - 600, "0000000000000002")
    _run(store, "stack-b", "success", now - 60, "0000000000000003")
    text = _client(store, metrics_enabled=True).get("/metrics").get_data(as_text=True)
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert lines['vrp_backup_last_run_success{service="stack-a"}'] == "0.0"
    assert lines['vrp_backup_last_run_success{service="stack-b"}'] == "1.0"
    success_a = float(lines['vrp_backup_last_success_timestamp_seconds{service="stack-a"}'])
    assert abs(success_a - (now - 7200 + 2)) < 1
    last_a = float(lines['vrp_backup_last_run_timestamp_seconds{service="stack-a"}'])
    assert abs(last_a - (now - 600 + 2)) < 1
    assert lines['vrp_backup_expected_interval_seconds{service="stack-b"}'] == "86400.0"


def test_receiver_refusals_are_counted_by_signal_and_code(store: TelemetryStore) -> None:
    client = _client(store, metrics_enabled=True)
    for _ in range(3):
        refused = client.post("/v1/traces", data=b"x", content_type="text/plain")
        assert refused.status_code == 415
    for path in ("/v1/a", "/v1/b"):
        assert client.post(path, data=b"x").status_code == 405  # Dash's catch-all is GET only
    text = client.get("/metrics").get_data(as_text=True)
    assert 'vrp_dashboard_receiver_requests_total{code="415",signal="traces"} 3.0' in text
    # Unknown paths share one label value.
    assert 'vrp_dashboard_receiver_requests_total{code="405",signal="other"} 2.0' in text


def test_a_store_that_cannot_be_read_answers_503(store: TelemetryStore) -> None:
    client = _client(store, metrics_enabled=True)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE telemetry_backup_runs")
    response = client.get("/metrics")
    assert response.status_code == 503
    assert response.get_json()["message"] == "telemetry store unavailable"
