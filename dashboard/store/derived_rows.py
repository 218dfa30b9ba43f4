"""The rows a batch of spans adds to the derived tables, computed from the records alone.

Statement examples (the slowest few per group), backup runs, N+1 findings and when each service
was last seen: none of this needs the database, so the receiver derives it on the request's
thread (:func:`dashboard.store.writes.prepare_spans`) and the writer only inserts it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dashboard import n_plus_one as n_plus_one_rules
from dashboard import rollups
from dashboard.otlp import SPAN_KIND_CLIENT, SpanRecord
from instrumentation import conventions as names

SESSION_SPAN = names.DB_SESSION_SPAN
BACKUP_SPAN = names.BACKUP_RUN_SPAN
# Slowest statements kept per (service, summary) and minute / hour: a 6-hour range reads at most
# 360 rows per summary, a 30-day one 2,160, whatever the volume.
EXAMPLES_PER_GROUP = {rollups.MINUTE: 1, rollups.HOUR: 3}
_MOST_EXAMPLES = max(EXAMPLES_PER_GROUP.values())
_MINUTE_NS = rollups.MINUTE * 1_000_000_000
# An example group: (resolution, service, summary, start_s).
ExampleGroup = tuple[int, str, str, int]
# When each (service, source) was seen last, in nanoseconds.
LatestSeen = dict[tuple[str, str], int]


@dataclass(slots=True)
class DerivedRows:
    """What a batch of spans adds to the rollups and the derived tables."""

    rollups: dict[rollups.RollupKey, rollups.RollupCell]
    examples: list[dict[str, Any]]
    # (resolution, service, summary, start_s) -> the bind parameters that trim the group
    example_groups: dict[ExampleGroup, dict[str, Any]]
    backup_runs: list[dict[str, Any]]
    n_plus_one: list[dict[str, Any]]
    # Sessions whose statements are not all in the records: checked against the stored trace.
    deferred_sessions: list[SpanRecord]
    services: LatestSeen


def derive(records: Sequence[SpanRecord], series_ids: Sequence[int]) -> DerivedRows:
    """The :class:`DerivedRows` of ``records``, as if every one were new; ``series_ids`` are
    their series (:meth:`dashboard.rollups.SeriesCatalog.resolve_spans`)."""
    examples, groups = example_rows(records)
    findings, deferred = n_plus_one_rows(records)
    return DerivedRows(
        rollups=rollups.aggregate_spans(records, series_ids),
        examples=examples,
        example_groups=groups,
        backup_runs=backup_rows(records),
        n_plus_one=findings,
        deferred_sessions=deferred,
        services=latest_span_ends(records),
    )


def merged(parts: Sequence[DerivedRows]) -> DerivedRows:
    """The rows of several requests together, leaving theirs untouched (a request may be
    written again alone if its group fails)."""
    return DerivedRows(
        rollups=_merged_rollups([p.rollups for p in parts]),
        examples=[row for p in parts for row in p.examples],
        example_groups={key: group for p in parts for key, group in p.example_groups.items()},
        backup_runs=[row for p in parts for row in p.backup_runs],
        n_plus_one=[row for p in parts for row in p.n_plus_one],
        deferred_sessions=[session for p in parts for session in p.deferred_sessions],
        services=_merged_latest([p.services for p in parts]),
    )


def example_rows(
    records: Iterable[SpanRecord],
) -> tuple[list[dict[str, Any]], dict[ExampleGroup, dict[str, Any]]]:
    """The slowest few statements per (service, summary) and minute, and hour, of ``records``,
    and the groups they touch (trimmed back to :data:`EXAMPLES_PER_GROUP` once inserted).

    This runs for every span: statements are grouped once, per minute, and each hour's slowest
    are taken from the slowest of its minutes. Of statements as slow as each other, the first
    in ``records`` is kept.
    """
    minutes: dict[tuple[str, str, int], list[tuple[int, int, SpanRecord, str]]] = {}
    for index, record in enumerate(records):
        if record.kind != SPAN_KIND_CLIENT:
            continue
        attrs = record.attributes
        text = attrs.get(names.DB_QUERY_TEXT)
        if isinstance(text, str):
            summary = str(attrs.get(names.DB_QUERY_SUMMARY) or record.name)
            key = (record.service, summary, record.start_ns // _MINUTE_NS * rollups.MINUTE)
            members = minutes.get(key)
            if members is None:
                members = minutes[key] = []
            members.append((record.end_ns - record.start_ns, -index, record, text))
    rows: list[dict[str, Any]] = []
    touched: dict[ExampleGroup, dict[str, Any]] = {}
    if not minutes:
        return rows, touched
    for members in minutes.values():
        members.sort(reverse=True)
        del members[_MOST_EXAMPLES:]
    for resolution, keep in EXAMPLES_PER_GROUP.items():
        groups = minutes
        if resolution != rollups.MINUTE:
            groups = {}
            for (service, summary, start_s), members in minutes.items():
                key = (service, summary, start_s // resolution * resolution)
                groups.setdefault(key, []).extend(members)
        for (service, summary, start_s), members in groups.items():
            if resolution != rollups.MINUTE:
                members.sort(reverse=True)
            touched[(resolution, service, summary, start_s)] = {
                "r": resolution,
                "service": service,
                "summary": summary,
                "start_s": start_s,
            }
            for duration, _, record, text in members[:keep]:
                rows.append(
                    {
                        "resolution": resolution,
                        "trace_id": record.trace_id,
                        "span_id": record.span_id,
                        "start_s": start_s,
                        "service": service,
                        "summary": summary,
                        "query_text": text,
                        "duration_ms": duration / 1e6,
                        "start_ns": record.start_ns,
                    }
                )
    return rows, touched


def backup_rows(records: Iterable[SpanRecord]) -> list[dict[str, Any]]:
    """A ``backup_runs`` row per backup run span in ``records``."""
    rows = []
    for record in records:
        if record.name != BACKUP_SPAN:
            continue
        attrs = record.attributes
        rows.append(
            {
                "trace_id": record.trace_id,
                "span_id": record.span_id,
                "service": record.service,
                "backup_id": _text(attrs.get(names.VRP_BACKUP_ID)),
                "trigger": _text(attrs.get(names.VRP_BACKUP_TRIGGER)),
                "status": _text(attrs.get(names.VRP_BACKUP_STATUS)),
                "start_ns": record.start_ns,
                "duration_ms": (record.end_ns - record.start_ns) / 1e6,
                "bytes": _integer(attrs.get(names.VRP_BACKUP_BYTES)),
                "stored_bytes": _integer(attrs.get(names.VRP_BACKUP_STORED_BYTES)),
                "files": _integer(attrs.get(names.VRP_BACKUP_FILES)),
                "verified": attrs.get(names.VRP_BACKUP_VERIFIED)
                if isinstance(attrs.get(names.VRP_BACKUP_VERIFIED), bool)
                else None,
                "repository_id": _short_text(attrs.get(names.VRP_BACKUP_REPOSITORY_ID), 255),
                "database": _text(attrs.get(names.VRP_BACKUP_DATABASE)),
            }
        )
    return rows


def n_plus_one_rows(
    records: Sequence[SpanRecord],
) -> tuple[list[dict[str, Any]], list[SpanRecord]]:
    """The N+1 findings (:mod:`dashboard.n_plus_one`) of the sessions in ``records``, and the
    sessions that need their stored trace to tell.

    Statement spans end before their session, so exporters send them in the same batch or
    an earlier one; when the records do not hold as many statements as the session says it
    ran (``vrp.db.session.statements``), the trace's stored spans must be read. A session
    that says it ran fewer statements than the threshold in all cannot have run one of them
    that often, and is not looked into (most sessions: this runs for every batch).
    """
    sessions = [
        r
        for r in records
        if r.name == SESSION_SPAN
        and not _fewer_than_threshold(r.attributes.get(names.VRP_DB_SESSION_STATEMENTS))
    ]
    if not sessions:
        return [], []
    children = n_plus_one_rules.children_of(records)
    findings = []
    deferred = []
    for session in sessions:
        statements = n_plus_one_rules.statements_below(session.span_id, children)
        declared = session.attributes.get(names.VRP_DB_SESSION_STATEMENTS)
        seen = sum(len(ids) for ids in statements.values())
        most = max((len(ids) for ids in statements.values()), default=0)
        if most < n_plus_one_rules.THRESHOLD and (
            not isinstance(declared, int)
            or (declared >= n_plus_one_rules.THRESHOLD and seen < declared)
        ):
            deferred.append(session)
            continue
        finding = n_plus_one_finding(session, statements)
        if finding is not None:
            findings.append(finding)
    return findings, deferred


def _fewer_than_threshold(declared: Any) -> bool:
    return isinstance(declared, int) and declared < n_plus_one_rules.THRESHOLD


def n_plus_one_finding(
    session: SpanRecord, statements: dict[str, list[str]]
) -> dict[str, Any] | None:
    """The ``n_plus_one`` row of ``session``, if one of its ``statements`` ran too often."""
    found = n_plus_one_rules.most_repeated(statements)
    if found is None:
        return None
    return {
        "trace_id": session.trace_id,
        "session_span_id": session.span_id,
        "query_text": found.query_text,
        "count": found.count,
        "service": session.service,
        "start_ns": session.start_ns,
    }


def latest_seen(seen: Iterable[tuple[str, str, int]]) -> LatestSeen:
    """The latest time of each (service, source) in ``seen``."""
    latest: LatestSeen = {}
    for service, source, time_ns in seen:
        key = (service, source)
        if time_ns > latest.get(key, 0):
            latest[key] = time_ns
    return latest


def latest_span_ends(records: Iterable[SpanRecord]) -> LatestSeen:
    """:func:`latest_seen` of spans, spelled out: it runs for every span."""
    latest: dict[str, int] = {}
    for record in records:
        end = record.end_ns
        if end > latest.get(record.service, 0):
            latest[record.service] = end
    return {(service, "spans"): end for service, end in latest.items()}


def _merged_latest(parts: Sequence[LatestSeen]) -> LatestSeen:
    """The latest times of several requests, ``parts[0]`` itself when there is one."""
    if len(parts) == 1:
        return parts[0]
    return latest_seen((s, src, t) for part in parts for (s, src), t in part.items())


def _merged_rollups(
    parts: Sequence[dict[rollups.RollupKey, rollups.RollupCell]],
) -> dict[rollups.RollupKey, rollups.RollupCell]:
    """The sum of several requests' rollups, ``parts[0]`` itself when there is one."""
    if len(parts) == 1:
        return parts[0]
    sums: dict[rollups.RollupKey, rollups.RollupCell] = {}
    for part in parts:
        for key, cell in part.items():
            total = sums.get(key)
            if total is None:
                total = sums[key] = rollups.RollupCell()
            total.merge(cell)
    return sums


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _short_text(value: Any, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
