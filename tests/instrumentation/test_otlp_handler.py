"""The OTLP log handler's direct hand-over to the batch queue queues what the SDK's path queues."""

from __future__ import annotations

import logging
import sys
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from instrumentation import sdk_internals
from instrumentation.sdk_internals import logs as sdk_logs
from instrumentation.telemetry import OtlpLogHandler

RESOURCE = Resource.create({"service.name": "vrp-test"})


def _record(name: str, level: int, exc_info: Any = None) -> logging.LogRecord:
    record = logging.LogRecord(
        name, level, "/src/app.py", 12, "GET %s %d", ("/api/x", 200), exc_info, "handler"
    )
    record.created = 1_700_000_000.125
    record.__dict__.update(
        {
            "http.route": "/api/x",
            "http.response.status_code": 200,
            "duration_ms": 1.5,
            "url.full": "https://u:secret@example.com/x",
            "tags": ["a", "b"],
        }
    )
    return record


def _exported(provider: LoggerProvider, exporter: InMemoryLogRecordExporter) -> list[Any]:
    provider.force_flush()
    return [_fields(item) for item in exporter.get_finished_logs()]


def _fields(item: ReadableLogRecord) -> tuple[Any, ...]:
    record = item.log_record
    return (
        record.timestamp,
        record.trace_id,
        record.span_id,
        record.trace_flags,
        record.severity_text,
        record.severity_number,
        record.body,
        dict(record.attributes or {}),
        record.event_name,
        item.resource.attributes,
        item.instrumentation_scope,
        item.dropped_attributes,
    )


def _pipeline(*, extra_processor: bool) -> tuple[LoggerProvider, InMemoryLogRecordExporter]:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    if extra_processor:
        # A processor that is not the batch one: the handler must take the SDK's path.
        provider.add_log_record_processor(SimpleLogRecordProcessor(InMemoryLogRecordExporter()))
    return provider, exporter


def test_direct_and_sdk_paths_queue_the_same_records() -> None:
    direct_provider, direct_exporter = _pipeline(extra_processor=False)
    sdk_provider, sdk_exporter = _pipeline(extra_processor=True)
    direct_handler = OtlpLogHandler(direct_provider)
    sdk_handler = OtlpLogHandler(sdk_provider)
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("test")
    try:
        raise ValueError("boom")
    except ValueError:
        failure = sys.exc_info()
    with tracer.start_as_current_span("request"):
        for handler in (direct_handler, sdk_handler):
            handler.handle(_record("recorder.api", logging.INFO))
            handler.handle(_record("recorder.api", logging.ERROR, failure))
    for handler in (direct_handler, sdk_handler):
        handler.handle(_record("recorder.cli", logging.WARNING))  # outside any span

    # On an SDK past the pin direct queueing may have fallen back (and said so).
    assert (
        sdk_logs.batch_queues(direct_provider.get_logger("recorder.api")) is not None
        or sdk_logs.CONCERN in sdk_internals.fallbacks()
    )
    assert sdk_logs.batch_queues(sdk_provider.get_logger("recorder.api")) is None
    direct = _exported(direct_provider, direct_exporter)
    sdk = _exported(sdk_provider, sdk_exporter)
    assert len(direct) == 3
    assert direct == sdk
    body, attributes = direct[0][6], direct[0][7]
    assert body == "GET /api/x 200"
    assert attributes["url.full"] == "https://u:***@example.com/x"
    assert direct[1][7]["exception.type"] == "ValueError"
    assert direct[0][1] != 0 and direct[2][1] == 0  # trace ids inside the span, none outside
