"""Test helpers: in-memory OpenTelemetry pipelines and a reset of the process-wide state.

:class:`InMemoryTelemetry` gives a test its own tracer, meter and logger providers that keep
everything in memory and are *not* installed globally, so components under test receive them
through their ``tracer_provider`` / ``meter_provider`` keyword arguments and tests stay
independent of each other and of :func:`instrumentation.telemetry.setup`.

:func:`reset_for_tests` undoes :func:`instrumentation.telemetry.setup` and
:func:`instrumentation.logs.configure_logging` so that a test may call them again; use it in a
fixture's teardown. :func:`only_package_handlers` takes a test runner's own logging handlers
(pytest's) off the root logger for a while, so that records take the direct path of
:mod:`instrumentation.direct` as in a running service.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import DataPointT, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from instrumentation import conventions, failures, logbuffer, logs, sdk_internals, telemetry
from instrumentation.bound import DrainsBoundPoints
from instrumentation.sdk_internals import api as sdk_api


def _test_resource() -> Resource:
    return Resource.create({conventions.SERVICE_NAME: "test"})


class DrainingInMemoryMetricReader(DrainsBoundPoints, InMemoryMetricReader):
    """``InMemoryMetricReader`` that aggregates queued bound points first (see
    :mod:`instrumentation.bound`), as the readers of :mod:`instrumentation.telemetry` do."""


@dataclass
class InMemoryTelemetry:
    """Tracer, meter and logger providers that record everything in memory, synchronously.

    Spans and log records are available as soon as they end / are emitted (simple processors,
    no batching). Metrics are cumulative since construction: :meth:`metric_points` reads the
    current totals, and :meth:`clear` does not reset them - build a fresh instance per test.
    Nothing here is installed as a global provider.
    """

    resource: Resource = field(default_factory=_test_resource)
    span_exporter: InMemorySpanExporter = field(init=False)
    metric_reader: InMemoryMetricReader = field(init=False)
    log_exporter: InMemoryLogRecordExporter = field(init=False)
    tracer_provider: TracerProvider = field(init=False)
    meter_provider: MeterProvider = field(init=False)
    logger_provider: LoggerProvider = field(init=False)

    def __post_init__(self) -> None:
        self.span_exporter = InMemorySpanExporter()
        self.metric_reader = DrainingInMemoryMetricReader()
        self.log_exporter = InMemoryLogRecordExporter()
        self.tracer_provider = TracerProvider(resource=self.resource, shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.meter_provider = MeterProvider(
            metric_readers=[self.metric_reader], resource=self.resource, shutdown_on_exit=False
        )
        self.logger_provider = LoggerProvider(resource=self.resource, shutdown_on_exit=False)
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.log_exporter))

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans in the order they ended, optionally only those called ``name``."""
        finished = self.span_exporter.get_finished_spans()
        return [span for span in finished if name is None or span.name == name]

    def span_named(self, name: str) -> ReadableSpan:
        """The first finished span called ``name``; ``LookupError`` listing those seen if none."""
        for span in self.span_exporter.get_finished_spans():
            if span.name == name:
                return span
        seen = sorted({span.name for span in self.span_exporter.get_finished_spans()})
        raise LookupError(f"no finished span named {name!r}; finished spans: {seen}")

    def metric_points(self, name: str) -> list[DataPointT]:
        """Current data points of the metric called ``name`` (empty if it was never recorded).

        Each point has ``attributes`` and, by instrument type, ``value`` (counters, gauges) or
        ``count`` / ``sum`` / ``bucket_counts`` (histograms).
        """
        data = self.metric_reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource_metrics in data.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def logs(self) -> Sequence[ReadableLogRecord]:
        """Log records emitted through :attr:`logger_provider`, in emission order (the records
        the direct path queued are handed over first, see :mod:`instrumentation.logbuffer`)."""
        logbuffer.write_pending()
        return self.log_exporter.get_finished_logs()

    def clear(self) -> None:
        """Forget finished spans and log records (metrics stay cumulative, see the class doc)."""
        self.span_exporter.clear()
        self.log_exporter.clear()

    def shutdown(self) -> None:
        """Shut the three providers down; the recorded data stays readable."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()


def reset_for_tests() -> None:
    """Undo :func:`~instrumentation.telemetry.setup`, its signal handler and
    :func:`~instrumentation.logs.configure_logging` and forget the telemetry failure counts, so the
    next test may call them afresh.

    The OpenTelemetry API lets a process install each global provider once; this clears those
    "once" flags (private API state, see
    :func:`instrumentation.sdk_internals.api.reset_global_providers`). Tracers and meters
    obtained from the *global* providers before the reset keep pointing at the old providers,
    so tests should pass providers explicitly where they can.
    """
    telemetry._forget_state()
    logs.shutdown_logging()
    failures.reset_failures()
    sdk_internals.reset_fallbacks()
    sdk_api.reset_global_providers()


@contextmanager
def only_package_handlers() -> Iterator[None]:
    """The root logger without handlers other than this package's while inside (pytest adds its
    own for each test phase, which rightly sends every record down the ordinary path)."""
    root = logging.getLogger()
    foreign = [handler for handler in root.handlers if not hasattr(handler, "direct_filters")]
    for handler in foreign:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in foreign:
            root.addHandler(handler)
