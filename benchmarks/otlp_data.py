"""Synthetic OTLP traces of the recorder API for the dashboard benchmarks.

Each request is the contract's tree: a SERVER span, its ``db.session``, a ``db.transaction``
and three statement spans with ``db.query.text``, with lognormal durations, 2% failing.
"""

from __future__ import annotations

import random

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from instrumentation import conventions as c

SPANS_PER_REQUEST = 6
ROUTES = ("/api/recordings", "/api/recordings/{id}", "/api/tags", "/api/recordings/{id}/audio")
TABLES = ("recordings", "tags", "recording_tags", "blobs")


def _kv(key: str, value: str | int | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _span(
    spans: list[trace_pb2.Span],
    trace_id: bytes,
    span_id: bytes,
    parent: bytes,
    name: str,
    kind: int,
    start_ns: int,
    duration_ns: int,
    attributes: dict[str, str | int | bool],
    error: bool = False,
) -> None:
    span = trace_pb2.Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=kind,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + duration_ns,
    )
    span.attributes.extend(_kv(k, v) for k, v in attributes.items())
    if error:
        span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    spans.append(span)


def request_spans(rng: random.Random, start_ns: int) -> list[trace_pb2.Span]:
    """The six spans of one API request starting at ``start_ns``."""
    spans: list[trace_pb2.Span] = []
    trace_id = rng.randbytes(16)
    root, session, transaction = rng.randbytes(8), rng.randbytes(8), rng.randbytes(8)
    route = rng.choice(ROUTES)
    total = int(rng.lognormvariate(15.5, 0.9))
    error = rng.random() < 0.02
    _span(
        spans,
        trace_id,
        root,
        b"",
        f"GET {route}",
        trace_pb2.Span.SPAN_KIND_SERVER,
        start_ns,
        total,
        {
            c.HTTP_REQUEST_METHOD: "GET",
            c.HTTP_ROUTE: route,
            c.HTTP_RESPONSE_STATUS_CODE: 500 if error else 200,
            c.SERVER_ADDRESS: "127.0.0.1",
            c.SERVER_PORT: 5000,
            c.VRP_REQUEST_ID: rng.randbytes(8).hex(),
        },
        error,
    )
    _span(
        spans,
        trace_id,
        session,
        root,
        c.DB_SESSION_SPAN,
        trace_pb2.Span.SPAN_KIND_INTERNAL,
        start_ns + total // 10,
        total // 2,
        {
            c.DB_SYSTEM_NAME: "sqlite",
            c.VRP_DB_SESSION_STATEMENTS: 3,
            c.VRP_DB_SESSION_OUTCOME: "commit",
        },
    )
    _span(
        spans,
        trace_id,
        transaction,
        session,
        c.DB_TRANSACTION_SPAN,
        trace_pb2.Span.SPAN_KIND_INTERNAL,
        start_ns + total // 9,
        total // 3,
        {
            c.DB_SYSTEM_NAME: "sqlite",
            c.VRP_DB_TRANSACTION_ATTEMPTS: 1,
            c.VRP_DB_TRANSACTION_OUTCOME: "commit",
        },
    )
    for index in range(3):
        table = rng.choice(TABLES)
        _span(
            spans,
            trace_id,
            rng.randbytes(8),
            transaction,
            f"SELECT {table}",
            trace_pb2.Span.SPAN_KIND_CLIENT,
            start_ns + total // 8 + index * 1000,
            max(2000, int(rng.lognormvariate(12.5, 1.0))),
            {
                c.DB_SYSTEM_NAME: "sqlite",
                c.DB_NAMESPACE: "main",
                c.DB_OPERATION_NAME: "SELECT",
                c.DB_COLLECTION_NAME: table,
                c.DB_QUERY_TEXT: f"SELECT {table}.id, {table}.name FROM {table} "
                f"WHERE {table}.id = ? LIMIT ?",
            },
        )
    return spans


def batches(
    rng: random.Random, count: int, spans_per_batch: int, start_ns: int, step_ns: int
) -> list[ExportTraceServiceRequest]:
    """``count`` requests of ``spans_per_batch`` spans, requests ``step_ns`` apart."""
    result = []
    pending: list[trace_pb2.Span] = []
    now = start_ns
    while len(result) < count:
        while len(pending) < spans_per_batch:
            pending.extend(request_spans(rng, now))
            now += step_ns
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.append(_kv(c.SERVICE_NAME, "vrp-api"))
        resource_spans.scope_spans.add().spans.extend(pending[:spans_per_batch])
        pending = pending[spans_per_batch:]
        result.append(request)
    return result
