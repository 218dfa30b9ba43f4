"""OTLP request bodies built with the generated protobuf classes, for receiver tests and
benchmarks: spans of a small web service, and metric points with chosen temporality."""

from __future__ import annotations

import random
from collections.abc import Sequence

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from dashboard.histograms import ExpHistogram
from instrumentation import conventions as c


def kv(key: str, value: str | int | float | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def array_kv(key: str, values: Sequence[str]) -> KeyValue:
    """A string-array attribute, as OpenTelemetry records request headers."""
    pair = KeyValue(key=key)
    pair.value.array_value.values.extend(AnyValue(string_value=v) for v in values)
    return pair


def traces_request(
    spans: Sequence[trace_pb2.Span], service: str = "vrp-api"
) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(kv(c.SERVICE_NAME, service))
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def span(
    trace_id: bytes,
    span_id: bytes,
    name: str,
    start_ns: int,
    duration_ns: int,
    *,
    parent: bytes = b"",
    kind: int = trace_pb2.Span.SPAN_KIND_INTERNAL,
    attributes: dict[str, str | int | float | bool] | None = None,
    error: bool = False,
) -> trace_pb2.Span:
    result = trace_pb2.Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=kind,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + duration_ns,
    )
    result.attributes.extend(kv(k, v) for k, v in (attributes or {}).items())
    if error:
        result.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    return result


def request_trace(rng: random.Random, start_ns: int) -> list[trace_pb2.Span]:
    """One HTTP request of the API: server span, session, transaction, three statements."""
    trace_id = rng.randbytes(16)
    ids = [rng.randbytes(8) for _ in range(6)]
    route = rng.choice(["/api/recordings", "/api/recordings/{id}", "/api/tags"])
    total = int(rng.lognormvariate(16.0, 0.8))  # ~9 ms median, in ns
    error = rng.random() < 0.02
    result = [
        span(
            trace_id,
            ids[0],
            f"GET {route}",
            start_ns,
            total,
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            attributes={
                c.HTTP_REQUEST_METHOD: "GET",
                c.HTTP_ROUTE: route,
                c.HTTP_RESPONSE_STATUS_CODE: 500 if error else 200,
                "server.address": "127.0.0.1",
                "url.scheme": "http",
            },
            error=error,
        ),
        span(
            trace_id,
            ids[1],
            c.DB_SESSION_SPAN,
            start_ns + total // 10,
            total // 2,
            parent=ids[0],
            attributes={
                c.DB_SYSTEM_NAME: "sqlite",
                c.VRP_DB_SESSION_STATEMENTS: 3,
                c.VRP_DB_SESSION_OUTCOME: "commit",
            },
        ),
        span(
            trace_id,
            ids[2],
            c.DB_TRANSACTION_SPAN,
            start_ns + total // 9,
            total // 3,
            parent=ids[1],
            attributes={
                c.DB_SYSTEM_NAME: "sqlite",
                c.VRP_DB_TRANSACTION_ATTEMPTS: 1,
                c.VRP_DB_TRANSACTION_OUTCOME: "commit",
            },
        ),
    ]
    for index, table in enumerate(("recordings", "tags", "recording_tags")):
        result.append(
            span(
                trace_id,
                ids[3 + index],
                f"SELECT {table}",
                start_ns + total // 8,
                max(1000, int(rng.lognormvariate(13.0, 1.0))),
                parent=ids[2],
                kind=trace_pb2.Span.SPAN_KIND_CLIENT,
                attributes={
                    c.DB_SYSTEM_NAME: "sqlite",
                    c.DB_OPERATION_NAME: "SELECT",
                    c.DB_COLLECTION_NAME: table,
                    c.DB_QUERY_TEXT: f"SELECT {table}.id, {table}.name FROM {table} WHERE id = ?",
                },
            )
        )
    return result


def histogram_request(
    name: str,
    points: Sequence[tuple[int, int, list[float]]],
    *,
    temporality: int,
    service: str = "vrp-api",
    attributes: dict[str, str | int] | None = None,
    scale: int = 8,
) -> ExportMetricsServiceRequest:
    """Exponential histogram points ``(start_ns, time_ns, values)``; with cumulative
    temporality ``values`` must already be everything since ``start_ns``."""
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.append(kv(c.SERVICE_NAME, service))
    metric = resource_metrics.scope_metrics.add().metrics.add()
    metric.name = name
    metric.unit = "s"
    metric.exponential_histogram.aggregation_temporality = temporality
    for start_ns, time_ns, values in points:
        histogram = ExpHistogram(scale=scale)
        for value in values:
            histogram.record(value)
        point = metric.exponential_histogram.data_points.add(
            start_time_unix_nano=start_ns,
            time_unix_nano=time_ns,
            count=histogram.count,
            sum=histogram.sum,
            scale=scale,
            zero_count=histogram.zero_count,
        )
        if values:
            point.min, point.max = histogram.min, histogram.max
        point.positive.offset = histogram.offset
        point.positive.bucket_counts.extend(histogram.counts)
        point.attributes.extend(kv(k, v) for k, v in (attributes or {}).items())
    return request


TEMPORALITY_DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
TEMPORALITY_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
