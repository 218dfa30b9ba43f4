"""``/api/backups`` and the Backups page keep stacks apart and never go back in time.

The telemetry is made by the backup package's own :class:`~backup.telemetry.BackupTelemetry` on
real SDK providers and sent by the SDK's OTLP/HTTP exporters to a running dashboard, as a
scheduler and a manual ``vrp backup run`` of two stacks send it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from backup.telemetry import STATUS_SUCCESS, BackupTelemetry, identity
from tests.dashboard.conftest import Live

STACK_A = identity("a" * 32, "sqlite:////srv/a/var/vrp.db")
STACK_B = identity("b" * 32, "postgresql://db.example:5432/vrp")


class _Process:
    """One process's providers, exporting to the dashboard when flushed."""

    def __init__(self, url: str, service: str) -> None:
        resource = Resource.create({"service.name": service})
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces"))
        )
        self.reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{url}/v1/metrics"), export_interval_millis=3_600_000
        )
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[self.reader])
        self.telemetry = BackupTelemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def run(self, backup_id: str, trigger: str, names: dict[str, str], finished_at: float) -> None:
        with self.telemetry.run_span(backup_id, trigger, names) as span:
            span.set_attribute("vrp.backup.status", STATUS_SUCCESS)
        self.telemetry.record_run(STATUS_SUCCESS, 2.0, finished_at, names)

    def export(self) -> None:
        assert self.reader.force_flush(10_000)

    def shutdown(self) -> None:
        self.meter_provider.shutdown()
        self.tracer_provider.shutdown()


@contextmanager
def _process(url: str, service: str) -> Iterator[_Process]:
    process = _Process(url, service)
    try:
        yield process
    finally:
        process.shutdown()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def test_the_newest_success_wins_per_repository_and_stacks_stay_apart(live: Live) -> None:
    now = time.time()
    older, newer, next_run = now - 3 * 3600, now - 60, now + 6 * 3600
    with _process(live.url, "vrp-scheduler") as scheduler, _process(live.url, "vrp-cli") as cli:
        scheduler.run("scheduled", "schedule", STACK_A, older)
        scheduler.telemetry.record_next_run(next_run, STACK_A)
        scheduler.export()
        cli.run("manual", "manual", STACK_A, newer)
        cli.export()
        # The long-running scheduler exports its gauge again, with its own, older, success.
        scheduler.export()
    with _process(live.url, "vrp-scheduler") as other_stack:
        other_stack.run("other", "schedule", STACK_B, now - 30 * 3600)
        other_stack.export()

    chosen = live.get("/api/backups", repository="a" * 32)
    everything = live.get("/api/backups")

    assert chosen["last_success"] == _iso(newer)
    assert chosen["state"] == "ok"
    assert chosen["next_run"] == _iso(next_run)
    assert {r["backup_id"] for r in chosen["runs"]} == {"scheduled", "manual"}
    assert {r["database"] for r in chosen["runs"]} == {"sqlite:////srv/a/var/vrp.db"}
    by_id = {r["repository_id"]: r for r in everything["repositories"]}
    assert set(by_id) == {"a" * 32, "b" * 32}
    assert by_id["b" * 32]["database"] == "postgresql://db.example:5432/vrp"
    assert (by_id["a" * 32]["state"], by_id["b" * 32]["state"]) == ("ok", "late")
    assert by_id["b" * 32]["next_run"] is None
    # Without a choice, the headline is the repository that needs attention.
    assert everything["state"] == "late"
    assert {r["backup_id"] for r in everything["runs"]} == {"scheduled", "manual", "other"}


def test_a_stopped_scheduler_has_no_next_run(live: Live) -> None:
    now = time.time()
    with _process(live.url, "vrp-scheduler") as scheduler:
        scheduler.run("scheduled", "schedule", STACK_A, now - 60)
        scheduler.telemetry.record_next_run(now + 3600, STACK_A)
        scheduler.export()
        scheduler.telemetry.record_next_run(None, STACK_A)
        scheduler.export()

    assert live.get("/api/backups", repository="a" * 32)["next_run"] is None
