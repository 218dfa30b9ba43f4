"""A lean wire view of ``ExportTraceServiceRequest`` for the receiver's hot path.

Reading an attribute through the generated classes costs a Python object for the ``KeyValue``,
another for its ``AnyValue`` and a ``WhichOneof`` call (about 2 us a pair, two thirds of a
span's decoding). The messages here have the field numbers and wire types of
``opentelemetry/proto/trace/v1/trace.proto`` but declare attributes and events as ``bytes``:
protobuf's wire format does not tell a length-delimited message from a bytes field, so one
parse gives each span's attributes as the serialised ``KeyValue`` pairs, which
:class:`AttributeCache` maps to Python values, decoding only the pairs it has not seen (the
same few keys and values recur in every batch: database system, statements, routes, status
codes). Fields the dashboard does not read (trace state, flags, schemas, scopes) are
left undeclared: parsing skips them as unknown fields.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NoReturn

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from dashboard.errors import PayloadDecodeError

_PACKAGE = "vrp.dashboard.lean"
_F = descriptor_pb2.FieldDescriptorProto


def _message(
    file: descriptor_pb2.FileDescriptorProto,
    name: str,
    fields: list[tuple[str, int, int, int, str | None]],
) -> None:
    message = file.message_type.add(name=name)
    for field_name, number, kind, label, type_name in fields:
        field = message.field.add(name=field_name, number=number, type=kind, label=label)
        if type_name is not None:
            field.type_name = f".{_PACKAGE}.{type_name}"


def _build() -> dict[str, Any]:
    file = descriptor_pb2.FileDescriptorProto(
        name="vrp_dashboard_lean_trace.proto", package=_PACKAGE, syntax="proto3"
    )
    one, many = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    _message(
        file,
        "Status",
        [("message", 2, _F.TYPE_STRING, one, None), ("code", 3, _F.TYPE_INT32, one, None)],
    )
    _message(
        file,
        "Span",
        [
            ("trace_id", 1, _F.TYPE_BYTES, one, None),
            ("span_id", 2, _F.TYPE_BYTES, one, None),
            ("parent_span_id", 4, _F.TYPE_BYTES, one, None),
            ("name", 5, _F.TYPE_STRING, one, None),
            ("kind", 6, _F.TYPE_INT32, one, None),
            ("start_time_unix_nano", 7, _F.TYPE_FIXED64, one, None),
            ("end_time_unix_nano", 8, _F.TYPE_FIXED64, one, None),
            ("attributes", 9, _F.TYPE_BYTES, many, None),
            ("events", 11, _F.TYPE_BYTES, many, None),
            ("links", 13, _F.TYPE_BYTES, many, None),
            ("status", 15, _F.TYPE_MESSAGE, one, "Status"),
        ],
    )
    _message(file, "ScopeSpans", [("spans", 2, _F.TYPE_MESSAGE, many, "Span")])
    _message(file, "Resource", [("attributes", 1, _F.TYPE_BYTES, many, None)])
    _message(
        file,
        "ResourceSpans",
        [
            ("resource", 1, _F.TYPE_MESSAGE, one, "Resource"),
            ("scope_spans", 2, _F.TYPE_MESSAGE, many, "ScopeSpans"),
        ],
    )
    _message(
        file,
        "ExportTraceServiceRequest",
        [("resource_spans", 1, _F.TYPE_MESSAGE, many, "ResourceSpans")],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name in ("ExportTraceServiceRequest",)
    }


LeanTraceRequest: Any = _build()["ExportTraceServiceRequest"]

# Serialised pairs longer than this are decoded every time, not kept.
MAX_CACHED_PAIR_BYTES = 512
# The cache is emptied when it holds this many pairs: memory stays bounded whatever arrives.
MAX_CACHED_PAIRS = 16384
# Whole attribute lists of at most this many pairs are kept too, at most this many of them.
MAX_CACHED_LIST_PAIRS = 32
MAX_CACHED_LISTS = 4096
_CACHEABLE = (str, int, float, bool)


class SharedAttributes(dict[str, Any]):
    """The attributes of every span whose serialised attribute list was the same bytes.

    One object for all those spans (most spans repeat the attribute list of others: the same
    statement, the same session outcome), so it is read-only, and it carries its JSON text as
    the store writes it (``json``), made once.
    """

    __slots__ = ("json",)

    def __init__(self, items: dict[str, Any]) -> None:
        super().__init__(items)
        self.json: str = orjson.dumps(items).decode()

    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("span attributes shared between records are read-only")

    __setitem__ = __delitem__ = _read_only
    clear = pop = popitem = setdefault = update = __ior__ = _read_only


class AttributeCache:
    """Serialised ``KeyValue`` pairs to (key, value), with the values' limits checked once.

    ``decode`` turns the ``AnyValue`` of a pair the cache has not seen into a Python value,
    raising :class:`~dashboard.errors.PayloadDecodeError` for one the store refuses; only
    immutable scalar values of short pairs are kept, so a cached value can be shared by every
    record that carries it. A whole list of such pairs is kept too, as one
    :class:`SharedAttributes` (a span's dict and JSON text cost 0.6 us of the 6.5 its decoding
    and preparing take alone; five in six spans of the ingest benchmark repeat a list).
    """

    def __init__(self, decode: Any, check_count: Callable[[int], None]) -> None:
        self._decode = decode
        # Raises for a list of more pairs than the store takes; never the case of a kept list.
        self._check_count = check_count
        self._pairs: dict[bytes, tuple[str, Any]] = {}
        self._lists: dict[tuple[bytes, ...], SharedAttributes] = {}
        self._lock = threading.Lock()

    def attributes(self, pairs: Any) -> dict[str, Any]:
        """The attributes of the serialised pairs ``pairs``.

        A list seen before whose pairs are all cached comes back as the same
        :class:`SharedAttributes` object; any other as a new dict.
        """
        key = tuple(pairs)
        shared = self._lists.get(key)
        if shared is not None:
            return shared
        self._check_count(len(key))
        known = self._pairs
        result: dict[str, Any] = {}
        cacheable = len(key) <= MAX_CACHED_LIST_PAIRS
        for raw in key:
            pair = known.get(raw)
            if pair is None:
                pair = self._miss(raw)
                cacheable = cacheable and raw in self._pairs
            result[pair[0]] = pair[1]
        if not cacheable:
            return result
        shared = SharedAttributes(result)
        with self._lock:
            if len(self._lists) >= MAX_CACHED_LISTS:
                self._lists = {}
            self._lists[key] = shared
        return shared

    def _miss(self, raw: bytes) -> tuple[str, Any]:
        try:
            kv = KeyValue.FromString(raw)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise PayloadDecodeError(
                f"body is not a valid ExportTraceServiceRequest protobuf message ({exc}); "
                "check the exporter's protocol setting"
            ) from None
        pair = (kv.key, self._decode(kv.value))
        if len(raw) <= MAX_CACHED_PAIR_BYTES and isinstance(pair[1], _CACHEABLE):
            with self._lock:
                if len(self._pairs) >= MAX_CACHED_PAIRS:
                    self._pairs = {}
                self._pairs[raw] = pair
        return pair
