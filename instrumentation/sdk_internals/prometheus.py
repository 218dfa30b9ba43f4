"""Seeing every collection of a Prometheus reader, through the readers' ``_receive_metrics``.

``instrumentation.prometheus`` re-buckets the exponential duration histograms before
opentelemetry-exporter-prometheus turns them into the text format, which cannot carry them. The
only place a reader sees the collected data is ``MetricReader._receive_metrics``, the abstract
method every reader implements and ``MetricReader.collect`` calls: the SDK offers no public
hook between collection and export. Should a release rename it, the override would silently
never run and the duration histograms would reach the exporter unconverted. :func:`check`, run
once per process when the first reader is built, collects through a throw-away reader and
checks that its override saw the data; if not, one WARNING says so (the exporter then does with
exponential histograms what that release does: the other metrics are unaffected).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricsData
from prometheus_client import CollectorRegistry

from instrumentation import sdk_internals

__all__ = ["CONCERN", "RECEIVE_HOOK", "check", "reset_check"]

CONCERN = "prometheus histogram re-bucketing"
# The reader method an override must replace to see what each collection produced.
RECEIVE_HOOK = "_receive_metrics"

_PROBE_METRIC = "sdk_internals.check"


def _self_test() -> bool:
    received: list[MetricsData] = []

    def receive(self: Any, metrics_data: MetricsData, *args: Any, **kwargs: Any) -> None:
        if metrics_data is not None:
            received.append(metrics_data)
        getattr(super(probe_class, self), RECEIVE_HOOK)(metrics_data, *args, **kwargs)

    # The override is made under RECEIVE_HOOK's name, as PrometheusReader makes it.
    probe_class = type("_Probe", (PrometheusMetricReader,), {RECEIVE_HOOK: receive})
    try:
        probe = probe_class(registry=CollectorRegistry())
        provider = MeterProvider(metric_readers=[probe])
        try:
            provider.get_meter(__name__).create_counter(_PROBE_METRIC).add(1)
            probe.collect()
        finally:
            provider.shutdown()
    except Exception as exc:  # any surprise in the SDK's internals: histograms go unconverted
        problem = f"{type(exc).__name__}: {exc}"
    else:
        if any(
            metric.name == _PROBE_METRIC
            for data in received
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        ):
            return True
        problem = f"a reader's {RECEIVE_HOOK} override is not called on collect"
    sdk_internals.fall_back(
        CONCERN, problem, "duration histograms reach the Prometheus exporter unconverted"
    )
    return False


# Whether a reader's `_receive_metrics` override sees each collection; checked once.
check = sdk_internals.SelfTest(_self_test)
reset_check = check.reset
