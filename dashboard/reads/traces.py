"""Traces from the raw spans: the slowest by root span, with an attribute search, and one
trace's span tree with its N+1 findings (``/api/traces``, ``/api/traces/<trace_id>``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from dashboard import n_plus_one as n_plus_one_rules
from dashboard import trace_search
from dashboard.errors import TraceNotFoundError
from dashboard.otlp import SPAN_KINDS, STATUS_ERROR
from dashboard.reads.window import TimeRange, iso_ns
from dashboard.schema import n_plus_one, series, spans
from dashboard.store import TelemetryStore
from dashboard.trace_search import AttributeCondition
from instrumentation import conventions as names

# Above this many spans in the range, SQLite finds the slowest roots by their duration index.
ROOTS_BY_DURATION_FROM_SPANS = 20_000

# The root spans the list is made of, and whether a span of a root's trace failed.
_ROOTS = spans.alias("roots")
_ERRORED = sa.exists().where(
    spans.c.trace_id == _ROOTS.c.trace_id, spans.c.status_code == STATUS_ERROR
)


def traces(
    store: TelemetryStore,
    window: TimeRange,
    *,
    operation: str | None = None,
    min_duration_ms: float | None = None,
    status: str | None = None,
    attributes: Sequence[AttributeCondition] = (),
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """Traces by root span, slowest first, ``limit`` from ``offset`` on (``has_more`` says
    whether more match). ``operation`` is the root span's name in any case; ``attributes`` a
    span of the trace must match (:mod:`dashboard.trace_search`, a bounded scan: ``search``
    says which spans it read). ``operations`` lists root span names to suggest."""
    with store.read() as conn:
        scan_from = _attribute_scan_from(conn, window, attributes)
        since_ns = max(window.since_ns, scan_from or window.since_ns)
        start, name = _root_columns(conn, store.engine, since_ns, window.until_ns)
        query = _slowest_roots(start, since_ns, window.until_ns, limit=limit, offset=offset)
        query = _filtered(
            query,
            name,
            service=window.service,
            operation=operation,
            min_duration_ms=min_duration_ms,
            status=status,
        )
        if attributes:
            matching = trace_search.matching_trace_ids(conn, attributes, since_ns, window.until_ns)
            query = query.where(trace_search.among(_ROOTS.c.trace_id, matching, store.engine))
        found, has_more = _page(conn, query, limit)
        counts, flagged = _trace_stats(conn, [r.trace_id for r in found])
        suggestions = _operations(conn, window.service)
    return {
        "traces": [_listed_trace(r, counts, flagged) for r in found],
        "offset": offset,
        "limit": limit,
        "has_more": has_more,
        "next_offset": offset + limit if has_more else None,
        "search": _search_summary(attributes, scan_from),
        "operations": suggestions,
    }


def _attribute_scan_from(
    conn: sa.Connection, window: TimeRange, attributes: Sequence[AttributeCondition]
) -> int | None:
    """Where an attribute search starts reading: the start of the range's
    :data:`~dashboard.trace_search.SCAN_SPANS`-th newest span; None without ``attributes`` or
    when the range holds fewer spans (the whole range is read)."""
    if not attributes:
        return None
    return trace_search.nth_newest_start(
        conn, window.since_ns, window.until_ns, trace_search.SCAN_SPANS
    )


def _root_columns(
    conn: sa.Connection, engine: sa.Engine, since_ns: int, until_ns: int
) -> tuple[sa.ColumnElement[int], sa.ColumnElement[str]]:
    """The roots' start time and name as the query compares them. On SQLite one of them is
    written with a unary "+", which keeps the planner off its index for this range."""
    start: sa.ColumnElement[int] = _ROOTS.c.start_ns
    name: sa.ColumnElement[str] = _ROOTS.c.name
    if engine.dialect.name != "sqlite":
        return start, name
    wide = (
        trace_search.nth_newest_start(conn, since_ns, until_ns, ROOTS_BY_DURATION_FROM_SPANS)
        is not None
    )
    if not wide:
        # A narrow range: its spans by the start-time index, not every root of the
        # operation by the name index (0.5 s for an hour of 7 days of 1M spans).
        return start, sa.literal_column("+roots.name", sa.String)
    # SQLite plans with no statistics and reads a range of the start-time index
    # whatever its width, then sorts every root in it (1.4 s for 7 days of 1M spans).
    # Over a range this full, walking the roots' duration index from the slowest and
    # skipping those outside the range finds a page sooner (0.3 ms): the unary "+"
    # keeps SQLite off the start-time index (https://sqlite.org/optoverview.html).
    return sa.literal_column("+roots.start_ns", sa.BigInteger), name


def _slowest_roots(
    start: sa.ColumnElement[int], since_ns: int, until_ns: int, *, limit: int, offset: int
) -> sa.Select[Any]:
    """The roots that started in the range, slowest first: the page from ``offset`` on."""
    return (
        sa.select(_ROOTS)
        .where(_ROOTS.c.is_root == sa.true(), start >= since_ns, start <= until_ns)
        .order_by(_ROOTS.c.duration_ms.desc(), _ROOTS.c.trace_id)
        .limit(limit + 1)  # one more than asked tells whether more match
        .offset(offset)
    )


def _filtered(
    query: sa.Select[Any],
    name: sa.ColumnElement[str],
    *,
    service: str | None,
    operation: str | None,
    min_duration_ms: float | None,
    status: str | None,
) -> sa.Select[Any]:
    """``query`` narrowed to the roots that match each filter given (None: any)."""
    if service is not None:
        query = query.where(_ROOTS.c.service == service)
    if operation is not None:
        query = query.where(sa.func.lower(name) == operation.lower())
    if min_duration_ms is not None:
        query = query.where(_ROOTS.c.duration_ms >= min_duration_ms)
    if status == "error":
        query = query.where(_ERRORED)
    elif status == "ok":
        query = query.where(~_ERRORED)
    return query


def _page(conn: sa.Connection, query: sa.Select[Any], limit: int) -> tuple[Sequence[Any], bool]:
    """The first ``limit`` rows of ``query`` and whether it found more."""
    found = conn.execute(query).all()
    return found[:limit], len(found) > limit


def _trace_stats(
    conn: sa.Connection, ids: Sequence[str]
) -> tuple[dict[str, tuple[int, int]], set[str]]:
    """The number of spans and of failed spans of each trace of ``ids``, and those of them
    with an N+1 finding."""
    if not ids:
        return {}, set()
    stats = (
        sa.select(
            spans.c.trace_id,
            sa.func.count(),
            sa.func.sum(sa.case((spans.c.status_code == STATUS_ERROR, 1), else_=0)),
        )
        .where(spans.c.trace_id.in_(ids))
        .group_by(spans.c.trace_id)
    )
    counts = {trace: (n, errors or 0) for trace, n, errors in conn.execute(stats)}
    flagged = set(
        conn.execute(
            sa.select(n_plus_one.c.trace_id).where(n_plus_one.c.trace_id.in_(ids))
        ).scalars()
    )
    return counts, flagged


def _listed_trace(
    root: Any, counts: dict[str, tuple[int, int]], flagged: set[str]
) -> dict[str, Any]:
    """One trace of the list: its root span, with its counts from :func:`_trace_stats`."""
    span_count, errors = counts.get(root.trace_id, (1, 0))
    return {
        "trace_id": root.trace_id,
        "service": root.service,
        "root_name": root.name,
        "start": iso_ns(root.start_ns),
        "duration_ms": root.duration_ms,
        "span_count": span_count,
        "error": errors > 0,
        "n_plus_one": root.trace_id in flagged,
    }


def _search_summary(
    attributes: Sequence[AttributeCondition], scan_from: int | None
) -> dict[str, Any]:
    """What an attribute search looked for and which spans it read."""
    return {
        "attributes": [str(condition) for condition in attributes],
        "scan_limit_spans": trace_search.SCAN_SPANS,
        # Set when the range holds more spans than an attribute search reads: traces that
        # started before this were not searched.
        "searched_since": None if scan_from is None else iso_ns(scan_from),
    }


# Span kinds whose names are suggested as operations: requests served and messages consumed,
# the roots of most traces; and the backup runs, the INTERNAL roots of the scheduler's traces.
_OPERATION_KINDS = tuple(k for k, name in SPAN_KINDS.items() if name in ("SERVER", "CONSUMER"))
_OPERATION_NAMES = (names.BACKUP_RUN_SPAN, names.BACKUP_RESTORE_SPAN)
OPERATIONS_LIMIT = 500


def _operations(conn: sa.Connection, service: str | None) -> list[str]:
    """Span names to suggest for the operation field (from the rollup series, not the spans)."""
    query = (
        sa.select(series.c.name)
        .where(
            series.c.source == "span",
            sa.or_(series.c.span_kind.in_(_OPERATION_KINDS), series.c.name.in_(_OPERATION_NAMES)),
        )
        .distinct()
        .order_by(series.c.name)
        .limit(OPERATIONS_LIMIT)
    )
    if service is not None:
        query = query.where(series.c.service == service)
    return list(conn.execute(query).scalars())


def trace(store: TelemetryStore, trace_id: str) -> dict[str, Any]:
    """The span tree of one trace; raises :class:`TraceNotFoundError` if none of it is stored.

    ``n_plus_one`` holds the trace's findings (:mod:`dashboard.n_plus_one`), each with the ids
    of the statement spans that make it up.
    """
    with store.read() as conn:
        rows = conn.execute(sa.select(spans).where(spans.c.trace_id == trace_id)).all()
    if not rows:
        raise TraceNotFoundError(
            f"no span of trace {trace_id} is in the store (never received, or pruned by retention)"
        )
    present = {r.span_id for r in rows}
    nodes = [_Node(r, orjson.loads(r.attributes)) for r in rows]
    children: dict[str | None, list[_Node]] = defaultdict(list)
    for node in nodes:
        parent = node.row.parent_span_id if node.row.parent_span_id in present else None
        children[parent].append(node)
    for members in children.values():
        members.sort(key=lambda n: (n.row.start_ns, n.span_id))
    origin = min(r.start_ns for r in rows)
    ordered: list[dict[str, Any]] = []
    stack = [(n, 0) for n in reversed(children[None])]
    while stack:
        node, depth = stack.pop()
        r = node.row
        ordered.append(
            {
                "span_id": r.span_id,
                "parent_span_id": r.parent_span_id,
                "service": r.service,
                "name": r.name,
                "kind": SPAN_KINDS.get(r.kind, "UNSPECIFIED"),
                "start": iso_ns(r.start_ns),
                "offset_ms": (r.start_ns - origin) / 1e6,
                "duration_ms": r.duration_ms,
                "status": "error" if r.status_code == STATUS_ERROR else "ok",
                "attributes": node.attributes,
                "events": [
                    {
                        "name": event.get("name", ""),
                        "time": iso_ns(event.get("time_ns", 0)),
                        "attributes": event.get("attributes", {}),
                    }
                    for event in orjson.loads(r.events)
                ],
                "links": orjson.loads(r.links),
                "depth": depth,
            }
        )
        stack.extend((child, depth + 1) for child in reversed(children.get(r.span_id, [])))
    return {"trace_id": trace_id, "spans": ordered, "n_plus_one": _trace_n_plus_one(nodes)}


@dataclass(frozen=True, slots=True)
class _Node:
    """A stored span with its attributes decoded, as :mod:`dashboard.n_plus_one` reads it."""

    row: Any
    attributes: dict[str, Any]

    @property
    def span_id(self) -> str:
        return str(self.row.span_id)

    @property
    def kind(self) -> int:
        return int(self.row.kind)

    @property
    def parent_span_id(self) -> str | None:
        return self.row.parent_span_id


def _trace_n_plus_one(nodes: Sequence[_Node]) -> list[dict[str, Any]]:
    children = n_plus_one_rules.children_of(nodes)
    result = []
    for session in sorted(nodes, key=lambda n: (n.row.start_ns, n.span_id)):
        if session.row.name != names.DB_SESSION_SPAN:
            continue
        found = n_plus_one_rules.finding(session.span_id, children)
        if found is not None:
            result.append(
                {
                    "trace_id": session.row.trace_id,
                    "session_span_id": session.span_id,
                    "query_text": found.query_text,
                    "count": found.count,
                    "service": session.row.service,
                    "start": iso_ns(session.row.start_ns),
                    "span_ids": list(found.span_ids),
                }
            )
    return result
