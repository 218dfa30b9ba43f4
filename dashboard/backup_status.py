"""The reads behind ``/api/backups``: backup runs and, per repository, the last good backup.

Runs carry the id of their backup repository (``vrp.backup.repository.id``) and the database
they backed up (``vrp.backup.database``), so that a dashboard receiving the telemetry of several
stacks never mixes them: the status (last success, its age against the expected interval,
the next scheduled run) is computed per repository.

* **Last success** of a repository: the *largest* value its ``vrp.backup.last_success`` gauge
  ever reported, not the one received last. A long-running scheduler re-exports its gauge
  with its own last success at every export interval, so "received last" would let it pull
  the banner back behind a newer manual run; time only goes forward, so the max is the truth.
  Without the gauge, the end of the newest successful ``backup.run`` span stands in.
* **Next run**: the value of ``vrp.backup.next_run`` received last (the scheduler sets it to 0
  when it stops: then there is none).
* **Offsite copy**: per remote (``vrp.backup.remote``, its URL without credentials), the largest
  ``vrp.backup.remote.last_success`` its repository reported; the newest of them is the age of
  the newest offsite copy, shown beside the local one.
* Telemetry of older versions carries no repository id: it is grouped as one repository whose
  id is ``null``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from dashboard.reads.window import iso, iso_ns
from dashboard.rollups import DAY
from dashboard.schema import backup_runs, rollup, series
from dashboard.store import TelemetryStore
from instrumentation import conventions as names

# Ordered from good to bad: without a repository chosen, the page's headline is the worst.
STATES = ("ok", "late", "overdue", "none")


@dataclass
class _Repository:
    id: str | None
    database: str | None = None
    last_success: float | None = None
    last_run_success: float | None = None
    next_run: float | None = None
    next_run_reported: int = -1
    runs: int = 0
    offsite: dict[str, float] = field(default_factory=dict)


def _state(age: float | None, expected: float) -> str:
    if age is None:
        return "none"
    if age < expected:
        return "ok"
    if age < 2 * expected:
        return "late"
    return "overdue"


def _repositories(conn: sa.Connection) -> dict[str | None, _Repository]:
    """Every repository that sent backup telemetry, with its last success and next run."""
    found: dict[str | None, _Repository] = {}

    def repo(repository_id: str | None) -> _Repository:
        return found.setdefault(repository_id, _Repository(repository_id))

    counted = conn.execute(
        sa.select(
            backup_runs.c.repository_id,
            sa.func.max(backup_runs.c.database),
            sa.func.count(),
        ).group_by(backup_runs.c.repository_id)
    ).all()
    for repository_id, database, count in counted:
        entry = repo(repository_id)
        entry.database, entry.runs = database, count
    successes = conn.execute(
        sa.select(
            backup_runs.c.repository_id,
            sa.func.max(backup_runs.c.start_ns + backup_runs.c.duration_ms * 1e6),
        )
        .where(backup_runs.c.status == names.BACKUP_STATUS_SUCCESS)
        .group_by(backup_runs.c.repository_id)
    ).all()
    for repository_id, end_ns in successes:
        repo(repository_id).last_run_success = float(end_ns) / 1e9
    gauges = conn.execute(
        sa.select(series.c.id, series.c.name, series.c.attributes).where(
            series.c.source == "metric",
            series.c.name.in_(
                [
                    names.VRP_BACKUP_LAST_SUCCESS,
                    names.VRP_BACKUP_NEXT_RUN,
                    names.VRP_BACKUP_REMOTE_LAST_SUCCESS,
                ]
            ),
        )
    ).all()
    owner: dict[int, tuple[str, _Repository]] = {}
    remote_of: dict[int, str] = {}
    for series_id, name, attributes in gauges:
        attrs = orjson.loads(attributes)
        repository_id = attrs.get(names.VRP_BACKUP_REPOSITORY_ID)
        entry = repo(None if repository_id is None else str(repository_id))
        if entry.database is None and attrs.get(names.VRP_BACKUP_DATABASE) is not None:
            entry.database = str(attrs[names.VRP_BACKUP_DATABASE])
        owner[series_id] = (name, entry)
        if name == names.VRP_BACKUP_REMOTE_LAST_SUCCESS:
            remote_of[series_id] = str(attrs.get(names.VRP_BACKUP_REMOTE, ""))
    if not owner:
        return found
    rows = conn.execute(
        sa.select(rollup.c.series_id, rollup.c.max, rollup.c.last_value, rollup.c.last_time).where(
            rollup.c.series_id.in_(list(owner)), rollup.c.resolution == DAY
        )
    ).all()
    for series_id, maximum, last_value, last_time in rows:
        name, entry = owner[series_id]
        if name == names.VRP_BACKUP_LAST_SUCCESS:
            if maximum is not None and math.isfinite(maximum) and maximum > 0:
                entry.last_success = max(entry.last_success or 0.0, float(maximum))
        elif name == names.VRP_BACKUP_REMOTE_LAST_SUCCESS:
            if maximum is not None and math.isfinite(maximum) and maximum > 0:
                remote = remote_of[series_id]
                entry.offsite[remote] = max(entry.offsite.get(remote, 0.0), float(maximum))
        elif last_time is not None and last_time > entry.next_run_reported:
            entry.next_run_reported = last_time
            usable = last_value is not None and math.isfinite(last_value) and last_value > 0
            entry.next_run = float(last_value) if usable else None
    return found


def _summary(entry: _Repository, expected: float, now: datetime) -> dict[str, Any]:
    last_success = entry.last_success if entry.last_success is not None else entry.last_run_success
    age = None if last_success is None else max(now.timestamp() - last_success, 0.0)
    offsite = max(entry.offsite.values(), default=None)
    return {
        "repository_id": entry.id,
        "database": entry.database,
        "last_success": None if last_success is None else iso(last_success),
        "last_success_age_s": age,
        "state": _state(age, expected),
        "next_run": None if entry.next_run is None else iso(entry.next_run),
        "runs": entry.runs,
        "offsite_last_success": None if offsite is None else iso(offsite),
        "offsite_last_success_age_s": _age(offsite, now),
        "remotes": [
            {"remote": remote, "last_success": iso(at), "last_success_age_s": _age(at, now)}
            for remote, at in sorted(entry.offsite.items())
        ],
    }


def _age(at: float | None, now: datetime) -> float | None:
    return None if at is None else max(now.timestamp() - at, 0.0)


def backups(
    store: TelemetryStore,
    since_ns: int,
    until_ns: int,
    expected_interval_s: float,
    now: datetime,
    repository: str | None = None,
    service: str | None = None,
) -> dict[str, Any]:
    """Runs between ``since_ns`` and ``until_ns`` (of ``repository`` and ``service`` when given,
    newest first),
    every repository's status, and the headline: the chosen repository's status, or without
    one the status of the repository that needs attention most (worst state, oldest success)."""
    with store.read() as conn:
        query = (
            sa.select(backup_runs)
            .where(backup_runs.c.start_ns >= since_ns, backup_runs.c.start_ns <= until_ns)
            .order_by(backup_runs.c.start_ns.desc())
            .limit(1000)
        )
        if repository is not None:
            query = query.where(backup_runs.c.repository_id == repository)
        if service is not None:
            query = query.where(backup_runs.c.service == service)
        runs = conn.execute(query).all()
        found = _repositories(conn)
    summaries = sorted(
        (_summary(entry, expected_interval_s, now) for entry in found.values()),
        key=lambda s: (s["repository_id"] is None, s["database"] or "", s["repository_id"] or ""),
    )
    if repository is not None:
        chosen = [s for s in summaries if s["repository_id"] == repository]
    else:
        chosen = sorted(
            summaries,
            key=lambda s: (-STATES.index(s["state"]), -(s["last_success_age_s"] or math.inf)),
        )
    head = chosen[0] if chosen else None
    has_telemetry = head is not None
    state = "none" if head is None else head["state"]
    if head is not None and head["last_success"] is None:
        state = "overdue"  # telemetry, but never a success
    return {
        "runs": [
            {
                "backup_id": r.backup_id,
                "repository_id": r.repository_id,
                "database": r.database,
                "trigger": r.trigger,
                "status": r.status,
                "start": iso_ns(r.start_ns),
                "duration_ms": r.duration_ms,
                "bytes": r.bytes,
                "stored_bytes": r.stored_bytes,
                "files": r.files,
                "verified": r.verified,
                "trace_id": r.trace_id,
            }
            for r in runs
        ],
        "repositories": summaries,
        "repository": repository,
        "last_success": None if head is None else head["last_success"],
        "last_success_age_s": None if head is None else head["last_success_age_s"],
        "next_run": None if head is None else head["next_run"],
        "offsite_last_success": None if head is None else head["offsite_last_success"],
        "offsite_last_success_age_s": None if head is None else head["offsite_last_success_age_s"],
        "expected_interval_s": expected_interval_s,
        "state": state,
        "has_telemetry": has_telemetry,
    }
