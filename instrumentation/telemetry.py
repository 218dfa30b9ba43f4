"""Process-wide OpenTelemetry bootstrap: one Resource, three providers, OTLP/HTTP exporters.

:func:`setup` builds a tracer, meter and logger provider that share one Resource, installs them
as the global providers, and attaches an OTLP log handler to the root logger; :func:`shutdown`
flushes and stops all of it within a time budget. Both are idempotent.

Resource precedence: the settings give ``service.name``, ``service.version`` and
``deployment.environment.name``; the standard variables override them - ``OTEL_SERVICE_NAME``
beats ``OTEL_RESOURCE_ATTRIBUTES``, which beats the settings. The settings hold the application's
defaults, the variables are the operator's per-deployment knob, so the operator wins.
``service.instance.id`` is a new UUID at every :func:`setup` and ``process.pid`` the process's,
so that processes of one service (gunicorn workers, replicas) keep apart the cumulative series
they each export; set the id in ``OTEL_RESOURCE_ATTRIBUTES`` only for a service that runs as one
process.

Exporters, per signal (traces, metrics, logs):

* OTLP/HTTP when ``settings.otlp_endpoint`` is set - the spec's ``/v1/traces``, ``/v1/metrics``,
  ``/v1/logs`` are appended to it - or when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or the signal's own
  ``OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`` is set, in which case the SDK exporter reads the
  variables itself. Headers come from ``settings.otlp_headers`` when given, else from
  ``OTEL_EXPORTER_OTLP_*HEADERS``. The per-request timeout is ``settings.export_timeout_ms``, so
  a dead collector costs a bounded time and :func:`shutdown` cannot hang on it;
* console exporters when ``settings.console``, writing to ``sys.stdout`` as it is at setup;
* nothing otherwise: spans are still created, so log lines carry trace ids.

With ``settings.prometheus`` the meter provider has a pull reader too, whose metrics
:mod:`instrumentation.prometheus` serves on ``/metrics``.

The sampler is left to the SDK, which reads ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``
(default ``parentbased_always_on``). ``settings.disabled`` or ``OTEL_SDK_DISABLED=true`` yields
``Telemetry(enabled=False)`` with no-op providers and no log handler (the SDK itself would also
hand out no-op tracers, meters and loggers under that variable).

A slow or dead collector never slows a request: spans and log records wait in bounded queues
and the oldest are dropped when a queue is full. Drops and failed exports are counted - read
them with :func:`telemetry_stats` - and reported by one WARNING per minute at most. Records
logged on the export path (``opentelemetry.*``, ``urllib3``, this module, or anything logged
while the SDK exports) are never fed back to the OTLP log handler, so a failing export cannot
loop through the log pipeline.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import partial
from types import FrameType
from typing import Any, TypeVar

from opentelemetry import _logs as logs_api
from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.context import Context, get_current, get_value
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import Logger as SdkLogger
from opentelemetry.sdk._logs import (
    LoggerProvider,
    LogRecordLimits,
    ReadableLogRecord,
    ReadWriteLogRecord,
)
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    ConsoleLogRecordExporter,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, ExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)

from instrumentation import conventions, failures, logbuffer, providers
from instrumentation.bound import DrainsBoundPoints
from instrumentation.errors import ConfigurationError
from instrumentation.exporters import WireLogExporter, WireSpanExporter
from instrumentation.logs import CONTEXT_FIELDS, HANDLER_CODE, CallerFilter, OncePerInterval
from instrumentation.redaction import (
    RedactionFilter,
    redact_text,
    redact_url,
    redacted_extras,
    scalar_extras,
)
from instrumentation.sdk_internals import api as sdk_api
from instrumentation.sdk_internals import batching as sdk_batching
from instrumentation.sdk_internals import exporters as sdk_exporters
from instrumentation.sdk_internals import logs as sdk_logs
from instrumentation.settings import TelemetrySettings

_logger = logging.getLogger(__name__)
# Set while the SDK exports (None where the API no longer has it: see sdk_internals.api).
_SUPPRESS_KEY = sdk_api.SUPPRESS_INSTRUMENTATION_KEY
# Per log record: module globals, one lookup each.
_batch_queues = sdk_logs.batch_queues
_severity_number = sdk_logs.severity_number

WARNING_INTERVAL_S = 60.0
_SIGNAL_PATHS = {"traces": "v1/traces", "metrics": "v1/metrics", "logs": "v1/logs"}
# Loggers of the export path: their records must not re-enter the OTLP log pipeline.
_EXPORT_PATH_ROOTS = frozenset({"opentelemetry", "urllib3", "requests"})
# The OTLP exporters log a warning or error per failed batch; one per minute is plenty.
_CHATTY_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
)


@dataclass(frozen=True)
class Telemetry:
    """What :func:`setup` built. Components take these providers as keyword arguments.

    With ``enabled=False`` the providers are the API's no-op providers.
    """

    resource: Resource
    tracer_provider: trace_api.TracerProvider
    meter_provider: metrics_api.MeterProvider
    logger_provider: logs_api.LoggerProvider
    enabled: bool


@dataclass(frozen=True)
class TelemetryStats:
    """Telemetry lost since :func:`setup`, for health checks and tests.

    ``*_dropped`` never entered an export (queue full, or emitted after shutdown);
    ``*_failed`` were in an export call that failed; ``export_failures`` counts failed export
    calls of every signal, metrics included. ``telemetry_failures`` counts failures inside the
    package's own instrumentation since the process started (a listener or middleware that
    raised and was contained; per place in :func:`instrumentation.failures.failure_counts`).
    """

    spans_dropped: int = 0
    spans_failed: int = 0
    log_records_dropped: int = 0
    log_records_failed: int = 0
    export_failures: int = 0
    telemetry_failures: int = 0


class _LossCounter:
    """Thread-safe loss counters that warn at most once per :data:`WARNING_INTERVAL_S`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {stat.name: 0 for stat in fields(TelemetryStats)}
        self._next_warning = 0.0

    def add(self, **increments: int) -> None:
        now = time.monotonic()
        with self._lock:
            for name, amount in increments.items():
                self._counts[name] += amount
            if now < self._next_warning:
                return
            self._next_warning = now + WARNING_INTERVAL_S
            counts = dict(self._counts)
        _logger.warning(
            "telemetry is being lost: %d spans and %d log records dropped (queue full), "
            "%d export calls failed so far; check that the OTLP collector is reachable",
            counts["spans_dropped"],
            counts["log_records_dropped"],
            counts["export_failures"],
            extra=counts,
        )

    def snapshot(self) -> TelemetryStats:
        with self._lock:
            return TelemetryStats(**self._counts)


class _ExportGuard:
    """Shared by the counting exporters: counts failed calls and makes shutdown idempotent."""

    def __init__(self, counter: _LossCounter, failed_field: str | None) -> None:
        self._counter = counter
        self._failed_field = failed_field
        self._shutdown_lock = threading.Lock()
        self._is_shut_down = False

    def run(self, export: Callable[[], bool], items: int) -> bool:
        try:
            succeeded = export()
        except Exception:  # an exporter bug must cost telemetry, never the worker thread
            _logger.debug("exporter raised", exc_info=True)
            succeeded = False
        if not succeeded:
            failed = {self._failed_field: items} if self._failed_field else {}
            self._counter.add(export_failures=1, **failed)
        return succeeded

    def shutdown_once(self, stop: Callable[[], object]) -> None:
        with self._shutdown_lock:
            if self._is_shut_down:
                return
            self._is_shut_down = True
        stop()


class _CountingSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, counter: _LossCounter) -> None:
        self._inner = inner
        self._guard = _ExportGuard(counter, "spans_failed")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self._guard.run(
            lambda: self._inner.export(spans) is SpanExportResult.SUCCESS, len(spans)
        )
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._guard.shutdown_once(self._inner.shutdown)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _CountingLogExporter(LogRecordExporter):
    def __init__(self, inner: LogRecordExporter, counter: _LossCounter) -> None:
        self._inner = inner
        self._guard = _ExportGuard(counter, "log_records_failed")

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        ok = self._guard.run(
            lambda: self._inner.export(batch) is LogRecordExportResult.SUCCESS, len(batch)
        )
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self._guard.shutdown_once(self._inner.shutdown)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _CountingMetricExporter(MetricExporter):
    def __init__(
        self, inner: MetricExporter, counter: _LossCounter, preferences: tuple[Any, Any]
    ) -> None:
        # The reader asks the exporter for these, so the wrapper must carry the inner's choice.
        temporality, aggregation = preferences
        super().__init__(preferred_temporality=temporality, preferred_aggregation=aggregation)
        self._inner = inner
        self._guard = _ExportGuard(counter, None)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        ok = self._guard.run(
            lambda: (
                self._inner.export(metrics_data, timeout_millis, **kwargs)
                is MetricExportResult.SUCCESS
            ),
            0,
        )
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._guard.shutdown_once(lambda: self._inner.shutdown(timeout_millis, **kwargs))

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _ExportPathFilter(logging.Filter):
    """Keeps records of the export path out of the OTLP log pipeline (see the module doc)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _SUPPRESS_KEY is not None and get_value(_SUPPRESS_KEY):
            return False
        name = record.name
        return name != __name__ and name.partition(".")[0] not in _EXPORT_PATH_ROOTS


class _LeanLogRecord(logs_api.LogRecord):
    """The API's log record, made from values the handler already has and cheap to copy.

    The API's constructor looks the current span up again and takes keyword defaults for
    fields a logging record never has (3.6 us against 1.7 here, measured in a loop); and the
    batch processor ``copy.copy``-s every record it queues, which for a class without
    ``__copy__`` goes through ``__reduce_ex__`` (2.4 us against 1.2).
    """

    def __init__(
        self,
        timestamp: int,
        context: Context,
        span_context: trace_api.SpanContext,
        severity_text: str,
        severity_number: logs_api.SeverityNumber,
        body: Any,
        attributes: dict[str, Any],
    ) -> None:
        self.timestamp = timestamp
        self.observed_timestamp = time.time_ns()
        self.context = context
        self.trace_id = span_context.trace_id
        self.span_id = span_context.span_id
        self.trace_flags = span_context.trace_flags
        self.severity_text = severity_text
        self.severity_number = severity_number
        self.body = body
        self.attributes = attributes
        self.event_name = None
        self.exception = None

    def __copy__(self) -> _LeanLogRecord:
        copied = object.__new__(_LeanLogRecord)
        copied.__dict__ = self.__dict__.copy()
        return copied


class _PreparedLogRecord(ReadWriteLogRecord):
    """A log record whose attributes :class:`OtlpLogHandler` already made valid and bounded.

    The SDK wraps the attributes of every record it is handed in a ``BoundedAttributes``, which
    checks and copies each value under a lock; the handler builds them in one pass with values of
    valid types within the same limits, so that second pass is skipped.
    """

    def __post_init__(self) -> None:
        return None


class OtlpLogHandler(logging.Handler):
    """Sends the root logger's records to an OpenTelemetry ``LoggerProvider``, safely and cheaply.

    What the SDK's ``LoggingHandler`` does (same body, severity, trace context, attributes:
    the record's extra fields, ``code.*`` when the caller is known, ``exception.*`` from
    ``exc_info``), plus: the record is redacted (message, extras, and the exception text), records
    of the export path are dropped, as are the ``trace_id`` / ``span_id`` fields of
    :mod:`instrumentation.logs` (OTLP log records carry the trace context natively), and it
    never raises into the logging call. On the hot path it keeps one SDK logger per logger name,
    takes the attributes from the extras the redaction pass already collected (a plain copy when
    they are all scalars, see :func:`~instrumentation.redaction.scalar_extras`) instead of having
    the SDK validate them again (:class:`_PreparedLogRecord`), builds a lean API record
    (:class:`_LeanLogRecord`) and takes no handler lock. One access-shaped record (17 extras)
    through the JSON file and this handler cost 37 us of CPU in a loop before, 30 after.
    """

    def __init__(self, logger_provider: logs_api.LoggerProvider) -> None:
        super().__init__()
        self._provider = logger_provider
        self._loggers: dict[str, logs_api.Logger | None] = {}
        self._limits = LogRecordLimits()
        self.addFilter(_ExportPathFilter())
        self.addFilter(CallerFilter())
        self.addFilter(RedactionFilter())
        self._installed_filters = list(self.filters)
        sdk_logs.check_sdk()

    def _logger(self, name: str) -> logs_api.Logger | None:
        logger = self._provider.get_logger(name)
        cached = None if isinstance(logger, logs_api.NoOpLogger) else logger
        self._loggers[name] = cached
        return cached

    def _attributes(self, record: logging.LogRecord) -> dict[str, Any]:
        scalars = scalar_extras(record)
        if scalars is not None:
            attributes = dict(scalars)
            for key in CONTEXT_FIELDS:
                attributes.pop(key, None)
        else:
            # What the SDK would do with a value: anything but the OTLP scalars becomes text.
            attributes = {
                key: value if type(value) in _VALID_TYPES else str(value)
                for key, value in redacted_extras(record).items()
                if key not in CONTEXT_FIELDS
            }
        max_length = self._limits.max_attribute_length
        if max_length is not None:
            for key, value in attributes.items():
                if type(value) is str:
                    attributes[key] = value[:max_length]
        if record.lineno:
            attributes[conventions.CODE_FILE_PATH] = record.pathname
            attributes[conventions.CODE_FUNCTION_NAME] = record.funcName
            attributes[conventions.CODE_LINE_NUMBER] = record.lineno
        exc_info = record.exc_info
        if exc_info and exc_info[0] is not None:
            attributes.update(_exception_attributes(record, exc_info))
        max_count = self._limits.max_attributes
        if max_count is not None and len(attributes) > max_count:
            attributes = dict(list(attributes.items())[:max_count])
        return attributes

    def _body(self, record: logging.LogRecord) -> Any:
        msg = record.msg
        if not record.args and not isinstance(msg, str):
            return msg if isinstance(msg, Mapping | Sequence | bool | int | float) else str(msg)
        return record.getMessage()

    def direct_filters(self) -> list[logging.Filter]:
        """The filters of this handler, for :mod:`instrumentation.direct`."""
        return self._installed_filters

    def emit_direct(self, record: logging.LogRecord) -> None:
        """A record its filters let through, from :mod:`instrumentation.direct`."""
        self.emit(record)

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:
        """Filter and emit ``record`` without the handler's lock.

        ``logging.Handler.handle`` serialises ``emit`` per handler; this one keeps no state of
        its own between records and the SDK's logger and batch queue are thread-safe, so the
        lock would only make concurrent requests wait for each other.
        """
        logbuffer.write_pending()  # the queued records were made first
        kept = self.filter(record)
        if kept:
            self.emit(kept if isinstance(kept, logging.LogRecord) else record)
        return kept

    def emit(self, record: logging.LogRecord) -> None:
        try:
            name = record.name
            logger = self._loggers[name] if name in self._loggers else self._logger(name)
            if logger is None:
                return
            made_in = logbuffer.made_in(record)
            context = get_current() if made_in is None else made_in
            queues = _batch_queues(logger) if isinstance(logger, SdkLogger) else None
            api_record = _LeanLogRecord(
                int(record.created * 1e9),
                # What the batch processor would store: no context, only the span's ids.
                context if queues is None else _EMPTY_CONTEXT,
                trace_api.get_current_span(context).get_span_context(),
                _SEVERITY_TEXTS.get(record.levelname, record.levelname),
                _severity_number(record.levelno),
                self._body(record),
                self._attributes(record),
            )
            if queues is not None:
                readable = ReadableLogRecord(
                    api_record, logger.resource, logger.instrumentation_scope, self._limits
                )
                for queue in queues:
                    queue.emit(readable)
            elif isinstance(logger, SdkLogger):
                logger.emit(
                    _PreparedLogRecord(
                        api_record, logger.resource, logger.instrumentation_scope, self._limits
                    )
                )
            else:
                logger.emit(api_record)
        except Exception:
            self.handleError(record)

    # The SDK's flush is an unbounded force_flush that would block on a dead collector; the
    # batch processor flushes on its own schedule and in shutdown(). Only the records queued
    # on the direct path are handed over.
    def flush(self) -> None:
        logbuffer.write_pending()


HANDLER_CODE.add(OtlpLogHandler.handle.__code__)


_EMPTY_CONTEXT = Context()
_SEVERITY_TEXTS = conventions.SEVERITY_TEXTS  # one global lookup per record
_VALID_TYPES = frozenset({str, int, float, bool, type(None)})


def _exception_attributes(record: logging.LogRecord, exc_info: Any) -> dict[str, str]:
    exc_type, value, _ = exc_info
    attributes = {conventions.EXCEPTION_TYPE: exc_type.__name__}
    if value is not None and value.args:
        attributes[conventions.EXCEPTION_MESSAGE] = redact_text(str(value.args[0]))
    # The RedactionFilter formatted and masked the traceback into exc_text already.
    stacktrace = record.exc_text or redact_text("".join(traceback.format_exception(*exc_info)))
    attributes[conventions.EXCEPTION_STACKTRACE] = stacktrace
    return attributes


@dataclass
class _State:
    settings: TelemetrySettings
    telemetry: Telemetry
    counter: _LossCounter
    exporters: list[_CountingSpanExporter | _CountingLogExporter | MetricExporter] = field(
        default_factory=list
    )
    log_handler: OtlpLogHandler | None = None
    quiet_filter: OncePerInterval | None = None
    shut_down: bool = False


_state_lock = threading.RLock()
_state: _State | None = None
_previous_sigterm: Any = None


def _sdk_disabled_by_env() -> bool:
    # The same test the SDK applies to OTEL_SDK_DISABLED.
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _build_resource(settings: TelemetrySettings) -> Resource:
    defaults = Resource.create(
        {
            conventions.SERVICE_NAME: settings.service_name,
            conventions.SERVICE_VERSION: settings.service_version,
            conventions.DEPLOYMENT_ENVIRONMENT_NAME: settings.environment,
            conventions.SERVICE_INSTANCE_ID: str(uuid.uuid4()),
            conventions.PROCESS_PID: os.getpid(),
        }
    )
    return defaults.merge(OTELResourceDetector().detect())


def _otlp_kwargs(settings: TelemetrySettings, signal_name: str) -> dict[str, Any] | None:
    """Keyword arguments for the signal's OTLP exporter, or None when OTLP is not wanted."""
    signal_env = f"OTEL_EXPORTER_OTLP_{signal_name.upper()}_ENDPOINT"
    if not (
        settings.otlp_endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(signal_env)
    ):
        return None
    kwargs: dict[str, Any] = {"timeout": settings.export_timeout_ms / 1000}
    if settings.otlp_endpoint:
        base = settings.otlp_endpoint.rstrip("/")
        kwargs["endpoint"] = f"{base}/{_SIGNAL_PATHS[signal_name]}"
    if settings.otlp_headers:
        kwargs["headers"] = dict(settings.otlp_headers)
    return kwargs


_ExporterT = TypeVar("_ExporterT")


def _chosen_exporters(
    settings: TelemetrySettings,
    signal_name: str,
    otlp: Callable[..., _ExporterT],
    console: Callable[..., _ExporterT],
) -> list[_ExporterT]:
    exporters: list[_ExporterT] = []
    if (kwargs := _otlp_kwargs(settings, signal_name)) is not None:
        exporters.append(otlp(**kwargs))
    if settings.console:
        exporters.append(console(out=sys.stdout))
    return exporters


def _install_globals(telemetry: Telemetry) -> None:
    trace_api.set_tracer_provider(telemetry.tracer_provider)
    metrics_api.set_meter_provider(telemetry.meter_provider)
    logs_api.set_logger_provider(telemetry.logger_provider)
    installed = {
        "tracer": trace_api.get_tracer_provider() is telemetry.tracer_provider,
        "meter": metrics_api.get_meter_provider() is telemetry.meter_provider,
        "logger": logs_api.get_logger_provider() is telemetry.logger_provider,
    }
    if not all(installed.values()):
        missing = ", ".join(name for name, ok in installed.items() if not ok)
        _logger.warning(
            "another global %s provider was installed before telemetry.setup(); "
            "components using the global providers will not export through this setup",
            missing,
        )


def _disabled(settings: TelemetrySettings) -> _State:
    telemetry = Telemetry(
        resource=_build_resource(settings),
        tracer_provider=trace_api.NoOpTracerProvider(),
        meter_provider=metrics_api.NoOpMeterProvider(),
        logger_provider=logs_api.NoOpLoggerProvider(),
        enabled=False,
    )
    return _State(settings=settings, telemetry=telemetry, counter=_LossCounter())


class PeriodicMetricReader(DrainsBoundPoints, PeriodicExportingMetricReader):
    """The SDK's periodic reader, aggregating queued bound points before each collection (see
    :mod:`instrumentation.bound`)."""


def _counting_metric_exporter(inner: MetricExporter, counter: _LossCounter) -> MetricExporter:
    """``inner`` with its failed exports counted, or ``inner`` itself where the SDK does not let
    the wrapper carry its preferences (see :mod:`instrumentation.sdk_internals.exporters`)."""
    preferences = sdk_exporters.metric_preferences(inner)
    return inner if preferences is None else _CountingMetricExporter(inner, counter, preferences)


def _metric_pipeline(
    settings: TelemetrySettings, resource: Resource, counter: _LossCounter
) -> tuple[MeterProvider, list[MetricExporter]]:
    exporters = [
        _counting_metric_exporter(exporter, counter)
        for exporter in _chosen_exporters(
            settings, "metrics", OTLPMetricExporter, ConsoleMetricExporter
        )
    ]
    readers: list[MetricReader] = [
        PeriodicMetricReader(
            exporter,
            export_interval_millis=settings.metric_export_interval_ms,
            export_timeout_millis=settings.export_timeout_ms,
        )
        for exporter in exporters
    ]
    if settings.prometheus:
        from instrumentation.prometheus import PrometheusReader

        readers.append(PrometheusReader())
    provider = MeterProvider(
        metric_readers=readers,
        resource=resource,
        shutdown_on_exit=False,
        exemplar_filter=default_exemplar_filter(),
        views=duration_histogram_views(),
    )
    return provider, exporters


def default_exemplar_filter() -> ExemplarFilter | None:
    """``None`` (the SDK reads it) when ``OTEL_METRICS_EXEMPLAR_FILTER`` is set, else always-off.

    The SDK's own default, ``trace_based``, offers every histogram point recorded inside a
    sampled trace to an exemplar reservoir: about 5 us per point, five or six points per
    recorder request. Nothing in this stack reads exemplars (the dashboard works from span
    rollups and the spans themselves), so they are opt-in here through the standard variable.
    """
    if os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER", "").strip():
        return None
    return AlwaysOffExemplarFilter()


# Base-2 exponential histograms for the durations. At scale s a bucket spans a factor of
# base = 2 ** 2 ** -s; reading a quantile as the middle of its bucket is off by at most
# (base - 1) / 2 of the true value. Scale 5 (base 1.0219) bounds that by 1.1 %, inside the 2 %
# the contract asks for p50/p95/p99 (scale 4 would allow 2.2 %, the bucket's upper bound at
# scale 5 already 2.2 %: the middle is what keeps the margin). The SDK starts at max_scale and
# only lowers the scale when the values seen need more than max_size buckets: 0.1 ms to 60 s
# spans log2(60 / 0.0001) = 19.2 octaves, 615 buckets at 32 per octave. 1024 buckets (32
# octaves) keep scale 5 for any values within a factor of 4e9 of each other, say 1 us
# (statements on a local SQLite file) to an hour. The SDK grows its bucket array to the span
# actually observed, so the cap costs nothing until it is used; its default (160 buckets,
# scale 20) would fall to scale 3 over 0.1 ms to 60 s, 4.5 % off.
DURATION_HISTOGRAM_MAX_SCALE = 5
DURATION_HISTOGRAM_MAX_SIZE = 1024
HISTOGRAM_AGGREGATION_VARIABLE = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"


def duration_histogram_views() -> list[View]:
    """Views exporting the contract's duration histograms as base-2 exponential histograms.

    None when ``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`` is set: a view would
    beat the variable, which the OTLP exporter reads itself as the specification defines
    (``explicit_bucket_histogram`` then brings back the instruments' advisory boundaries).
    """
    if os.environ.get(HISTOGRAM_AGGREGATION_VARIABLE, "").strip():
        return []
    return [
        View(
            instrument_name=name,
            aggregation=ExponentialBucketHistogramAggregation(
                max_size=DURATION_HISTOGRAM_MAX_SIZE, max_scale=DURATION_HISTOGRAM_MAX_SCALE
            ),
        )
        for name in conventions.DURATION_HISTOGRAMS
    ]


def _trace_pipeline(
    settings: TelemetrySettings,
    resource: Resource,
    counter: _LossCounter,
    meter_provider: MeterProvider,
) -> tuple[TracerProvider, list[_CountingSpanExporter]]:
    exporters = [
        _CountingSpanExporter(exporter, counter)
        for exporter in _chosen_exporters(
            settings,
            "traces",
            partial(WireSpanExporter, meter_provider=meter_provider),
            ConsoleSpanExporter,
        )
    ]
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    for exporter in exporters:
        processor = BatchSpanProcessor(
            exporter,
            max_queue_size=settings.max_queue_size,
            schedule_delay_millis=settings.schedule_delay_ms,
            max_export_batch_size=settings.max_export_batch_size,
            export_timeout_millis=settings.export_timeout_ms,
            meter_provider=meter_provider,
        )
        sdk_batching.count_drops(processor, lambda count: counter.add(spans_dropped=count))
        provider.add_span_processor(processor)
    return provider, exporters


def _log_pipeline(
    settings: TelemetrySettings,
    resource: Resource,
    counter: _LossCounter,
    meter_provider: MeterProvider,
) -> tuple[LoggerProvider, list[_CountingLogExporter]]:
    exporters = [
        _CountingLogExporter(exporter, counter)
        for exporter in _chosen_exporters(
            settings,
            "logs",
            partial(WireLogExporter, meter_provider=meter_provider),
            ConsoleLogRecordExporter,
        )
    ]
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    for exporter in exporters:
        processor = BatchLogRecordProcessor(
            exporter,
            schedule_delay_millis=settings.schedule_delay_ms,
            max_export_batch_size=settings.max_export_batch_size,
            export_timeout_millis=settings.export_timeout_ms,
            max_queue_size=settings.max_queue_size,
            meter_provider=meter_provider,
        )
        sdk_batching.count_drops(processor, lambda count: counter.add(log_records_dropped=count))
        provider.add_log_record_processor(processor)
    return provider, exporters


def _enabled(settings: TelemetrySettings) -> _State:
    resource = _build_resource(settings)
    counter = _LossCounter()
    try:
        meter_provider, metric_exporters = _metric_pipeline(settings, resource, counter)
        tracer_provider, span_exporters = _trace_pipeline(
            settings, resource, counter, meter_provider
        )
        logger_provider, log_exporters = _log_pipeline(settings, resource, counter, meter_provider)
    except ValueError as exc:
        raise ConfigurationError(
            f"telemetry settings rejected by the OpenTelemetry SDK: {redact_url(str(exc))}"
        ) from exc
    telemetry = Telemetry(
        resource=resource,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        enabled=True,
    )
    state = _State(
        settings=settings,
        telemetry=telemetry,
        counter=counter,
        exporters=[*metric_exporters, *span_exporters, *log_exporters],
    )
    if log_exporters:
        state.log_handler = OtlpLogHandler(logger_provider)
        logging.getLogger().addHandler(state.log_handler)
    if state.exporters:
        state.quiet_filter = OncePerInterval(WARNING_INTERVAL_S)
        for name in _CHATTY_EXPORTER_LOGGERS:
            logging.getLogger(name).addFilter(state.quiet_filter)
    return state


def setup(settings: TelemetrySettings) -> Telemetry:
    """Build the providers and exporters described in the module doc and install them globally.

    Idempotent: later calls return the first call's :class:`Telemetry` (with a WARNING when
    their settings differ, since the OpenTelemetry API allows one global provider per process).
    Raises :class:`~instrumentation.errors.ConfigurationError` when the SDK rejects a setting
    (for example a batch size larger than the queue).
    """
    global _state
    with _state_lock:
        if _state is not None:
            if _state.settings != settings or _state.shut_down:
                _logger.warning(
                    "telemetry is already set up for service %r%s; keeping that setup",
                    _state.settings.service_name,
                    " and was shut down" if _state.shut_down else "",
                )
            return _state.telemetry
        disabled = settings.disabled or _sdk_disabled_by_env()
        state = _disabled(settings) if disabled else _enabled(settings)
        _install_globals(state.telemetry)
        _state = state
        atexit.register(shutdown)
    # Outside the lock: components built earlier take their tracers and instruments afresh.
    providers.rebind_all()
    return state.telemetry


def _stop_within(stops: Sequence[Callable[[], object]], deadline: float) -> None:
    def run(stop: Callable[[], object]) -> None:
        try:
            stop()
        except Exception:  # shutdown must finish whatever one provider does
            _logger.warning("telemetry provider failed to shut down cleanly", exc_info=True)

    workers = [
        threading.Thread(target=run, args=(stop,), name="telemetry-shutdown", daemon=True)
        for stop in stops
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))


def shutdown(timeout_ms: int = 5000) -> None:
    """Flush and shut down the three providers, taking at most about ``timeout_ms``.

    The providers flush in parallel; whatever a slow or dead collector has not taken by the
    deadline is abandoned (counted in :func:`telemetry_stats`). Removes the OTLP log handler;
    the per-minute limit on the exporters' own failure logs stays, as exporter threads still
    finishing may log. Idempotent, never raises; :func:`setup` registers it with ``atexit``.
    """
    with _state_lock:
        state = _state
        if state is None or state.shut_down:
            return
        state.shut_down = True
        atexit.unregister(shutdown)
        logbuffer.write_pending()
        if state.log_handler is not None:
            logging.getLogger().removeHandler(state.log_handler)
    if state.telemetry.enabled:
        _stop_providers(state, timeout_ms)


def _stop_providers(state: _State, timeout_ms: int) -> None:
    telemetry = state.telemetry
    deadline = time.monotonic() + timeout_ms / 1000
    meter_provider = telemetry.meter_provider
    _stop_within(
        [
            telemetry.tracer_provider.shutdown,
            telemetry.logger_provider.shutdown,
            lambda: meter_provider.shutdown(timeout_millis=timeout_ms),
        ],
        deadline,
    )
    # Cuts retries still waiting on a dead collector; a no-op for exporters already stopped.
    for exporter in state.exporters:
        exporter.shutdown()


def telemetry_stats() -> TelemetryStats:
    """Telemetry lost since :func:`setup` (export counts all zero before it)."""
    with _state_lock:
        state = _state
    stats = state.counter.snapshot() if state is not None else TelemetryStats()
    return replace(stats, telemetry_failures=sum(failures.failure_counts().values()))


def install_signal_handlers(timeout_ms: int = 5000) -> bool:
    """On SIGTERM, :func:`shutdown` telemetry, then do what the previous handler would have.

    A Python handler installed before is called; the default action is re-raised (the process
    ends by SIGTERM, exit status 143 in a shell); an ignored signal stays ignored. Signal
    handlers can only be set from the main thread: elsewhere this logs a WARNING and returns
    False. Calling it twice installs one handler.
    """
    global _previous_sigterm
    if threading.current_thread() is not threading.main_thread():
        _logger.warning("telemetry signal handlers can only be installed from the main thread")
        return False
    with _state_lock:
        if _previous_sigterm is not None:
            return True
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            shutdown(timeout_ms)
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        signal.signal(signal.SIGTERM, on_sigterm)
        _previous_sigterm = previous if previous is not None else signal.SIG_DFL
        return True


def uninstall_signal_handlers() -> None:
    """Put back the SIGTERM handler :func:`install_signal_handlers` replaced (main thread)."""
    global _previous_sigterm
    with _state_lock:
        if _previous_sigterm is None:
            return
        signal.signal(signal.SIGTERM, _previous_sigterm)
        _previous_sigterm = None


def _forget_state() -> None:
    """For :func:`instrumentation.testing.reset_for_tests` only: shut down, then forget."""
    global _state
    shutdown(timeout_ms=1000)
    uninstall_signal_handlers()
    with _state_lock:
        if _state is not None and _state.quiet_filter is not None:
            for name in _CHATTY_EXPORTER_LOGGERS:
                logging.getLogger(name).removeFilter(_state.quiet_filter)
        _state = None
