"""The time range of a read: its rollup resolution, its buckets, and times written as ISO 8601."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from dashboard.rollups import DAY, HOUR, MINUTE

MINUTE_ROLLUPS_UP_TO_S = 6 * 3600


@dataclass(frozen=True)
class TimeRange:
    """A validated ``since``/``until`` pair (aware datetimes) and the optional service."""

    since: datetime
    until: datetime
    service: str | None = None

    @property
    def seconds(self) -> float:
        return max((self.until - self.since).total_seconds(), 1.0)

    @property
    def resolution(self) -> int:
        return MINUTE if self.seconds <= MINUTE_ROLLUPS_UP_TO_S else HOUR

    @property
    def first_bucket(self) -> int:
        start = int(self.since.timestamp())
        return start // self.resolution * self.resolution

    @property
    def last_bucket(self) -> int:
        return int(self.until.timestamp())

    def total_plan(self) -> list[tuple[int, int, int]]:
        """(resolution, first bucket, last bucket) segments whose rows add up to the range.

        Ranges over two days take their whole days from day rollups and only the edges from
        hour rollups, so a total over 7 days reads some 30 rows per series, not 168. Ranges at
        minute resolution likewise take the hours they cover whole from hour rollups.
        """
        first, last = self.first_bucket, self.last_bucket
        if self.resolution == MINUTE:
            whole_from = -(-first // HOUR) * HOUR
            whole_to = (last // MINUTE + 1) * MINUTE // HOUR * HOUR
            if whole_from >= whole_to:
                # No whole hour: one range of the key reads faster than two (SQLite then
                # merges the ranges' rows through a temporary table).
                return [(MINUTE, first, last)]
            plan = [
                (MINUTE, first, whole_from - 1),
                (HOUR, whole_from, whole_to - HOUR),
                (MINUTE, whole_to, last),
            ]
        elif self.seconds <= 2 * DAY:
            return [(self.resolution, first, last)]
        else:
            day_start = -(-first // DAY) * DAY
            day_end = last // DAY * DAY
            plan = [
                (HOUR, first, day_start - 1),
                (DAY, day_start, day_end - 1),
                (HOUR, day_end, last),
            ]
        return [(resolution, a, b) for resolution, a, b in plan if a <= b]

    @property
    def since_ns(self) -> int:
        return int(self.since.timestamp() * 1e9)

    @property
    def until_ns(self) -> int:
        return int(self.until.timestamp() * 1e9)


def iso(seconds: float) -> str:
    """``seconds`` since the epoch as ISO 8601 UTC, to the millisecond."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def iso_ns(nanoseconds: int) -> str:
    return iso(nanoseconds / 1e9)


# Series over time get explicit points for idle buckets (no rows: rate 0, error rate and
# percentiles null), so that plots drop to zero and break their lines over idle time instead of
# drawing traffic through it. Past this many buckets in the range only the bucket either side of
# each busy one is filled, which plots the same and keeps the document bounded.
MAX_FILLED_BUCKETS = 1500


def idle_buckets(busy: Iterable[int], window: TimeRange) -> list[int]:
    """The window's buckets without a row, among ``busy`` (bucket starts, seconds)."""
    step, first, last = window.resolution, window.first_bucket, window.last_bucket
    taken = set(busy)
    if (last - first) // step <= MAX_FILLED_BUCKETS:
        return [t for t in range(first, last + 1, step) if t not in taken]
    edges = {n for t in taken for n in (t - step, t + step) if first <= n <= last}
    return sorted(edges - taken)
