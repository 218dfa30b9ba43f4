"""A span as the row the store keeps: a tuple of plain values, built once per span.

The tuple is what both dialects insert (SQLite as the parameters of a multi-row INSERT,
PostgreSQL as :func:`span_params`) and what :func:`record_of_row` turns back into the record
when a batch must be derived again from the spans that turned out new.
"""

from __future__ import annotations

from typing import Any

import orjson

from dashboard.otlp import SpanRecord
from dashboard.otlp_spans import SharedAttributes

SpanRow = tuple[Any, ...]
# A span row holds these; duration_ms and is_root are derived from them (span_params, and
# SQLite computes them itself, dashboard.store.sqlite_sql: two values fewer to bind per span).
ROW_FIELDS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "service",
    "name",
    "kind",
    "start_ns",
    "end_ns",
    "status_code",
    "status_message",
    "attributes",
    "events",
    "links",
)


def span_row(record: SpanRecord) -> SpanRow:
    """The span's values in the order of :data:`ROW_FIELDS`: the record's first ten fields,
    then its attributes, events and links as JSON text."""
    attributes = record.attributes
    return (
        record.trace_id,
        record.span_id,
        record.parent_span_id,
        record.service,
        record.name,
        record.kind,
        record.start_ns,
        record.end_ns,
        record.status_code,
        record.status_message,
        attributes.json
        if type(attributes) is SharedAttributes
        else orjson.dumps(attributes).decode(),
        orjson.dumps(record.events).decode() if record.events else "[]",
        orjson.dumps(record.links).decode() if record.links else "[]",
    )


def record_of_row(row: SpanRow) -> SpanRecord:
    """The inverse of :func:`span_row`."""
    links = orjson.loads(row[12]) if row[12] != "[]" else ()
    return SpanRecord(*row[:10], orjson.loads(row[10]), orjson.loads(row[11]), links)


def span_key(row: SpanRow) -> tuple[str, str]:
    """The (trace id, span id) that identifies the span of ``row``."""
    return (row[0], row[1])


def span_params(row: SpanRow) -> dict[str, Any]:
    """A row as SQLAlchemy's parameters, with the values derived from it."""
    params = dict(zip(ROW_FIELDS, row, strict=True))
    params["duration_ms"] = (params["end_ns"] - params["start_ns"]) / 1e6
    params["is_root"] = params["parent_span_id"] is None
    return params
