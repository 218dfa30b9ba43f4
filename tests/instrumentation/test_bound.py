"""Bound histograms export exactly what ``Histogram.record`` exports, through the fast path."""

from __future__ import annotations

import logging
import math
import os
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)

from instrumentation import bound, sdk_internals
from instrumentation.bound import BoundHistogram, pending
from instrumentation.sdk_internals import histograms
from instrumentation.telemetry import duration_histogram_views
from instrumentation.testing import DrainingInMemoryMetricReader

NAME = "db.client.operation.duration"
ATTRIBUTES = {
    "db.system.name": "sqlite",
    "db.operation.name": "SELECT",
    "db.collection.name": "recordings",
    "db.query.summary": "SELECT recordings",
}
OTHER = {**ATTRIBUTES, "db.operation.name": "INSERT", "db.query.summary": "INSERT recordings"}


def _views(kind: str) -> list[View]:
    if kind == "contract":
        return duration_histogram_views()
    if kind == "explicit-filtered":
        # Two views on one instrument, one keeping only some attributes.
        return [
            View(instrument_name=NAME, aggregation=ExplicitBucketHistogramAggregation()),
            View(
                instrument_name=NAME,
                name="by_operation",
                attribute_keys={"db.operation.name"},
                aggregation=ExponentialBucketHistogramAggregation(),
            ),
        ]
    return [View(instrument_name=NAME, aggregation_cardinality_limit=2)]


def _pipeline(
    kind: str, temporality: AggregationTemporality, *, queued: bool = False
) -> tuple[Any, InMemoryMetricReader]:
    # A reader that drains the queue makes bound points wait for it; any other, not.
    reader_class = DrainingInMemoryMetricReader if queued else InMemoryMetricReader
    reader = reader_class(preferred_temporality={Histogram: temporality})
    provider = MeterProvider(metric_readers=[reader], views=_views(kind))
    histogram = provider.get_meter("test").create_histogram(NAME, unit="s")
    return histogram, reader


def _points(reader: InMemoryMetricReader) -> list[tuple[Any, ...]]:
    """Every exported histogram point without its timestamps, in a stable order."""
    data = reader.get_metrics_data()
    found: list[tuple[Any, ...]] = []
    if data is None:
        return found
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    shape = (
                        (point.scale, point.positive.offset, tuple(point.positive.bucket_counts))
                        if hasattr(point, "scale")
                        else (tuple(point.explicit_bounds), tuple(point.bucket_counts))
                    )
                    found.append(
                        (
                            metric.name,
                            tuple(sorted(point.attributes.items())),
                            point.count,
                            point.sum,
                            point.min,
                            point.max,
                            point.zero_count if hasattr(point, "zero_count") else None,
                            shape,
                        )
                    )
    return sorted(found, key=repr)


def _outcome(reader: InMemoryMetricReader) -> list[tuple[Any, ...]] | tuple[str, str]:
    """:func:`_points`, or the error the collection raised. The SDK's cumulative exponential
    histogram raises ``Incorrect merge scale`` for some sequences of values (its merge into
    buckets that start empty, open-telemetry/opentelemetry-python#3219): the bound path must
    then raise it too, as it hands the SDK the same points."""
    try:
        return _points(reader)
    except Exception as exc:  # the SDK raises a bare Exception
        return (type(exc).__name__, str(exc))


VALUES = st.lists(
    st.one_of(
        st.floats(min_value=0, max_value=1e6, allow_nan=False),
        st.sampled_from([0.0, 1e-9, 0.005, 1.0, math.nan, -1.0, math.inf]),
    ),
    max_size=40,
)


@pytest.mark.parametrize("kind", ["contract", "explicit-filtered", "limited"])
@pytest.mark.parametrize(
    "temporality", [AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA]
)
@pytest.mark.parametrize("queued", [False, True], ids=["at-once", "queued"])
@settings(max_examples=25, deadline=None)
@given(values=VALUES, collect_every=st.integers(min_value=1, max_value=15))
def test_bound_points_export_what_record_exports(
    kind: str,
    temporality: AggregationTemporality,
    queued: bool,
    values: list[float],
    collect_every: int,
) -> None:
    # Invalid values (NaN, negative, infinite) take the SDK's own path: warned about, dropped.
    logging.getLogger("opentelemetry").setLevel(logging.ERROR)
    plain, plain_reader = _pipeline(kind, temporality)
    bound_histogram, bound_reader = _pipeline(kind, temporality, queued=queued)
    bound = BoundHistogram(bound_histogram, ATTRIBUTES)
    other = BoundHistogram(bound_histogram, OTHER)
    # Collections in between: delta aggregations are replaced, cumulative ones kept.
    for index, value in enumerate(values):
        attributes, point = (ATTRIBUTES, bound) if index % 3 else (OTHER, other)
        plain.record(value, attributes)
        point.record(value)
        if index % collect_every == 0:
            assert _outcome(bound_reader) == _outcome(plain_reader)
    assert _outcome(bound_reader) == _outcome(plain_reader)
    if any(0 <= value < math.inf for value in values):
        # On an SDK past the pin the fast path may have fallen back (and said so).
        assert bound.fast or other.fast or histograms.CONCERN in sdk_internals.fallbacks()


@pytest.mark.pinned_sdk
@pytest.mark.parametrize("queued", [False, True], ids=["at-once", "queued"])
def test_the_pinned_sdk_takes_the_fast_path(queued: bool) -> None:
    histogram, reader = _pipeline("contract", AggregationTemporality.CUMULATIVE, queued=queued)
    point = BoundHistogram(histogram, ATTRIBUTES)
    point.record(0.25)
    assert point.fast
    assert pending() == (1 if queued else 0)
    (exported,) = _points(reader)
    assert exported[2:4] == (1, 0.25)
    assert pending() == 0


@pytest.mark.pinned_sdk
def test_a_reader_added_later_gets_the_points_too() -> None:
    first = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[first], views=duration_histogram_views())
    point = BoundHistogram(provider.get_meter("test").create_histogram(NAME), ATTRIBUTES)
    point.record(1.0)
    second = InMemoryMetricReader()
    provider.add_metric_reader(second)
    point.record(2.0)
    assert point.fast
    assert [p[2:4] for p in _points(first)] == [(2, 3.0)]
    assert [p[2:4] for p in _points(second)] == [(1, 2.0)]


def test_a_no_op_instrument_falls_back_without_failing() -> None:
    histogram = NoOpMeterProvider().get_meter("test").create_histogram(NAME)
    point = BoundHistogram(histogram, ATTRIBUTES)
    point.record(1.0)
    point.record(2.0)
    assert not point.fast


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the platform cannot fork")
def test_a_forked_child_starts_with_an_empty_queue_and_a_free_lock() -> None:
    histogram, reader = _pipeline("contract", AggregationTemporality.CUMULATIVE, queued=True)
    BoundHistogram(histogram, ATTRIBUTES).record(1.0)
    assert pending() == 1
    with bound._drain_lock:  # as if the fork came during a drain
        child = os.fork()
        if child == 0:
            os._exit(0 if pending() == 0 and bound._drain_lock.acquire(timeout=1) else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent keeps its point.
    assert [p[2:4] for p in _points(reader)] == [(1, 1.0)]


@pytest.mark.pinned_sdk
def test_an_sdk_that_makes_aggregations_inline_gets_the_same_points() -> None:
    # SDK 1.45.0 and 1.45.1 have no _get_or_create_aggregation: consume_measurement makes the
    # aggregation inline, and so does the bound path's stand-in for it.
    plain, plain_reader = _pipeline("explicit-filtered", AggregationTemporality.CUMULATIVE)
    histogram, reader = _pipeline("explicit-filtered", AggregationTemporality.CUMULATIVE)
    histogram.record(0.5, ATTRIBUTES)  # makes the view matches, then stands them in for old ones
    plain.record(0.5, ATTRIBUTES)
    storage = next(iter(histogram._measurement_consumer._reader_storages.values()))
    matches = storage._get_or_init_view_instrument_match(histogram)
    for match in matches:
        match._get_or_create_aggregation = None
    point, other = BoundHistogram(histogram, ATTRIBUTES), BoundHistogram(histogram, OTHER)
    for value in (0.001, 2.0, 0.25, 7.5):
        point.record(value)
        other.record(value * 3)
        plain.record(value, ATTRIBUTES)
        plain.record(value * 3, OTHER)
    assert point.fast and other.fast
    assert all(isinstance(route[4], partial) for route in point._routes or ())
    assert _points(reader) == _points(plain_reader)
