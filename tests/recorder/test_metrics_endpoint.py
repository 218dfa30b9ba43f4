"""``vrp api``'s ``/metrics``: served only when ``VRP_API_METRICS_ENABLED`` is true."""

from __future__ import annotations

from tests.recorder.fixtures import MakeClient


def test_metrics_answer_404_unless_enabled(make_client: MakeClient) -> None:
    client, _ = make_client()
    assert client.get("/metrics").status_code == 404


def test_enabled_metrics_are_the_prometheus_text_format(make_client: MakeClient) -> None:
    client, _ = make_client(VRP_API_METRICS_ENABLED="true")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    assert "# TYPE process_cpu_seconds_total counter" in response.get_data(as_text=True)
