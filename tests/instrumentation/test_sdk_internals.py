"""A later SDK that renames the private names we use costs speed, never telemetry.

Each test simulates a rename: the name a module of :mod:`instrumentation.sdk_internals` looks for
is not there (or the SDK computes an aggregation key another way). The self-tests must notice,
the package must take the public path, what reaches a real OTLP/HTTP sink or reader must be what
the fast path would have sent, and each concern must warn exactly once, naming the SDK version.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from instrumentation import bound, conventions, sdk_internals, telemetry
from instrumentation.bound import BoundHistogram
from instrumentation.prometheus import PrometheusReader, exposition
from instrumentation.sdk_internals import batching, checks, histograms
from instrumentation.sdk_internals import exporters as sdk_exporters
from instrumentation.sdk_internals import logs as sdk_logs
from instrumentation.sdk_internals import prometheus as sdk_prometheus
from instrumentation.telemetry import OtlpLogHandler, duration_histogram_views
from tests.instrumentation import test_telemetry as telemetry_tests

otlp_sink = telemetry_tests.otlp_sink
clean_telemetry = telemetry_tests.clean_telemetry

ATTRIBUTES = {
    "db.system.name": "sqlite",
    "db.operation.name": "SELECT",
    "db.collection.name": "recordings",
    "db.query.summary": "SELECT recordings",
}
VALUES = [0.0004 * 1.37**index for index in range(400)]


@pytest.fixture(autouse=True)
def fresh_self_tests(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every self-test runs again under the test's SDK, and forgets what it found afterwards."""
    monkeypatch.setattr(bound, "_sdk_ok", None)
    monkeypatch.setattr(sdk_logs, "_direct_ok", None)
    for module in (batching, sdk_prometheus):
        module.reset_check()
    sdk_internals.reset_fallbacks()
    yield
    for module in (batching, sdk_prometheus):
        module.reset_check()
    sdk_internals.reset_fallbacks()


def _renamed(name: str) -> str:
    return f"{name}_renamed_in_a_later_sdk"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "instrumentation.sdk_internals" and record.levelno == logging.WARNING
    ]


def _warned_once_per_concern(caplog: pytest.LogCaptureFixture, *concerns: str) -> None:
    messages = _warnings(caplog)
    version = sdk_internals.sdk_version()
    assert len(messages) == len(concerns), messages
    for concern in concerns:
        (message,) = [text for text in messages if f": {concern} (" in text]
        assert message.startswith(f"opentelemetry-sdk {version}: ")
    assert set(sdk_internals.fallbacks()) == set(concerns)


def _histogram_points(reader: InMemoryMetricReader) -> list[tuple[Any, ...]]:
    data = reader.get_metrics_data()
    return sorted(
        (
            tuple(sorted(point.attributes.items())),
            point.count,
            round(point.sum, 9),
            point.scale,
            point.positive.offset,
            tuple(point.positive.bucket_counts),
        )
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        for point in metric.data.data_points
    )


def _record_both_ways() -> tuple[list[BoundHistogram], InMemoryMetricReader, InMemoryMetricReader]:
    """The same points through bound histograms and through ``record``, each into its reader."""
    readers = []
    histograms_ = []
    for _ in range(2):
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader], views=duration_histogram_views())
        readers.append(reader)
        histograms_.append(
            provider.get_meter("test").create_histogram(
                conventions.DB_CLIENT_OPERATION_DURATION, unit="s"
            )
        )
    other = {**ATTRIBUTES, "db.operation.name": "INSERT"}
    points = [BoundHistogram(histograms_[0], ATTRIBUTES), BoundHistogram(histograms_[0], other)]
    for value in VALUES:
        for point, attributes in zip(points, (ATTRIBUTES, other), strict=True):
            point.record(value)
            histograms_[1].record(value, attributes)
    return points, readers[0], readers[1]


@pytest.mark.pinned_sdk
def test_the_pinned_sdk_passes_every_self_test(caplog: pytest.LogCaptureFixture) -> None:
    points, fast_reader, plain_reader = _record_both_ways()
    assert all(point.fast for point in points)
    assert _histogram_points(fast_reader) == _histogram_points(plain_reader)
    assert sdk_logs.check_sdk()
    assert batching.count_drops(BatchSpanProcessor(InMemorySpanExporter()), lambda _: None)
    assert checks.check_all() == dict.fromkeys(checks.CONCERNS, "fast")
    assert _warnings(caplog) == []
    assert sdk_internals.fallbacks() == {}


def test_a_renamed_view_match_attribute_sends_points_through_record(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        histograms, "_MATCH_INTERNALS", (*histograms._MATCH_INTERNALS[1:], _renamed("_lock"))
    )
    points, fast_reader, plain_reader = _record_both_ways()
    assert not any(point.fast for point in points)
    assert _histogram_points(fast_reader) == _histogram_points(plain_reader)
    assert len(_histogram_points(fast_reader)) == 2
    _warned_once_per_concern(caplog, histograms.CONCERN)


def test_an_aggregation_key_computed_another_way_fails_the_self_test(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sdk_hash = histograms._hash_attributes
    monkeypatch.setattr(histograms, "_hash_attributes", lambda kept: ("other", sdk_hash(kept)))
    points, fast_reader, plain_reader = _record_both_ways()
    assert not any(point.fast for point in points)
    assert _histogram_points(fast_reader) == _histogram_points(plain_reader)
    _warned_once_per_concern(caplog, histograms.CONCERN)


def test_a_renamed_drop_hook_leaves_spans_exported_and_drops_uncounted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(batching, "_HOOK", _renamed("_metrics"))
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    for _ in range(2):
        processor = BatchSpanProcessor(exporter, schedule_delay_millis=10)
        assert not batching.count_drops(processor, lambda _: None)
        provider.add_span_processor(processor)
    for index in range(1000):
        provider.get_tracer("test").start_span(f"span {index}").end()
    provider.force_flush()
    provider.shutdown()
    assert len(exporter.get_finished_spans()) == 2000
    _warned_once_per_concern(caplog, batching.CONCERN)


def test_a_renamed_batch_queue_sends_log_records_through_logger_emit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sdk_logs, "_QUEUE", _renamed("_batch_processor"))
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    handlers = [OtlpLogHandler(provider), OtlpLogHandler(provider)]
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        for index in range(600):
            record = logging.LogRecord(
                "recorder.api", logging.INFO, __file__, 1, "request %d", (index,), None
            )
            handlers[index % 2].handle(record)
    provider.force_flush()
    finished = exporter.get_finished_logs()
    assert sorted(item.log_record.body for item in finished) == sorted(
        f"request {index}" for index in range(600)
    )
    trace_id = span.get_span_context().trace_id
    assert {item.log_record.trace_id for item in finished} == {trace_id}
    assert {item.log_record.severity_text for item in finished} == {"INFO"}
    provider.shutdown()
    _warned_once_per_concern(caplog, sdk_logs.CONCERN)


def test_a_renamed_receive_hook_is_found_and_the_reader_still_serves_the_other_metrics(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sdk_prometheus, "RECEIVE_HOOK", _renamed("_receive_metrics"))
    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        provider.get_meter("test").create_counter("vrp.test.renamed").add(5)
        text = exposition().decode()
    finally:
        provider.shutdown()
    assert "vrp_test_renamed_total" in text
    assert not sdk_prometheus.check()
    _warned_once_per_concern(caplog, sdk_prometheus.CONCERN)


@pytest.mark.pinned_sdk
def test_the_severity_table_matches_the_sdks_mapping() -> None:
    assert sdk_logs.std_to_otel is not None
    for level in range(0, 60):
        assert sdk_logs._data_model_severity(level) == sdk_logs.std_to_otel(level), level


def test_every_private_name_renamed_still_delivers_all_telemetry_to_a_real_sink(
    otlp_sink: telemetry_tests.OtlpSink,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(
        histograms, "_MATCH_INTERNALS", (*histograms._MATCH_INTERNALS, _renamed("_view"))
    )
    monkeypatch.setattr(batching, "_HOOK", _renamed("_metrics"))
    monkeypatch.setattr(sdk_logs, "_QUEUE", _renamed("_batch_processor"))
    monkeypatch.setattr(
        sdk_exporters,
        "_EXPORT_STATE",
        ((_renamed("_client"), callable), *sdk_exporters._EXPORT_STATE),
    )
    monkeypatch.setattr(
        sdk_exporters, "_PREFERENCES", (_renamed("_preferred_temporality"), "_aggregation")
    )
    result = telemetry.setup(telemetry_tests.fast_settings(otlp_endpoint=otlp_sink.url))
    duration = result.meter_provider.get_meter("vrp.test").create_histogram(
        conventions.DB_CLIENT_OPERATION_DURATION, unit="s"
    )
    point = BoundHistogram(duration, ATTRIBUTES)
    tracer = trace.get_tracer("vrp.test")
    for index in range(300):
        with tracer.start_as_current_span(f"GET /recordings/{index}"):
            point.record(VALUES[index])
            logging.getLogger("vrp.test").warning("request %d", index)
    telemetry.shutdown()

    assert not point.fast
    assert sorted(otlp_sink.span_names()) == sorted(
        f"GET /recordings/{index}" for index in range(300)
    )
    bodies = [
        record.body.string_value
        for request in otlp_sink.logs()
        for resource_logs in request.resource_logs
        for scope_logs in resource_logs.scope_logs
        for record in scope_logs.log_records
        if record.body.string_value.startswith("request ")
    ]
    assert sorted(bodies) == sorted(f"request {index}" for index in range(300))
    (exported,) = [
        metric
        for metric in otlp_sink.all_metrics()
        if metric.name == conventions.DB_CLIENT_OPERATION_DURATION
    ]
    (data_point,) = exported.exponential_histogram.data_points
    assert data_point.count == 300
    assert data_point.sum == pytest.approx(sum(VALUES[:300]))
    assert telemetry.telemetry_stats().export_failures == 0
    _warned_once_per_concern(
        caplog,
        histograms.CONCERN,
        batching.CONCERN,
        sdk_logs.CONCERN,
        sdk_exporters.EXPORT_CONCERN,
        sdk_exporters.PREFERENCES_CONCERN,
    )
