"""OTLP protobuf wire encoding of span and log batches, written by hand for the export threads.

:func:`encode_spans` and :func:`encode_logs` return the serialized ``ExportTraceServiceRequest``
/ ``ExportLogsServiceRequest`` that the SDK's ``encode_spans(...).SerializePartialToString()``
/ ``encode_logs(...).SerializeToString()`` (``opentelemetry.exporter.otlp.proto.common``)
produce for the same batch: the same fields, the same presence rules (an empty ``AnyValue``
for ``None``, an empty ``Status`` for ``UNSET``, the scope message even without a scope), the
same grouping by resource and scope in first-seen order, fields in field-number order.

Why by hand: the SDK builds a protobuf message object per span, attribute and value and then
serializes the tree; in this stack that encoder was most of the export threads' CPU, which
they take from requests while holding the GIL. It also groups items by hashing the
``Resource``, and ``Resource.__hash__`` serialises the resource's attributes to JSON (3.8 us)
for every span and record exported: nothing else in the pipeline hashes it (counted over 200
recorder requests: 1,380 calls from the SDK's span encoder, 202 from its log encoder, 2 from
the metrics encoder; none from the batch processors; with this encoder, only the 2). CPU time
(``time.thread_time``) per item, batches of 512 distinct items of the recorder's own telemetry,
caches emptied before each batch (``benchmarks/encoding.py``, 2-core machine shared with other
work, 1-minute load 2.4; ratios held from 3.6x to 6.7x over runs at loads 2.2-3.8):

=====================================  ==========  ========
item (median attributes)                SDK, us     ours, us
=====================================  ==========  ========
statement span (5)                      34.1        5.1
session or transaction span (3)         27.4        4.5
server span (10)                        47.5        9.1
every span of a request cycle (5)       33.8        7.0
access log record (20)                  66.6        10.1
=====================================  ==========  ========

In the running app (``overhead.py``'s ``full`` pipelines, 1,200 requests, per-thread CPU from
``/proc``) the span export thread went from 350 to 92 us of CPU per request and the log export
thread from 83 to 17 (about half of what remains is this encoder, the rest the HTTP POST and
the batch processor).

What makes it cheaper: bytes are written straight away (no message objects); the encoded
resource and scope messages are cached per object (both are immutable in the SDK); encoded
attribute fields are cached by (key, value) for str and int values, which mostly repeat, and
span names and attribute keys by themselves (all bounded, emptied when full); items are
grouped by object identity, so equal-but-distinct resources and scopes are compared (``==``,
as the SDK's dict would) once per batch instead of hashed per item.

Anything the fast path does not handle the way the SDK does (an ``int`` outside int64, a
string that is not valid UTF-8, a counter outside uint32, a value of an unknown type) raises
:class:`WireEncodingError`; the exporters then encode that batch with the SDK's encoder, so
data is never dropped and the SDK's own handling (it drops and logs the one bad attribute)
applies.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from instrumentation.errors import InstrumentationError

__all__ = ["WireEncodingError", "clear_caches", "encode_logs", "encode_spans"]


class WireEncodingError(InstrumentationError):
    """The batch holds a value the hand-written encoder leaves to the SDK's encoder."""


_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_pack_double = struct.Struct("<d").pack

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT32_MAX = (1 << 32) - 1
_UINT64_MAX = (1 << 64) - 1

# Varints below 2**14 (one or two bytes) cover lengths of nearly every field and most ints.
_SMALL_VARINTS = [
    bytes((n,)) if n < 0x80 else bytes(((n & 0x7F) | 0x80, n >> 7)) for n in range(1 << 14)
]
_SMALL_LIMIT = 1 << 14


def _varint(value: int) -> bytes:
    """Unsigned varint of ``0 <= value < 2**64``."""
    if 0 <= value < _SMALL_LIMIT:
        return _SMALL_VARINTS[value]
    if value < 0 or value > _UINT64_MAX:
        raise WireEncodingError(f"varint out of range: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int64(value: int) -> bytes:
    """Varint of an int64 field: negative values as their 64-bit two's complement (10 bytes)."""
    if 0 <= value < _SMALL_LIMIT:
        return _SMALL_VARINTS[value]
    if value < _INT64_MIN or value > _INT64_MAX:
        raise WireEncodingError(f"int outside int64: {value}")
    return _varint(value & _UINT64_MAX)


def _uint32(value: int) -> bytes:
    if 0 <= value < _SMALL_LIMIT:
        return _SMALL_VARINTS[value]
    if value < 0 or value > _UINT32_MAX:
        raise WireEncodingError(f"counter outside uint32: {value}")
    return _varint(value)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    size = len(payload)
    return tag + (_SMALL_VARINTS[size] if size < _SMALL_LIMIT else _varint(size)) + payload


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise WireEncodingError("string is not valid UTF-8 (lone surrogate)") from exc


# Encoded ``KeyValue.key`` fields by attribute key. Keys are few (the telemetry contract's
# names); the bound only guards against an app putting data into keys.
_KEY_FIELDS: dict[str, bytes] = {}
_KEY_FIELDS_MAX = 4096


def _cache_string_field(cache: dict[str, bytes], tag: bytes, text: str) -> bytes:
    """Encode the string field ``tag`` of ``text`` and keep it in ``cache`` (bounded)."""
    # proto3 leaves an empty string out; the SDK's messages do too.
    encoded = _field(tag, _utf8(text)) if text else b""
    if len(cache) >= _KEY_FIELDS_MAX:
        cache.clear()
    cache[text] = encoded
    return encoded


def _key_field(key: str) -> bytes:
    encoded = _KEY_FIELDS.get(key)
    return _cache_string_field(_KEY_FIELDS, b"\x0a", key) if encoded is None else encoded


def _any_value(value: Any) -> bytes:
    """The ``AnyValue`` message of ``value``, in the order of the SDK's ``_encode_value`` checks."""
    kind = type(value)
    if kind is str:
        return _field(b"\x0a", _utf8(value))
    if kind is int:
        return b"\x18" + _int64(value)
    if kind is float:
        return b"\x21" + _pack_double(value)
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if value is None:
        return b""
    # Subclasses and containers: the SDK's isinstance chain, in its order.
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", _utf8(value))
    if isinstance(value, int):
        return b"\x18" + _int64(value)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _any_value(item)) for item in value]))
    if isinstance(value, Mapping):
        return _field(
            b"\x32",
            b"".join(
                [
                    _field(b"\x0a", _key_field(str(key)) + _field(b"\x12", _any_value(item)))
                    for key, item in value.items()
                ]
            ),
        )
    raise WireEncodingError(f"value of type {kind.__name__} has no OTLP encoding")


# Whole encoded attribute fields by (tag, key, value), for str and int values (not bool, not
# float: True == 1 and -0.0 == 0.0 would share entries with different bytes). Most attribute
# values repeat from item to item (method, route, status code, db.system.name, statement
# text, the access record's counters), and a hit replaces the encoding of a key-value pair
# with one dict lookup. Values longer than _CACHED_VALUE_MAX characters are not kept; the
# cache is emptied when full, which bounds it whatever the values' cardinality (a few MB at
# worst: 8192 entries of at most 512 characters, encoded and not).
_ATTRIBUTE_FIELDS: dict[tuple[bytes, str, str | int], bytes] = {}
_ATTRIBUTE_FIELDS_MAX = 8192
_CACHED_VALUE_MAX = 512


def _attribute_field(tag: bytes, key: str, value: Any) -> bytes:
    """The ``tag`` field of one ``KeyValue``."""
    kind = type(value)
    if kind is str:
        encoded = _utf8(value)
        size = len(encoded)
        any_value = (
            b"\x0a" + (_SMALL_VARINTS[size] if size < _SMALL_LIMIT else _varint(size)) + encoded
        )
    elif kind is int:
        any_value = b"\x18" + _int64(value)
    else:
        any_value = _any_value(value)
    size = len(any_value)
    key_value = (
        _key_field(key)
        + b"\x12"
        + (_SMALL_VARINTS[size] if size < _SMALL_LIMIT else _varint(size))
        + any_value
    )
    size = len(key_value)
    return tag + (_SMALL_VARINTS[size] if size < _SMALL_LIMIT else _varint(size)) + key_value


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> list[bytes]:
    """One ``tag``-field per attribute (``KeyValue``), as the SDK's ``_encode_attributes``."""
    if not attributes:
        return []
    # The SDK's attribute maps (BoundedAttributes, also behind a span's MappingProxyType)
    # iterate in Python under a lock; their public copy() is a plain dict, iterated in C.
    copy = getattr(attributes, "copy", None)
    pairs = copy() if copy is not None else None
    items = pairs.items() if type(pairs) is dict else attributes.items()
    fields = []
    cache = _ATTRIBUTE_FIELDS
    for key, value in items:
        kind = type(value)
        if kind is str or kind is int:
            cache_key = (tag, key, value)
            field = cache.get(cache_key)
            if field is None:
                field = _attribute_field(tag, key, value)
                if kind is int or len(value) <= _CACHED_VALUE_MAX:
                    if len(cache) >= _ATTRIBUTE_FIELDS_MAX:
                        cache.clear()
                    cache[cache_key] = field
            fields.append(field)
        else:
            fields.append(_attribute_field(tag, key, value))
    return fields


# Encoded ``Resource`` / ``InstrumentationScope`` fields (tag 1 of ResourceSpans / ScopeSpans,
# the same tag in the logs messages). Both objects are immutable in the SDK and few (one
# resource per process, a scope per instrumenting module); the cache holds a reference to each
# key object, so an id is never reused while its entry lives.
_RESOURCE_FIELDS: dict[int, tuple[Resource, bytes]] = {}
_SCOPE_FIELDS: dict[int, tuple[InstrumentationScope | None, bytes]] = {}
_CACHE_MAX = 64


def _resource_field(resource: Resource) -> bytes:
    cached = _RESOURCE_FIELDS.get(id(resource))
    if cached is not None and cached[0] is resource:
        return cached[1]
    encoded = _field(b"\x0a", b"".join(_attributes(b"\x0a", resource.attributes)))
    if len(_RESOURCE_FIELDS) >= _CACHE_MAX:
        _RESOURCE_FIELDS.clear()
    _RESOURCE_FIELDS[id(resource)] = (resource, encoded)
    return encoded


def _scope_field(scope: InstrumentationScope | None) -> bytes:
    cached = _SCOPE_FIELDS.get(id(scope))
    if cached is not None and cached[0] is scope:
        return cached[1]
    parts = []
    if scope is not None:
        if scope.name:
            parts.append(_field(b"\x0a", _utf8(scope.name)))
        if scope.version:
            parts.append(_field(b"\x12", _utf8(scope.version)))
        parts.extend(_attributes(b"\x1a", scope.attributes))
    encoded = _field(b"\x0a", b"".join(parts))
    if len(_SCOPE_FIELDS) >= _CACHE_MAX:
        _SCOPE_FIELDS.clear()
    _SCOPE_FIELDS[id(scope)] = (scope, encoded)
    return encoded


def clear_caches() -> None:
    """Forget every cached encoding (for tests and benchmarks measuring a cold start)."""
    _KEY_FIELDS.clear()
    _NAME_FIELDS.clear()
    _ATTRIBUTE_FIELDS.clear()
    _SEVERITY_FIELDS.clear()
    _RESOURCE_FIELDS.clear()
    _SCOPE_FIELDS.clear()


def _schema_url(schema_url: str | None) -> bytes:
    return _field(b"\x1a", _utf8(schema_url)) if schema_url else b""


_ScopeGroups = list[tuple[InstrumentationScope | None, list[bytes]]]


class _Groups:
    """Encoded items by resource, then scope, in first-seen order, as the SDK's nested dicts.

    The SDK keys dicts by the resource and the scope (hash, then ``==``). Items are looked up
    here by object identity, and only a new object is compared with the groups' keys by
    ``==``: the same grouping, without a ``Resource.__hash__`` (a JSON dump) per item.
    """

    def __init__(self) -> None:
        self.resources: list[
            tuple[Resource, list[tuple[InstrumentationScope | None, list[bytes]]]]
        ] = []
        self._by_resource_id: dict[int, list[tuple[InstrumentationScope | None, list[bytes]]]] = {}
        self._by_scope_id: dict[tuple[int, int], list[bytes]] = {}

    def items_of(self, resource: Resource, scope: InstrumentationScope | None) -> list[bytes]:
        key = (id(resource), id(scope))
        items = self._by_scope_id.get(key)
        if items is not None:
            return items
        scopes = self._by_resource_id.get(id(resource))
        if scopes is None:
            scopes = next((s for r, s in self.resources if r is resource or r == resource), None)
            if scopes is None:
                scopes = []
                self.resources.append((resource, scopes))
            self._by_resource_id[id(resource)] = scopes
        items = next((i for s, i in scopes if s is scope or s == scope), None)
        if items is None:
            items = []
            scopes.append((scope, items))
        self._by_scope_id[key] = items
        return items

    def encode(self) -> bytes:
        """The request: a field 1 per resource, holding a field 2 per scope group."""
        out = []
        for resource, scopes in self.resources:
            parts = [_resource_field(resource)]
            for scope, items in scopes:
                scoped = [_scope_field(scope), *items]
                if scope is not None and scope.schema_url:
                    scoped.append(_schema_url(scope.schema_url))
                parts.append(_field(b"\x12", b"".join(scoped)))
            parts.append(_schema_url(resource.schema_url))
            out.append(_field(b"\x0a", b"".join(parts)))
        return b"".join(out)


# SpanKind to the proto's enum (SPAN_KIND_INTERNAL = 1, ...), as varint fields (tag 6).
_KIND_FIELDS = {
    SpanKind.INTERNAL: b"\x30\x01",
    SpanKind.SERVER: b"\x30\x02",
    SpanKind.CLIENT: b"\x30\x03",
    SpanKind.PRODUCER: b"\x30\x04",
    SpanKind.CONSUMER: b"\x30\x05",
}
# Span.flags / Link.flags (fixed32, tags 16 and 6): SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
# (0x100), with SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK (0x200) when the context is remote; the
# SDK sets nothing else (not the trace flags).
_SPAN_FLAGS_LOCAL = b"\x85\x01" + _pack_fixed32(0x100)
_SPAN_FLAGS_REMOTE = b"\x85\x01" + _pack_fixed32(0x300)
_LINK_FLAGS_LOCAL = b"\x35" + _pack_fixed32(0x100)
_LINK_FLAGS_REMOTE = b"\x35" + _pack_fixed32(0x300)


def _fixed64(tag: bytes, value: int | None) -> bytes:
    if not value:
        return b""
    if value < 0 or value > _UINT64_MAX:
        raise WireEncodingError(f"timestamp outside uint64: {value}")
    return tag + _pack_fixed64(value)


def _events(span: ReadableSpan) -> Sequence[Event]:
    # ReadableSpan.events / .links copy the span's list into a tuple under a lock (0.4 us
    # each); most spans have none, which the list itself tells without the copy.
    held = getattr(span, "_events", None)
    return span.events if held is None or held else ()


def _links(span: ReadableSpan) -> Sequence[Link]:
    held = getattr(span, "_links", None)
    return span.links if held is None or held else ()


# Span fields 1 and 2 (trace and span id, 16 and 8 bytes big-endian) in one pack, and fields 6
# to 8 (kind and both timestamps) in another: a third of a span's encoding was concatenations.
_IDS = struct.Struct(">2sQQ2sQ")
_KIND_AND_TIMES = struct.Struct("<2s1sQ1sQ")
_LOW64 = _UINT64_MAX
# Encoded span names (field 5): names are few (routes, statement summaries) and repeat.
_NAME_FIELDS: dict[str, bytes] = {}


def _name_field(name: str) -> bytes:
    encoded = _NAME_FIELDS.get(name)
    return _cache_string_field(_NAME_FIELDS, b"\x2a", name) if encoded is None else encoded


def _status_field(status: Status) -> bytes:
    message = b""
    if status.description:
        message = _field(b"\x12", _utf8(status.description))
    if code := status.status_code.value:
        message += b"\x18" + _varint(code)
    return _field(b"\x7a", message)


def _span(span: ReadableSpan) -> bytes:
    context = span.context
    trace_id = context.trace_id
    parts = [
        _IDS.pack(b"\x0a\x10", trace_id >> 64, trace_id & _LOW64, b"\x12\x08", context.span_id)
    ]
    trace_state = context.trace_state
    if trace_state is not None and trace_state:
        text = ",".join([f"{key}={value}" for key, value in trace_state.items()])
        parts.append(_field(b"\x1a", _utf8(text)))
    parent = span.parent
    if parent is not None:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    parts.append(_name_field(span.name or ""))
    start = span.start_time
    end = span.end_time
    if start and end:
        parts.append(_KIND_AND_TIMES.pack(_KIND_FIELDS[span.kind], b"\x39", start, b"\x41", end))
    else:
        parts.append(_KIND_FIELDS[span.kind])
        parts.append(_fixed64(b"\x39", start))
        parts.append(_fixed64(b"\x41", end))
    parts.extend(_attributes(b"\x4a", span.attributes))
    if dropped := span.dropped_attributes:
        parts.append(b"\x50" + _uint32(dropped))
    for event in _events(span):
        event_parts = [_fixed64(b"\x09", event.timestamp)]
        if event.name:
            event_parts.append(_field(b"\x12", _utf8(event.name)))
        event_parts.extend(_attributes(b"\x1a", event.attributes))
        if dropped := event.dropped_attributes:
            event_parts.append(b"\x20" + _uint32(dropped))
        parts.append(_field(b"\x5a", b"".join(event_parts)))
    if dropped := span.dropped_events:
        parts.append(b"\x60" + _uint32(dropped))
    for link in _links(span):
        link_context = link.context
        link_trace_id = link_context.trace_id
        link_parts = [
            _IDS.pack(
                b"\x0a\x10",
                link_trace_id >> 64,
                link_trace_id & _LOW64,
                b"\x12\x08",
                link_context.span_id,
            ),
            *_attributes(b"\x22", link.attributes),
        ]
        if dropped := link.dropped_attributes:
            link_parts.append(b"\x28" + _uint32(dropped))
        link_parts.append(_LINK_FLAGS_REMOTE if link_context.is_remote else _LINK_FLAGS_LOCAL)
        parts.append(_field(b"\x6a", b"".join(link_parts)))
    if dropped := span.dropped_links:
        parts.append(b"\x70" + _uint32(dropped))
    status = span.status
    if status is not None:
        # Most spans end UNSET without a description: an empty Status message.
        if status.status_code is StatusCode.UNSET and not status.description:
            parts.append(b"\x7a\x00")
        else:
            parts.append(_status_field(status))
    parts.append(
        _SPAN_FLAGS_REMOTE if parent is not None and parent.is_remote else _SPAN_FLAGS_LOCAL
    )
    body = b"".join(parts)
    size = len(body)
    return b"\x12" + (_SMALL_VARINTS[size] if size < _SMALL_LIMIT else _varint(size)) + body


def encode_spans(spans: Iterable[ReadableSpan]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` of ``spans`` (see the module doc).

    Raises :class:`WireEncodingError` (or the error the SDK's encoder would meet) for a batch
    to leave to the SDK's encoder.
    """
    groups = _Groups()
    for span in spans:
        groups.items_of(span.resource, span.instrumentation_scope or None).append(_span(span))
    return groups.encode()


# LogRecord fields 9 and 10 (trace and span id) in one pack, as for spans.
_LOG_IDS = struct.Struct(">2sQQ2sQ")
# Encoded severity fields (2 and 3) by (severity number, severity text): a handful of pairs.
_SEVERITY_FIELDS: dict[tuple[int | None, str | None], bytes] = {}


def _severity_fields(number: int | None, text: str | None) -> bytes:
    encoded = _SEVERITY_FIELDS.get((number, text))
    if encoded is None:
        encoded = (b"\x10" + _varint(number) if number else b"") + (
            _field(b"\x1a", _utf8(text)) if text else b""
        )
        if len(_SEVERITY_FIELDS) >= _CACHE_MAX:
            _SEVERITY_FIELDS.clear()
        _SEVERITY_FIELDS[(number, text)] = encoded
    return encoded


def _log_record(readable: ReadableLogRecord) -> bytes:
    record = readable.log_record
    timestamp = record.timestamp
    parts = [
        b"\x09" + _pack_fixed64(timestamp) if timestamp else b"",
        _severity_fields(getattr(record.severity_number, "value", None), record.severity_text),
        _field(b"\x2a", _any_value(record.body)),
    ]
    parts.extend(_attributes(b"\x32", record.attributes))
    if dropped := readable.dropped_attributes:
        parts.append(b"\x38" + _uint32(dropped))
    if flags := int(record.trace_flags):
        parts.append(b"\x45" + _pack_fixed32(flags))
    trace_id = record.trace_id
    span_id = record.span_id
    if trace_id and span_id:
        parts.append(
            _LOG_IDS.pack(b"\x4a\x10", trace_id >> 64, trace_id & _LOW64, b"\x52\x08", span_id)
        )
    else:
        if trace_id:
            parts.append(b"\x4a\x10" + trace_id.to_bytes(16, "big"))
        if span_id:
            parts.append(b"\x52\x08" + span_id.to_bytes(8, "big"))
    if observed := record.observed_timestamp:
        parts.append(b"\x59" + _pack_fixed64(observed))
    if event_name := getattr(record, "event_name", None):
        parts.append(_field(b"\x62", _utf8(event_name)))
    body = b"".join(parts)
    size = len(body)
    return b"\x12" + (_SMALL_VARINTS[size] if size < _SMALL_LIMIT else _varint(size)) + body


def encode_logs(records: Iterable[ReadableLogRecord]) -> bytes:
    """The serialized ``ExportLogsServiceRequest`` of ``records`` (see the module doc)."""
    groups = _Groups()
    for readable in records:
        groups.items_of(readable.resource, readable.instrumentation_scope or None).append(
            _log_record(readable)
        )
    return groups.encode()
