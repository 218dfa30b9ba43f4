"""The bodies ``/api/`` answers with, as marshmallow schemas: the contract in ``/api/openapi.json``.

They document what :mod:`dashboard.reads` and :mod:`dashboard.backup_status` return; the
endpoints hand their documents to Flask as they are (a 7-day panel holds thousands of
numbers, and dumping each through marshmallow would cost more than reading them), and the test
suite holds the two together by validating real responses against these schemas. Every schema
refuses properties it does not name (``additionalProperties: false`` in the document), so a
field added to a response without being documented fails that test.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields

from instrumentation import conventions as names

Time = fields.String  # ISO 8601 UTC, as dashboard.reads.window.iso writes it


def _nullable(field: type[fields.Field], description: str | None = None, **kwargs: Any) -> Any:
    metadata = {"description": description} if description else {}
    return field(required=True, allow_none=True, metadata=metadata, **kwargs)


def _required(field: type[fields.Field], description: str | None = None, **kwargs: Any) -> Any:
    metadata = {"description": description} if description else {}
    return field(required=True, metadata=metadata, **kwargs)


def _list(schema: type[ma.Schema] | fields.Field, description: str | None = None) -> Any:
    metadata = {"description": description} if description else {}
    inner = schema if isinstance(schema, fields.Field) else fields.Nested(schema)
    return fields.List(inner, required=True, metadata=metadata)


class _Body(ma.Schema):
    class Meta:
        unknown = ma.RAISE


def _ms(description: str) -> Any:
    return _nullable(fields.Float, f"{description}, milliseconds (null without data)")


class Service(_Body):
    name = _required(fields.String)
    last_seen = _required(Time)
    sources = _list(fields.String(), "spans, metrics, logs")


class ServicesResponse(_Body):
    services = _list(Service)


# Field names that are not identifiers: built from a mapping.
StatusClasses = _Body.from_dict(
    {name: fields.Integer(required=True) for name in ("2xx", "3xx", "4xx", "5xx")},
    name="StatusClasses",
)


class _Stats(_Body):
    count = _required(fields.Integer)
    rate_per_s = _required(fields.Float, "per second over the whole range")
    errors = _required(fields.Integer, "server errors (5xx, or spans with status ERROR)")
    p50_ms = _ms("median")
    p95_ms = _ms("95th percentile")
    p99_ms = _ms("99th percentile")


class _HttpStats(_Stats):
    error_rate = _nullable(fields.Float, "errors / count (0..1)")
    client_errors = _required(fields.Integer, "client errors (4xx)")
    client_error_rate = _nullable(fields.Float, "client errors / count (0..1)")
    status_classes = fields.Nested(StatusClasses, required=True)


class ServiceSummary(_HttpStats):
    service = _required(fields.String)
    source = _required(fields.String, "metrics, or spans for services without the metric")


class SummaryPoint(_Body):
    t = _required(Time, "start of the time bucket")
    service = _required(fields.String)
    rate_per_s = _required(fields.Float)
    error_rate = _nullable(fields.Float)
    client_error_rate = _nullable(fields.Float)
    p50_ms = _ms("median")
    p95_ms = _ms("95th percentile")
    p99_ms = _ms("99th percentile")


class SummaryResponse(_Body):
    since = _required(Time)
    until = _required(Time)
    services = _list(ServiceSummary)
    series = _list(SummaryPoint, "per service and time bucket; idle buckets have no latency")


class Operation(_HttpStats):
    service = _required(fields.String)
    operation = _required(fields.String, "METHOD route, or the span name")
    kind = _required(fields.String)
    source = _required(fields.String)


class OperationPoint(_Body):
    t = _required(Time)
    service = _required(fields.String)
    operation = _required(fields.String)
    count = _required(fields.Integer)
    p50_ms = _ms("median")
    p95_ms = _ms("95th percentile")


class BackupOperation(_Stats):
    service = _required(fields.String)
    operation = _required(fields.String, "a backup.* span name")
    error_rate = _nullable(fields.Float)


class OperationsResponse(_Body):
    operations = _list(Operation, "HTTP operations, busiest first")
    series = _list(OperationPoint, "latency over time of the busiest operations (top)")
    backups = _list(BackupOperation, "backup.* spans, apart from the HTTP operations")


class QueryShape(_Stats):
    service = _required(fields.String)
    summary = _required(fields.String, names.DB_QUERY_SUMMARY)
    total_ms = _required(fields.Float, "count x mean: the time spent in all")
    mean_ms = _nullable(fields.Float)


class QueryPoint(_Body):
    t = _required(Time)
    summary = _required(fields.String)
    count = _required(fields.Integer)
    p50_ms = _ms("median")
    p95_ms = _ms("95th percentile")
    p99_ms = _ms("99th percentile")


class QueryExample(_Body):
    summary = _required(fields.String)
    query_text = _required(fields.String)
    duration_ms = _required(fields.Float)
    trace_id = _required(fields.String)
    span_id = _required(fields.String)
    start = _required(Time)
    service = _required(fields.String)


class NPlusOne(_Body):
    trace_id = _required(fields.String)
    session_span_id = _required(fields.String, "the db.session span")
    query_text = _required(fields.String, "the statement run again and again")
    count = _required(fields.Integer, "how many times the session ran it")
    service = _required(fields.String)
    start = _required(Time)


class QueriesResponse(_Body):
    queries = _list(QueryShape, "per statement shape, most total time first")
    series = _list(QueryPoint, "the chosen summary over time (empty without one)")
    examples = _list(QueryExample, "slowest statements")
    n_plus_one = _list(NPlusOne, "sessions that ran one statement five or more times")


class Pool(_Body):
    service = _required(fields.String)
    pool = _required(fields.String)
    used = _nullable(fields.Float)
    idle = _nullable(fields.Float)
    max = _nullable(fields.Float)
    wait_p95_ms = _nullable(fields.Float)
    timeouts = _required(fields.Integer)
    leaks = _required(fields.Integer)


class PoolPoint(_Body):
    t = _required(Time)
    service = _required(fields.String)
    pool = _required(fields.String)
    used = _nullable(fields.Float)
    idle = _nullable(fields.Float)
    max = _nullable(fields.Float)
    wait_p95_ms = _nullable(fields.Float)


class PoolResponse(_Body):
    pools = _list(Pool)
    series = _list(PoolPoint)


class Outcome(_Body):
    service = _required(fields.String)
    outcome = _required(fields.String)
    count = _required(fields.Integer)


class Retries(_Body):
    service = _required(fields.String)
    error_type = _required(fields.String)
    count = _required(fields.Integer)


class OutcomePoint(_Body):
    t = _required(Time)
    outcome = _required(fields.String)
    count = _required(fields.Integer)


class TransactionsResponse(_Body):
    outcomes = _list(Outcome)
    retries = _list(Retries)
    series = _list(OutcomePoint)


class LogRecord(_Body):
    time = _required(Time)
    service = _required(fields.String)
    level = _required(fields.String, "TRACE, DEBUG, INFO, WARNING, ERROR or CRITICAL")
    severity_number = _required(fields.Integer, "as received (OpenTelemetry, 1-24)")
    severity_text = _required(fields.String, "as received")
    message = _required(fields.String)
    trace_id = _nullable(fields.String)
    span_id = _nullable(fields.String)
    attributes = _required(fields.Dict, "every attribute of the record")


class LogVolume(_Body):
    t = _required(Time)
    level = _required(fields.String)
    count = _required(fields.Integer)


class LogsResponse(_Body):
    offset = _required(fields.Integer)
    limit = _required(fields.Integer)
    total = _required(fields.Integer, "records matching the filters in the range")
    truncated = _required(fields.Boolean, "more records follow this page")
    logs = _list(LogRecord, "newest first")
    histogram = _list(LogVolume, "records per level and time bucket")


class TraceSummary(_Body):
    trace_id = _required(fields.String)
    service = _required(fields.String)
    root_name = _required(fields.String)
    start = _required(Time)
    duration_ms = _required(fields.Float)
    span_count = _required(fields.Integer)
    error = _required(fields.Boolean)
    n_plus_one = _required(fields.Boolean)


class TraceSearch(_Body):
    attributes = _list(fields.String(), "the attribute conditions, as given")
    scan_limit_spans = _required(fields.Integer, "the most spans an attribute search reads")
    searched_since = _nullable(
        Time, "set when the range held more spans: traces that started before were not searched"
    )


class TracesResponse(_Body):
    traces = _list(TraceSummary, "slowest first")
    offset = _required(fields.Integer)
    limit = _required(fields.Integer)
    has_more = _required(fields.Boolean, "more traces follow this page")
    next_offset = _nullable(fields.Integer, "the offset of the next page")
    search = fields.Nested(TraceSearch, required=True)
    operations = _list(fields.String(), "root span names, to suggest as operations")


class SpanEvent(_Body):
    name = _required(fields.String)
    time = _required(Time)
    attributes = _required(fields.Dict)


class SpanLink(_Body):
    trace_id = _required(fields.String)
    span_id = _required(fields.String)
    attributes = _required(fields.Dict)


class Span(_Body):
    span_id = _required(fields.String)
    parent_span_id = _nullable(fields.String)
    service = _required(fields.String)
    name = _required(fields.String)
    kind = _required(fields.String)
    start = _required(Time)
    offset_ms = _required(fields.Float, "since the trace's first span started")
    duration_ms = _required(fields.Float)
    status = _required(fields.String, "ok or error")
    attributes = _required(fields.Dict)
    events = _list(SpanEvent)
    links = _list(SpanLink)
    depth = _required(fields.Integer)


class TraceNPlusOne(NPlusOne):
    span_ids = _list(fields.String(), "the statement spans of the finding")


class TraceResponse(_Body):
    trace_id = _required(fields.String)
    spans = _list(Span, "parents before children, siblings by start")
    n_plus_one = _list(TraceNPlusOne)


class BackupRun(_Body):
    backup_id = _nullable(fields.String)
    repository_id = _nullable(fields.String)
    database = _nullable(fields.String)
    trigger = _nullable(fields.String)
    status = _nullable(fields.String)
    start = _required(Time)
    duration_ms = _required(fields.Float)
    bytes = _nullable(fields.Integer)
    stored_bytes = _nullable(fields.Integer)
    files = _nullable(fields.Integer)
    verified = _nullable(fields.Boolean)
    trace_id = _nullable(fields.String)


class RemoteCopy(_Body):
    remote = _required(fields.String, "the remote's URL, without credentials")
    last_success = _required(Time, "the newest successful copy to it")
    last_success_age_s = _required(fields.Float)


class Repository(_Body):
    repository_id = _nullable(fields.String)
    database = _nullable(fields.String)
    last_success = _nullable(Time)
    last_success_age_s = _nullable(fields.Float)
    state = _required(fields.String, "ok, late, overdue or none")
    next_run = _nullable(Time)
    runs = _required(fields.Integer)
    offsite_last_success = _nullable(Time, "the newest offsite copy, on any remote")
    offsite_last_success_age_s = _nullable(fields.Float)
    remotes = _list(RemoteCopy, "the offsite copies of this repository, per remote")


class BackupsResponse(_Body):
    runs = _list(BackupRun, "newest first")
    repositories = _list(Repository)
    repository = _nullable(fields.String)
    last_success = _nullable(Time)
    last_success_age_s = _nullable(fields.Float)
    offsite_last_success = _nullable(Time, "the chosen repository's newest offsite copy")
    offsite_last_success_age_s = _nullable(fields.Float)
    next_run = _nullable(Time)
    expected_interval_s = _required(fields.Float)
    state = _required(fields.String)
    has_telemetry = _required(fields.Boolean)
