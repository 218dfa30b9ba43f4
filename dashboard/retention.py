"""Retention of the telemetry store: by age and by row count, pruned in a background thread.

Raw spans and log records are kept ``span_retention_hours`` / ``log_retention_hours`` and at
most ``max_spans`` / ``max_logs`` rows (the oldest go first); the query examples and N+1
findings that point into them follow the spans. Minute rollups are kept two days (the API
reads them for ranges up to 6 h), hour and day rollups and backup runs
``rollup_retention_days``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa

from dashboard.rollups import MINUTE
from dashboard.schema import backup_runs, examples, logs, n_plus_one, rollup, spans, stream_state
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore

logger = logging.getLogger(__name__)
MINUTE_ROLLUP_SECONDS = 2 * 86400
NS = 1_000_000_000


@dataclass(frozen=True)
class PruneResult:
    spans: int = 0
    logs: int = 0
    rollups: int = 0


def _count_cutoff(
    conn: sa.Connection, column: sa.Column[int], table: sa.Table, keep: int
) -> int | None:
    """The time at or below which rows must go so that at most ``keep`` remain, or None."""
    return conn.execute(sa.select(column).order_by(column.desc()).limit(1).offset(keep)).scalar()


def prune(
    store: TelemetryStore, settings: DashboardSettings, now: float | None = None
) -> PruneResult:
    """Delete what retention no longer keeps; return how many spans, logs and rollups went."""
    now = time.time() if now is None else now
    span_cutoff = int((now - settings.span_retention_hours * 3600) * NS)
    log_cutoff = int((now - settings.log_retention_hours * 3600) * NS)
    rollup_cutoff = int(now - settings.rollup_retention_days * 86400)
    minute_cutoff = int(now - MINUTE_ROLLUP_SECONDS)

    def work(conn: sa.Connection) -> PruneResult:
        by_count = _count_cutoff(conn, spans.c.start_ns, spans, settings.max_spans)
        cutoff = span_cutoff if by_count is None else max(span_cutoff, by_count + 1)
        removed_spans = conn.execute(spans.delete().where(spans.c.start_ns < cutoff)).rowcount
        conn.execute(examples.delete().where(examples.c.start_ns < cutoff))
        conn.execute(n_plus_one.delete().where(n_plus_one.c.start_ns < cutoff))
        by_count = _count_cutoff(conn, logs.c.time_ns, logs, settings.max_logs)
        cutoff = log_cutoff if by_count is None else max(log_cutoff, by_count + 1)
        removed_logs = conn.execute(logs.delete().where(logs.c.time_ns < cutoff)).rowcount
        removed_rollups = conn.execute(
            rollup.delete().where(
                sa.or_(
                    sa.and_(rollup.c.resolution == MINUTE, rollup.c.start_s < minute_cutoff),
                    sa.and_(rollup.c.resolution > MINUTE, rollup.c.start_s < rollup_cutoff),
                )
            )
        ).rowcount
        conn.execute(backup_runs.delete().where(backup_runs.c.start_ns < rollup_cutoff * NS))
        # A stream silent for as long as minute rollups live is gone; a new point restarts it.
        conn.execute(stream_state.delete().where(stream_state.c.time_ns < minute_cutoff * NS))
        return PruneResult(removed_spans, removed_logs, removed_rollups)

    return store.transaction(work)


class Pruner:
    """Runs :func:`prune` every ``interval`` seconds until :meth:`stop`; backs off on errors."""

    def __init__(
        self, store: TelemetryStore, settings: DashboardSettings, interval: float = 60.0
    ) -> None:
        self._store = store
        self._settings = settings
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="dashboard-pruner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        failures = 0
        delay = self._interval
        while not self._stop.wait(delay):
            try:
                result = prune(self._store, self._settings)
            except sa.exc.SQLAlchemyError as exc:
                failures += 1
                delay = min(self._interval * 2**failures, 3600.0)
                logger.warning(
                    "pruning the telemetry store failed (%s); retrying in %.0f s",
                    type(exc).__name__,
                    delay,
                )
                continue
            if failures:
                logger.info("pruning the telemetry store works again after %d failures", failures)
            failures, delay = 0, self._interval
            if result.spans or result.logs or result.rollups:
                logger.info(
                    "pruned the telemetry store",
                    extra={"spans": result.spans, "logs": result.logs, "rollups": result.rollups},
                )
