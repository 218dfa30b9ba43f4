"""OTLP request bodies (protobuf or the spec's JSON mapping) into plain records.

Protobuf is parsed with the generated classes of ``opentelemetry-proto``. JSON is parsed with
orjson and handed to protobuf's ``json_format`` once the OTLP deviations from the standard
proto3 JSON mapping are undone: trace and span ids are hex strings in OTLP/JSON, not base64
(``json_format`` already accepts lowerCamelCase and snake_case keys, enums as numbers and 64-bit
integers as strings, and unknown fields are ignored as the spec requires).

Limits against hostile bodies (the body size itself is limited by the receiver): at most
:data:`MAX_ATTRIBUTES` attributes on one span, event, log record or resource, and no string or
bytes value longer than :data:`MAX_VALUE_BYTES`; a body breaking them is refused whole with
:class:`~dashboard.errors.PayloadDecodeError`. Items that are well-formed but unusable (ids of
the wrong length, summary metric points) are counted as rejected for ``partial_success``, and so
are items whose values the store cannot hold or the rollups would be corrupted by: times or
counts beyond a signed 64-bit integer (``fixed64``/``uint64`` go up to 2^64-1), a span ending
before it starts, NaN or infinite numbers, histogram buckets that disagree with their bounds or
their count. The store never sees such values, so one bad item cannot fail a whole write.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from dashboard.errors import PayloadDecodeError
from dashboard.otlp_spans import AttributeCache, LeanTraceRequest
from instrumentation import conventions as names

MAX_ATTRIBUTES = 1024
# The store's integers (SQLite INTEGER, PostgreSQL BIGINT) are signed 64-bit.
MAX_INT64 = 2**63 - 1
MAX_VALUE_BYTES = 64 * 1024
UNKNOWN_SERVICE = "unknown_service"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# OTLP enum values (opentelemetry/proto/trace/v1/trace.proto, metrics.proto).
SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
SPAN_KINDS = {
    0: "UNSPECIFIED",
    1: "INTERNAL",
    2: "SERVER",
    3: "CLIENT",
    4: "PRODUCER",
    5: "CONSUMER",
}
STATUS_ERROR = 2
TEMPORALITY_DELTA = 1
TEMPORALITY_CUMULATIVE = 2


class SpanRecord(NamedTuple):
    """One span as the store keeps it.

    A named tuple, not a dataclass: the receiver holds a batch's records until they are
    committed, and the garbage collector stops tracking a tuple of plain values (and dicts of
    them) at its first collection, where it would scan every dataclass instance again at
    each one. With dataclasses, collections took a quarter of the receiver's time in the
    ingest benchmark (0.45 s of 1.8 s, two thirds of it in the older generations).
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    service: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    events: Sequence[dict[str, Any]]  # () when none: one tuple shared, no list per span
    # {"trace_id", "span_id", "attributes"} of the spans this one links to (a batch's
    # messages, the run a retry follows); () when none, as most spans.
    links: Sequence[dict[str, Any]] = ()


@dataclass(slots=True)
class LogRecord:
    time_ns: int
    service: str
    severity_number: int
    severity_text: str
    body: str
    trace_id: str | None
    span_id: str | None
    attributes: dict[str, Any]


@dataclass(slots=True)
class MetricPoint:
    """One data point of a gauge, sum or histogram, with what identifies its stream."""

    service: str
    stream: str
    name: str
    unit: str
    kind: str  # "gauge", "sum", "histogram" or "exponential_histogram"
    temporality: int
    monotonic: bool
    attributes: dict[str, Any]
    start_ns: int
    time_ns: int
    value: float = 0.0
    count: int = 0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None
    bounds: tuple[float, ...] = ()
    bucket_counts: list[int] = field(default_factory=list)
    scale: int = 0
    zero_count: int = 0
    offset: int = 0


@dataclass
class Decoded:
    """What a request held: the usable records and how many items were rejected, and why."""

    records: list[Any]
    rejected: int = 0
    error_message: str = ""

    def take_records(self) -> list[Any]:
        """The records, handed over: this object keeps none, so they go once the taker is done."""
        records, self.records = self.records, []
        return records

    def reject(self, message: str, n: int = 1) -> None:
        self.rejected += n
        if not self.error_message:
            self.error_message = message


def parse(body: bytes, content_type: str, message: Message) -> Message:
    """Fill ``message`` from ``body``; raise :class:`PayloadDecodeError` if it cannot be read."""
    if content_type == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise PayloadDecodeError(
                f"body is not a valid {type(message).__name__} protobuf message ({exc}); "
                "check the exporter's protocol setting"
            ) from None
        return message
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadDecodeError(f"body is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise PayloadDecodeError("a JSON body must be an object, per the OTLP/JSON mapping")
    try:
        _hex_ids_to_base64(document)
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, TypeError, ValueError) as exc:
        raise PayloadDecodeError(
            f"body does not follow the OTLP/JSON mapping of {type(message).__name__}: {exc}"
        ) from None
    return message


_ID_KEYS = frozenset(("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"))


def _hex_ids_to_base64(node: Any, depth: int = 0) -> None:
    """Rewrite OTLP/JSON hex ids in place to the base64 the proto3 JSON mapping expects."""
    if depth > 64:
        raise ValueError("nesting deeper than any OTLP message allows")
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
                except ValueError:
                    raise ValueError(f"{key} {value[:40]!r} is not a hex string") from None
            elif isinstance(value, (dict, list)):
                _hex_ids_to_base64(value, depth + 1)
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, (dict, list)):
                _hex_ids_to_base64(value, depth + 1)


def any_value(value: Any) -> Any:
    """An OTLP ``AnyValue`` as a JSON-serialisable Python value (bytes as base64)."""
    which = value.WhichOneof("value")
    if which == "string_value":
        text = value.string_value
        if len(text) > MAX_VALUE_BYTES:
            raise PayloadDecodeError(
                f"an attribute or body value has {len(text)} characters, above the limit of "
                f"{MAX_VALUE_BYTES}; set an attribute value length limit in the SDK"
            )
        return text
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "bool_value":
        return value.bool_value
    if which == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if which == "bytes_value":
        raw = value.bytes_value
        if len(raw) > MAX_VALUE_BYTES:
            raise PayloadDecodeError(
                f"a bytes value has {len(raw)} bytes, above the limit of {MAX_VALUE_BYTES}"
            )
        return binascii.b2a_base64(raw, newline=False).decode("ascii")
    return None


_PLAIN = frozenset(("int_value", "double_value", "bool_value"))
_ZERO_TRACE_ID = bytes(16)


def attributes(pairs: Any) -> dict[str, Any]:
    """Key-value pairs as a dict; strings and plain scalars inline (the hot path of ingest)."""
    if len(pairs) > MAX_ATTRIBUTES:
        raise PayloadDecodeError(
            f"an item carries {len(pairs)} attributes, above the limit of {MAX_ATTRIBUTES}; "
            "set an attribute count limit in the SDK"
        )
    result: dict[str, Any] = {}
    for kv in pairs:
        value = kv.value
        which = value.WhichOneof("value")
        if which == "string_value":
            text = value.string_value
            if len(text) > MAX_VALUE_BYTES:
                result[kv.key] = any_value(value)
            result[kv.key] = text
        elif which in _PLAIN:
            result[kv.key] = getattr(value, which)
        else:
            result[kv.key] = any_value(value)
    return result


def _service(resource_attributes: dict[str, Any]) -> str:
    name = resource_attributes.get(names.SERVICE_NAME)
    return name if isinstance(name, str) and name else UNKNOWN_SERVICE


def _check_count(count: int) -> None:
    if count > MAX_ATTRIBUTES:
        raise PayloadDecodeError(
            f"an item carries {count} attributes, above the limit of {MAX_ATTRIBUTES}; "
            "set an attribute count limit in the SDK"
        )


# Span and resource attributes, decoded once per distinct pair (see dashboard.otlp_spans).
_SPAN_ATTRIBUTES = AttributeCache(any_value, _check_count)


def _links(raw_links: Sequence[bytes]) -> Sequence[dict[str, Any]]:
    """The links that name a span (a trace id of 16 bytes, not all zero, and a span id of 8);
    () when none does."""
    try:
        links = [Span.Link.FromString(raw) for raw in raw_links]
    except (DecodeError, RecursionError, ValueError) as exc:
        raise PayloadDecodeError(
            f"body is not a valid ExportTraceServiceRequest protobuf message ({exc}); "
            "check the exporter's protocol setting"
        ) from None
    return [
        {
            "trace_id": link.trace_id.hex(),
            "span_id": link.span_id.hex(),
            "attributes": attributes(link.attributes),
        }
        for link in links
        if len(link.trace_id) == 16 and len(link.span_id) == 8 and link.trace_id != _ZERO_TRACE_ID
    ] or ()


def _events(raw_events: Sequence[bytes]) -> list[Any]:
    try:
        return [Span.Event.FromString(raw) for raw in raw_events]
    except (DecodeError, RecursionError, ValueError) as exc:
        raise PayloadDecodeError(
            f"body is not a valid ExportTraceServiceRequest protobuf message ({exc}); "
            "check the exporter's protocol setting"
        ) from None


def decode_traces(body: bytes, content_type: str) -> Decoded:
    """The spans of a trace export request, read through :mod:`dashboard.otlp_spans`."""
    if content_type == PROTOBUF:
        request: Any = parse(body, content_type, LeanTraceRequest())
    else:
        standard = parse(body, content_type, ExportTraceServiceRequest())
        request = LeanTraceRequest.FromString(standard.SerializeToString())
    decoded = Decoded([])
    records = decoded.records
    span_attributes = _SPAN_ATTRIBUTES.attributes
    for resource_spans in request.resource_spans:
        pairs = resource_spans.resource.attributes
        service = _service(span_attributes(pairs))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                trace_id, span_id = span.trace_id, span.span_id
                if len(trace_id) != 16 or len(span_id) != 8 or trace_id == _ZERO_TRACE_ID:
                    decoded.reject("span with a trace id not of 16 bytes or a span id not of 8")
                    continue
                pairs = span.attributes
                start, end, raw_events = (
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                    span.events,
                )
                events = _events(raw_events) if raw_events else ()
                # One comparison per span on the usual path (end >= start, so start is in range
                # too); _span_problem says which rule a span broke.
                if end < start or end > MAX_INT64 or (events and _span_problem(start, end, events)):
                    decoded.reject(_span_problem(start, end, events))
                    continue
                parent = span.parent_span_id
                status = span.status
                records.append(
                    SpanRecord(
                        trace_id.hex(),
                        span_id.hex(),
                        parent.hex() if len(parent) == 8 else None,
                        service,
                        span.name,
                        span.kind,
                        start,
                        end,
                        status.code,
                        status.message,
                        span_attributes(pairs),
                        [
                            {
                                "name": event.name,
                                "time_ns": event.time_unix_nano,
                                "attributes": attributes(event.attributes),
                            }
                            for event in events
                        ]
                        if events
                        else (),
                        _links(span.links) if span.links else (),
                    )
                )
    return decoded


def decode_logs(body: bytes, content_type: str) -> Decoded:
    request = parse(body, content_type, ExportLogsServiceRequest())
    decoded = Decoded([])
    for resource_logs in request.resource_logs:
        service = _service(attributes(resource_logs.resource.attributes))
        for scope_logs in resource_logs.scope_logs:
            for log in scope_logs.log_records:
                if max(log.time_unix_nano, log.observed_time_unix_nano) > MAX_INT64:
                    decoded.reject("log record with a time beyond 2^63-1 ns (year 2262)")
                    continue
                body_value = any_value(log.body) if log.HasField("body") else ""
                decoded.records.append(
                    LogRecord(
                        log.time_unix_nano or log.observed_time_unix_nano,
                        service,
                        log.severity_number,
                        log.severity_text,
                        body_value
                        if isinstance(body_value, str)
                        else orjson.dumps(body_value).decode(),
                        log.trace_id.hex() if len(log.trace_id) == 16 else None,
                        log.span_id.hex() if len(log.span_id) == 8 else None,
                        attributes(log.attributes),
                    )
                )
    return decoded


def decode_metrics(body: bytes, content_type: str) -> Decoded:
    request = parse(body, content_type, ExportMetricsServiceRequest())
    decoded = Decoded([])
    points = decoded.records
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        service = _service(resource)
        resource_key = orjson.dumps(resource, option=orjson.OPT_SORT_KEYS).decode()
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope.name
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind not in ("gauge", "sum", "histogram", "exponential_histogram"):
                    data = getattr(metric, kind) if kind else None
                    decoded.reject(
                        f"metric {metric.name!r}: {kind or 'empty'} points are not stored",
                        len(data.data_points) if data is not None else 1,
                    )
                    continue
                data = getattr(metric, kind)
                temporality = getattr(data, "aggregation_temporality", 0)
                monotonic = bool(getattr(data, "is_monotonic", False))
                for point in data.data_points:
                    if kind == "exponential_histogram" and not -10 <= point.scale <= 20:
                        decoded.reject(
                            f"metric {metric.name!r}: scale {point.scale} outside -10..20"
                        )
                        continue
                    problem = _point_problem(kind, point)
                    if problem:
                        decoded.reject(f"metric {metric.name!r}: {problem}")
                        continue
                    point_attributes = attributes(point.attributes)
                    stream = orjson.dumps(
                        [resource_key, scope, metric.name, point_attributes],
                        option=orjson.OPT_SORT_KEYS,
                    ).decode()
                    record = MetricPoint(
                        service,
                        stream,
                        metric.name,
                        metric.unit,
                        kind,
                        temporality,
                        monotonic,
                        point_attributes,
                        point.start_time_unix_nano,
                        point.time_unix_nano,
                    )
                    _fill_point(record, kind, point)
                    points.append(record)
    return decoded


def _span_problem(start: int, end: int, events: Sequence[Any]) -> str:
    """Why the store must not hold a span of these times and events, or "" if it may."""
    if max(start, end) > MAX_INT64 or any(e.time_unix_nano > MAX_INT64 for e in events):
        return "span with a time beyond 2^63-1 ns (year 2262)"
    if end < start:
        return "span whose end time is before its start time"
    return ""


def _point_problem(kind: str, point: Any) -> str:
    """Why the store must not hold the metric ``point``, or "" if it may."""
    if max(point.start_time_unix_nano, point.time_unix_nano) > MAX_INT64:
        return "data point with a time beyond 2^63-1 ns (year 2262)"
    if kind in ("gauge", "sum"):
        if point.WhichOneof("value") == "as_double" and not math.isfinite(point.as_double):
            return "data point with a NaN or infinite value"
        return ""
    extremes = (getattr(point, name) for name in ("min", "max") if point.HasField(name))
    numbers = [point.sum, *extremes]
    if not all(math.isfinite(number) for number in numbers):
        return "histogram point with a NaN or infinite sum, min or max"
    if kind == "histogram":
        bounds, buckets = list(point.explicit_bounds), list(point.bucket_counts)
        if not all(math.isfinite(bound) for bound in bounds) or any(
            a >= b for a, b in itertools.pairwise(bounds)
        ):
            return "histogram point whose bounds are not finite and increasing"
    else:
        buckets = [
            point.zero_count,
            *point.positive.bucket_counts,
            *point.negative.bucket_counts,
        ]
    if point.count > MAX_INT64 or any(count > MAX_INT64 for count in buckets):
        return "histogram point with a count beyond 2^63-1"
    if kind == "histogram" and buckets and len(buckets) != len(bounds) + 1:
        return f"histogram point with {len(buckets)} bucket counts for {len(bounds)} bounds"
    if buckets and sum(buckets) != point.count:
        return f"histogram point whose bucket counts add up to {sum(buckets)}, not its count"
    return ""


def _fill_point(record: MetricPoint, kind: str, point: Any) -> None:
    if kind in ("gauge", "sum"):
        which = point.WhichOneof("value")
        record.value = float(point.as_int if which == "as_int" else point.as_double)
        record.count = 1
        return
    record.count = point.count
    record.sum = point.sum if point.HasField("sum") else 0.0
    record.min = point.min if point.HasField("min") else None
    record.max = point.max if point.HasField("max") else None
    if kind == "histogram":
        record.bounds = tuple(point.explicit_bounds)
        record.bucket_counts = list(point.bucket_counts)
        if len(record.bucket_counts) != len(record.bounds) + 1:
            # The spec allows no buckets at all (count and sum only); anything else is invalid.
            record.bucket_counts = [0] * len(record.bounds) + [point.count]
    else:
        record.scale = point.scale
        record.zero_count = point.zero_count
        record.offset = point.positive.offset
        record.bucket_counts = list(point.positive.bucket_counts)
