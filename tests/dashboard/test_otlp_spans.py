"""The lean view of trace requests (dashboard.otlp_spans) reads what the generated classes read."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1 import trace_pb2

from dashboard import otlp, otlp_spans
from dashboard.errors import PayloadDecodeError
from dashboard.store.span_rows import span_row


def _value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(
            kvlist_value=KeyValueList(
                values=[KeyValue(key=k, value=_value(v)) for k, v in value.items()]
            )
        )
    return AnyValue(string_value=value)


ATTRIBUTES: dict[str, Any] = {
    "text": "SELECT 1",
    "number": 42,
    "ratio": 0.5,
    "flag": True,
    "raw": b"\x00\x01",
    "list": ["a", 1, False],
    "map": {"inner": "x", "deeper": {"n": 2}},
    "empty": "",
}


def _request(attributes: dict[str, Any], *, events: int = 1) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(KeyValue(key="service.name", value=_value("vrp-api")))
    resource_spans.schema_url = "https://opentelemetry.io/schemas/1.26.0"
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "tests"
    span = scope_spans.spans.add(
        trace_id=bytes(range(1, 17)),
        span_id=bytes(range(1, 9)),
        parent_span_id=bytes(range(9, 17)),
        trace_state="k=v",
        name="GET /api/things",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_000,
        end_time_unix_nano=5_000,
    )
    span.attributes.extend(KeyValue(key=k, value=_value(v)) for k, v in attributes.items())
    span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    span.status.message = "boom"
    for index in range(events):
        event = span.events.add(name=f"retry {index}", time_unix_nano=2_000 + index)
        event.attributes.append(KeyValue(key="error.type", value=_value("OperationalError")))
    span.links.add(trace_id=bytes(16), span_id=bytes(8))
    return request


def _standard_records(request: ExportTraceServiceRequest) -> list[otlp.SpanRecord]:
    """What the decoder made of spans before the lean view, from the generated classes."""
    records = []
    for resource_spans in request.resource_spans:
        service = otlp._service(otlp.attributes(resource_spans.resource.attributes))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                records.append(
                    otlp.SpanRecord(
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        span.parent_span_id.hex() if span.parent_span_id else None,
                        service,
                        span.name,
                        span.kind,
                        span.start_time_unix_nano,
                        span.end_time_unix_nano,
                        span.status.code,
                        span.status.message,
                        otlp.attributes(span.attributes),
                        [
                            {
                                "name": e.name,
                                "time_ns": e.time_unix_nano,
                                "attributes": otlp.attributes(e.attributes),
                            }
                            for e in span.events
                        ]
                        or (),
                    )
                )
    return records


@pytest.mark.parametrize("events", [0, 2])
def test_lean_decode_reads_what_the_generated_classes_read(events: int) -> None:
    request = _request(ATTRIBUTES, events=events)
    body = request.SerializeToString()
    for _ in range(2):  # the second time from the cache
        decoded = otlp.decode_traces(body, otlp.PROTOBUF)
        assert decoded.rejected == 0
        assert decoded.records == _standard_records(request)


def test_cached_values_are_not_shared_mutable_objects() -> None:
    body = _request({"list": ["a"]}, events=0).SerializeToString()
    first = otlp.decode_traces(body, otlp.PROTOBUF).records[0]
    first.attributes["list"].append("changed")
    second = otlp.decode_traces(body, otlp.PROTOBUF).records[0]
    assert second.attributes["list"] == ["a"]


@pytest.mark.parametrize(
    ("limit", "kept"), [("MAX_CACHED_PAIRS", "_pairs"), ("MAX_CACHED_LISTS", "_lists")]
)
def test_the_caches_stay_bounded(monkeypatch: pytest.MonkeyPatch, limit: str, kept: str) -> None:
    monkeypatch.setattr(otlp_spans, limit, 10)
    cache = otlp_spans.AttributeCache(otlp.any_value, otlp._check_count)
    for index in range(35):
        pair = KeyValue(key="request.id", value=_value(f"r{index}")).SerializeToString()
        assert cache.attributes([pair]) == {"request.id": f"r{index}"}
        assert len(getattr(cache, kept)) <= 10


def test_long_pairs_are_refused_every_time_not_cached() -> None:
    long_value = "x" * (otlp.MAX_VALUE_BYTES + 1)
    body = _request({"db.query.text": long_value}, events=0).SerializeToString()
    for _ in range(2):
        with pytest.raises(PayloadDecodeError):
            otlp.decode_traces(body, otlp.PROTOBUF)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    length, size = bytearray(), len(payload)
    while True:
        byte, size = size & 0x7F, size >> 7
        length.append(byte | (0x80 if size else 0))
        if not size:
            break
    return bytes([number << 3 | 2]) + bytes(length) + payload


def test_a_malformed_attribute_is_a_decode_error() -> None:
    span = _request({}, events=0).resource_spans[0].scope_spans[0].spans[0]
    good = _field(1, _field(2, _field(2, span.SerializeToString())))
    assert otlp.decode_traces(good, otlp.PROTOBUF).records
    # An attributes field (9) whose bytes are not a KeyValue.
    bad_span = span.SerializeToString() + _field(9, b"\xff\xff\xff")
    bad = _field(1, _field(2, _field(2, bad_span)))
    with pytest.raises(PayloadDecodeError):
        otlp.decode_traces(bad, otlp.PROTOBUF)


def test_too_many_attributes_are_refused() -> None:
    attributes = {f"k{i}": i for i in range(otlp.MAX_ATTRIBUTES + 1)}
    body = _request(attributes, events=0).SerializeToString()
    with pytest.raises(PayloadDecodeError):
        otlp.decode_traces(body, otlp.PROTOBUF)


def test_spans_with_one_attribute_list_share_one_read_only_object() -> None:
    request = _request({"db.query.text": "SELECT 1", "rows": 3}, events=0)
    spans = request.resource_spans[0].scope_spans[0].spans
    spans.add().CopyFrom(spans[0])
    spans[1].span_id = bytes(range(2, 10))
    records = otlp.decode_traces(request.SerializeToString(), otlp.PROTOBUF).records
    shared = records[0].attributes
    assert records[1].attributes is shared
    assert isinstance(shared, otlp_spans.SharedAttributes)
    assert shared == {"db.query.text": "SELECT 1", "rows": 3}
    assert shared.json == orjson.dumps(dict(shared)).decode()
    assert span_row(records[0])[10] == shared.json
    with pytest.raises(TypeError):
        shared["rows"] = 4
    with pytest.raises(TypeError):
        shared.update(rows=4)
    assert shared == {"db.query.text": "SELECT 1", "rows": 3}


def test_a_list_with_a_value_not_cached_is_a_dict_of_its_own() -> None:
    body = _request({"list": ["a"], "text": "x"}, events=0).SerializeToString()
    first = otlp.decode_traces(body, otlp.PROTOBUF).records[0].attributes
    second = otlp.decode_traces(body, otlp.PROTOBUF).records[0].attributes
    assert type(first) is dict and first is not second
