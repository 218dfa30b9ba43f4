"""Telemetry on an engine the application created: statements, pool health and leaks.

``instrument_engine(engine)`` is the whole adoption step for the database side of an app that
builds its own engine (plain ``create_engine``, Flask-SQLAlchemy's ``db.engine``, any dialect):

* a CLIENT span and a ``db.client.operation.duration`` point per statement
  (:mod:`instrumentation.statements`);
* the pool metrics and leak detection of :mod:`instrumentation.pool`, from the pool's events and
  a wrap of the pool instance's ``connect`` (no pool class of ours is needed);
* ``db.system.name`` by OpenTelemetry's names (``postgresql``, ``mysql``, ``mariadb`` - told
  apart from MySQL once the first connection shows the server - ``sqlite``,
  ``microsoft.sql_server``, ``oracle.db``, else the dialect's name), ``db.namespace`` and
  ``server.address``/``server.port`` from the engine's URL.

``uninstrument_engine(engine)`` takes all of it off again; the engine keeps working.
Instrumenting an engine twice returns the first instrumentation. With the global providers
(the default) an engine instrumented before :func:`instrumentation.telemetry.setup` moves onto
the providers that set-up installs (see :mod:`instrumentation.providers`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from opentelemetry import metrics, trace
from sqlalchemy import event

from instrumentation import conventions, providers
from instrumentation.failures import telemetry_failed
from instrumentation.pool import PoolTelemetry, max_connections
from instrumentation.statements import StatementTelemetry
from instrumentation.urls import shown_url

__all__ = [
    "INSTRUMENTATION_SCOPE",
    "EngineInstrumentation",
    "instrument_engine",
    "instrumentation_of",
    "system_name",
    "uninstrument_engine",
]

INSTRUMENTATION_SCOPE: Final = "instrumentation.database"

# Dialect names whose OpenTelemetry db.system.name differs from SQLAlchemy's.
_SYSTEM_NAMES: Final[Mapping[str, str]] = {
    "mssql": conventions.DB_SYSTEM_MSSQL,
    "oracle": conventions.DB_SYSTEM_ORACLE,
}
_DEFAULT_PORTS: Final[Mapping[str, int]] = {
    conventions.DB_SYSTEM_POSTGRESQL: 5432,
    conventions.DB_SYSTEM_MYSQL: 3306,
    conventions.DB_SYSTEM_MARIADB: 3306,
    conventions.DB_SYSTEM_MSSQL: 1433,
    conventions.DB_SYSTEM_ORACLE: 1521,
}
_SLOT: Final = "_instrumentation_engine"
_lock = threading.Lock()


def _no_statement_hook() -> None:
    return None


def system_name(engine: sa.Engine) -> str:
    """``db.system.name`` of ``engine`` (see the module doc)."""
    dialect = engine.dialect
    if dialect.name == "mariadb" or getattr(dialect, "is_mariadb", False):
        return conventions.DB_SYSTEM_MARIADB
    return _SYSTEM_NAMES.get(dialect.name, dialect.name)


def _engine_attributes(engine: sa.Engine, system: str) -> dict[str, Any]:
    url = engine.url
    if system == conventions.DB_SYSTEM_SQLITE:
        database = url.database
        memory = database in (None, "", ":memory:") or url.query.get("mode") == "memory"
        namespace = ":memory:" if memory or database is None else Path(database).name
        return {conventions.DB_SYSTEM_NAME: system, conventions.DB_NAMESPACE: namespace}
    attributes: dict[str, Any] = {
        conventions.DB_SYSTEM_NAME: system,
        conventions.DB_NAMESPACE: url.database,
        conventions.SERVER_ADDRESS: url.host,
        conventions.SERVER_PORT: url.port or _DEFAULT_PORTS.get(system),
    }
    return {key: value for key, value in attributes.items() if value is not None}


class EngineInstrumentation:
    """What :func:`instrument_engine` attached to one engine; :meth:`remove` takes it off."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        pool_name: str,
        leak_seconds: float,
        leak_stack: bool,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
        on_statement: Callable[[], None],
    ) -> None:
        self.engine = engine
        self.pool_name = pool_name
        self.system = system_name(engine)
        self._leak_seconds = leak_seconds
        self._leak_stack = leak_stack
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._on_statement = on_statement
        self._removed = False
        self.tracer = trace.get_tracer(INSTRUMENTATION_SCOPE, tracer_provider=tracer_provider)
        self.meter = metrics.get_meter(INSTRUMENTATION_SCOPE, meter_provider=meter_provider)
        self.pool = self._pool_telemetry()
        self.statements = self._statement_telemetry()
        self.pool.attach(engine)
        self.statements.attach(engine)
        if self.system == conventions.DB_SYSTEM_MYSQL:
            # MariaDB speaks MySQL's protocol and dialect: only a connection tells them apart.
            event.listen(engine, "first_connect", self._on_first_connect)
        if tracer_provider is None and providers.global_providers_pending():
            providers.rebind_when_installed(self.rebind)

    def _pool_telemetry(self) -> PoolTelemetry:
        return PoolTelemetry(
            meter=self.meter,
            pool_name=self.pool_name,
            max_connections=max_connections(self.engine.pool),
            leak_seconds=self._leak_seconds,
            leak_stack=self._leak_stack,
        )

    def _statement_telemetry(self) -> StatementTelemetry:
        return StatementTelemetry(
            tracer=self.tracer,
            meter=self.meter,
            system=self.system,
            engine_attributes=_engine_attributes(self.engine, self.system),
            on_statement=self._on_statement,
        )

    def _on_first_connect(self, dbapi_connection: Any, record: Any) -> None:
        try:
            system = system_name(self.engine)
            if system != self.system and not self._removed:
                self.system = system
                self.statements.detach()
                self.statements = self._statement_telemetry()
                self.statements.attach(self.engine)
        except Exception:
            telemetry_failed("engine first_connect")

    def rebind(self) -> None:
        """Take tracers and instruments afresh from the global providers (after set-up)."""
        if self._removed:
            return
        self.tracer = trace.get_tracer(INSTRUMENTATION_SCOPE)
        self.meter = metrics.get_meter(INSTRUMENTATION_SCOPE)
        self.statements.detach()
        self.statements = self._statement_telemetry()
        self.statements.attach(self.engine)
        self.pool.rebind(self.meter)

    def remove(self) -> None:
        """Take every listener and wrapper off the engine; idempotent."""
        if self._removed:
            return
        self._removed = True
        self.statements.detach()
        self.pool.detach()
        if event.contains(self.engine, "first_connect", self._on_first_connect):
            event.remove(self.engine, "first_connect", self._on_first_connect)


def instrument_engine(
    engine: sa.Engine,
    *,
    pool_name: str | None = None,
    leak_seconds: float = 30.0,
    leak_stack: bool = False,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    on_statement: Callable[[], None] | None = None,
) -> EngineInstrumentation:
    """Attach statement spans and metrics, pool metrics and leak detection to ``engine``.

    ``pool_name`` (``db.client.connection.pool.name``) defaults to the engine's URL without its
    password; ``leak_seconds <= 0`` turns leak detection off, ``leak_stack`` logs the full stack
    of a leaked checkout. ``on_statement`` is called once per executed statement that is not
    transaction control. Providers default to the global ones. Idempotent per engine.
    """
    with _lock:
        existing = instrumentation_of(engine)
        if existing is not None:
            return existing
        instrumentation = EngineInstrumentation(
            engine,
            pool_name=pool_name or shown_url(engine.url),
            leak_seconds=leak_seconds,
            leak_stack=leak_stack,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            on_statement=on_statement or _no_statement_hook,
        )
        setattr(engine, _SLOT, instrumentation)
        return instrumentation


def uninstrument_engine(engine: sa.Engine) -> None:
    """Remove what :func:`instrument_engine` attached; a no-op for an engine without it."""
    with _lock:
        instrumentation = instrumentation_of(engine)
        if instrumentation is None:
            return
        delattr(engine, _SLOT)
    instrumentation.remove()


def instrumentation_of(engine: sa.Engine) -> EngineInstrumentation | None:
    """The live instrumentation of ``engine``, or ``None``."""
    found = engine.__dict__.get(_SLOT)
    return found if isinstance(found, EngineInstrumentation) else None
