"""Percentiles from rollups against exact percentiles of random data (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.exponent_mapping import (
    ExponentMapping,
)
from opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.logarithm_mapping import (
    LogarithmMapping,
)

from dashboard.histograms import (
    STORE_SCALE,
    ExpHistogram,
    ExplicitHistogram,
    PackedSum,
    map_to_index,
    pack_counts,
    quantiles,
)
from dashboard.otlp import MetricPoint, SpanRecord
from dashboard.rollups import DAY, HOUR, MINUTE, RollupCell, aggregate_spans, with_hours

QS = (0.5, 0.95, 0.99)
# Durations in seconds from 0.1 ms to 60 s, the range the contract promises 2% over.
durations = st.floats(min_value=1e-4, max_value=60.0, allow_nan=False, allow_infinity=False)
samples = st.lists(durations, min_size=1, max_size=400)


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def assert_within_2_percent(
    histogram: ExpHistogram | ExplicitHistogram, values: list[float]
) -> None:
    for q in QS:
        assert histogram.quantile(q) == pytest.approx(exact(values, q), rel=0.02)


def recorded(values: list[float], scale: int = STORE_SCALE, max_size: int = 1024) -> ExpHistogram:
    """Like the SDK: start at ``scale`` and go coarser until the buckets fit ``max_size``."""
    low, high = min(values), max(values)
    while scale > STORE_SCALE and map_to_index(high, scale) - map_to_index(low, scale) >= max_size:
        scale -= 1
    histogram = ExpHistogram(scale=scale)
    for value in values:
        histogram.record(value)
    return histogram


@given(samples)
def test_percentiles_at_the_store_scale_are_within_2_percent(values: list[float]) -> None:
    assert_within_2_percent(recorded(values), values)


@given(st.lists(samples, min_size=1, max_size=12))
def test_minute_rollups_merged_into_hours_keep_percentiles_within_2_percent(
    minutes: list[list[float]],
) -> None:
    records = [
        SpanRecord(
            "a" * 32,
            f"{i:016x}",
            None,
            "svc",
            "op",
            2,
            minute * 60 * 10**9,
            minute * 60 * 10**9 + max(1, round(value * 1e9)),
            0,
            "",
            {},
            [],
        )
        for minute, values in enumerate(minutes)
        for i, value in enumerate(values)
    ]

    rollups = aggregate_spans(records, [1] * len(records))
    minute_aggs = [agg for (_, resolution, _), agg in rollups.items() if resolution == MINUTE]
    hour = RollupCell()
    for agg in minute_aggs:
        hour.merge(agg)
    hours = with_hours({(1, MINUTE, i * 60): a for i, a in enumerate(minute_aggs)})
    assert [a.counts for (_, res, _), a in hours.items() if res == HOUR] == [hour.counts]
    assert [a.counts for (_, res, _), a in hours.items() if res == DAY] == [hour.counts]
    values = [(r.end_ns - r.start_ns) / 1e9 for r in records]
    merged = ExpHistogram(
        STORE_SCALE,
        hour.offset,
        hour.counts,
        hour.zero_count,
        hour.count,
        hour.sum,
        hour.min,
        hour.max,
    )
    assert merged.count == len(values)
    assert_within_2_percent(merged, values)


@settings(max_examples=60)
@given(samples, st.integers(min_value=STORE_SCALE, max_value=20))
def test_points_at_finer_scales_downscaled_to_the_store_keep_percentiles_within_2_percent(
    values: list[float], scale: int
) -> None:
    fine = recorded(values, scale)
    stored = ExpHistogram(scale=STORE_SCALE)
    stored.merge(fine)
    assert stored.counts == recorded(values).counts
    assert stored.offset == recorded(values).offset
    assert_within_2_percent(stored, values)
    assert_within_2_percent(fine.downscale(STORE_SCALE), values)


@given(durations, st.integers(min_value=-4, max_value=20))
def test_mapping_agrees_with_the_sdk(value: float, scale: int) -> None:
    mapping = LogarithmMapping(scale) if scale > 0 else ExponentMapping(scale)
    assert map_to_index(value, scale) == mapping.map_to_index(value)


@given(st.lists(st.floats(min_value=0.0, max_value=10.0), min_size=1, max_size=300))
# Interpolating from the minimum up to a bucket's edge once rounded past it.
@example([1.0, 0.0005])
def test_explicit_bucket_percentiles_fall_inside_the_exact_values_bucket(
    values: list[float],
) -> None:
    bounds = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
    counts = [0] * (len(bounds) + 1)
    for value in values:
        counts[sum(1 for b in bounds if value > b)] += 1
    histogram = ExplicitHistogram(
        bounds, counts, len(values), sum(values), min(values), max(values)
    )
    edges = (0.0, *bounds, math.inf)
    for q in QS:
        truth = exact(values, q)
        bucket = sum(1 for b in bounds if truth > b)
        estimate = histogram.quantile(q)
        assert estimate is not None
        assert edges[bucket] <= estimate <= edges[bucket + 1]
        assert min(values) <= estimate <= max(values)


def test_mixed_kinds_combine_through_their_distribution_functions() -> None:
    values = [0.001 * i for i in range(1, 1001)]
    exponential = recorded(values[:500])
    bounds = (0.6, 0.8, 1.0)
    explicit = ExplicitHistogram(bounds, [100, 200, 200, 0], 500, 0.0, 0.501, 1.0)
    p50, p99 = quantiles([exponential, explicit], (0.5, 0.99))
    assert p50 == pytest.approx(0.5, rel=0.02)
    assert p99 == pytest.approx(0.99, rel=0.02)
    assert quantiles([], QS) == [None, None, None]


def test_metric_point_record_defaults_are_empty() -> None:
    point = MetricPoint("s", "k", "m", "s", "gauge", 0, False, {}, 0, 0)
    assert (point.count, point.bucket_counts, point.bounds) == (0, [], ())


# Bucket arrays as rollup rows hold them: an offset anywhere in the clamped index range and
# counts up to the largest a signed 64-bit column keeps, zeros included.
packed_rows = st.lists(
    st.tuples(
        st.integers(min_value=-1280, max_value=1280),
        st.lists(st.integers(min_value=0, max_value=2**63 // 64), max_size=40),
    ),
    max_size=12,
)


@given(packed_rows)
def test_packed_sum_adds_bucket_arrays_at_their_offsets_like_a_dense_loop(
    rows: list[tuple[int, list[int]]],
) -> None:
    summed = PackedSum()
    expected: dict[int, int] = {}
    for offset, counts in rows:
        summed.add(offset, pack_counts(counts) if counts else None)
        for position, n in enumerate(counts):
            expected[offset + position] = expected.get(offset + position, 0) + n
    counts = summed.counts()
    got = {summed.offset + position: n for position, n in enumerate(counts) if n}
    assert got == {index: n for index, n in expected.items() if n}
    assert not counts or counts[-1]
