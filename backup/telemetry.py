"""Spans, metrics and log fields of backup runs and restores, as DESIGN.md names them.

``backup.run`` (INTERNAL) wraps one run and carries ``vrp.backup.id``, ``vrp.backup.trigger``,
``vrp.backup.status``, ``vrp.backup.bytes``, ``vrp.backup.stored_bytes``, ``vrp.backup.files``
and ``vrp.backup.verified``; each phase (``snapshot``, ``blobs``, ``manifest``, ``verify``,
``prune``) is a child span ``backup.<phase>``. Names come from
:mod:`instrumentation.conventions`. ``backup.restore`` wraps a restore. The metrics
``vrp.backup.last_success`` (gauge, unix time) and ``vrp.backup.duration`` (histogram, by
``vrp.backup.status``) are recorded for every run; the scheduler sets ``vrp.backup.next_run``
(gauge, unix time, 0 once it stopped). Runs, restores and these metrics carry the run's
:func:`identity`: the repository id and the database without credentials, so that one dashboard
tells the backups of several stacks apart. Providers are the global ones unless a test
hands its own in; the host process sets them up (service name ``vrp-scheduler`` for scheduled
runs, ``vrp-cli`` for a manual one).

Telemetry never breaks a backup: the SDK swallows its own export errors, and nothing here
raises on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from instrumentation import conventions
from instrumentation.urls import shown_url, without_credentials

SCOPE: Final = "backup"
SPAN_RUN: Final = conventions.BACKUP_RUN_SPAN
SPAN_RESTORE: Final = conventions.BACKUP_RESTORE_SPAN
# Phase spans are ours, below backup.run: backup.snapshot, backup.blobs, ..., backup.prune.
PHASE_PREFIX: Final = conventions.BACKUP_PHASE_SPAN_PREFIX
METRIC_LAST_SUCCESS: Final = conventions.VRP_BACKUP_LAST_SUCCESS
METRIC_DURATION: Final = conventions.VRP_BACKUP_DURATION
METRIC_NEXT_RUN: Final = conventions.VRP_BACKUP_NEXT_RUN
METRIC_REMOTE_LAST_SUCCESS: Final = conventions.VRP_BACKUP_REMOTE_LAST_SUCCESS
SPAN_COPY: Final = conventions.BACKUP_COPY_SPAN
ATTR_REMOTE: Final = conventions.VRP_BACKUP_REMOTE
ATTR_REPOSITORY_ID: Final = conventions.VRP_BACKUP_REPOSITORY_ID
ATTR_DATABASE: Final = conventions.VRP_BACKUP_DATABASE
ATTR_ID: Final = conventions.VRP_BACKUP_ID
ATTR_TRIGGER: Final = conventions.VRP_BACKUP_TRIGGER
ATTR_STATUS: Final = conventions.VRP_BACKUP_STATUS
ATTR_BYTES: Final = conventions.VRP_BACKUP_BYTES
ATTR_STORED_BYTES: Final = conventions.VRP_BACKUP_STORED_BYTES
ATTR_FILES: Final = conventions.VRP_BACKUP_FILES
ATTR_VERIFIED: Final = conventions.VRP_BACKUP_VERIFIED
ATTR_PHASE: Final = conventions.VRP_BACKUP_PHASE
ATTR_ERROR_TYPE: Final = conventions.ERROR_TYPE
STATUS_SUCCESS: Final = conventions.BACKUP_STATUS_SUCCESS
STATUS_FAILED: Final = conventions.BACKUP_STATUS_FAILED
# What a run backed up: repository id and database (see identity()); empty when unknown.
Identity = Mapping[str, str]
NO_IDENTITY: Identity = {}
# Backups take seconds to hours: explicit buckets for when the exponential default is off.
DURATION_BUCKETS: Final = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200)


@dataclass
class BackupTelemetry:
    """Tracer and instruments of the backup package; providers default to the global ones."""

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    tracer: trace.Tracer = field(init=False)
    last_success: Any = field(init=False)
    duration: Any = field(init=False)
    next_run: Any = field(init=False)
    remote_last_success: Any = field(init=False)
    # How many ``backup.run`` spans were started: tells a caller whether a failed run had one.
    runs_started: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.tracer = trace.get_tracer(SCOPE, tracer_provider=self.tracer_provider)
        meter = metrics.get_meter(SCOPE, meter_provider=self.meter_provider)
        self.last_success = meter.create_gauge(
            METRIC_LAST_SUCCESS, unit="s", description="Unix time of the last successful backup"
        )
        self.duration = meter.create_histogram(
            METRIC_DURATION,
            unit="s",
            description="Duration of backup runs",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.next_run = meter.create_gauge(
            METRIC_NEXT_RUN, unit="s", description="Unix time of the next scheduled backup"
        )
        self.remote_last_success = meter.create_gauge(
            METRIC_REMOTE_LAST_SUCCESS,
            unit="s",
            description="Unix time of the last successful copy to the remote",
        )

    @contextmanager
    def run_span(
        self, backup_id: str, trigger: str, identity: Identity = NO_IDENTITY
    ) -> Iterator[Span]:
        """The ``backup.run`` span, current for the body; the caller sets the outcome."""
        attributes = {**identity, ATTR_ID: backup_id, ATTR_TRIGGER: trigger}
        self.runs_started += 1
        with self.tracer.start_as_current_span(
            SPAN_RUN,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            yield span

    @contextmanager
    def restore_span(self, backup_id: str, identity: Identity = NO_IDENTITY) -> Iterator[Span]:
        with self.tracer.start_as_current_span(
            SPAN_RESTORE, kind=SpanKind.INTERNAL, attributes={**identity, ATTR_ID: backup_id}
        ) as span:
            try:
                yield span
            except BaseException as exc:
                failed(span, exc)
                raise
            span.set_attribute(ATTR_STATUS, STATUS_SUCCESS)

    @contextmanager
    def copy_span(self, remote_url: str, identity: Identity = NO_IDENTITY) -> Iterator[Span]:
        """The ``backup.copy`` span, naming the remote without credentials; failed on error."""
        with self.tracer.start_as_current_span(
            SPAN_COPY,
            kind=SpanKind.INTERNAL,
            attributes={**identity, ATTR_REMOTE: shown_url(remote_url)},
        ) as span:
            try:
                yield span
            except BaseException as exc:
                failed(span, exc)
                raise

    def copy_succeeded(self, span: Span, result: Any, attempts: int) -> None:
        """The outcome of a copy (a :class:`backup.remote.CopyResult`) on its span."""
        span.set_attributes(
            {
                ATTR_STATUS: STATUS_SUCCESS,
                conventions.VRP_BACKUP_COPY_SNAPSHOTS: len(result.snapshots_copied),
                conventions.VRP_BACKUP_COPY_OBJECTS_SENT: result.objects_sent,
                conventions.VRP_BACKUP_COPY_OBJECTS_SKIPPED: result.objects_skipped,
                conventions.VRP_BACKUP_COPY_BYTES_SENT: result.bytes_sent,
                conventions.VRP_BACKUP_COPY_ATTEMPTS: attempts,
            }
        )

    def record_copy_success(
        self, remote_url: str, at: float, identity: Identity = NO_IDENTITY
    ) -> None:
        """``vrp.backup.remote.last_success`` for one remote (by its URL without credentials)."""
        self.remote_last_success.set(at, {**identity, ATTR_REMOTE: shown_url(remote_url)})

    @contextmanager
    def phase(self, name: str) -> Iterator[Span]:
        """A child span ``backup.<name>`` of the current run (or a root span outside one)."""
        with self.tracer.start_as_current_span(
            PHASE_PREFIX + name, kind=SpanKind.INTERNAL, attributes={ATTR_PHASE: name}
        ) as span:
            yield span

    def run_failed_to_start(
        self, trigger: str, exc: BaseException, identity: Identity = NO_IDENTITY
    ) -> None:
        """A failed ``backup.run`` span (no backup id) for a run that failed before its span
        could start (the backup folder or its lock unusable), so that it is seen like others."""
        with self.tracer.start_as_current_span(
            SPAN_RUN, kind=SpanKind.INTERNAL, attributes={**identity, ATTR_TRIGGER: trigger}
        ) as span:
            failed(span, exc)
        self.record_run(STATUS_FAILED, 0.0, None, identity)

    def record_run(
        self,
        status: str,
        seconds: float,
        finished_at: float | None,
        identity: Identity = NO_IDENTITY,
    ) -> None:
        """One run's duration, and the time of the success when it was one."""
        self.duration.record(seconds, {**identity, ATTR_STATUS: status})
        if status == STATUS_SUCCESS and finished_at is not None:
            self.last_success.set(finished_at, dict(identity))

    def record_next_run(self, at: float | None, identity: Identity = NO_IDENTITY) -> None:
        """When the scheduler runs next (unix time), or 0 when it runs no more."""
        self.next_run.set(at or 0.0, dict(identity))


def identity(repository_id: str | None, database_url: str) -> dict[str, str]:
    """The attributes naming what a run backs up: its repository and its database (the URL
    without user, password or query, which may hold secrets)."""
    attributes = {ATTR_DATABASE: without_credentials(database_url)}
    if repository_id:
        attributes[ATTR_REPOSITORY_ID] = repository_id
    return attributes


def failed(span: Span, exc: BaseException) -> None:
    """Mark a span as a failed run or restore."""
    span.set_attribute(ATTR_STATUS, STATUS_FAILED)
    span.set_attribute(ATTR_ERROR_TYPE, type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, str(exc)))


_default: BackupTelemetry | None = None


def default() -> BackupTelemetry:
    """The package's telemetry on the global providers (built on first use, after setup)."""
    global _default
    if _default is None:
        _default = BackupTelemetry()
    return _default


@contextmanager
def phase(name: str) -> Iterator[Span]:
    """``with telemetry.phase("prune") as span:`` for phases run outside :mod:`backup.run`."""
    with default().phase(name) as span:
        yield span
