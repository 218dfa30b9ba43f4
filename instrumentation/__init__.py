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

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from instrumentation.database import Database, PoolStatus, open_databases
    from instrumentation.errors import (
        CommitOutcomeUnknownError,
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
    from instrumentation.transactions import (
        is_transient,
        run_transaction,
        run_transaction_with_check,
        transaction,
        transactional,
    )

# Names are imported on first use (PEP 562), so that importing one light submodule (settings,
# errors, conventions) does not pull in SQLAlchemy, Flask and the OpenTelemetry SDK: command
# lines that serve nothing start faster.
_SOURCES = {
    "Database": "database",
    "PoolStatus": "database",
    "open_databases": "database",
    "CommitOutcomeUnknownError": "errors",
    "ConfigurationError": "errors",
    "InstrumentationError": "errors",
    "PoolExhaustedError": "errors",
    "TransactionRetryError": "errors",
    "instrument_app": "flask",
    "record_error": "flask",
    "uninstrument_app": "flask",
    "configure_logging": "logs",
    "shutdown_logging": "logs",
    "current_request_id": "requestid",
    "DatabaseSettings": "settings",
    "LoggingSettings": "settings",
    "TelemetrySettings": "settings",
    "Telemetry": "telemetry",
    "install_signal_handlers": "telemetry",
    "setup": "telemetry",
    "shutdown": "telemetry",
    "is_transient": "transactions",
    "run_transaction": "transactions",
    "run_transaction_with_check": "transactions",
    "transaction": "transactions",
    "transactional": "transactions",
}


def __getattr__(name: str) -> Any:
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'instrumentation' has no attribute {name!r}")
    value = getattr(import_module(f"instrumentation.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "CommitOutcomeUnknownError",
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
    "run_transaction_with_check",
    "setup",
    "shutdown",
    "shutdown_logging",
    "transaction",
    "transactional",
    "uninstrument_app",
]
