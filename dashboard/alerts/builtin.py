"""The rules that are on by default, read from the reads behind ``/api/``.

Each reads what the page that explains it reads, over the alert window
(``VRP_DASHBOARD_ALERT_WINDOW``, 5 minutes), so an alert and its page agree:

* ``BackupOverdue`` per repository: no successful backup for longer than the expected interval
  (``VRP_DASHBOARD_BACKUP_INTERVAL``) plus ``VRP_DASHBOARD_ALERT_BACKUP_GRACE`` (by default the
  interval again: twice the interval, when the Backups page says "overdue");
* ``OffsiteCopyOverdue`` per repository and remote: no successful offsite copy
  (``vrp.backup.remote.last_success``) for as long as ``BackupOverdue`` allows a local backup
  (repositories never copied offsite have no such alert);
* ``BackupFailed`` per repository: its newest run failed (resolved by a newer good run);
* ``HighErrorRate`` per service: the share of 5xx answers above ``VRP_DASHBOARD_ALERT_ERROR_RATE``
  over at least ``VRP_DASHBOARD_ALERT_MIN_REQUESTS`` requests;
* ``SlowRoute`` per service and route: p95 above ``VRP_DASHBOARD_ALERT_P95_MS``, over at least
  as many requests;
* ``PoolExhausted`` per service and pool: connection wait timeouts, or every connection in use;
* ``ReceiverRefusing`` per signal: the OTLP receiver answered an export with an error (401,
  413, 415, 429, 503...) or refused records inside an accepted one - telemetry was lost;
* ``ServiceSilent`` per service: it sent telemetry, then nothing for
  ``VRP_DASHBOARD_ALERT_SILENT_AFTER`` (services silent for longer than rollups are kept are
  forgotten).

``VRP_DASHBOARD_ALERT_DISABLED`` turns any of them off by name.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlencode

import sqlalchemy as sa

from dashboard import backup_status
from dashboard.alerts.rules import Context, Rule, Sample
from dashboard.otlp import SPAN_KIND_SERVER
from dashboard.reads.database import pool
from dashboard.reads.rollups import duration_series, operation_name, service_of, window_totals
from dashboard.reads.window import TimeRange
from dashboard.schema import backup_runs, services_seen
from dashboard.settings import AlertSettings
from instrumentation import conventions as names

NS = 1_000_000_000


def _window(context: Context) -> TimeRange:
    seconds = context.settings.alerts.window_seconds
    return TimeRange(
        datetime.fromtimestamp(context.now - seconds, UTC), datetime.fromtimestamp(context.now, UTC)
    )


def _repository_labels(repository_id: str | None, database: str | None) -> dict[str, str]:
    return {"repository": repository_id or "(unnamed)", "database": database or "unknown"}


def _backup_limit_and_status(context: Context) -> tuple[float, dict]:
    """How old a copy may get before it is overdue, and the Backups page's status."""
    expected = context.settings.backup_interval_seconds
    grace = context.settings.alerts.backup_grace_seconds
    now_ns = int(context.now * NS)
    status = backup_status.backups(
        context.store, now_ns, now_ns, expected, datetime.fromtimestamp(context.now, UTC)
    )
    return expected + (expected if grace is None else grace), status


def backup_overdue(context: Context) -> list[Sample]:
    limit, status = _backup_limit_and_status(context)
    samples = []
    for repository in status["repositories"]:
        age = repository["last_success_age_s"]
        if age is not None and age <= limit:
            continue
        labels = _repository_labels(repository["repository_id"], repository["database"])
        never = {"summary": f"No successful backup of {labels['database']} yet"}
        samples.append(Sample(labels, age, "/backups", never if age is None else {}))
    return samples


def offsite_copy_overdue(context: Context) -> list[Sample]:
    limit, status = _backup_limit_and_status(context)
    samples = []
    for repository in status["repositories"]:
        for copy in repository["remotes"]:
            if copy["last_success_age_s"] <= limit:
                continue
            labels = _repository_labels(repository["repository_id"], repository["database"])
            labels["remote"] = copy["remote"]
            samples.append(Sample(labels, copy["last_success_age_s"], "/backups"))
    return samples


def backup_failed(context: Context) -> list[Sample]:
    runs = backup_runs.c
    newest = (
        sa.select(runs.repository_id, sa.func.max(runs.start_ns).label("start_ns"))
        .group_by(runs.repository_id)
        .subquery()
    )
    query = sa.select(runs.repository_id, runs.database, runs.status, runs.trace_id).join(
        newest,
        sa.and_(
            runs.start_ns == newest.c.start_ns,
            runs.repository_id.is_not_distinct_from(newest.c.repository_id),
        ),
    )
    with context.store.read() as conn:
        rows = conn.execute(query).all()
    samples = {}
    for repository_id, database, status, trace_id in rows:
        if status != names.BACKUP_STATUS_FAILED:
            continue
        labels = _repository_labels(repository_id, database)
        url = "/traces?" + urlencode({"trace": trace_id})
        samples[(labels["repository"], labels["database"])] = Sample(labels, 1.0, url)
    return list(samples.values())


def high_error_rate(context: Context) -> list[Sample]:
    settings = context.settings.alerts
    window = _window(context)
    # The totals of /api/summary's services, without its series over time.
    with context.store.read() as conn:
        metric_series, span_series = duration_series(
            conn, window, names.HTTP_SERVER_REQUEST_DURATION, [SPAN_KIND_SERVER], source="total"
        )
        totals = window_totals(conn, span_series, window, service_of)
        totals.update(window_totals(conn, metric_series, window, service_of))
    samples = []
    for service, acc in sorted(totals.items()):
        if acc.count < settings.min_requests:
            continue
        rate = acc.errors / acc.count
        if rate > settings.error_rate:
            samples.append(Sample({"service": service}, rate, "/requests"))
    return samples


def slow_route(context: Context) -> list[Sample]:
    settings = context.settings.alerts
    window = _window(context)
    # /api/operations' server operations, without its other span kinds.
    with context.store.read() as conn:
        metric_series, span_series = duration_series(
            conn, window, names.HTTP_SERVER_REQUEST_DURATION, [SPAN_KIND_SERVER]
        )
        totals = window_totals(conn, span_series, window, lambda found: (found.service, found.name))
        totals.update(
            window_totals(
                conn,
                metric_series,
                window,
                lambda found: (found.service, operation_name(found.attributes)),
            )
        )
    samples = []
    for (service, operation), acc in sorted(totals.items()):
        if acc.count < settings.min_requests:
            continue
        # All three: with one rollup row the totals carry its stored p50/p95/p99, not buckets.
        _, p95, _ = acc.percentiles()
        if p95 is None or p95 <= settings.p95_ms:
            continue
        url = "/traces?" + urlencode({"operation": operation})
        samples.append(Sample({"service": service, "operation": operation}, p95, url))
    return samples


def pool_exhausted(context: Context) -> list[Sample]:
    body = pool(context.store, _window(context))
    samples = []
    for entry in body["pools"]:
        used, maximum, timeouts = entry["used"], entry["max"], entry["timeouts"]
        full = used is not None and maximum is not None and maximum > 0 and used >= maximum
        if not timeouts and not full:
            continue
        what = f"{timeouts} connection wait timeouts" if timeouts else "every connection in use"
        samples.append(
            Sample(
                {"service": entry["service"], "pool": entry["pool"]},
                float(timeouts),
                "/transactions",
                {"cause": what},
            )
        )
    return samples


def receiver_refusing(context: Context) -> list[Sample]:
    return [
        Sample({"signal": signal}, float(count), "/logs")
        for signal, count in sorted(context.receiver_refusals.items())
        if count > 0
    ]


def service_silent(context: Context) -> list[Sample]:
    settings = context.settings
    silent_ns = int((context.now - settings.alerts.silent_after_seconds) * NS)
    forgotten_ns = int((context.now - settings.rollup_retention_days * 86400) * NS)
    last_seen = sa.func.max(services_seen.c.last_seen_ns)
    query = (
        sa.select(services_seen.c.service, last_seen)
        .group_by(services_seen.c.service)
        .having(last_seen < silent_ns, last_seen >= forgotten_ns)
    )
    with context.store.read() as conn:
        rows = conn.execute(query).all()
    return [
        Sample(
            {"service": service},
            max(context.now - seen / NS, 0.0),
            "/?" + urlencode({"service": service}),
        )
        for service, seen in rows
    ]


_BUILTIN: tuple[tuple[str, str, str, float, Callable[[Context], list[Sample]], str], ...] = (
    (
        "BackupOverdue",
        "critical",
        "No successful backup of {{ $labels.database }} (repository {{ $labels.repository }}) "
        "for {{ $value }} s",
        0.0,
        backup_overdue,
        "age of the last good backup > backup interval + grace, per repository",
    ),
    (
        "OffsiteCopyOverdue",
        "critical",
        "No offsite copy of {{ $labels.database }} to {{ $labels.remote }} for {{ $value }} s",
        0.0,
        offsite_copy_overdue,
        "age of the newest copy to a remote > backup interval + grace, per repository and remote",
    ),
    (
        "BackupFailed",
        "critical",
        "The newest backup run of {{ $labels.database }} failed",
        0.0,
        backup_failed,
        "the newest backup.run of a repository has status failed",
    ),
    (
        "HighErrorRate",
        "critical",
        "{{ $labels.service }} answers {{ $value }} of its requests with a 5xx",
        120.0,
        high_error_rate,
        "share of 5xx answers over the alert window > threshold, per service",
    ),
    (
        "SlowRoute",
        "warning",
        "p95 of {{ $labels.operation }} is {{ $value }} ms",
        600.0,
        slow_route,
        "p95 latency over the alert window > threshold, per service and route",
    ),
    (
        "PoolExhausted",
        "critical",
        "Connection pool {{ $labels.pool }} of {{ $labels.service }} is exhausted",
        0.0,
        pool_exhausted,
        "connection wait timeouts, or used >= max, over the alert window, per pool",
    ),
    (
        "ReceiverRefusing",
        "warning",
        "The OTLP receiver refused {{ $value }} {{ $labels.signal }} exports or records",
        0.0,
        receiver_refusing,
        "OTLP exports answered with an error or records refused, over the alert window",
    ),
    (
        "ServiceSilent",
        "warning",
        "{{ $labels.service }} has sent no telemetry for {{ $value }} s",
        0.0,
        service_silent,
        "a service that sent telemetry sent none for the silent-after time",
    ),
)
BUILTIN_NAMES: tuple[str, ...] = tuple(entry[0] for entry in _BUILTIN)


def builtin_rules(settings: AlertSettings) -> tuple[Rule, ...]:
    """The built-in rules not turned off by ``VRP_DASHBOARD_ALERT_DISABLED``."""
    return tuple(
        Rule(
            name=name,
            description=description,
            severity=severity,
            for_seconds=for_seconds,
            active=active,
            annotations={"summary": summary},
            builtin=True,
            expression=description,
        )
        for name, severity, summary, for_seconds, active, description in _BUILTIN
        if name not in settings.disabled
    )
