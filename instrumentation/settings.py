"""Typed settings of the instrumentation package.

They are plain frozen dataclasses: the host application validates its environment once at the
edge (the recorder does it with marshmallow in ``recorder.config``) and hands these in. Nothing in
this package reads ``VRP_*`` variables itself; the OpenTelemetry SDK reads the standard
``OTEL_*`` variables as the specification defines them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class DatabaseSettings:
    """How to connect, pool, time out, detect leaks and retry for one database."""

    url: str
    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 10.0
    pool_recycle: int = 1800
    pool_pre_ping: bool = True
    statement_timeout_ms: int | None = None
    sqlite_busy_timeout_ms: int = 5000
    leak_seconds: float = 30.0
    leak_stack: bool = False
    retry_attempts: int = 5
    retry_deadline: float = 10.0
    retry_initial_delay: float = 0.02
    retry_max_delay: float = 1.0
    pool_name: str | None = None


@dataclass(frozen=True)
class LoggingSettings:
    """Where structured logs go. ``log_dir=None`` writes no file."""

    level: str = "INFO"
    log_dir: Path | None = Path("var/log")
    file_name: str | None = None
    max_bytes: int = 10 * 1024 * 1024
    backup_count: int = 5
    stderr: bool = True
    stderr_format: Literal["auto", "json", "text"] = "auto"
    # Caller lookup (file, function, line of every record) costs a stack walk per record; off,
    # only DEBUG logging and records at WARNING and above get it (see instrumentation.logs).
    caller: bool = False
    # Records of the request path (the access record) are queued and written in a row every
    # flush_ms milliseconds; 0 writes each as it is made (see instrumentation.logbuffer).
    flush_ms: int = 200


@dataclass(frozen=True)
class TelemetrySettings:
    """Resource identity and exporter choice for traces, metrics and logs.

    ``otlp_endpoint=None`` falls back to the standard ``OTEL_EXPORTER_OTLP_*`` variables; with
    neither set, nothing is exported (spans are still created so that logs carry trace ids).
    """

    service_name: str
    service_version: str = "0.0.0"
    environment: str = "development"
    otlp_endpoint: str | None = None
    otlp_headers: dict[str, str] = field(default_factory=dict)
    console: bool = False
    disabled: bool = False
    max_queue_size: int = 2048
    max_export_batch_size: int = 512
    schedule_delay_ms: int = 1000
    export_timeout_ms: int = 5000
    metric_export_interval_ms: int = 10000
    # Serve the meter provider's metrics to a Prometheus server too (instrumentation.prometheus).
    prometheus: bool = False
