"""The Prometheus reader: the meter provider's metrics in the text format, exponential
histograms re-bucketed into explicit ones, every series labelled with its process."""

from __future__ import annotations

import re

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource

from instrumentation import conventions as c
from instrumentation.prometheus import DURATION_BUCKETS_S, PrometheusReader, exposition
from instrumentation.telemetry import duration_histogram_views


def _buckets(text: str, name: str) -> dict[str, float]:
    pattern = re.compile(rf'^{name}_bucket\{{[^}}]*le="([^"]+)"[^}}]*\}} (\S+)$', re.MULTILINE)
    return {le: float(value) for le, value in pattern.findall(text)}


def test_duration_histograms_are_served_in_explicit_buckets_with_the_instance() -> None:
    reader = PrometheusReader()
    resource = Resource.create({c.SERVICE_NAME: "svc", c.SERVICE_INSTANCE_ID: "worker-1"})
    provider = MeterProvider(
        metric_readers=[reader], resource=resource, views=duration_histogram_views()
    )
    try:
        histogram = provider.get_meter("test").create_histogram(
            c.HTTP_SERVER_REQUEST_DURATION, unit="s"
        )
        values = [0.003] * 10 + [0.2] * 5 + [7.0] * 2
        for value in values:
            histogram.record(value, {c.HTTP_ROUTE: "/a"})
        text = exposition().decode()
    finally:
        provider.shutdown()
    buckets = _buckets(text, "http_server_request_duration_seconds")
    assert len(buckets) == len(DURATION_BUCKETS_S) + 1
    assert buckets["0.0025"] == 0
    assert buckets["0.005"] == 10
    assert buckets["0.1"] == 10
    assert buckets["0.25"] == 15
    assert buckets["5.0"] == 15
    assert buckets["10.0"] == 17
    assert buckets["+Inf"] == 17
    count = re.search(r"^http_server_request_duration_seconds_count\{(.*)\} (\S+)$", text, re.M)
    assert count is not None and float(count[2]) == 17
    assert 'service_instance_id="worker-1"' in count[1]
    assert 'service_name="svc"' in count[1]
    total = re.search(r"^http_server_request_duration_seconds_sum\{.*\} (\S+)$", text, re.M)
    assert total is not None and abs(float(total[1]) - sum(values)) < 1e-9


def test_a_shut_down_reader_leaves_the_registry() -> None:
    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("test").create_counter("vrp.test.things").add(3)
    assert "vrp_test_things_total" in exposition().decode()
    provider.shutdown()
    assert "vrp_test_things_total" not in exposition().decode()
    assert "process_cpu_seconds_total" in exposition().decode()
