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
    # PostgreSQL's application_name for the pool's connections (followed by the pool name when
    # there is one); None sets none. A URL's own ?application_name= wins.
    application_name: str | None = None


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
    # Turn off the standard library's per-record caller, thread and process look-ups
    # (``logging._srcfile``, ``logThreads``, ...) process-wide, for speed. Opt-in: they are
    # every other handler's too (see instrumentation.logs).
    lean: bool = False


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


# waitress's connection_limit counts its own listening sockets and wake-up pipe too; 900 keeps
# every descriptor below the 1,024 that waitress's select() loop can watch.
DEFAULT_CONNECTION_LIMIT = 100
MIN_CONNECTION_LIMIT = 10
MAX_CONNECTION_LIMIT = 900
# Seconds a connection may stay silent with no request being answered (waitress: 120).
DEFAULT_CHANNEL_TIMEOUT = 30


@dataclass(frozen=True)
class ServerLimits:
    """What one HTTP server accepts (:mod:`instrumentation.serving` turns it into waitress's
    adjustments): the largest request body, open connections, seconds of silence."""

    max_body_bytes: int
    connection_limit: int = DEFAULT_CONNECTION_LIMIT
    channel_timeout: int = DEFAULT_CHANNEL_TIMEOUT

    def waitress_options(self) -> dict[str, int]:
        return {
            # waitress refuses a declared length >= this, so exactly max_body_bytes passes.
            "max_request_body_size": self.max_body_bytes + 1,
            "connection_limit": self.connection_limit,
            "channel_timeout": self.channel_timeout,
            # How often idle connections are looked for: often enough that one silent for
            # channel_timeout is closed within half as long again.
            "cleanup_interval": max(1, min(30, self.channel_timeout // 2)),
        }
