"""Series and their rollup rows as records, and adding rows up into totals with percentiles.

Nothing here reads the store: :mod:`dashboard.reads.rollups` does, into these records.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dashboard.histograms import (
    STORE_SCALE,
    ExpHistogram,
    ExplicitHistogram,
    PackedSum,
    quantiles,
    unpack_counts,
)
from dashboard.rollups import PERCENTILES


@dataclass(frozen=True, slots=True)
class Series:
    """One rollup series: a service's metric with one attribute set, or its spans of one kind
    and name; ``to_ms`` turns its values into milliseconds."""

    id: int
    service: str
    name: str
    span_kind: int | None
    attributes: dict[str, Any]
    histogram: str | None
    bounds: tuple[float, ...]
    to_ms: float


@dataclass(slots=True)
class RollupRow:
    """One series' rollup row of one time bucket (``t``, seconds)."""

    series: Series
    t: int
    count: int
    sum: float
    min: float | None
    max: float | None
    errors: int
    client_errors: int
    redirects: int
    zero_count: int
    offset: int
    buckets: bytes | None
    last_value: float | None
    last_time: int | None
    precomputed: tuple[float, float, float] | None

    @property
    def counts(self) -> list[int]:
        return unpack_counts(self.buckets)


@dataclass(slots=True)
class RollupTotal:
    """Adds up rollup rows of one quantity; quantiles in milliseconds.

    Exponential buckets are summed as they come (:class:`PackedSum`), never kept per row, so a
    row costs a few additions whatever its width.
    """

    count: int = 0
    errors: int = 0
    client_errors: int = 0
    redirects: int = 0
    sum: float = 0.0
    last_value: float | None = None
    last_time: int = -1
    to_ms: float = 1000.0
    exp_rows: int = 0
    zero_count: int = 0
    low: float | None = None
    high: float | None = None
    # p50/p95/p99 of the one exponential row, kept for when it stays the only one, and its
    # buckets, added only once a second row comes (most groups over time have one row).
    precomputed: tuple[float, float, float] | None = None
    pending: tuple[int, bytes | None] | None = None
    buckets: PackedSum = field(default_factory=PackedSum)
    explicit: list[ExplicitHistogram] = field(default_factory=list)

    def add(self, row: RollupRow) -> None:
        self.count += row.count
        self.errors += row.errors
        self.client_errors += row.client_errors
        self.redirects += row.redirects
        self.sum += row.sum
        self.to_ms = row.series.to_ms
        if row.last_time is not None and row.last_time > self.last_time:
            self.last_value, self.last_time = row.last_value, row.last_time
        kind = row.series.histogram
        if kind == "exponential":
            self.add_exponential(1, row.zero_count, row.min, row.max, row.precomputed)
            if self.exp_rows == 1:
                self.pending = (row.offset, row.buckets)
            else:
                self._flush()
                self.buckets.add(row.offset, row.buckets)
        elif kind == "explicit":
            self.explicit.append(
                explicit_histogram(
                    row.series, row.offset, row.counts, row.count, row.sum, row.min, row.max
                )
            )

    def add_exponential(
        self,
        rows: int,
        zero_count: int,
        low: float | None,
        high: float | None,
        precomputed: tuple[float, float, float] | None,
    ) -> None:
        self.exp_rows += rows
        self.zero_count += zero_count
        if low is not None and (self.low is None or low < self.low):
            self.low = low
        if high is not None and (self.high is None or high > self.high):
            self.high = high
        self.precomputed = precomputed

    def _flush(self) -> None:
        if self.pending is not None:
            self.buckets.add(*self.pending)
            self.pending = None

    def percentiles(self, qs: Sequence[float] = PERCENTILES) -> list[float | None]:
        if (
            self.exp_rows == 1
            and self.precomputed is not None
            and not self.explicit
            and tuple(qs) == PERCENTILES
        ):
            return [value * self.to_ms for value in self.precomputed]
        parts: list[ExpHistogram | ExplicitHistogram] = list(self.explicit)
        if self.exp_rows:
            self._flush()
            parts.append(
                ExpHistogram(
                    scale=STORE_SCALE,
                    offset=self.buckets.offset,
                    counts=self.buckets.counts(),
                    zero_count=self.zero_count,
                    min=self.low,
                    max=self.high,
                )
            )
        return [None if v is None else v * self.to_ms for v in quantiles(parts, qs)]

    def stats(self, seconds: float) -> dict[str, Any]:
        p50, p95, p99 = self.percentiles()
        return {
            "count": self.count,
            "rate_per_s": self.count / seconds,
            "errors": self.errors,
            "error_rate": self.errors / self.count if self.count else None,
            "p50_ms": p50,
            "p95_ms": p95,
            "p99_ms": p99,
        }

    def http_stats(self, seconds: float) -> dict[str, Any]:
        """:meth:`stats` with the client errors (4xx) beside the errors (5xx), and the count
        per status class (the 2xx are the rest: a response without a status counts there)."""
        stats = self.stats(seconds)
        stats["client_errors"] = self.client_errors
        stats["client_error_rate"] = self.client_errors / self.count if self.count else None
        stats["status_classes"] = {
            "2xx": self.count - self.redirects - self.client_errors - self.errors,
            "3xx": self.redirects,
            "4xx": self.client_errors,
            "5xx": self.errors,
        }
        return stats


def explicit_histogram(
    found: Series,
    offset: int,
    counts: list[int],
    count: int,
    total: float,
    low: float | None,
    high: float | None,
) -> ExplicitHistogram:
    """An explicit histogram of ``found``'s bounds, its counts padded to one per bucket."""
    size = len(found.bounds) + 1
    dense = ([0] * offset + counts)[:size]
    dense.extend([0] * (size - len(dense)))
    return ExplicitHistogram(found.bounds, dense, count, total, low, high)


def grouped(rows: Iterable[RollupRow], key: Any) -> dict[Any, RollupTotal]:
    """``rows`` added up per ``key(row)``."""
    groups: dict[Any, RollupTotal] = defaultdict(RollupTotal)
    for row in rows:
        groups[key(row)].add(row)
    return groups
