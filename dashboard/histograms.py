"""Histograms of the store: OpenTelemetry's base-2 exponential histogram, and explicit buckets.

The store keeps every duration rollup as an exponential histogram at one fixed scale,
:data:`STORE_SCALE`, so that merging two rollups is adding bucket counts. At scale 5 a bucket
spans a factor of ``2 ** (1 / 32)`` (2.2%), and the geometric middle of a bucket is within 1.1%
of any value in it, which keeps p50/p95/p99 within 2%. Bucket ``i`` holds the values in
``(base ** i, base ** (i + 1)]`` as the OpenTelemetry data model defines it.

Hand-written because the SDK's aggregation classes are private and record only; nothing in the
Python ecosystem reads, merges, downscales and queries OTLP exponential histograms.

Quantiles use the nearest-rank definition: the value of rank ``ceil(q * count)``. Only positive
values and zeros are kept: the store holds durations, which are never negative.
"""

from __future__ import annotations

import math
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

STORE_SCALE = 5
# Indexes are clamped to 2**-40 .. 2**40 (seconds: under a picosecond to 35,000 years), so a
# hostile point cannot make a dense bucket array of billions of entries.
MAX_INDEX = 40 << STORE_SCALE
_LN2 = math.log(2.0)


def map_to_index(value: float, scale: int = STORE_SCALE) -> int:
    """Index of the bucket holding ``value`` (> 0) at ``scale``, exact at powers of two."""
    mantissa, exponent = math.frexp(value)
    if scale <= 0:
        # frexp gives value = mantissa * 2**exponent with mantissa in [0.5, 1).
        index = exponent - 1 if mantissa != 0.5 else exponent - 2
        return index >> -scale
    if mantissa == 0.5:
        # An exact power of two is the upper bound of its bucket (buckets are upper-inclusive).
        return ((exponent - 1) << scale) - 1
    return math.ceil(math.log(value) * ((1 << scale) / _LN2)) - 1


def _nearest_rank(q: float, count: int) -> int:
    return max(1, math.ceil(q * count))


def pack_counts(counts: Sequence[int]) -> bytes:
    """Bucket counts as little-endian unsigned 64-bit integers."""
    return array("Q", counts).tobytes()


def unpack_counts(data: bytes | None) -> list[int]:
    """The inverse of :func:`pack_counts`."""
    if not data:
        return []
    packed = array("Q")
    packed.frombytes(data)
    return packed.tolist()


class PackedSum:
    """Adds packed bucket arrays (:func:`pack_counts`) at their offsets, in C, one call per array.

    An array of 64-bit lanes read as one integer (``int.from_bytes``) and shifted left by 64 bits
    per bucket of offset is that array placed at that offset, so adding such integers adds the
    arrays lane by lane. No carry crosses a lane while every lane's total stays below ``2**64``,
    which holds: each is at most a histogram's count, which the store keeps as a signed 64-bit
    integer. Hand-written because unpacking every row to a list and adding lists element by
    element was the per-row cost of the panels (4.8 us per minute row of the panels
    benchmark's large store, 120 buckets on average, against 2.1 us here).
    """

    __slots__ = ("offset", "total")

    def __init__(self) -> None:
        self.offset = 0
        self.total = 0

    def add(self, offset: int, packed: bytes | None) -> None:
        """Add the counts ``packed`` holds from bucket ``offset`` on."""
        if not packed:
            return
        value = int.from_bytes(packed, sys.byteorder)
        if not self.total:
            self.offset, self.total = offset, value
        elif offset >= self.offset:
            self.total += value << ((offset - self.offset) << 6)
        else:
            self.total = (self.total << ((self.offset - offset) << 6)) + value
            self.offset = offset

    def counts(self) -> list[int]:
        """The summed counts, dense from :attr:`offset` (trailing empty buckets dropped)."""
        lanes = (self.total.bit_length() + 63) >> 6
        return unpack_counts(self.total.to_bytes(lanes << 3, sys.byteorder))


@dataclass
class ExpHistogram:
    """Positive buckets of a base-2 exponential histogram, dense from ``offset``."""

    scale: int = STORE_SCALE
    offset: int = 0
    counts: list[int] = field(default_factory=list)
    zero_count: int = 0
    count: int = 0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None

    def record(self, value: float) -> None:
        """Add one observation."""
        self.count += 1
        self.sum += value
        self.min = value if self.min is None or value < self.min else self.min
        self.max = value if self.max is None or value > self.max else self.max
        if value <= 0.0:
            self.zero_count += 1
            return
        self.add_bucket(map_to_index(value, self.scale), 1)

    def add_bucket(self, index: int, n: int) -> None:
        """Add ``n`` to bucket ``index`` without touching count, sum, min or max."""
        limit = MAX_INDEX >> (STORE_SCALE - self.scale) if self.scale <= STORE_SCALE else None
        if limit is not None:
            index = min(max(index, -limit), limit)
        counts = self.counts
        if not counts:
            self.offset = index
            counts.append(n)
            return
        position = index - self.offset
        if position < 0:
            self.counts = [0] * -position + counts
            self.offset = index
            self.counts[0] += n
        elif position >= len(counts):
            counts.extend([0] * (position - len(counts) + 1))
            counts[position] += n
        else:
            counts[position] += n

    def add_buckets(self, offset: int, counts: Sequence[int], scale: int) -> None:
        """Add buckets given at ``scale``: downscaled when finer, spread to the middle if coarser.

        A coarser bucket cannot be split exactly; its count goes to the finer bucket at its
        geometric middle, which keeps quantiles within that coarser bucket's own error.
        """
        shift = scale - self.scale
        for position, n in enumerate(counts):
            if not n:
                continue
            index = offset + position
            if shift >= 0:
                self.add_bucket(index >> shift, n)
            else:
                widen = -shift
                self.add_bucket((index << widen) + (1 << (widen - 1)), n)

    def merge(self, other: ExpHistogram) -> None:
        """Add ``other`` into this histogram (``other`` is downscaled to this scale if finer)."""
        self.count += other.count
        self.sum += other.sum
        self.zero_count += other.zero_count
        if other.min is not None:
            self.min = other.min if self.min is None else min(self.min, other.min)
        if other.max is not None:
            self.max = other.max if self.max is None else max(self.max, other.max)
        if other.scale == self.scale and other.counts:
            if not self.counts:
                self.offset, self.counts = other.offset, list(other.counts)
                return
            start = min(self.offset, other.offset)
            end = max(self.offset + len(self.counts), other.offset + len(other.counts))
            merged = [0] * (end - start)
            for position, n in enumerate(self.counts, self.offset - start):
                merged[position] = n
            for position, n in enumerate(other.counts, other.offset - start):
                merged[position] += n
            self.offset, self.counts = start, merged
        else:
            self.add_buckets(other.offset, other.counts, other.scale)

    def downscale(self, scale: int) -> ExpHistogram:
        """A copy at the coarser ``scale``: bucket ``i`` goes to ``i >> (self.scale - scale)``."""
        if scale > self.scale:
            raise ValueError(f"cannot downscale from scale {self.scale} to finer scale {scale}")
        result = ExpHistogram(scale=scale, zero_count=self.zero_count, count=self.count)
        result.sum, result.min, result.max = self.sum, self.min, self.max
        result.add_buckets(self.offset, self.counts, self.scale)
        return result

    def quantile(self, q: float) -> float | None:
        """Nearest-rank quantile estimate (the geometric middle of its bucket, within min/max)."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """:meth:`quantile` for each of ``qs``, in one walk over the buckets."""
        total = self.zero_count + sum(self.counts)
        if total == 0:
            return [None for _ in qs]
        wanted = sorted((_nearest_rank(q, total), i) for i, q in enumerate(qs))
        result: list[float | None] = [None] * len(qs)
        step = 1 << self.scale
        cumulative = list(accumulate(self.counts, initial=self.zero_count))[1:]
        last = len(cumulative) - 1
        for rank, slot in wanted:
            if rank <= self.zero_count:
                result[slot] = 0.0
                continue
            position = min(bisect_left(cumulative, rank), last)
            estimate = 2.0 ** ((self.offset + position + 0.5) / step)
            result[slot] = _clamp(estimate, self.min, self.max)
        return result

    def cdf(self, value: float) -> float:
        """How many observations are <= ``value``, interpolated inside a bucket in log space."""
        if value < 0:
            return 0.0
        below = float(self.zero_count)
        if value == 0:
            return below
        position = math.log2(value) * (1 << self.scale)
        for offset, n in enumerate(self.counts):
            index = self.offset + offset
            if position >= index + 1:
                below += n
            elif position > index:
                below += n * (position - index)
            else:
                break
        return below


@dataclass
class ExplicitHistogram:
    """An explicit-bucket histogram: ``len(bounds) + 1`` counts, bucket ``i`` <= ``bounds[i]``."""

    bounds: tuple[float, ...]
    counts: list[int]
    count: int = 0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None

    def merge(self, other: ExplicitHistogram) -> None:
        if other.bounds != self.bounds:
            raise ValueError("explicit histograms with different bounds cannot be merged")
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.count += other.count
        self.sum += other.sum
        if other.min is not None:
            self.min = other.min if self.min is None else min(self.min, other.min)
        if other.max is not None:
            self.max = other.max if self.max is None else max(self.max, other.max)

    def _edges(self, bucket: int) -> tuple[float, float]:
        bounds = self.bounds
        lower = bounds[bucket - 1] if bucket > 0 else (self.min if self.min is not None else 0.0)
        if bucket < len(bounds):
            upper = bounds[bucket]
        else:
            upper = self.max if self.max is not None else (bounds[-1] if bounds else lower)
        if self.min is not None:
            lower = max(lower, min(self.min, upper))
        if self.max is not None:
            upper = min(upper, max(self.max, lower))
        return lower, upper

    def quantile(self, q: float) -> float | None:
        """Nearest-rank quantile, linearly interpolated inside its bucket (as Prometheus does)."""
        total = sum(self.counts)
        if total == 0:
            return None
        rank = _nearest_rank(q, total)
        seen = 0
        for bucket, n in enumerate(self.counts):
            if n and seen + n >= rank:
                lower, upper = self._edges(bucket)
                # Rounding may carry the interpolation past its bucket's edge (0.0005 +
                # 0.0045 is 0.005000000000000001): the estimate stays inside its bucket.
                estimate = _clamp(lower + (upper - lower) * (rank - seen) / n, lower, upper)
                return _clamp(estimate, self.min, self.max)
            seen += n
        return self.max

    def cdf(self, value: float) -> float:
        below = 0.0
        for bucket, n in enumerate(self.counts):
            if not n:
                continue
            lower, upper = self._edges(bucket)
            if value >= upper:
                below += n
            elif value > lower:
                below += n * (value - lower) / (upper - lower)
        return below


def _clamp(value: float, low: float | None, high: float | None) -> float:
    if low is not None and value < low:
        return low
    if high is not None and value > high:
        return high
    return value


def quantiles(
    histograms: Iterable[ExpHistogram | ExplicitHistogram], qs: Sequence[float]
) -> list[float | None]:
    """Quantiles over several histograms of one quantity, whatever their kinds.

    Exponential histograms merge by adding buckets, explicit ones with equal bounds likewise;
    when kinds or bounds differ the quantile is found by bisection over the summed CDFs.
    """
    histograms = list(histograms)
    if len(histograms) == 1 and isinstance(histograms[0], ExpHistogram):
        return histograms[0].quantiles(qs)
    exponential: ExpHistogram | None = None
    explicit: dict[tuple[float, ...], ExplicitHistogram] = {}
    for histogram in histograms:
        if isinstance(histogram, ExpHistogram):
            if exponential is None:
                exponential = ExpHistogram(scale=histogram.scale)
            exponential.merge(histogram)
        elif histogram.bounds in explicit:
            explicit[histogram.bounds].merge(histogram)
        else:
            explicit[histogram.bounds] = ExplicitHistogram(
                histogram.bounds,
                list(histogram.counts),
                histogram.count,
                histogram.sum,
                histogram.min,
                histogram.max,
            )
    parts: list[ExpHistogram | ExplicitHistogram] = list(explicit.values())
    if exponential is not None:
        parts.append(exponential)
    if not parts:
        return [None for _ in qs]
    if len(parts) == 1:
        part = parts[0]
        if isinstance(part, ExpHistogram):
            return part.quantiles(qs)
        return [part.quantile(q) for q in qs]
    return [_bisect_quantile(parts, q) for q in qs]


def _bisect_quantile(parts: Sequence[ExpHistogram | ExplicitHistogram], q: float) -> float | None:
    totals = [
        p.zero_count + sum(p.counts) if isinstance(p, ExpHistogram) else sum(p.counts)
        for p in parts
    ]
    total = sum(totals)
    if total == 0:
        return None
    rank = _nearest_rank(q, total)
    lows = [p.min for p in parts if p.min is not None]
    highs = [p.max for p in parts if p.max is not None]
    low = min(lows) if lows else 0.0
    high = (
        max(highs)
        if highs
        else max(
            (p.bounds[-1] if isinstance(p, ExplicitHistogram) and p.bounds else 1.0) for p in parts
        )
    )
    for _ in range(60):
        middle = (low + high) / 2
        if sum(p.cdf(middle) for p in parts) >= rank - 0.5:
            high = middle
        else:
            low = middle
    return high
