"""Observability and safe database work for any Flask + SQLAlchemy 2.x application.

* :func:`setup` / :func:`shutdown`: OpenTelemetry tracer, meter and logger providers sharing
  one resource, OTLP/HTTP export, flush on shutdown and SIGTERM.
* :func:`configure_logging`: JSON lines to a rotated file and stderr, with trace ids, request
  ids and redaction of secrets.
* :class:`Database`: pooled connections, context-managed sessions, statement spans and metrics,
  leak detection; :func:`transactional` and ``Database.run_transaction`` for retried units.
* :func:`instrument_app`: server spans, request ids, access logs and 503 on pool exhaustion.

The package knows nothing of the application it serves.
"""

from __future__ import annotations

from instrumentation.database import Database, PoolStatus, open_databases
from instrumentation.errors import (
    ConfigurationError,
    InstrumentationError,
    PoolExhaustedError,
    TransactionRetryError,
)
from instrumentation.flask import instrument_app, record_error, uninstrument_app
from instrumentation.logs import configure_logging, shutdown_logging
from instrumentation.requestid import current_request_id
from instrumentation.settings import DatabaseSettings, LoggingSettings, TelemetrySettings
from instrumentation.telemetry import Telemetry, install_signal_handlers, setup, shutdown
from instrumentation.transactions import is_transient, run_transaction, transaction, transactional

__all__ = [
    "ConfigurationError",
    "Database",
    "DatabaseSettings",
    "InstrumentationError",
    "LoggingSettings",
    "PoolExhaustedError",
    "PoolStatus",
    "Telemetry",
    "TelemetrySettings",
    "TransactionRetryError",
    "configure_logging",
    "current_request_id",
    "install_signal_handlers",
    "instrument_app",
    "is_transient",
    "open_databases",
    "record_error",
    "run_transaction",
    "setup",
    "shutdown",
    "shutdown_logging",
    "transaction",
    "transactional",
    "uninstrument_app",
]
