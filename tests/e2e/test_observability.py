"""The recorder as the instrumentation package makes it observable, end to end.

Real app, real database (SQLite and PostgreSQL), the real OpenTelemetry SDK: in-memory
exporters where the test reads what was recorded, and the real OTLP/HTTP exporters pointed at a
closed port where the test proves a dead collector costs nothing.
"""

from __future__ import annotations

import gc
import logging
import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from opentelemetry.trace import SpanKind

from instrumentation import telemetry as telemetry_module
from instrumentation.database import Database
from instrumentation.settings import TelemetrySettings
from instrumentation.testing import InMemoryTelemetry, reset_for_tests
from recorder import schema_version
from recorder.api import create_app
from recorder.config import load_settings
from tests.recorder.fixtures import make_wav, upload

SENTINEL = "Sentinel7f3a9c"


def test_span_tree_request_session_transaction_statements(
    client: FlaskClient, telemetry: InMemoryTelemetry
) -> None:
    telemetry.clear()
    status, _ = upload(client, tags=["demo"])
    assert status == 201
    server = telemetry.span_named("POST /api/recordings")
    assert server.kind is SpanKind.SERVER
    assert server.attributes["http.route"] == "/api/recordings"
    assert server.attributes["http.response.status_code"] == 201
    session = telemetry.span_named("db.session")
    transaction = telemetry.span_named("db.transaction")
    assert session.parent.span_id == server.context.span_id
    assert transaction.parent.span_id == session.context.span_id
    assert session.attributes["vrp.db.session.outcome"] == "commit"
    assert session.attributes["vrp.db.session.statements"] >= 2
    assert transaction.attributes["vrp.db.transaction.outcome"] == "commit"
    assert transaction.attributes["vrp.db.transaction.attempts"] == 1
    statements = [s for s in telemetry.spans() if s.kind is SpanKind.CLIENT]
    inserts = [s for s in statements if s.name == "INSERT recordings"]
    assert len(inserts) == 1
    insert = inserts[0]
    assert insert.parent.span_id == transaction.context.span_id
    assert insert.attributes["db.operation.name"] == "INSERT"
    assert insert.attributes["db.collection.name"] == "recordings"
    assert insert.attributes["db.system.name"] in ("sqlite", "postgresql")
    assert "INSERT INTO recordings" in insert.attributes["db.query.text"]
    assert all(s.context.trace_id == server.context.trace_id for s in statements)
    durations = telemetry.metric_points("db.client.operation.duration")
    summaries = {p.attributes.get("db.query.summary") for p in durations}
    assert "INSERT recordings" in summaries
    requests = telemetry.metric_points("http.server.request.duration")
    assert any(p.attributes["http.route"] == "/api/recordings" for p in requests)


def _strings_of(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _strings_of(item)]
    if isinstance(value, dict):
        return [text for k, v in value.items() for text in (*_strings_of(k), *_strings_of(v))]
    return [str(value)]


def test_sentinel_values_never_reach_spans_metrics_or_logs(
    client: FlaskClient,
    telemetry: InMemoryTelemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = telemetry_module.OtlpLogHandler(logger_provider=telemetry.logger_provider)
    logging.getLogger().addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        status, body = upload(client, title=f"title {SENTINEL}", tags=[SENTINEL])
        assert status == 201
        rid = body["id"]
        client.get(f"/api/recordings?q={SENTINEL}&tag={SENTINEL}")
        client.patch(f"/api/recordings/{rid}", json={"title": f"new {SENTINEL}"})
        client.patch(f"/api/recordings/{rid}", json={"title": SENTINEL * 40})  # 422 path
        client.get(f"/api/recordings?token={SENTINEL}")
    finally:
        logging.getLogger().removeHandler(handler)
    assert client.get(f"/api/recordings/{rid}").get_json()["title"] == f"new {SENTINEL}"

    recorded: list[str] = []
    for span in telemetry.spans():
        recorded += _strings_of(dict(span.attributes or {}))
        for event in span.events:
            recorded += _strings_of(dict(event.attributes or {}))
    data = telemetry.metric_reader.get_metrics_data()
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    recorded += _strings_of(dict(point.attributes))
    for record in caplog.records:
        recorded += [record.getMessage(), *_strings_of(record.__dict__)]
    for exported in telemetry.logs():
        recorded += [
            str(exported.log_record.body),
            *_strings_of(dict(exported.log_record.attributes or {})),
        ]
    assert telemetry.spans(), "spans were recorded"
    assert caplog.records, "log records were emitted"
    assert telemetry.logs(), "log records were exported"
    leaks = [text for text in recorded if SENTINEL.casefold() in text.casefold()]
    assert leaks == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def dead_collector_client(settings_env: dict[str, str], tmp_path: Path) -> Iterator[FlaskClient]:
    reset_for_tests()
    telemetry_module.setup(
        TelemetrySettings(
            service_name="vrp-api-test",
            otlp_endpoint=f"http://127.0.0.1:{_closed_port()}",
            max_queue_size=512,
            max_export_batch_size=128,
            schedule_delay_ms=50,
            export_timeout_ms=200,
            metric_export_interval_ms=500,
        )
    )
    settings = load_settings(settings_env)
    db = Database(settings.database)
    schema_version.upgrade(db.engine)
    app = create_app(settings, db=db)
    yield app.test_client()
    db.dispose()
    telemetry_module.shutdown(timeout_ms=1000)
    reset_for_tests()


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_dead_collector_never_fails_requests_and_memory_stays_bounded(
    dead_collector_client: FlaskClient,
) -> None:
    client = dead_collector_client
    status, body = upload(client, make_wav(seconds=0.1))
    assert status == 201
    url = f"/api/recordings/{body['id']}"

    def burst(count: int) -> None:
        for _ in range(count):
            assert client.get(url).status_code == 200

    burst(1000)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    burst(4000)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert growth < 4 * 1024 * 1024, f"memory grew by {growth} bytes over 4,000 requests"
    stats = telemetry_module.telemetry_stats()
    assert stats.spans_dropped + stats.spans_failed > 0
