"""The real OpenTelemetry SDK exporters send to the receiver over HTTP; /api/ reads it back."""

from __future__ import annotations

import logging
import math
import time

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from instrumentation import conventions as c
from tests.dashboard.conftest import Live

DELTA = AggregationTemporality.DELTA
CUMULATIVE = AggregationTemporality.CUMULATIVE
# Two collections per stream, so cumulative streams must be turned into deltas.
FIRST = [0.004, 0.012, 0.030, 0.250, 0.041, 0.018, 0.0071]
SECOND = [0.090, 0.011, 1.700, 0.026]
ROUTE = "/api/recordings/{id}"
# The semantic conventions' advice for http.server.request.duration, in seconds.
BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def metric_provider(
    live: Live, service: str, temporality: AggregationTemporality, exponential: bool
):
    exporter = OTLPMetricExporter(
        endpoint=f"{live.url}/v1/metrics",
        preferred_temporality={
            Histogram: temporality,
            Counter: temporality,
            UpDownCounter: temporality,
        },
        preferred_aggregation={
            Histogram: ExponentialBucketHistogramAggregation(max_size=160, max_scale=20)
            if exponential
            else ExplicitBucketHistogramAggregation(boundaries=BOUNDS)
        },
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=Resource.create({c.SERVICE_NAME: service}), metric_readers=[reader]
    )
    return provider, reader


@pytest.mark.parametrize("exponential", [True, False], ids=["exponential", "explicit"])
@pytest.mark.parametrize("temporality", [DELTA, CUMULATIVE], ids=["delta", "cumulative"])
def test_http_duration_histograms_of_both_kinds_and_temporalities_are_readable(
    live: Live, temporality: AggregationTemporality, exponential: bool
) -> None:
    provider, reader = metric_provider(live, "vrp-api", temporality, exponential)
    meter = provider.get_meter("test")
    duration = meter.create_histogram(c.HTTP_SERVER_REQUEST_DURATION, unit="s")
    retries = meter.create_counter(c.VRP_DB_TRANSACTION_RETRIES)
    connections = meter.create_up_down_counter(c.DB_CLIENT_CONNECTION_COUNT)
    ok = {c.HTTP_REQUEST_METHOD: "GET", c.HTTP_ROUTE: ROUTE, c.HTTP_RESPONSE_STATUS_CODE: 200}
    failed = {**ok, c.HTTP_RESPONSE_STATUS_CODE: 503, c.ERROR_TYPE: "503"}
    pool = {c.DB_CLIENT_CONNECTION_POOL_NAME: "main", c.DB_CLIENT_CONNECTION_STATE: "used"}
    for value in FIRST:
        duration.record(value, ok)
    retries.add(2, {c.ERROR_TYPE: "OperationalError"})
    connections.add(3, pool)
    reader.collect()
    for value in SECOND[:-1]:
        duration.record(value, ok)
    duration.record(SECOND[-1], failed)
    retries.add(1, {c.ERROR_TYPE: "OperationalError"})
    connections.add(-1, pool)
    reader.collect()
    provider.shutdown()

    everything = FIRST + SECOND
    [operation] = live.get("/api/operations")["operations"]
    assert (operation["service"], operation["operation"], operation["source"]) == (
        "vrp-api",
        f"GET {ROUTE}",
        "metrics",
    )
    assert operation["count"] == len(everything)
    assert operation["errors"] == 1
    [summary] = live.get("/api/summary")["services"]
    assert summary["count"] == len(everything)
    for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms")):
        exact = nearest_rank(everything, q) * 1000
        if exponential:
            assert summary[key] == pytest.approx(exact, rel=0.02)
        else:
            # Interpolated inside the default explicit bucket that holds the exact value.
            lower = max(b * 1000 for b in [0, *BOUNDS] if b * 1000 < exact)
            upper = min(b * 1000 for b in BOUNDS if b * 1000 >= exact)
            assert lower <= summary[key] <= upper
    transactions = live.get("/api/transactions")
    assert transactions["retries"] == [
        {"service": "vrp-api", "error_type": "OperationalError", "count": 3}
    ]
    [main] = live.get("/api/pool")["pools"]
    assert (main["pool"], main["used"]) == ("main", 2)


def test_spans_and_logs_from_the_sdk_are_readable_with_their_tree(live: Live) -> None:
    resource = Resource.create({c.SERVICE_NAME: "vrp-api"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{live.url}/v1/traces"))
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{live.url}/v1/logs"))
    )
    logger = logging.getLogger("tests.dashboard.sdk")
    handler = LoggingHandler(logger_provider=logger_provider)
    logger.addHandler(handler)
    tracer = tracer_provider.get_tracer("test")
    text = "SELECT tags.name FROM tags WHERE tags.recording_id = ?"
    try:
        with tracer.start_as_current_span(
            f"GET {ROUTE}", kind=SpanKind.SERVER, attributes={c.HTTP_ROUTE: ROUTE}
        ) as root:
            with tracer.start_as_current_span(
                c.DB_SESSION_SPAN, attributes={c.VRP_DB_SESSION_STATEMENTS: 6}
            ):
                for _ in range(6):
                    with tracer.start_as_current_span(
                        "SELECT tags", kind=SpanKind.CLIENT, attributes={c.DB_QUERY_TEXT: text}
                    ):
                        time.sleep(0.001)
            logger.error("storage unavailable", extra={"error.type": "OSError"})
            root.set_status(Status(StatusCode.ERROR, "boom"))
        trace_id = format(root.get_span_context().trace_id, "032x")
        tracer_provider.force_flush()
    finally:
        logger.removeHandler(handler)
        tracer_provider.shutdown()
        logger_provider.shutdown()

    [found] = live.get("/api/traces", status="error")["traces"]
    assert (found["trace_id"], found["span_count"], found["error"], found["n_plus_one"]) == (
        trace_id,
        8,
        True,
        True,
    )
    tree = live.get(f"/api/traces/{trace_id}")
    assert [(s["name"], s["depth"]) for s in tree["spans"][:3]] == [
        (f"GET {ROUTE}", 0),
        (c.DB_SESSION_SPAN, 1),
        ("SELECT tags", 2),
    ]
    assert [n["count"] for n in tree["n_plus_one"]] == [6]
    [record] = live.get("/api/logs", trace_id=trace_id)["logs"]
    assert (record["message"], record["level"], record["attributes"]["error.type"]) == (
        "storage unavailable",
        "ERROR",
        "OSError",
    )
    queries = live.get("/api/queries", summary="SELECT tags")
    assert queries["queries"][0]["count"] == 6
    assert queries["examples"][0]["query_text"] == text
    assert queries["n_plus_one"][0]["trace_id"] == trace_id
    services = live.get("/api/services")["services"]
    assert services[0]["name"] == "vrp-api"
    assert set(services[0]["sources"]) == {"spans", "logs"}
