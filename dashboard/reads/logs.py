"""Log records, a page at a time, and their volume per level over time (``/api/logs``)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
import sqlalchemy as sa

from dashboard.levels import SEVERITIES, level_of
from dashboard.reads.window import TimeRange, iso, iso_ns
from dashboard.schema import logs
from dashboard.store import TelemetryStore


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def log_records(
    store: TelemetryStore,
    window: TimeRange,
    *,
    level: str | None = None,
    trace_id: str | None = None,
    text: str | None = None,
    limit: int = 200,
    offset: int = 0,
) -> dict[str, Any]:
    """One page of records (``limit`` from ``offset``, newest first), how many match in all,
    and their count per level and time bucket (the volume histogram), all with the filters."""
    conditions = [logs.c.time_ns >= window.since_ns, logs.c.time_ns <= window.until_ns]
    if window.service is not None:
        conditions.append(logs.c.service == window.service)
    if level is not None:
        conditions.append(logs.c.severity_number >= SEVERITIES[level])
    if trace_id is not None:
        conditions.append(logs.c.trace_id == trace_id)
    if text:
        conditions.append(logs.c.body.like(_like_pattern(text), escape="\\"))
    page = (
        sa.select(logs)
        .where(*conditions)
        .order_by(logs.c.time_ns.desc(), logs.c.id.desc())
        .limit(limit + 1)  # one more than asked tells whether more follow this page
        .offset(offset)
    )
    step = window.resolution
    bucket = (logs.c.time_ns // (step * 1_000_000_000)).label("bucket")
    volume = (
        sa.select(bucket, logs.c.severity_number, logs.c.severity_text, sa.func.count())
        .where(*conditions)
        .group_by(bucket, logs.c.severity_number, logs.c.severity_text)
    )
    with store.read() as conn:
        found = conn.execute(page).all()
        counted = conn.execute(volume).all()
    histogram: dict[tuple[int, str], int] = defaultdict(int)
    for t, number, severity_text, count in counted:
        histogram[(int(t) * step, level_of(number, severity_text))] += count
    return {
        "offset": offset,
        "limit": limit,
        "total": sum(histogram.values()),
        "truncated": len(found) > limit,
        "logs": [
            {
                "time": iso_ns(r.time_ns),
                "service": r.service,
                "level": level_of(r.severity_number, r.severity_text),
                "severity_number": r.severity_number,
                "severity_text": r.severity_text,
                "message": r.body,
                "trace_id": r.trace_id,
                "span_id": r.span_id,
                "attributes": orjson.loads(r.attributes),
            }
            for r in found[:limit]
        ],
        "histogram": [
            {"t": iso(t), "level": name, "count": count}
            for (t, name), count in sorted(histogram.items())
        ],
    }
