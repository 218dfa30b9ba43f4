"""Each built-in alert rule on real telemetry: the SDK's OTLP exporters (or hand-made OTLP
bodies where the SDK cannot backdate) send it to a running dashboard, whose evaluator then
runs one evaluation, as its background thread would."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from backup.telemetry import STATUS_FAILED, STATUS_SUCCESS
from dashboard.alerts.rules import load_rules_file
from dashboard.settings import AlertSettings, DashboardSettings
from dashboard.store import TelemetryStore
from instrumentation import conventions as c
from tests.dashboard.conftest import Live, serve
from tests.dashboard.otlp_bodies import span, traces_request
from tests.dashboard.test_backup_repositories import STACK_A, STACK_B, _process

PROTOBUF = {"Content-Type": "application/x-protobuf"}
HOUR = 3600.0
# Longer than the for: of every built-in rule, so that a second evaluation after it still sees
# the telemetry sent by the test.
WINDOW = 900.0


@pytest.fixture
def alerting(store: TelemetryStore) -> Iterator[Live]:
    settings = DashboardSettings(
        store_url=store.url,
        backup_interval_seconds=HOUR,
        alerts=AlertSettings(
            window_seconds=WINDOW, backup_grace_seconds=HOUR, min_requests=10, p95_ms=500.0
        ),
    )
    yield from serve(settings, store)


def _firing(live: Live, rule: str, now: float | None = None) -> dict[str, dict]:
    """Evaluate once; the firing alerts of ``rule`` by their labels (alertname and severity
    left out)."""
    live.app.alerts.evaluate(now)
    found = {}
    for alert in live.get("/api/alerts")["alerts"]:
        if alert["rule"] == rule and alert["state"] == "firing":
            labels = {
                k: v for k, v in alert["labels"].items() if k not in ("alertname", "severity")
            }
            found[",".join(f"{k}={v}" for k, v in sorted(labels.items()))] = alert
    return found


def _send_spans(live: Live, spans: list[trace_pb2.Span], service: str) -> None:
    body = traces_request(spans, service).SerializeToString()
    response = requests.post(f"{live.url}/v1/traces", data=body, headers=PROTOBUF, timeout=10)
    assert response.status_code == 200


def _server_spans(route: str, count: int, duration_s: float, *, status: int = 200) -> list:
    now = time.time_ns()
    return [
        span(
            os.urandom(16),
            os.urandom(8),
            f"GET {route}",
            now - int(duration_s * 1e9) - i * 1_000_000,
            int(duration_s * 1e9),
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            attributes={
                c.HTTP_REQUEST_METHOD: "GET",
                c.HTTP_ROUTE: route,
                c.HTTP_RESPONSE_STATUS_CODE: status,
            },
            error=status >= 500,
        )
        for i in range(count)
    ]


class _Meters:
    """The SDK's metrics of one service, exported to the dashboard on :meth:`export`."""

    def __init__(self, url: str, service: str) -> None:
        self.reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{url}/v1/metrics"), export_interval_millis=3_600_000
        )
        self.provider = MeterProvider(
            resource=Resource.create({c.SERVICE_NAME: service}), metric_readers=[self.reader]
        )
        self.meter = self.provider.get_meter("tests")

    def export(self) -> None:
        assert self.reader.force_flush(10_000)
        self.provider.shutdown()


def test_backup_overdue_fires_per_repository_past_interval_and_grace(alerting: Live) -> None:
    now = time.time()
    with _process(alerting.url, "vrp-scheduler") as scheduler:
        scheduler.run("old", "schedule", STACK_A, now - 3 * HOUR)
        scheduler.run("fresh", "schedule", STACK_B, now - 60)
        scheduler.export()

    firing = _firing(alerting, "BackupOverdue")

    assert list(firing) == [f"database={STACK_A['vrp.backup.database']},repository={'a' * 32}"]
    alert = next(iter(firing.values()))
    assert alert["severity"] == "critical" and alert["url"] == "/backups"
    assert 3 * HOUR - 5 < alert["value"] < 3 * HOUR + 60
    assert "sqlite:////srv/a/var/vrp.db" in alert["annotations"]["summary"]
    # Within the grace: the same repository 90 minutes later than its last success is not due.
    assert not _firing(alerting, "BackupOverdue", now - 3 * HOUR + 1.5 * HOUR)


def test_offsite_copy_overdue_fires_per_remote_whose_newest_copy_is_too_old(
    alerting: Live,
) -> None:
    now = time.time()
    with _process(alerting.url, "vrp-scheduler") as scheduler:
        scheduler.run("fresh", "schedule", STACK_A, now - 60)
        scheduler.telemetry.record_copy_success("file:///mnt/usb/vrp", now - 60, STACK_A)
        scheduler.telemetry.record_copy_success(
            "sftp://backup:s3cr3t-of-the-vault-0123456789@vault.example/srv",
            now - 3 * HOUR,
            STACK_A,
        )
        scheduler.run("fresh-b", "schedule", STACK_B, now - 60)
        scheduler.export()

    firing = _firing(alerting, "OffsiteCopyOverdue")

    # One alert: the stale sftp remote of repository A, its password never shown; the fresh
    # copy and repository B, which copies nowhere, have none.
    [alert] = firing.values()
    assert alert["labels"]["remote"] == "sftp://backup:***@vault.example/srv"
    assert alert["labels"]["repository"] == "a" * 32
    assert 3 * HOUR - 5 < alert["value"] < 3 * HOUR + 60
    assert "s3cr3t" not in requests.get(f"{alerting.url}/api/alerts", timeout=5).text


def test_backup_failed_fires_on_a_failed_newest_run_and_resolves_on_a_good_one(
    alerting: Live,
) -> None:
    with _process(alerting.url, "vrp-scheduler") as scheduler:
        with scheduler.telemetry.run_span("broken", "schedule", STACK_A) as run:
            run.set_attribute("vrp.backup.status", STATUS_FAILED)
        scheduler.export()
        firing = _firing(alerting, "BackupFailed")
        assert len(firing) == 1
        alert = next(iter(firing.values()))
        trace_id = format(run.get_span_context().trace_id, "032x")
        assert alert["url"] == f"/traces?trace={trace_id}"

        time.sleep(0.01)
        with scheduler.telemetry.run_span("mended", "schedule", STACK_A) as good:
            good.set_attribute("vrp.backup.status", STATUS_SUCCESS)
        scheduler.export()

    assert not _firing(alerting, "BackupFailed")
    states = {a["rule"]: a["state"] for a in alerting.get("/api/alerts")["alerts"]}
    assert states["BackupFailed"] == "resolved"


def test_high_error_rate_fires_per_service_above_the_threshold(alerting: Live) -> None:
    failing, healthy = _Meters(alerting.url, "vrp-api"), _Meters(alerting.url, "vrp-ok")
    for meters, errors in ((failing, 10), (healthy, 1)):
        histogram = meters.meter.create_histogram(c.HTTP_SERVER_REQUEST_DURATION, unit="s")
        for index in range(40):
            status = 500 if index < errors else 200
            histogram.record(
                0.02,
                {
                    c.HTTP_REQUEST_METHOD: "GET",
                    c.HTTP_ROUTE: "/api/tags",
                    c.HTTP_RESPONSE_STATUS_CODE: status,
                },
            )
        meters.export()

    now = time.time()
    firing = _firing(alerting, "HighErrorRate", now)
    pending = [a for a in alerting.get("/api/alerts")["alerts"] if a["rule"] == "HighErrorRate"]

    assert not firing, "for: 2m has not elapsed at the first evaluation"
    assert [(a["labels"]["service"], a["state"], a["value"]) for a in pending] == [
        ("vrp-api", "pending", 0.25)
    ]
    firing = _firing(alerting, "HighErrorRate", now + 120)
    assert list(firing) == ["service=vrp-api"]
    assert firing["service=vrp-api"]["url"] == "/requests"


def test_slow_route_fires_for_the_route_whose_p95_is_over_the_threshold(alerting: Live) -> None:
    spans = _server_spans("/api/slow", 20, 2.0) + _server_spans("/api/fast", 20, 0.01)
    _send_spans(alerting, spans, "vrp-legacy")
    # Too few requests to judge: not an alert.
    _send_spans(alerting, _server_spans("/api/rare", 3, 5.0), "vrp-legacy")

    now = time.time()
    assert not _firing(alerting, "SlowRoute", now), "for: 10m"
    firing = _firing(alerting, "SlowRoute", now + 600)

    assert list(firing) == ["operation=GET /api/slow,service=vrp-legacy"]
    alert = firing["operation=GET /api/slow,service=vrp-legacy"]
    assert 1900 < alert["value"] < 2100
    assert alert["url"] == "/traces?operation=GET+%2Fapi%2Fslow"


def test_slow_route_names_a_metric_route_as_its_server_span_would_be_named(
    alerting: Live,
) -> None:
    meters = _Meters(alerting.url, "vrp-api")
    histogram = meters.meter.create_histogram(c.HTTP_SERVER_REQUEST_DURATION, unit="s")
    for route, seconds in (("/api/slow", 2.0), ("/api/fast", 0.01)):
        for _ in range(20):
            histogram.record(
                seconds,
                {
                    c.HTTP_REQUEST_METHOD: "GET",
                    c.HTTP_ROUTE: route,
                    c.HTTP_RESPONSE_STATUS_CODE: 200,
                },
            )
    meters.export()

    now = time.time()
    assert not _firing(alerting, "SlowRoute", now), "for: 10m"
    firing = _firing(alerting, "SlowRoute", now + 600)

    assert list(firing) == ["operation=GET /api/slow,service=vrp-api"]
    alert = firing["operation=GET /api/slow,service=vrp-api"]
    assert 1900 < alert["value"] < 2100
    assert alert["url"] == "/traces?operation=GET+%2Fapi%2Fslow"


def test_pool_exhausted_fires_on_wait_timeouts_and_on_every_connection_in_use(
    alerting: Live,
) -> None:
    meters = _Meters(alerting.url, "vrp-api")
    timeouts = meters.meter.create_counter(c.DB_CLIENT_CONNECTION_TIMEOUTS)
    count = meters.meter.create_up_down_counter(c.DB_CLIENT_CONNECTION_COUNT)
    maximum = meters.meter.create_up_down_counter(c.DB_CLIENT_CONNECTION_MAX)
    timeouts.add(3, {c.DB_CLIENT_CONNECTION_POOL_NAME: "main"})
    for pool, used in (("main", 2), ("busy", 5), ("calm", 1)):
        attrs = {c.DB_CLIENT_CONNECTION_POOL_NAME: pool}
        count.add(used, {**attrs, c.DB_CLIENT_CONNECTION_STATE: "used"})
        maximum.add(5, attrs)
    meters.export()

    firing = _firing(alerting, "PoolExhausted")

    assert sorted(firing) == ["pool=busy,service=vrp-api", "pool=main,service=vrp-api"]
    assert firing["pool=main,service=vrp-api"]["value"] == 3
    assert firing["pool=main,service=vrp-api"]["annotations"]["cause"] == (
        "3 connection wait timeouts"
    )
    assert firing["pool=busy,service=vrp-api"]["annotations"]["cause"] == "every connection in use"


def test_receiver_refusing_fires_per_signal_for_refused_exports(alerting: Live) -> None:
    for _ in range(3):
        refused = requests.post(
            f"{alerting.url}/v1/traces", data=b"\xff not protobuf", headers=PROTOBUF, timeout=10
        )
        assert refused.status_code == 400
    wrong_type = requests.post(
        f"{alerting.url}/v1/logs", data=b"{}", headers={"Content-Type": "text/plain"}, timeout=10
    )
    assert wrong_type.status_code == 415

    firing = _firing(alerting, "ReceiverRefusing")

    assert {k: a["value"] for k, a in firing.items()} == {"signal=logs": 1, "signal=traces": 3}
    # Past the alert window the refusals are forgotten and the alert resolves.
    assert not _firing(alerting, "ReceiverRefusing", time.time() + WINDOW + 1)


def test_service_silent_fires_for_a_service_that_stopped_sending(alerting: Live) -> None:
    quiet = _server_spans("/api/tags", 1, 0.01)
    quiet[0].start_time_unix_nano -= 20 * 60 * 10**9
    quiet[0].end_time_unix_nano -= 20 * 60 * 10**9
    _send_spans(alerting, quiet, "vrp-quiet")
    _send_spans(alerting, _server_spans("/api/tags", 1, 0.01), "vrp-busy")

    firing = _firing(alerting, "ServiceSilent")

    assert list(firing) == ["service=vrp-quiet"]
    assert 20 * 60 - 5 < firing["service=vrp-quiet"]["value"] < 20 * 60 + 60
    assert firing["service=vrp-quiet"]["url"] == "/?service=vrp-quiet"
    _send_spans(alerting, _server_spans("/api/tags", 1, 0.01), "vrp-quiet")
    assert not _firing(alerting, "ServiceSilent")


def test_a_disabled_builtin_rule_is_not_evaluated(store: TelemetryStore) -> None:
    settings = DashboardSettings(
        store_url=store.url, alerts=replace(AlertSettings(), disabled=frozenset({"ServiceSilent"}))
    )
    for live in serve(settings, store):
        names = [r["name"] for r in live.get("/api/alerts/rules")["rules"]]
        assert "ServiceSilent" not in names and "BackupOverdue" in names


def test_a_rule_of_the_rules_file_fires_on_the_metric_it_names(
    store: TelemetryStore, tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    rules = load_rules_file(tmp_path / "rules.yaml")
    settings = DashboardSettings(store_url=store.url, alerts=AlertSettings(rules=rules))
    for live in serve(settings, store):
        meters = _Meters(live.url, "vrp-api")
        histogram = meters.meter.create_histogram(c.HTTP_SERVER_REQUEST_DURATION, unit="s")
        for method, seconds in (("POST", 1.2), ("GET", 0.05)):
            attributes = {
                c.HTTP_REQUEST_METHOD: method,
                c.HTTP_ROUTE: "/api/recordings",
                c.HTTP_RESPONSE_STATUS_CODE: 201 if method == "POST" else 200,
            }
            for _ in range(30):
                histogram.record(seconds, attributes)
        meters.export()

        now = time.time()
        assert not _firing(live, "SlowUploads", now), "for: 2m"
        firing = _firing(live, "SlowUploads", now + 120)
        assert not _firing(live, "FastLists", now + 120), "the GET series are not POST's"

    assert list(firing) == ["service=vrp-api,team=backend"]
    alert = firing["service=vrp-api,team=backend"]
    assert 1150 < alert["value"] < 1250, "p95 in ms"
    assert alert["severity"] == "critical"
    assert alert["url"] == "/traces?operation=POST+%2Fapi%2Frecordings"
    assert (
        alert["annotations"]["summary"] == f"p95 of uploads on vrp-api is {alert['value']:.4g} ms"
    )


RULES = """\
rules:
  - name: SlowUploads
    metric: http.server.request.duration
    filter:
      service: vrp-api
      route: /api/recordings
      attributes: {http.request.method: POST}
    aggregate: p95
    window: 10m
    condition: "> 800"
    for: 2m
    severity: critical
    labels: {team: backend}
    annotations:
      summary: "p95 of uploads on {{ $labels.service }} is {{ $value }} ms"
  - name: FastLists
    metric: http.server.request.duration
    filter: {attributes: {http.request.method: GET}}
    aggregate: p95
    window: 10m
    condition: "> 100"
"""


def test_by_default_a_backup_is_overdue_at_twice_the_interval_as_the_backups_page_says(
    store: TelemetryStore,
) -> None:
    settings = DashboardSettings(store_url=store.url, backup_interval_seconds=HOUR)
    now = time.time()
    for live in serve(settings, store):
        with _process(live.url, "vrp-scheduler") as scheduler:
            scheduler.run("late", "schedule", STACK_A, now - 1.5 * HOUR)
            scheduler.export()
        assert not _firing(live, "BackupOverdue", now), "late, not overdue"
        assert live.get("/api/backups")["state"] == "late"
        firing = _firing(live, "BackupOverdue", now + 0.6 * HOUR)
        assert len(firing) == 1
