"""Units of work on a plain ``sessionmaker``: what :mod:`instrumentation.transactions` needs
from a database, for an application that built its own engine and session factory.

``run_transaction(factory, fn)`` and a ``@transactional`` service called with ``factory`` work as
they do with a :class:`~instrumentation.database.Database`: a ``db.transaction`` span, retries of
transient errors with the default retry settings of
:class:`~instrumentation.settings.DatabaseSettings` (or those given to :func:`units_of`), and
nesting through the session the outermost unit opened in the current context. Sessions come from
the factory as the application configured it; statement spans and pool metrics come from
:func:`instrumentation.instrument_engine` on the factory's engine, not from here.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import sqlalchemy as sa
from opentelemetry import metrics, trace
from sqlalchemy.orm import Session, sessionmaker

from instrumentation.engines import INSTRUMENTATION_SCOPE, instrumentation_of, system_name
from instrumentation.sampling import drops_unsampled_children
from instrumentation.settings import DatabaseSettings
from instrumentation.urls import shown_url

__all__ = ["SessionmakerUnits", "units_of"]

_SLOT: Final = "_instrumentation_units"


class SessionmakerUnits:
    """The database-shaped view of one ``sessionmaker`` that units of work run on."""

    def __init__(self, factory: sessionmaker[Session], settings: DatabaseSettings) -> None:
        self.factory = factory
        self.settings = settings
        bind = factory.kw.get("bind")
        self.engine = bind if isinstance(bind, sa.Engine) else None
        self.system = system_name(self.engine) if self.engine is not None else "other_sql"
        self._sessions: contextvars.ContextVar[tuple[Session, ...]] = contextvars.ContextVar(
            f"instrumentation.sessionmaker.{id(self)}", default=()
        )

    @property
    def tracer(self) -> trace.Tracer:
        instrumented = None if self.engine is None else instrumentation_of(self.engine)
        if instrumented is not None:
            return instrumented.tracer
        return trace.get_tracer(INSTRUMENTATION_SCOPE)

    @property
    def meter(self) -> metrics.Meter:
        instrumented = None if self.engine is None else instrumentation_of(self.engine)
        if instrumented is not None:
            return instrumented.meter
        return metrics.get_meter(INSTRUMENTATION_SCOPE)

    @property
    def drops_unsampled_children(self) -> bool:
        return drops_unsampled_children(self.tracer)

    def current_session(self) -> Session | None:
        """The innermost session a unit opened from this factory in the current context."""
        sessions = self._sessions.get()
        return sessions[-1] if sessions else None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A new session from the factory, current in this context, closed on exit."""
        session = self.factory()
        token = self._sessions.set((*self._sessions.get(), session))
        try:
            yield session
        finally:
            self._sessions.reset(token)
            session.close()


def units_of(
    factory: sessionmaker[Session], settings: DatabaseSettings | None = None
) -> SessionmakerUnits:
    """The units view of ``factory``: one per factory, made on first use.

    ``settings`` (only its ``retry_*`` fields matter) replaces the retry settings of that view.
    """
    existing = factory.__dict__.get(_SLOT)
    if isinstance(existing, SessionmakerUnits) and settings is None:
        return existing
    if settings is None:
        bind = factory.kw.get("bind")
        settings = DatabaseSettings(url=shown_url(bind.url) if isinstance(bind, sa.Engine) else "")
    units = SessionmakerUnits(factory, settings)
    setattr(factory, _SLOT, units)
    return units
