"""One database: engine, pool, sessions, and their telemetry.

A :class:`Database` turns :class:`~instrumentation.settings.DatabaseSettings` into a configured
SQLAlchemy engine (SQLite or PostgreSQL via psycopg 3), instruments it with
:func:`~instrumentation.engines.instrument_engine` (pool metrics, leak detection, a CLIENT span
per statement), and hands out ORM sessions wrapped in ``db.session`` spans. It is the
opinionated factory; an application with an engine of its own calls ``instrument_engine``. The unit-
of-work layer (:mod:`instrumentation.transactions`) builds on :meth:`Database.session`,
:attr:`Database.tracer` and :attr:`Database.meter`.

URLs: ``postgresql://`` means psycopg 3 (``postgresql+psycopg://``); any other PostgreSQL driver
named explicitly is kept. ``sqlite:///relative/path.db`` creates the file's directory;
``sqlite://`` is a shared in-memory database (see :mod:`instrumentation.sqlite`).

Statement counts (``vrp.db.session.statements``) are the statements this database ran while the
session was its innermost open session in the current context, transaction control excluded.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from instrumentation import conventions, postgresql, providers, sqlite, uow
from instrumentation.engines import EngineInstrumentation, instrument_engine, uninstrument_engine
from instrumentation.errors import ConfigurationError, PoolExhaustedError, is_client_error
from instrumentation.failures import telemetry_failed
from instrumentation.sampling import drops_unsampled_children, unsampled_parent
from instrumentation.settings import DatabaseSettings
from instrumentation.spans import Steps
from instrumentation.statements import error_type
from instrumentation.urls import parse_database_url, shown_url, with_default_driver

__all__ = ["Database", "PoolStatus", "open_databases"]

_log = logging.getLogger(__name__)

_SCOPE_KEY = "vrp.session_scope"

T = TypeVar("T")


@dataclass(frozen=True)
class PoolStatus:
    """A snapshot of one pool.

    ``size`` is the configured pool size (for pools without one: the connections open now),
    ``overflow`` the connections open beyond it (never negative), ``checked_out`` and
    ``checked_in`` the connections in use and idle.
    """

    size: int
    checked_out: int
    overflow: int
    checked_in: int


class _SessionScope:
    """Book-keeping for one open session: who owns it, what it ran, how it ended."""

    __slots__ = ("database", "outcome", "session", "statements")

    def __init__(self, database: Database, session: Session) -> None:
        self.database = database
        self.session = session
        self.statements = 0
        self.outcome = "closed"


# Innermost-last stack of open sessions, of every Database, in the current context.
_SCOPES: contextvars.ContextVar[tuple[_SessionScope, ...]] = contextvars.ContextVar(
    "instrumentation.database.sessions", default=()
)
_OPEN: weakref.WeakSet[Database] = weakref.WeakSet()


def open_databases() -> list[Database]:
    """Every :class:`Database` created and not yet disposed (held weakly)."""
    return list(_OPEN)


def _parse_url(raw: str) -> URL:
    try:
        url = parse_database_url(raw)
    except ConfigurationError as e:
        # The raw value may hold a password, so it is not repeated here.
        raise ConfigurationError(
            f"database URL is not valid: {e}; expected e.g. sqlite:///var/app.db "
            "or postgresql://user@host/dbname"
        ) from None
    url = with_default_driver(url)
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"database URL {shown_url(url)!r} uses an unsupported "
            "backend; allowed: sqlite, postgresql"
        )
    return url


def _stop_watching(ref: weakref.ref[EngineInstrumentation]) -> None:
    # Held weakly: the instrumentation reaches the Database (its statement counter). Once it is
    # collected, its watcher finds its pool telemetry gone and ends on its own.
    instrumentation = ref()
    if instrumentation is not None:
        instrumentation.pool.stop_signal()


def _on_commit(session: Session) -> None:
    scope = session.info.get(_SCOPE_KEY)
    # after_commit also fires when a SAVEPOINT is released; only the outermost counts.
    if scope is not None and not session.in_nested_transaction():
        scope.outcome = "commit"


def _on_rollback(session: Session) -> None:
    scope = session.info.get(_SCOPE_KEY)
    if scope is not None and not session.in_nested_transaction():
        scope.outcome = "rollback"


class Database:
    """A configured engine plus instrumented sessions for one database.

    Construction does not connect. Thread-safe: share one instance per database per process
    and call :meth:`dispose` at shutdown.
    """

    engine: sa.Engine
    settings: DatabaseSettings
    name: str
    system: str
    tracer: trace.Tracer
    meter: metrics.Meter

    def __init__(
        self,
        settings: DatabaseSettings,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        url = _parse_url(settings.url)
        self.settings = settings
        self.name = settings.pool_name or shown_url(settings.url)
        self.system = url.get_backend_name()
        if self.system == "sqlite":
            base_pool, engine_arguments = sqlite.engine_arguments(url, settings)
        else:
            base_pool = QueuePool
            engine_arguments = postgresql.engine_arguments(url, settings)
        self.engine = sa.create_engine(url, poolclass=base_pool, **engine_arguments)
        if self.system == "sqlite":
            sqlite.install(self.engine, settings, file_database=not sqlite.is_memory_database(url))
        else:
            postgresql.install(self.engine)
        self._instrumentation = instrument_engine(
            self.engine,
            pool_name=self.name,
            leak_seconds=settings.leak_seconds,
            leak_stack=settings.leak_stack,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            on_statement=self._count_statement,
        )
        self._take_providers()
        if tracer_provider is None and providers.global_providers_pending():
            providers.rebind_when_installed(self._rebind)

        self._sessionmaker = sessionmaker(bind=self.engine, expire_on_commit=False, autoflush=True)
        event.listen(self._sessionmaker, "after_commit", _on_commit)
        event.listen(self._sessionmaker, "after_rollback", _on_rollback)
        self._session_attributes = {conventions.DB_SYSTEM_NAME: self.system}
        self._dispose_lock = threading.Lock()
        self._disposed = False
        _OPEN.add(self)
        # A Database dropped without dispose() must not leave its leak-watch thread running.
        weakref.finalize(self, _stop_watching, weakref.ref(self._instrumentation))

    def _take_providers(self) -> None:
        self.tracer = self._instrumentation.tracer
        self.meter = self._instrumentation.meter
        # Whether session, transaction and statement spans of unsampled traces may be skipped.
        self.drops_unsampled_children = drops_unsampled_children(self.tracer)
        self._steps = Steps(self.tracer)

    def _rebind(self) -> None:
        # The engine's instrumentation re-binds itself (registered first, so it already has).
        self._take_providers()

    def __repr__(self) -> str:
        return f"<Database {self.name!r} ({self.system})>"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """An ORM session inside a ``db.session`` span; always closed on exit.

        Work is committed only if the body commits (or uses :meth:`transaction`); closing
        discards anything else. A pool checkout timing out inside the body surfaces as
        :class:`~instrumentation.errors.PoolExhaustedError`.
        """
        session = self._sessionmaker()
        scope = _SessionScope(self, session)
        session.info[_SCOPE_KEY] = scope
        uow.note_session()
        span = self._start_session_span()
        token = _SCOPES.set((*_SCOPES.get(), scope))
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            with trace.use_span(
                span, end_on_exit=False, record_exception=False, set_status_on_exception=False
            ):
                try:
                    yield session
                except BaseException:
                    self._close_after_failure(session)
                    raise
                session.close()
        except sa.exc.TimeoutError as e:
            failure = PoolExhaustedError(self.name, self.settings.pool_timeout)
            raise failure from e
        except BaseException as e:
            failure = e
            raise
        finally:
            _SCOPES.reset(token)
            self._end_session(span, scope, failure, started)

    def _start_session_span(self) -> Span:
        try:
            parent = unsampled_parent(self.drops_unsampled_children)
            if parent is not None:
                return parent
            return self.tracer.start_span(
                conventions.DB_SESSION_SPAN,
                kind=SpanKind.INTERNAL,
                attributes=self._session_attributes,
            )
        except Exception:
            telemetry_failed("db.session span start")
            return trace.INVALID_SPAN

    def _close_after_failure(self, session: Session) -> None:
        # The body's exception is what the caller needs to see; a failing close (say, the
        # rollback on a dead connection) is logged instead of replacing it.
        try:
            session.close()
        except Exception:
            _log.warning(
                "closing a failed session also failed",
                exc_info=True,
                extra={"pool_name": self.name},
            )

    def _end_session(
        self, span: Span, scope: _SessionScope, failure: BaseException | None, started: float
    ) -> None:
        try:
            client_error = is_client_error(failure)
            if failure is not None:
                # A handled client error (404, 409, 412, 422) rolled the session back: the span
                # carries error.type but keeps status UNSET, as OpenTelemetry's conventions ask.
                scope.outcome = "rollback" if client_error else "error"
            if span.is_recording():
                attributes: dict[str, Any] = {
                    conventions.VRP_DB_SESSION_STATEMENTS: scope.statements,
                    conventions.VRP_DB_SESSION_OUTCOME: scope.outcome,
                }
                if failure is not None:
                    attributes[conventions.ERROR_TYPE] = error_type(failure)
                    if not client_error:
                        span.set_status(
                            Status(StatusCode.ERROR, attributes[conventions.ERROR_TYPE])
                        )
                span.set_attributes(attributes)
            span.end()
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug(
                    "database session ended: %s after %d statement(s)",
                    scope.outcome,
                    scope.statements,
                    extra={
                        "pool_name": self.name,
                        "outcome": scope.outcome,
                        "statements": scope.statements,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    },
                )
        except Exception:
            telemetry_failed("db.session span end")

    def _count_statement(self) -> None:
        for scope in reversed(_SCOPES.get()):
            if scope.database is self:
                scope.statements += 1
                return

    def current_session(self) -> Session | None:
        """The innermost session of this database open in the current context, else ``None``."""
        for scope in reversed(_SCOPES.get()):
            if scope.database is self:
                return scope.session
        return None

    def transaction(self) -> AbstractContextManager[Session]:
        """A unit of work that commits on success; see :mod:`instrumentation.transactions`."""
        from instrumentation.transactions import transaction

        return transaction(self)

    def run_transaction(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(session, *args, **kwargs)`` as a retried unit of work; see transactions."""
        from instrumentation.transactions import run_transaction

        return run_transaction(self, fn, *args, **kwargs)

    def pool_status(self) -> PoolStatus:
        """What the pool holds right now."""
        pool = self.engine.pool
        if isinstance(pool, QueuePool):
            return PoolStatus(
                size=pool.size(),
                checked_out=pool.checkedout(),
                # SQLAlchemy's counter starts at -pool_size and climbs as connections open.
                overflow=max(pool.overflow(), 0),
                checked_in=pool.checkedin(),
            )
        idle, used = self._instrumentation.pool.connection_counts()
        return PoolStatus(size=idle + used, checked_out=used, overflow=0, checked_in=idle)

    def ping(self) -> None:
        """Run ``SELECT 1`` on a pooled connection; raises if the database cannot answer.

        On SQLite the ping begins DEFERRED, so a readiness probe never queues behind writers.
        """
        try:
            with (
                self._steps(conventions.DB_PING_SPAN, self._session_attributes),
                self.engine.connect() as conn,
            ):
                conn.execution_options(**{sqlite.READONLY_OPTION: True})
                conn.exec_driver_sql("SELECT 1").scalar_one()
        except sa.exc.TimeoutError as e:
            raise PoolExhaustedError(self.name, self.settings.pool_timeout) from e

    def dispose(self) -> None:
        """Close the pool's idle connections and remove all telemetry; idempotent.

        The engine stays usable afterwards (SQLAlchemy gives it a fresh pool) but is no longer
        instrumented. Connections still checked out are logged as a warning: they will be
        closed when returned.
        """
        with self._dispose_lock:
            if self._disposed:
                return
            self._disposed = True
        _OPEN.discard(self)
        checked_out = self.pool_status().checked_out
        if checked_out:
            _log.warning(
                "disposing database %r with %d connection(s) still checked out",
                self.name,
                checked_out,
                extra={"pool_name": self.name, "checked_out": checked_out},
            )
        self.engine.dispose()
        uninstrument_engine(self.engine)
