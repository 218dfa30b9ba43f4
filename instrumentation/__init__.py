"""Observability and safe database work for any Flask + SQLAlchemy 2.x application.

Adoption is two lines (see docs/adopting.md)::

    instrumentation.init(app, service_name="shop")
    instrumentation.instrument_engine(engine)

* :func:`init`: telemetry, logging and signal handlers in the right order; returns a handle
  whose ``shutdown()`` is idempotent.
* :func:`instrument_engine` / :func:`uninstrument_engine`: statement spans and metrics, pool
  metrics and leak detection on an engine the application created, any dialect.
* :func:`setup` / :func:`shutdown`: OpenTelemetry tracer, meter and logger providers sharing
  one resource, OTLP/HTTP export, flush on shutdown and SIGTERM.
* :func:`configure_logging`: JSON lines to a rotated file and stderr, with trace ids, request
  ids and redaction of secrets.
* :class:`Database`: pooled connections, context-managed sessions, statement spans and metrics,
  leak detection; :func:`transactional` and ``Database.run_transaction`` for retried units.
* :func:`instrument_app`: server spans, request ids, access logs; it changes no response.
  :func:`register_error_responses` opts in to JSON 500/503 bodies.
* :func:`run_transaction`, :func:`transactional`: retried units of work on a ``Database`` or
  the application's own ``sessionmaker``.
* :class:`Steps`: cheap INTERNAL spans for the steps of a request (parsing, probing, storage).
* A failure inside telemetry never reaches the application: it is counted
  (:func:`telemetry_stats`) and logged at most once a minute per place.

The package knows nothing of the application it serves. Its public API is these root names and
the submodules ``conventions`` (telemetry names), ``settings``, ``errors``, ``urls``, ``paths``,
``envsettings``, ``serving`` (a bounded WSGI server), ``prometheus`` and ``testing``; every
other submodule is internal. The recorder keeps to it (an import-linter contract in
``pyproject.toml``).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from instrumentation.bootstrap import Instrumentation, init
    from instrumentation.database import Database, PoolStatus, open_databases
    from instrumentation.engines import (
        EngineInstrumentation,
        instrument_engine,
        uninstrument_engine,
    )
    from instrumentation.errors import (
        CommitOutcomeUnknownError,
        ConfigurationError,
        InstrumentationError,
        PoolExhaustedError,
        TransactionRetryError,
    )
    from instrumentation.flask import (
        instrument_app,
        record_error,
        register_error_responses,
        uninstrument_app,
    )
    from instrumentation.logs import configure_logging, shutdown_logging
    from instrumentation.requestid import current_request_id
    from instrumentation.settings import DatabaseSettings, LoggingSettings, TelemetrySettings
    from instrumentation.spans import Steps
    from instrumentation.telemetry import (
        Telemetry,
        TelemetryStats,
        install_signal_handlers,
        setup,
        shutdown,
        telemetry_stats,
    )
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
    "Instrumentation": "bootstrap",
    "init": "bootstrap",
    "EngineInstrumentation": "engines",
    "instrument_engine": "engines",
    "uninstrument_engine": "engines",
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
    "register_error_responses": "flask",
    "uninstrument_app": "flask",
    "configure_logging": "logs",
    "shutdown_logging": "logs",
    "current_request_id": "requestid",
    "DatabaseSettings": "settings",
    "LoggingSettings": "settings",
    "TelemetrySettings": "settings",
    "Steps": "spans",
    "Telemetry": "telemetry",
    "TelemetryStats": "telemetry",
    "telemetry_stats": "telemetry",
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
    "EngineInstrumentation",
    "Instrumentation",
    "InstrumentationError",
    "LoggingSettings",
    "PoolExhaustedError",
    "PoolStatus",
    "Steps",
    "Telemetry",
    "TelemetrySettings",
    "TelemetryStats",
    "TransactionRetryError",
    "configure_logging",
    "current_request_id",
    "init",
    "install_signal_handlers",
    "instrument_app",
    "instrument_engine",
    "is_transient",
    "open_databases",
    "record_error",
    "register_error_responses",
    "run_transaction",
    "run_transaction_with_check",
    "setup",
    "shutdown",
    "shutdown_logging",
    "telemetry_stats",
    "transaction",
    "transactional",
    "uninstrument_app",
    "uninstrument_engine",
]
