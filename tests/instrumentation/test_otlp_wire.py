"""The hand-written OTLP encoder gives what the SDK's encoder gives, for anything the SDK holds.

Spans and log records are made by the real SDK (providers with in-memory exporters), from
hypothesis-drawn inputs; each batch is encoded by ``instrumentation.otlp_wire`` and by the SDK's
``encode_spans`` / ``encode_logs``. The bytes must be equal, and parsing ours must give a message
equal to the SDK's, field by field. Values the fast path leaves to the SDK raise
``WireEncodingError``; the exporters then send what the SDK's encoder makes, to the real
dashboard receiver in the end-to-end tests.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import NonRecordingSpan, TraceState

from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from instrumentation import otlp_wire
from instrumentation.exporters import WireLogExporter, WireSpanExporter
from tests.dashboard.conftest import Live, serve

# The limited providers drop attributes on purpose (to give the dropped counts a value).
pytestmark = pytest.mark.filterwarnings(
    "ignore::opentelemetry.sdk._logs.LogRecordDroppedAttributesWarning"
)

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
UINT64 = st.integers(min_value=0, max_value=2**64 - 1)
TEXT = st.text(max_size=12)
# Keys drawn from a small set so that batches repeat keys and values, as real telemetry does
# (and the encoder's caches are exercised), plus arbitrary text.
KEYS = st.one_of(st.sampled_from(["http.route", "db.system.name", "k", "é", ""]), TEXT)
SCALARS = st.one_of(TEXT, st.booleans(), INT64, st.floats(allow_nan=False))
# What span attributes hold: scalars and homogeneous sequences of them (None allowed inside).
SPAN_VALUES = st.one_of(
    SCALARS,
    st.lists(st.one_of(st.none(), TEXT), max_size=4).map(tuple),
    st.lists(st.one_of(st.none(), st.booleans()), max_size=4),
    st.lists(INT64, max_size=4),
    st.lists(st.floats(allow_nan=False), max_size=4).map(tuple),
)
# What log records hold: any AnyValue, nested.
ANY_VALUES = st.recursive(
    st.one_of(st.none(), SCALARS, st.binary(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(KEYS, inner, max_size=3),
    ),
    max_leaves=8,
)
SPAN_ATTRIBUTES = st.dictionaries(KEYS, SPAN_VALUES, max_size=5)
LOG_ATTRIBUTES = st.dictionaries(KEYS, ANY_VALUES, max_size=5)
SPAN_CONTEXTS = st.builds(
    SpanContext,
    trace_id=st.integers(min_value=1, max_value=2**128 - 1),
    span_id=st.integers(min_value=1, max_value=2**64 - 1),
    is_remote=st.booleans(),
    trace_flags=st.sampled_from([TraceFlags(0), TraceFlags(1)]),
    trace_state=st.one_of(
        st.none(),
        st.just(TraceState([("vendor", "v1"), ("other", "x-2")])),
        st.just(TraceState()),
    ),
)
# SpanKind and StatusCode as the API defines them (the encoder maps them to the proto's enums).
KINDS = st.sampled_from(list(SpanKind))
STATUSES = st.one_of(
    st.none(),
    st.builds(Status, st.sampled_from([StatusCode.OK, StatusCode.UNSET])),
    st.builds(Status, st.just(StatusCode.ERROR), st.one_of(st.none(), TEXT)),
)
EVENTS = st.lists(st.tuples(TEXT, SPAN_ATTRIBUTES, st.one_of(st.none(), UINT64)), max_size=3)
LINKS = st.lists(st.tuples(SPAN_CONTEXTS, SPAN_ATTRIBUTES), max_size=3)
SPANS = st.fixed_dictionaries(
    {
        "tracer": st.integers(min_value=0, max_value=3),
        "name": TEXT,
        "kind": KINDS,
        "attributes": SPAN_ATTRIBUTES,
        "parent": st.one_of(st.none(), st.just("previous"), SPAN_CONTEXTS),
        "events": EVENTS,
        "links": LINKS,
        "status": STATUSES,
        "times": st.one_of(st.none(), st.tuples(UINT64, UINT64)),
    }
)
SEVERITIES = st.one_of(st.none(), st.sampled_from(list(SeverityNumber)))
LOG_RECORDS = st.fixed_dictionaries(
    {
        "logger": st.integers(min_value=0, max_value=3),
        "timestamp": st.one_of(st.none(), UINT64),
        "observed_timestamp": st.one_of(st.none(), UINT64),
        "context": st.one_of(st.none(), SPAN_CONTEXTS),
        "severity_number": SEVERITIES,
        "severity_text": st.one_of(st.none(), TEXT),
        "body": ANY_VALUES,
        "attributes": LOG_ATTRIBUTES,
        "event_name": st.one_of(st.none(), TEXT),
    }
)
# Two resources equal but distinct objects, one different, one with a schema URL: the SDK's
# encoder groups by equality (dict keys), and so must ours.
RESOURCES = (
    Resource({"service.name": "vrp-api", "n": 1}),
    Resource({"service.name": "vrp-api", "n": 1}),
    Resource({"service.name": "vrp-dashboard", "é": ("a", "b")}, schema_url="https://s/1"),
    Resource({}),
)
SCOPES = (
    ("instrumentation.flask", "1.0", None, None),
    ("instrumentation.database", None, "https://opentelemetry.io/schemas/1.26.0", None),
    ("", None, None, {"scope.attribute": True, "n": 2}),
    ("instrumentation.flask", "1.0", None, None),
)
LIMITS = SpanLimits(
    max_span_attributes=3,
    max_events=2,
    max_links=2,
    max_event_attributes=2,
    max_link_attributes=2,
)


def _span_providers(limited: bool) -> tuple[list[trace_api.Tracer], InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracers = []
    for index, (name, version, schema_url, attributes) in enumerate(SCOPES):
        provider = TracerProvider(
            resource=RESOURCES[index],
            span_limits=LIMITS if limited else None,
            shutdown_on_exit=False,
        )
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracers.append(provider.get_tracer(name, version, schema_url, attributes))
    return tracers, exporter


def _make_spans(specs: list[dict[str, Any]], limited: bool) -> tuple[ReadableSpan, ...]:
    tracers, exporter = _span_providers(limited)
    previous: trace_api.Span | None = None
    for spec in specs:
        context = None
        parent = spec["parent"]
        if parent == "previous" and previous is not None:
            context = trace_api.set_span_in_context(previous)
        elif isinstance(parent, SpanContext):
            context = trace_api.set_span_in_context(NonRecordingSpan(parent))
        start, end = spec["times"] or (None, None)
        span = tracers[spec["tracer"]].start_span(
            spec["name"],
            context=context,
            kind=spec["kind"],
            attributes=spec["attributes"],
            links=[Link(link_context, attributes) for link_context, attributes in spec["links"]],
            start_time=start,
        )
        for name, attributes, timestamp in spec["events"]:
            span.add_event(name, attributes, timestamp)
        if spec["status"] is not None:
            span.set_status(spec["status"])
        span.end(end)
        previous = span
    return exporter.get_finished_spans()


def _make_records(specs: list[dict[str, Any]], limited: bool) -> tuple[ReadableLogRecord, ...]:
    exporter = InMemoryLogRecordExporter()
    loggers = []
    for index, (name, version, schema_url, attributes) in enumerate(SCOPES):
        provider = LoggerProvider(
            resource=RESOURCES[index],
            shutdown_on_exit=False,
            log_record_limits=LogRecordLimits(max_attributes=2) if limited else None,
        )
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        loggers.append(provider.get_logger(name, version, schema_url, attributes))
    for spec in specs:
        context = None
        if spec["context"] is not None:
            context = trace_api.set_span_in_context(NonRecordingSpan(spec["context"]))
        loggers[spec["logger"]].emit(
            timestamp=spec["timestamp"],
            observed_timestamp=spec["observed_timestamp"],
            context=context,
            severity_number=spec["severity_number"],
            severity_text=spec["severity_text"],
            body=spec["body"],
            attributes=spec["attributes"],
            event_name=spec["event_name"],
        )
    return exporter.get_finished_logs()


def assert_same_spans(spans: tuple[ReadableSpan, ...]) -> None:
    expected = encode_spans(spans)
    ours = otlp_wire.encode_spans(spans)
    parsed = ExportTraceServiceRequest()
    parsed.ParseFromString(ours)
    assert parsed == expected
    assert ours == expected.SerializePartialToString()


def assert_same_records(records: tuple[ReadableLogRecord, ...]) -> None:
    expected = encode_logs(records)
    ours = otlp_wire.encode_logs(records)
    parsed = ExportLogsServiceRequest()
    parsed.ParseFromString(ours)
    assert parsed == expected
    assert ours == expected.SerializeToString()


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(specs=st.lists(SPANS, min_size=1, max_size=8), limited=st.booleans())
def test_spans_encode_to_the_sdk_encoders_message(specs: list[dict[str, Any]], limited: bool):
    assert_same_spans(_make_spans(specs, limited))


@FAST
@given(specs=st.lists(LOG_RECORDS, min_size=1, max_size=8), limited=st.booleans())
def test_log_records_encode_to_the_sdk_encoders_message(specs: list[dict[str, Any]], limited: bool):
    assert_same_records(_make_records(specs, limited))


@FAST
@given(specs=st.lists(SPANS, min_size=1, max_size=4))
def test_cold_and_warm_caches_encode_alike(specs: list[dict[str, Any]]) -> None:
    spans = _make_spans(specs, limited=False)
    otlp_wire.clear_caches()
    cold = otlp_wire.encode_spans(spans)
    assert otlp_wire.encode_spans(spans) == cold
    assert cold == encode_spans(spans).SerializePartialToString()


def test_int64_bounds_and_special_floats_are_exact() -> None:
    values = [
        -(2**63),
        2**63 - 1,
        -1,
        0,
        2**14,
        -0.0,
        0.0,
        math.inf,
        -math.inf,
        math.nan,
        True,
        False,
        1,
        1.0,
        "",
        "ü€𝄞",
    ]
    spans = _make_spans(
        [
            {
                "tracer": 0,
                "name": "bounds",
                "kind": SpanKind.INTERNAL,
                "attributes": {f"a{i}": value for i, value in enumerate(values)},
                "parent": None,
                "events": [],
                "links": [],
                "status": None,
                "times": None,
            }
        ],
        limited=False,
    )
    # NaN is not equal to itself, so the messages cannot be compared: the bytes can.
    assert otlp_wire.encode_spans(spans) == encode_spans(spans).SerializePartialToString()
    records = _make_records(
        [
            {
                "logger": 1,
                "timestamp": 2**64 - 1,
                "observed_timestamp": 1,
                "context": None,
                "severity_number": SeverityNumber.FATAL4,
                "severity_text": "FATAL",
                "body": {"nested": [b"\x00\xff", {"x": None}, (), {}], "": -(2**63)},
                "attributes": {"big": "x" * 20_000, "list": list(range(300))},
                "event_name": "vrp.event",
            }
        ],
        limited=False,
    )
    assert_same_records(records)


def test_values_outside_what_the_fast_path_encodes_raise_for_the_sdk_to_handle() -> None:
    for attributes in ({"big": 2**63}, {"small": -(2**63) - 1}, {"surrogate": "\ud800"}):
        records = _make_records(
            [
                {
                    "logger": 0,
                    "timestamp": 1,
                    "observed_timestamp": 1,
                    "context": None,
                    "severity_number": None,
                    "severity_text": None,
                    "body": "x",
                    "attributes": attributes,
                    "event_name": None,
                }
            ],
            limited=False,
        )
        with pytest.raises(otlp_wire.WireEncodingError):
            otlp_wire.encode_logs(records)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    store = TelemetryStore(f"sqlite:///{tmp_path / 'telemetry.db'}")
    store.upgrade()
    try:
        yield from serve(DashboardSettings(store_url=store.url), store)
    finally:
        store.dispose()


def test_spans_and_records_reach_the_dashboard_receiver(live: Live) -> None:
    resource = Resource.create({"service.name": "vrp-api"})
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(WireSpanExporter(endpoint=f"{live.url}/v1/traces"))
    )
    logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(WireLogExporter(endpoint=f"{live.url}/v1/logs"))
    )
    tracer = tracer_provider.get_tracer("instrumentation.flask")
    try:
        with tracer.start_as_current_span(
            "GET /api/recordings/{id}",
            kind=SpanKind.SERVER,
            attributes={"http.route": "/api/recordings/{id}", "http.response.status_code": 500},
        ) as root:
            with tracer.start_as_current_span(
                "SELECT recordings",
                kind=SpanKind.CLIENT,
                # Outside int64: this batch goes through the SDK's encoder, which drops the
                # one attribute it cannot encode (and logs it).
                attributes={"db.system.name": "sqlite", "vrp.too.big": 2**64},
            ):
                pass
            logger_provider.get_logger("instrumentation.flask").emit(
                severity_number=SeverityNumber.ERROR,
                severity_text="ERROR",
                body="storage unavailable: é",
                attributes={"error.type": "OSError", "vrp.db.statements": 3},
            )
            root.set_status(Status(StatusCode.ERROR, "boom"))
        trace_id = format(root.get_span_context().trace_id, "032x")
    finally:
        tracer_provider.shutdown()
        logger_provider.shutdown()

    tree = live.get(f"/api/traces/{trace_id}")
    assert sorted(span["name"] for span in tree["spans"]) == [
        "GET /api/recordings/{id}",
        "SELECT recordings",
    ]
    [record] = live.get("/api/logs", trace_id=trace_id)["logs"]
    assert (record["message"], record["level"], record["attributes"]["error.type"]) == (
        "storage unavailable: é",
        "ERROR",
        "OSError",
    )


def test_exporter_falls_back_to_the_sdk_encoder_and_loses_nothing(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    resource = Resource.create({"service.name": "vrp-api"})
    exporter = WireSpanExporter(endpoint=f"{live.url}/v1/traces")
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tracer_provider.get_tracer("test")
    caplog.set_level(logging.ERROR)
    try:
        with tracer.start_as_current_span("fallback", attributes={"big": 2**64, "ok": 1}) as span:
            pass
    finally:
        tracer_provider.shutdown()
    trace_id = format(span.get_span_context().trace_id, "032x")
    [found] = live.get(f"/api/traces/{trace_id}")["spans"]
    assert found["name"] == "fallback"
    # The SDK's own handling of the value it cannot encode: logged, that attribute left out.
    assert any("Failed to encode key big" in record.getMessage() for record in caplog.records)
