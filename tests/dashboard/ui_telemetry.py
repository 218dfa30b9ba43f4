"""Telemetry for the browser tests, made by the real OpenTelemetry SDK and sent over OTLP/HTTP.

:func:`send_stack_telemetry` plays a small day of the stack into a running dashboard: the API's
requests (server, session, transaction and statement spans, one request with an N+1 and one slow
statement, one failing request, a sub-millisecond statement in every read), its duration
histograms (base-2 exponential, as the instrumentation exports them), pool and retry metrics,
log records with trace ids, and the scheduler's backup runs with its last-success gauge and a
restore drill. Everything goes through the SDK's own OTLP exporters, so the dashboard sees
exactly what a real service sends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from random import Random

from opentelemetry import context as context_api
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import Meter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    Metric,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Span, Tracer, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from instrumentation import conventions as c
from instrumentation.telemetry import OtlpLogHandler, duration_histogram_views

MS = 1_000_000  # nanoseconds
SLOW_QUERY = "SELECT recordings"
SLOW_QUERY_TEXT = (
    "SELECT recordings.id, recordings.title FROM recordings WHERE recordings.title LIKE ? "
    "ORDER BY recordings.created_at DESC LIMIT ?"
)
N_PLUS_ONE_TEXT = "SELECT tags.name FROM tags WHERE tags.recording_id = ?"
# A sub-millisecond statement (tens of microseconds, as an indexed SQLite lookup takes).
FAST_QUERY = "SELECT settings"
FAST_QUERY_TEXT = "SELECT settings.value FROM settings WHERE settings.key = ?"
RESTORE_ID = "backup-3"
CLIENT_ERROR_ROUTE = "/api/recordings/<recording_id>"
ERROR_MESSAGE = "storage unavailable while writing the audio"
BACKUP_REPOSITORY = {
    c.VRP_BACKUP_REPOSITORY_ID: "5f3c2a9e41b84d07a6c1e29b8d7f0a13",
    c.VRP_BACKUP_DATABASE: "sqlite:////srv/vrp/var/vrp.db",
}


@dataclass
class Sent:
    """What the tests look for in the pages."""

    slow_trace_id: str
    n_plus_one_trace_id: str
    error_trace_id: str


class BackdatedMetrics:
    """The SDK's metric pipeline, exported once per simulated minute with that minute's times.

    The SDK stamps points with the time of collection; a dashboard shown an hour of history
    needs points spread over the hour. So the SDK aggregates (exponential histograms through the
    instrumentation's views, delta sums and histograms, cumulative up-down counters), and each
    collection gets the simulated minute's timestamps before the real OTLP exporter sends it.
    """

    def __init__(self, endpoint: str, resource: Resource) -> None:
        delta = AggregationTemporality.DELTA
        self._reader = InMemoryMetricReader(
            preferred_temporality={Counter: delta, Histogram: delta}
        )
        self.provider = MeterProvider(
            resource=resource, metric_readers=[self._reader], views=duration_histogram_views()
        )
        self._exporter = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics")
        self._first: int | None = None
        self._previous: int | None = None

    def get_meter(self, name: str) -> Meter:
        return self.provider.get_meter(name)

    def export_at(self, time_ns: int) -> None:
        """Send what was recorded since the last call as of ``time_ns``."""
        data = self._reader.get_metrics_data()
        if data is None:
            return
        first = self._first if self._first is not None else time_ns - 60 * 1_000_000_000
        previous = self._previous if self._previous is not None else first
        self._first, self._previous = first, time_ns
        result = self._exporter.export(_retimed(data, first, previous, time_ns))
        assert result is MetricExportResult.SUCCESS, result

    def shutdown(self) -> None:
        self.provider.shutdown()
        self._exporter.shutdown()


def _retimed(data: MetricsData, first: int, previous: int, now: int) -> MetricsData:
    def metric(m: Metric) -> Metric:
        cumulative = (
            getattr(m.data, "aggregation_temporality", None) == AggregationTemporality.CUMULATIVE
        )
        start = first if cumulative else previous
        points = [
            replace(p, start_time_unix_nano=start, time_unix_nano=now) for p in m.data.data_points
        ]
        return replace(m, data=replace(m.data, data_points=points))

    return replace(
        data,
        resource_metrics=[
            replace(
                rm,
                scope_metrics=[
                    replace(sm, metrics=[metric(m) for m in sm.metrics]) for sm in rm.scope_metrics
                ],
            )
            for rm in data.resource_metrics
        ],
    )


@contextmanager
def _providers(
    endpoint: str, service: str
) -> Iterator[tuple[Tracer, BackdatedMetrics, logging.Logger]]:
    resource = Resource.create({c.SERVICE_NAME: service, c.SERVICE_VERSION: "0.1.0"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
    )
    metrics = BackdatedMetrics(endpoint, resource)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs"))
    )
    logger = logging.getLogger(f"tests.ui.{service}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = OtlpLogHandler(logger_provider)
    logger.addHandler(handler)
    try:
        yield tracer_provider.get_tracer("tests.ui"), metrics, logger
    finally:
        logger.removeHandler(handler)
        tracer_provider.shutdown()
        metrics.shutdown()
        logger_provider.shutdown()


def _child(tracer: Tracer, name: str, parent: Span, kind: SpanKind, start: int) -> Span:
    return tracer.start_span(name, context=set_span_in_context(parent), kind=kind, start_time=start)


def _request(
    tracer: Tracer,
    meter: BackdatedMetrics,
    logger: logging.Logger,
    *,
    method: str,
    route: str,
    start: int,
    statements: list[tuple[str, str, float]],
    status: int = 200,
) -> str:
    """One request with its session, transaction and statements; returns the trace id."""
    requests = meter.get_meter("tests.ui").create_histogram(c.HTTP_SERVER_REQUEST_DURATION, "s")
    queries = meter.get_meter("tests.ui").create_histogram(c.DB_CLIENT_OPERATION_DURATION, "s")
    server = tracer.start_span(
        f"{method} {route}",
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={c.HTTP_REQUEST_METHOD: method, c.HTTP_ROUTE: route},
    )
    session = _child(tracer, c.DB_SESSION_SPAN, server, SpanKind.INTERNAL, start + MS)
    transaction = _child(tracer, c.DB_TRANSACTION_SPAN, session, SpanKind.INTERNAL, start + 2 * MS)
    now = start + 3 * MS
    for summary, text, duration_ms in statements:
        statement = _child(tracer, summary, transaction, SpanKind.CLIENT, now)
        operation, _, collection = summary.partition(" ")
        attributes = {
            c.DB_SYSTEM_NAME: c.DB_SYSTEM_SQLITE,
            c.DB_OPERATION_NAME: operation,
            c.DB_COLLECTION_NAME: collection,
            c.DB_QUERY_SUMMARY: summary,
        }
        statement.set_attributes({**attributes, c.DB_QUERY_TEXT: text})
        now += int(duration_ms * MS)
        statement.end(end_time=now)
        queries.record(duration_ms / 1000, attributes)
        now += MS // 5
    outcome = "rollback" if status >= 500 else "commit"
    transaction.set_attributes(
        {c.VRP_DB_TRANSACTION_OUTCOME: outcome, c.VRP_DB_TRANSACTION_ATTEMPTS: 1}
    )
    transaction.end(end_time=now + MS)
    session.set_attributes(
        {c.VRP_DB_SESSION_OUTCOME: outcome, c.VRP_DB_SESSION_STATEMENTS: len(statements)}
    )
    session.end(end_time=now + 2 * MS)
    server.set_attribute(c.HTTP_RESPONSE_STATUS_CODE, status)
    metric_attributes = {
        c.HTTP_REQUEST_METHOD: method,
        c.HTTP_ROUTE: route,
        c.HTTP_RESPONSE_STATUS_CODE: status,
    }
    if status >= 500:
        server.set_status(Status(StatusCode.ERROR))
        server.set_attribute(c.ERROR_TYPE, "recorder.errors.StorageError")
        metric_attributes[c.ERROR_TYPE] = "recorder.errors.StorageError"
    level = logging.ERROR if status >= 500 else logging.INFO
    message = ERROR_MESSAGE if status >= 500 else f"{method} {route} {status}"
    token = context_api.attach(set_span_in_context(server))
    try:
        logger.log(level, message, extra={c.HTTP_ROUTE: route})
    finally:
        context_api.detach(token)
    server.end(end_time=now + 3 * MS)
    requests.record((now + 3 * MS - start) / 1e9, metric_attributes)
    return format(server.get_span_context().trace_id, "032x")


def _api(endpoint: str, now: int) -> Sent:
    """Fifty minutes of the API: a few requests a minute, then the three the tests look for."""
    random = Random(8)
    minute = 60 * 1_000_000_000
    insert = ("INSERT recordings", "INSERT INTO recordings (title) VALUES (?)")
    select = ("SELECT recordings", "SELECT recordings.id FROM recordings LIMIT ?")
    insert_tags = ("INSERT tags", "INSERT INTO tags (name) VALUES (?)")
    with _providers(endpoint, "vrp-api") as (tracer, meter, logger):
        pool = {c.DB_CLIENT_CONNECTION_POOL_NAME: "vrp"}
        pool_meter = meter.get_meter("tests.ui.pool")
        connections = pool_meter.create_up_down_counter(
            c.DB_CLIENT_CONNECTION_COUNT, "{connection}"
        )
        pool_meter.create_up_down_counter(c.DB_CLIENT_CONNECTION_MAX, "{connection}").add(15, pool)
        wait = pool_meter.create_histogram(c.DB_CLIENT_CONNECTION_WAIT_TIME, "s")
        timeouts = pool_meter.create_counter(c.DB_CLIENT_CONNECTION_TIMEOUTS, "{timeout}")
        retries = pool_meter.create_counter(c.VRP_DB_TRANSACTION_RETRIES, "{retry}")
        used = idle = 0
        for ago in range(50, 5, -1):
            start = now - ago * minute
            for second in range(0, 60, random.choice((6, 10, 15))):
                at = start + second * 1_000_000_000
                _request(
                    tracer,
                    meter,
                    logger,
                    method="POST",
                    route="/api/recordings",
                    start=at,
                    statements=[
                        (*insert, random.uniform(1, 4)),
                        (*insert_tags, random.uniform(0.5, 2)),
                    ],
                )
                _request(
                    tracer,
                    meter,
                    logger,
                    method="GET",
                    route="/api/recordings",
                    start=at + 300 * MS,
                    statements=[
                        (FAST_QUERY, FAST_QUERY_TEXT, random.uniform(0.03, 0.045)),
                        (*select, random.lognormvariate(1, 0.5)),
                    ],
                )
                wait.record(random.lognormvariate(-8, 1), pool)
            new_used, new_idle = random.randint(0, 4), random.randint(2, 5)
            connections.add(
                new_used - used, {**pool, c.DB_CLIENT_CONNECTION_STATE: c.CONNECTION_STATE_USED}
            )
            connections.add(
                new_idle - idle, {**pool, c.DB_CLIENT_CONNECTION_STATE: c.CONNECTION_STATE_IDLE}
            )
            used, idle = new_used, new_idle
            if ago % 17 == 0:
                retries.add(1, {c.ERROR_TYPE: "sqlite3.OperationalError"})
                timeouts.add(1, pool)
            meter.export_at(start + minute)
        slow = _request(
            tracer,
            meter,
            logger,
            method="GET",
            route="/api/recordings",
            start=now - 5 * minute,
            statements=[(SLOW_QUERY, SLOW_QUERY_TEXT, 480)],
        )
        n_plus_one = _request(
            tracer,
            meter,
            logger,
            method="GET",
            route="/api/tags",
            start=now - 4 * minute,
            statements=[(*select, 3)] + [("SELECT tags", N_PLUS_ONE_TEXT, 2)] * 7,
        )
        failed = _request(
            tracer,
            meter,
            logger,
            method="POST",
            route="/api/recordings",
            start=now - 3 * minute,
            statements=[(*insert, 2)],
            status=500,
        )
        # A client error (4xx), which the pages count apart from the errors (5xx).
        _request(
            tracer,
            meter,
            logger,
            method="GET",
            route=CLIENT_ERROR_ROUTE,
            start=now - 3 * minute + 500 * MS,
            statements=[(*select, 1)],
            status=404,
        )
        meter.export_at(now - 2 * minute)
    return Sent(slow_trace_id=slow, n_plus_one_trace_id=n_plus_one, error_trace_id=failed)


def _backups(endpoint: str, now: int) -> None:
    hour = 3600 * 1_000_000_000
    with _providers(endpoint, "vrp-scheduler") as (tracer, meter, logger):
        last_success = 0
        for index, status in enumerate(("success", "success", "failed", "success")):
            start = now - (21 - 6 * index) * hour
            duration = (4 + index) * 1000 * MS
            run = tracer.start_span(c.BACKUP_RUN_SPAN, kind=SpanKind.INTERNAL, start_time=start)
            run.set_attributes(
                {
                    c.VRP_BACKUP_ID: f"backup-{index}",
                    c.VRP_BACKUP_TRIGGER: c.BACKUP_TRIGGER_SCHEDULE,
                    c.VRP_BACKUP_STATUS: status,
                    c.VRP_BACKUP_BYTES: (40 + 5 * index) * 1_000_000,
                    c.VRP_BACKUP_STORED_BYTES: (12 + index) * 1_000_000,
                    c.VRP_BACKUP_FILES: 30 + index,
                    c.VRP_BACKUP_VERIFIED: status == "success",
                    **BACKUP_REPOSITORY,
                }
            )
            if status == "failed":
                run.set_status(Status(StatusCode.ERROR))
            run.end(end_time=start + duration)
            if status == "success":
                last_success = (start + duration) // 1_000_000_000
        backup_meter = meter.get_meter("tests.ui.backup")
        backup_meter.create_gauge(c.VRP_BACKUP_LAST_SUCCESS, "s").set(
            last_success, BACKUP_REPOSITORY
        )
        backup_meter.create_gauge(c.VRP_BACKUP_NEXT_RUN, "s").set(
            now // 1_000_000_000 + 3 * 3600, BACKUP_REPOSITORY
        )
        meter.export_at(now - 60 * 1_000_000_000)
        logger.info("backup backup-3 verified")
        # A restore drill half an hour ago: a backup span of the last hour, no HTTP operation.
        restore_start = now - 1800 * 1_000_000_000
        restore = tracer.start_span(
            c.BACKUP_RESTORE_SPAN, kind=SpanKind.INTERNAL, start_time=restore_start
        )
        restore.set_attributes({c.VRP_BACKUP_ID: RESTORE_ID, c.VRP_BACKUP_STATUS: "success"})
        restore.end(end_time=restore_start + 2500 * MS)


def send_stack_telemetry(endpoint: str) -> Sent:
    """Send the API's and the scheduler's telemetry to the dashboard at ``endpoint``."""
    now = time.time_ns()
    sent = _api(endpoint, now)
    _backups(endpoint, now)
    return sent
