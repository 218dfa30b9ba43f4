"""Values the store derives as it writes spans: statement examples, durations, roots."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from dashboard.otlp import SPAN_KIND_CLIENT, SpanRecord
from dashboard.schema import examples, spans
from dashboard.store import TelemetryStore
from dashboard.store.derived_rows import EXAMPLES_PER_GROUP
from instrumentation import conventions as names

HOUR_NS = 3600 * 10**9
BASE_NS = 1_800_000_000 * 10**9 // HOUR_NS * HOUR_NS


@pytest.fixture
def any_store(database_url: str) -> Iterator[TelemetryStore]:
    store = TelemetryStore(database_url)
    store.upgrade()
    yield store
    store.dispose()


def statement(rng: random.Random, number: int) -> SpanRecord:
    start = BASE_NS + rng.choice([0, 1, 2, 61, 62, 3600 + 5]) * 10**9
    # Few distinct durations: groups hold ties at the rows they keep.
    duration = rng.choice([1, 2, 2, 3, 5, 5, 8]) * 10**6
    summary = rng.choice(["SELECT recordings", "INSERT tags"])
    return SpanRecord(
        f"{number:032x}",
        f"{number:016x}",
        f"{number + 10**6:016x}",
        rng.choice(["api", "worker"]),
        summary,
        SPAN_KIND_CLIENT,
        start,
        start + duration,
        0,
        "",
        {names.DB_QUERY_TEXT: f"{summary} #{number}", names.DB_QUERY_SUMMARY: summary},
        (),
    )


def expected_rows(batches: list[list[SpanRecord]]) -> set[tuple[int, str, int]]:
    """What the store keeps, worked out here: each batch adds the slowest ``keep`` statements
    of each of its groups (the first of equals), then each group keeps its rows that fewer
    than ``keep`` rows of the group are slower than."""
    kept: dict[tuple[int, str, str, int], list[tuple[int, str]]] = defaultdict(list)
    for batch in batches:
        for resolution, keep in EXAMPLES_PER_GROUP.items():
            groups: dict[tuple[int, str, str, int], list[SpanRecord]] = defaultdict(list)
            for record in batch:
                start_s = record.start_ns // (resolution * 10**9) * resolution
                groups[(resolution, record.service, record.name, start_s)].append(record)
            for key, members in groups.items():
                slowest = sorted(members, key=lambda r: r.end_ns - r.start_ns, reverse=True)
                kept[key] += [(r.end_ns - r.start_ns, r.span_id) for r in slowest[:keep]]
                durations = sorted((d for d, _ in kept[key]), reverse=True)
                threshold = durations[keep - 1] if len(durations) >= keep else 0
                kept[key] = [(d, s) for d, s in kept[key] if d >= threshold]
    return {(key[0], span_id, key[3]) for key, rows in kept.items() for _, span_id in rows}


def test_each_group_keeps_its_slowest_statements_ties_included(any_store: TelemetryStore) -> None:
    rng = random.Random(7)
    batches = [[statement(rng, b * 100 + i) for i in range(rng.randint(5, 40))] for b in range(12)]
    for batch in batches:
        any_store.write_spans(batch)
    with any_store.engine.connect() as conn:
        stored = {
            (row.resolution, row.span_id, row.start_s)
            for row in conn.execute(
                sa.select(examples.c.resolution, examples.c.span_id, examples.c.start_s)
            )
        }
    assert stored == expected_rows(batches)
    assert {resolution for resolution, _, _ in stored} == set(EXAMPLES_PER_GROUP)


def test_derived_span_columns_are_what_python_computes(any_store: TelemetryStore) -> None:
    """SQLite computes duration_ms and is_root itself; they must equal Python's values."""
    rng = random.Random(3)
    bounds = [0, 1, 2**53 - 1, 2**53, 2**53 + 1, 2**62, 2**63 - 1]
    records = []
    for number in range(300):
        start = rng.choice([rng.choice(bounds), rng.randrange(2**63)])
        end = rng.choice([start, rng.randrange(start, 2**63), 2**63 - 1])
        parent = None if number % 3 == 0 else f"{number + 1:016x}"
        records.append(
            SpanRecord(
                f"{number:032x}", f"{number:016x}", parent, "api", "GET /", 2, start, end,
                0, "", {}, (),
            )
        )  # fmt: skip
    any_store.write_spans(records)
    with any_store.engine.connect() as conn:
        query = sa.select(spans.c.span_id, spans.c.duration_ms, spans.c.is_root)
        stored = {row.span_id: (row.duration_ms, bool(row.is_root)) for row in conn.execute(query)}
    assert stored == {
        r.span_id: ((r.end_ns - r.start_ns) / 1e6, r.parent_span_id is None) for r in records
    }
