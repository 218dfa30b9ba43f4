"""``/metrics`` for a Prometheus server, read from the process's own OpenTelemetry meter provider.

With ``TelemetrySettings.prometheus`` set, :func:`instrumentation.telemetry.setup` adds a
:class:`PrometheusReader` to the meter provider, next to the OTLP reader: the same instruments,
the same attributes, pulled at scrape time instead of pushed. :func:`add_metrics_route` serves
them (the Prometheus text format, version 0.0.4) with the process's ``process_*`` metrics.

What a scrape sees, and what it does not:

* names as the OpenTelemetry-to-Prometheus rules make them: ``http.server.request.duration``
  in seconds becomes ``http_server_request_duration_seconds_bucket`` / ``_sum`` / ``_count``,
  a counter gets ``_total``; every series carries ``service_name`` and
  ``service_instance_id``, and ``target_info`` the whole resource;
* the contract's duration histograms are base-2 exponential histograms (see
  :func:`instrumentation.telemetry.duration_histogram_views`), which the text format cannot
  carry: they are re-bucketed at scrape time into :data:`DURATION_BUCKETS_S`. An exponential
  bucket counts under the first bound at or above its upper end, so a value within 2.2 % below
  a bound (one bucket at scale 5) may be counted under the next bound: quantiles computed by
  ``histogram_quantile`` are as coarse as these bounds anyway;
* it is the metrics of the process that answers. Under gunicorn each worker has its own meter
  provider, and a scrape reaches whichever worker accepts the connection: its series carry
  that worker's ``service_instance_id``. Sum over the instances with care (a worker that did
  not answer the last scrapes has stale series), or read the totals the dashboard computes
  from OTLP, which adds the workers up.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from flask import Flask, Response
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Histogram,
    HistogramDataPoint,
    MetricsData,
)
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import generate_latest

from instrumentation import conventions
from instrumentation.bound import DrainsBoundPoints
from instrumentation.sdk_internals import prometheus as sdk_prometheus

METRICS_PATH = "/metrics"
# What generate_latest writes, whatever newer format prometheus-client names as its latest.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Upper bounds (seconds) of the buckets the duration histograms are re-bucketed into: from a
# fast SQLite statement to a slow upload, about three per decade.
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
# Resource attributes copied onto every series: which service, which process.
SERIES_RESOURCE_LABELS = frozenset({conventions.SERVICE_NAME, conventions.SERVICE_INSTANCE_ID})

_lock = threading.Lock()
_registry: CollectorRegistry | None = None


def registry() -> CollectorRegistry:
    """The process's registry: its ``process_*`` metrics and the current reader's metrics.

    Made on first use, in the process that uses it (a forked worker makes its own reader,
    which registers here in that worker).
    """
    global _registry
    with _lock:
        if _registry is None:
            _registry = CollectorRegistry(auto_describe=False)
            ProcessCollector(registry=_registry)
        return _registry


def explicit_bucket_point(
    point: ExponentialHistogramDataPoint, bounds: Sequence[float] = DURATION_BUCKETS_S
) -> HistogramDataPoint:
    """``point`` with its counts moved into explicit buckets with upper bounds ``bounds``.

    Zero and negative buckets count under the first bound (durations are never negative).
    """
    counts = [0] * (len(bounds) + 1)
    counts[0] += point.zero_count + sum(point.negative.bucket_counts)
    base = 2.0 ** (2.0**-point.scale)
    offset = point.positive.offset
    for index, count in enumerate(point.positive.bucket_counts):
        if not count:
            continue
        try:
            upper = base ** (offset + index + 1)
        except OverflowError:
            upper = math.inf
        counts[bisect.bisect_left(bounds, upper)] += count
    return HistogramDataPoint(
        attributes=point.attributes,
        start_time_unix_nano=point.start_time_unix_nano,
        time_unix_nano=point.time_unix_nano,
        count=point.count,
        sum=point.sum,
        bucket_counts=counts,
        explicit_bounds=list(bounds),
        min=point.min,
        max=point.max,
    )


def with_explicit_histograms(data: MetricsData) -> MetricsData:
    """``data`` with every exponential histogram turned into an explicit-bucket one."""
    resource_metrics = []
    for rm in data.resource_metrics:
        scope_metrics = []
        for sm in rm.scope_metrics:
            metrics = [
                replace(
                    metric,
                    data=Histogram(
                        data_points=[explicit_bucket_point(p) for p in metric.data.data_points],
                        aggregation_temporality=metric.data.aggregation_temporality,
                    ),
                )
                if isinstance(metric.data, ExponentialHistogram)
                else metric
                for metric in sm.metrics
            ]
            scope_metrics.append(replace(sm, metrics=metrics))
        resource_metrics.append(replace(rm, scope_metrics=scope_metrics))
    return replace(data, resource_metrics=resource_metrics)


class PrometheusReader(DrainsBoundPoints, PrometheusMetricReader):
    """opentelemetry-exporter-prometheus's reader, registered in :func:`registry`, with the
    exponential histograms re-bucketed (see the module doc)."""

    def __init__(self) -> None:
        super().__init__(
            scope_info_enabled=False,
            resource_attribute_filter=SERIES_RESOURCE_LABELS.__contains__,
            registry=registry(),
        )
        sdk_prometheus.check()

    # The SDK's only hook between collection and export (sdk_internals.prometheus checks it).
    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        if metrics_data is not None:
            metrics_data = with_explicit_histograms(metrics_data)
        super()._receive_metrics(metrics_data, timeout_millis, **kwargs)


def exposition(*extra: CollectorRegistry) -> bytes:
    """The text a scrape gets: :func:`registry` then each of ``extra``."""
    return b"".join(generate_latest(r) for r in (registry(), *extra))


def add_metrics_route(app: Flask, *extra: CollectorRegistry) -> None:
    """Serve :func:`exposition` on ``GET /metrics`` of ``app``."""

    def metrics() -> Response:
        return Response(exposition(*extra), content_type=CONTENT_TYPE)

    app.add_url_rule(METRICS_PATH, "prometheus_metrics", metrics, methods=["GET"])
