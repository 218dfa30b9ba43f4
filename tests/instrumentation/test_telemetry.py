from __future__ import annotations

import gc
import logging
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import ExponentialHistogramDataPoint, Metric
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from instrumentation import conventions, telemetry
from instrumentation.errors import ConfigurationError
from instrumentation.settings import TelemetrySettings
from instrumentation.testing import InMemoryTelemetry, reset_for_tests

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class OtlpSink:
    """A real OTLP/HTTP endpoint on a loopback socket that keeps every request body by path."""

    url: str
    bodies: dict[str, list[bytes]] = field(default_factory=dict)
    headers: list[dict[str, str]] = field(default_factory=list)

    def traces(self) -> list[ExportTraceServiceRequest]:
        return [
            _parse(ExportTraceServiceRequest, body) for body in self.bodies.get("/v1/traces", [])
        ]

    def logs(self) -> list[ExportLogsServiceRequest]:
        return [_parse(ExportLogsServiceRequest, body) for body in self.bodies.get("/v1/logs", [])]

    def metrics(self) -> list[ExportMetricsServiceRequest]:
        return [
            _parse(ExportMetricsServiceRequest, body) for body in self.bodies.get("/v1/metrics", [])
        ]

    def span_names(self) -> list[str]:
        return [
            span.name
            for request in self.traces()
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]

    def all_metrics(self) -> list[Metric]:
        return [
            metric
            for request in self.metrics()
            for resource_metrics in request.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        ]


Message = TypeVar("Message")


def _parse(message_type: type[Message], body: bytes) -> Message:
    message = message_type()
    message.ParseFromString(body)
    return message


def _attributes(pairs: list[KeyValue]) -> dict[str, object]:
    values: dict[str, object] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        values[pair.key] = getattr(pair.value, kind) if kind else None
    return values


@pytest.fixture
def otlp_sink() -> Iterator[OtlpSink]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                sink.bodies.setdefault(self.path, []).append(body)
                sink.headers.append(dict(self.headers.items()))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink = OtlpSink(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield sink
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def clean_telemetry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    reset_for_tests()
    yield
    reset_for_tests()


def fast_settings(**overrides: object) -> TelemetrySettings:
    values: dict[str, object] = {
        "service_name": "vrp-test",
        "service_version": "1.2.3",
        "environment": "ci",
        "schedule_delay_ms": 50,
        "export_timeout_ms": 500,
        "metric_export_interval_ms": 60_000,
    }
    values.update(overrides)
    return TelemetrySettings(**values)


def test_spans_metrics_and_logs_reach_a_real_otlp_http_sink(otlp_sink: OtlpSink) -> None:
    result = telemetry.setup(
        fast_settings(otlp_endpoint=otlp_sink.url + "/", otlp_headers={"x-tenant": "vrp"})
    )
    tracer = trace.get_tracer("vrp.test")
    meter = result.meter_provider.get_meter("vrp.test")
    with tracer.start_as_current_span("GET /recordings") as span:
        meter.create_counter("vrp.test.requests").add(1, {"http.route": "/recordings"})
        logging.getLogger("vrp.test").warning("listed %d recordings", 3)

    telemetry.shutdown()

    assert otlp_sink.span_names() == ["GET /recordings"]
    resource = _attributes(otlp_sink.traces()[0].resource_spans[0].resource.attributes)
    assert resource["service.name"] == "vrp-test"
    assert resource["service.version"] == "1.2.3"
    assert resource["deployment.environment.name"] == "ci"
    (log_record,) = [
        record
        for request in otlp_sink.logs()
        for resource_logs in request.resource_logs
        for scope_logs in resource_logs.scope_logs
        for record in scope_logs.log_records
    ]
    assert log_record.body.string_value == "listed 3 recordings"
    assert log_record.trace_id.hex() == trace.format_trace_id(span.get_span_context().trace_id)
    metric_names = {metric.name for metric in otlp_sink.all_metrics()}
    assert "vrp.test.requests" in metric_names
    assert all(headers.get("x-tenant") == "vrp" for headers in otlp_sink.headers)


def test_standard_endpoint_variable_is_used_when_settings_have_none(
    otlp_sink: OtlpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_sink.url)
    result = telemetry.setup(fast_settings())

    result.tracer_provider.get_tracer("vrp.test").start_span("from-env").end()
    telemetry.shutdown()

    assert otlp_sink.span_names() == ["from-env"]


def test_signal_endpoint_variable_exports_only_that_signal(
    otlp_sink: OtlpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_sink.url + "/v1/traces")
    result = telemetry.setup(fast_settings())

    result.tracer_provider.get_tracer("vrp.test").start_span("traces-only").end()
    result.meter_provider.get_meter("vrp.test").create_counter("not.exported").add(1)
    logging.getLogger("vrp.test").warning("not exported either")
    telemetry.shutdown()

    assert otlp_sink.span_names() == ["traces-only"]
    assert set(otlp_sink.bodies) == {"/v1/traces"}


def test_batch_larger_than_queue_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="rejected by the OpenTelemetry SDK"):
        telemetry.setup(fast_settings(console=True, max_queue_size=10, max_export_batch_size=100))


def test_without_endpoint_nothing_is_exported_but_logs_get_trace_ids() -> None:
    result = telemetry.setup(fast_settings())

    with result.tracer_provider.get_tracer("vrp.test").start_as_current_span("local") as span:
        assert span.get_span_context().is_valid
    telemetry.shutdown()

    assert result.enabled
    assert not any(
        isinstance(handler, telemetry.OtlpLogHandler) for handler in logging.getLogger().handlers
    )


def test_secrets_are_masked_in_otlp_exported_log_records(otlp_sink: OtlpSink) -> None:
    telemetry.setup(fast_settings(otlp_endpoint=otlp_sink.url))
    log = logging.getLogger("vrp.test")

    try:
        raise ConnectionError("cannot reach postgresql://app:exc-pw@db/vrp")
    except ConnectionError:
        log.exception(
            "connect %s with Authorization: Bearer tok-123 password=%s",
            "postgresql+psycopg://app:url-pw@db/vrp",
            "arg-pw",
            extra={"dsn": "mysql://root:extra-pw@db/x", "parameters": ("param-value",)},
        )
    telemetry.shutdown()

    (request,) = otlp_sink.logs()
    exported = request.SerializeToString()
    for secret in (b"exc-pw", b"tok-123", b"url-pw", b"arg-pw", b"extra-pw", b"param-value"):
        assert secret not in exported
    record = request.resource_logs[0].scope_logs[0].log_records[0]
    attributes = _attributes(record.attributes)
    assert record.body.string_value == (
        "connect postgresql+psycopg://app:***@db/vrp with Authorization: Bearer *** password=***"
    )
    assert attributes["dsn"] == "mysql://root:***@db/x"
    assert "postgresql://app:***@db/vrp" in attributes["exception.message"]
    assert "trace_id" not in attributes


def test_export_path_records_are_not_fed_back_to_otlp(otlp_sink: OtlpSink) -> None:
    telemetry.setup(fast_settings(otlp_endpoint=otlp_sink.url))

    logging.getLogger("opentelemetry.exporter.otlp.proto.http").warning("export trouble")
    logging.getLogger("urllib3.connectionpool").warning("retrying")
    logging.getLogger("instrumentation.telemetry").warning("telemetry is being lost")
    logging.getLogger("vrp.test").warning("application record")
    telemetry.shutdown()

    bodies = [
        record.body.string_value
        for request in otlp_sink.logs()
        for record in request.resource_logs[0].scope_logs[0].log_records
    ]
    assert bodies == ["application record"]


def test_setup_twice_returns_the_first_telemetry_and_warns_on_different_settings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = telemetry.setup(fast_settings())

    assert telemetry.setup(fast_settings()) is first
    assert not caplog.records
    assert telemetry.setup(fast_settings(service_name="other")) is first
    assert "already set up for service 'vrp-test'" in caplog.text
    assert trace.get_tracer_provider() is first.tracer_provider


def test_shutdown_is_idempotent_and_removes_the_otlp_log_handler(otlp_sink: OtlpSink) -> None:
    telemetry.setup(fast_settings(otlp_endpoint=otlp_sink.url))
    assert any(isinstance(h, telemetry.OtlpLogHandler) for h in logging.getLogger().handlers)

    telemetry.shutdown()
    telemetry.shutdown()

    assert not any(isinstance(h, telemetry.OtlpLogHandler) for h in logging.getLogger().handlers)


def test_reset_for_tests_allows_a_fresh_setup(otlp_sink: OtlpSink) -> None:
    first = telemetry.setup(fast_settings())
    reset_for_tests()

    second = telemetry.setup(fast_settings(otlp_endpoint=otlp_sink.url))
    trace.get_tracer("vrp.test").start_span("after-reset").end()
    telemetry.shutdown()

    assert second is not first
    assert otlp_sink.span_names() == ["after-reset"]


def test_resource_variables_override_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.name=from-attrs,deployment.environment.name=prod,team=audio",
    )
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-service-name")

    resource = telemetry.setup(fast_settings()).resource.attributes

    assert resource["service.name"] == "from-service-name"
    assert resource["deployment.environment.name"] == "prod"
    assert resource["service.version"] == "1.2.3"
    assert resource["team"] == "audio"
    assert resource["telemetry.sdk.name"] == "opentelemetry"


def test_sdk_disabled_variable_turns_everything_off(
    otlp_sink: OtlpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")

    result = telemetry.setup(fast_settings(otlp_endpoint=otlp_sink.url))
    span = trace.get_tracer("vrp.test").start_span("invisible")
    span.end()
    logging.getLogger("vrp.test").warning("not exported")
    telemetry.shutdown()

    assert result.enabled is False
    assert isinstance(result.tracer_provider, trace.NoOpTracerProvider)
    assert not span.get_span_context().is_valid
    assert not any(isinstance(h, telemetry.OtlpLogHandler) for h in logging.getLogger().handlers)
    assert otlp_sink.bodies == {}
    # The SDK honours the variable on its own too: its providers hand out no-op tracers.
    assert not TracerProvider().get_tracer("x").start_span("sdk").get_span_context().is_valid


def test_disabled_setting_turns_everything_off(otlp_sink: OtlpSink) -> None:
    result = telemetry.setup(fast_settings(otlp_endpoint=otlp_sink.url, disabled=True))
    result.tracer_provider.get_tracer("vrp.test").start_span("invisible").end()
    telemetry.shutdown()

    assert result.enabled is False
    assert otlp_sink.bodies == {}


def test_console_exporter_writes_spans_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    result = telemetry.setup(fast_settings(console=True))

    result.tracer_provider.get_tracer("vrp.test").start_span("to-console").end()
    telemetry.shutdown()

    assert '"name": "to-console"' in capsys.readouterr().out


def test_sampler_variable_samples_about_the_configured_ratio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    tracer = telemetry.setup(fast_settings()).tracer_provider.get_tracer("vrp.test")

    sampled = 0
    for _ in range(5000):
        with tracer.start_as_current_span("root") as root:
            with tracer.start_as_current_span("child") as child:
                assert child.is_recording() == root.is_recording()
            sampled += root.is_recording()

    # Binomial(5000, 0.1): mean 500, standard deviation about 21.
    assert 400 <= sampled <= 600


def test_dead_collector_keeps_spans_fast_and_bounded_and_counts_the_loss(
    closed_port_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    result = telemetry.setup(
        fast_settings(
            otlp_endpoint=closed_port_url,
            max_queue_size=256,
            max_export_batch_size=64,
            export_timeout_ms=200,
        )
    )
    tracer = result.tracer_provider.get_tracer("vrp.test")
    span_count = 20_000

    started = time.perf_counter()
    for _ in range(span_count):
        tracer.start_span("request").end()
    elapsed = time.perf_counter() - started
    gc.collect()
    live_spans = sum(isinstance(obj, ReadableSpan) for obj in gc.get_objects())
    shutdown_started = time.perf_counter()
    telemetry.shutdown(timeout_ms=1000)
    shutdown_took = time.perf_counter() - shutdown_started

    stats = telemetry.telemetry_stats()
    assert elapsed < 5
    # Only the bounded queue (256) and the batch being exported (64) hold spans.
    assert live_spans <= 256 + 2 * 64
    assert shutdown_took < 2.0
    assert stats.spans_dropped > 0
    assert stats.export_failures > 0
    # The SDK checks "queue full" without a lock, so a handful may be counted twice.
    lost = stats.spans_dropped + stats.spans_failed
    assert span_count * 0.9 <= lost <= span_count * 1.01
    loss_warnings = [r for r in caplog.records if r.getMessage().startswith("telemetry is being")]
    assert len(loss_warnings) == 1


def test_shutdown_is_bounded_when_the_collector_never_answers() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(100)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = telemetry.setup(fast_settings(otlp_endpoint=url, export_timeout_ms=5000))
        for _ in range(100):
            result.tracer_provider.get_tracer("vrp.test").start_span("stuck").end()

        started = time.perf_counter()
        telemetry.shutdown(timeout_ms=500)

        assert time.perf_counter() - started < 1.5


SIGTERM_SCRIPT = """
import sys, time
from instrumentation import telemetry
from instrumentation.errors import ConfigurationError
from instrumentation.settings import TelemetrySettings

result = telemetry.setup(
    TelemetrySettings(service_name="vrp-sigterm", otlp_endpoint=sys.argv[1],
                      schedule_delay_ms=60_000, metric_export_interval_ms=60_000)
)
assert telemetry.install_signal_handlers()
assert telemetry.install_signal_handlers()
result.tracer_provider.get_tracer("t").start_span("before-sigterm").end()
sys.stdout.write("ready\\n")
sys.stdout.flush()
time.sleep(30)
"""


def test_sigterm_flushes_telemetry_then_ends_the_process_by_the_signal(
    otlp_sink: OtlpSink,
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", SIGTERM_SCRIPT, otlp_sink.url],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n"
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=10)
        finally:
            process.kill()

    assert returncode == -signal.SIGTERM
    assert otlp_sink.span_names() == ["before-sigterm"]


def test_signal_handlers_are_not_installed_off_the_main_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    results: list[bool] = []
    worker = threading.Thread(target=lambda: results.append(telemetry.install_signal_handlers()))
    worker.start()
    worker.join()

    assert results == [False]
    assert "main thread" in caplog.text


def test_sigterm_handler_flushes_then_calls_the_previous_python_handler(
    otlp_sink: OtlpSink,
) -> None:
    calls: list[int] = []

    def record_signal(signum: int, frame: object) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGTERM, record_signal)
    try:
        result = telemetry.setup(
            fast_settings(otlp_endpoint=otlp_sink.url, schedule_delay_ms=60_000)
        )
        assert telemetry.install_signal_handlers()
        result.tracer_provider.get_tracer("vrp.test").start_span("pending").end()

        os.kill(os.getpid(), signal.SIGTERM)

        assert calls == [signal.SIGTERM]
        assert otlp_sink.span_names() == ["pending"]
        telemetry.uninstall_signal_handlers()
        assert signal.getsignal(signal.SIGTERM) is record_signal
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_in_memory_telemetry_records_everything_without_touching_the_globals() -> None:
    memory = InMemoryTelemetry()
    tracer = memory.tracer_provider.get_tracer("vrp.test")
    histogram = memory.meter_provider.get_meter("vrp.test").create_histogram("vrp.test.duration")

    with tracer.start_as_current_span("outer"):
        tracer.start_span("inner").end()
        histogram.record(0.25, {"db.operation.name": "SELECT"})
        histogram.record(0.75, {"db.operation.name": "SELECT"})

    assert [span.name for span in memory.spans()] == ["inner", "outer"]
    assert memory.span_named("outer").parent is None
    (point,) = memory.metric_points("vrp.test.duration")
    assert (point.count, point.sum, dict(point.attributes)) == (
        2,
        1.0,
        {"db.operation.name": "SELECT"},
    )
    assert memory.metric_points("never.recorded") == []
    assert trace.get_tracer_provider() is not memory.tracer_provider
    with pytest.raises(LookupError, match=r"'missing'.*'inner', 'outer'"):
        memory.span_named("missing")

    memory.clear()

    assert memory.spans() == []


def test_in_memory_telemetry_keeps_log_records_emitted_through_its_provider() -> None:
    memory = InMemoryTelemetry()

    memory.logger_provider.get_logger("vrp.test").emit(body="hello")

    assert [record.log_record.body for record in memory.logs()] == ["hello"]


@pytest.mark.parametrize(
    ("variable", "exemplars"), [(None, 0), ("trace_based", 1), ("always_off", 0)]
)
def test_exemplars_are_off_unless_the_standard_variable_asks_for_them(
    otlp_sink: OtlpSink, monkeypatch: pytest.MonkeyPatch, variable: str | None, exemplars: int
) -> None:
    if variable is None:
        monkeypatch.delenv("OTEL_METRICS_EXEMPLAR_FILTER", raising=False)
    else:
        monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", variable)
    result = telemetry.setup(fast_settings(otlp_endpoint=otlp_sink.url))
    histogram = result.meter_provider.get_meter("vrp.test").create_histogram("vrp.test.duration")
    with trace.get_tracer("vrp.test").start_as_current_span("sampled"):
        histogram.record(0.25, {"db.operation.name": "SELECT"})

    telemetry.shutdown()

    (point,) = [
        point
        for metric in otlp_sink.all_metrics()
        if metric.name == "vrp.test.duration"
        for point in metric.histogram.data_points
    ]
    assert point.count == 1
    assert len(point.exemplars) == exemplars


def _exponential_quantile(point: ExponentialHistogramDataPoint, q: float) -> float:
    """The q-quantile as the middle of the bucket holding it (buckets are (b**i, b**(i+1)])."""
    base = 2.0 ** (2.0**-point.scale)
    rank = math.ceil(q * point.count)
    seen = point.zero_count
    for position, count in enumerate(point.positive.bucket_counts):
        seen += count
        if seen >= rank:
            index = point.positive.offset + position
            return (base**index + base ** (index + 1)) / 2
    raise AssertionError(f"rank {rank} beyond the {point.count} values of the point")


def _only_point(sink: OtlpSink, name: str) -> Metric:
    (metric,) = [metric for metric in sink.all_metrics() if metric.name == name]
    return metric


def test_duration_histograms_are_exponential_and_keep_percentiles_within_2_percent(
    otlp_sink: OtlpSink,
) -> None:
    result = telemetry.setup(fast_settings(otlp_endpoint=otlp_sink.url))
    meter = result.meter_provider.get_meter("vrp.test")
    randomness = random.Random(7)
    values = {
        # Log-uniform over the range the contract names: 0.1 ms to 60 s.
        conventions.HTTP_SERVER_REQUEST_DURATION: [
            10 ** randomness.uniform(-4, math.log10(60)) for _ in range(20_000)
        ],
        # Statements on a local SQLite file: a few microseconds to a second.
        conventions.DB_CLIENT_OPERATION_DURATION: [
            10 ** randomness.uniform(-5.5, 0) for _ in range(5_000)
        ],
    }
    for name, recorded in values.items():
        histogram = meter.create_histogram(
            name, unit="s", explicit_bucket_boundaries_advisory=[0.01, 0.1, 1.0]
        )
        for value in recorded:
            histogram.record(value, {conventions.HTTP_ROUTE: "/x"})

    telemetry.shutdown()

    for name, recorded in values.items():
        metric = _only_point(otlp_sink, name)
        assert metric.WhichOneof("data") == "exponential_histogram"
        (point,) = metric.exponential_histogram.data_points
        assert point.scale == telemetry.DURATION_HISTOGRAM_MAX_SCALE
        ordered = sorted(recorded)
        for q in (0.5, 0.95, 0.99):
            exact = ordered[math.ceil(q * len(ordered)) - 1]
            assert _exponential_quantile(point, q) == pytest.approx(exact, rel=0.02)


def test_other_histograms_keep_explicit_buckets(otlp_sink: OtlpSink) -> None:
    result = telemetry.setup(fast_settings(otlp_endpoint=otlp_sink.url))
    meter = result.meter_provider.get_meter("vrp.test")
    meter.create_histogram("vrp.test.sizes", unit="By").record(512)

    telemetry.shutdown()

    assert _only_point(otlp_sink, "vrp.test.sizes").WhichOneof("data") == "histogram"


@pytest.mark.parametrize(
    ("variable", "kind"),
    [
        ("explicit_bucket_histogram", "histogram"),
        ("base2_exponential_bucket_histogram", "exponential_histogram"),
    ],
)
def test_standard_histogram_aggregation_variable_overrides_the_default(
    otlp_sink: OtlpSink, monkeypatch: pytest.MonkeyPatch, variable: str, kind: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", variable)
    result = telemetry.setup(fast_settings(otlp_endpoint=otlp_sink.url))
    meter = result.meter_provider.get_meter("vrp.test")
    meter.create_histogram(
        conventions.HTTP_SERVER_REQUEST_DURATION,
        unit="s",
        explicit_bucket_boundaries_advisory=[0.01, 0.1, 1.0],
    ).record(0.05)

    telemetry.shutdown()

    metric = _only_point(otlp_sink, conventions.HTTP_SERVER_REQUEST_DURATION)
    assert metric.WhichOneof("data") == kind
    if kind == "histogram":
        assert list(metric.histogram.data_points[0].explicit_bounds) == [0.01, 0.1, 1.0]
    else:
        # The SDK's own exponential default (scale up to 20), not this package's scale 5.
        assert metric.exponential_histogram.data_points[0].scale > 5
