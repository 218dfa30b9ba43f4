"""PostgreSQL connection setup: pool arguments, and a pre-ping that survives a killed backend.

The pre-ping. SQLAlchemy's psycopg dialect pings a pooled connection with an empty query in
autocommit mode and, in a ``finally`` block, switches autocommit back off. When the server has
just terminated the backend (``pg_terminate_backend``, a restart, a failover), the empty query
fails with ``AdminShutdown`` (SQLSTATE 57P01) or "server closed the connection"; if libpq has
read the error but not yet the end of the stream, the connection is neither ``closed`` nor
``broken`` and still in transaction status ACTIVE, so the ``finally`` block's autocommit switch
raises ``ProgrammingError: can't change 'autocommit' now`` over the real error. The dialect's
disconnect test sees only that ProgrammingError on a connection that looks open, so the pool
hands it to the caller instead of reconnecting: a request fails on a connection the pre-ping
exists to replace. :func:`install` registers a ``handle_error`` listener, the hook SQLAlchemy
provides for exactly this (``ExceptionContext.is_pre_ping``), that calls a failed ping a
disconnect when the ping's own query failed at the connection level, whatever was raised last;
the pool then opens a new connection and the caller never sees the failure.

These listeners are part of the engine's correctness, not telemetry: they stay on the engine when
the owning :class:`~instrumentation.database.Database` is disposed.
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, ExceptionContext

from instrumentation.settings import DatabaseSettings

__all__ = ["engine_arguments", "install", "ping_lost_connection"]

_APPLICATION_NAME_MAX: Final = 63  # PostgreSQL truncates application_name to NAMEDATALEN - 1 bytes


def engine_arguments(url: URL, settings: DatabaseSettings) -> dict[str, Any]:
    """``create_engine`` keyword arguments for a PostgreSQL ``url``: pool and session options."""
    connect_args: dict[str, Any] = {}
    if settings.application_name and "application_name" not in url.query:
        name = settings.application_name
        if settings.pool_name:
            name = f"{name} {settings.pool_name}"
        connect_args["application_name"] = name[:_APPLICATION_NAME_MAX]
    if settings.statement_timeout_ms is not None:
        connect_args["options"] = f"-c statement_timeout={int(settings.statement_timeout_ms)}"
    return {
        "connect_args": connect_args,
        "pool_size": settings.pool_size,
        "max_overflow": settings.max_overflow,
        "pool_timeout": settings.pool_timeout,
        "pool_recycle": settings.pool_recycle,
        "pool_pre_ping": settings.pool_pre_ping,
        "pool_use_lifo": True,
    }


def install(engine: sa.Engine) -> None:
    """Register the pre-ping disconnect rule on ``engine``."""
    event.listen(engine, "handle_error", _classify_ping_failure)


def ping_lost_connection(error: BaseException) -> bool:
    """Whether a failed pre-ping's ``error``, or an error it was raised over, lost the connection.

    psycopg raises :class:`psycopg.OperationalError` (``AdminShutdown`` and the other class 08 and
    57P0x errors are subclasses) for every failure of the connection itself, with or without an
    SQLSTATE; an empty query cannot fail any other way, so the ping's connection is gone.
    """
    # Imported here: only a psycopg engine reaches this, and the bare install has no psycopg.
    import psycopg

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, psycopg.OperationalError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _classify_ping_failure(context: ExceptionContext) -> None:
    if context.is_pre_ping and ping_lost_connection(context.original_exception):
        context.is_disconnect = True
