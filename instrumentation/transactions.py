"""Units of work: one transaction attempt, the retried unit, and the decorator services use.

Python cannot run the body of a ``with`` block twice, so there are two entry points:

* :func:`transaction` is a context manager for ONE attempt. It commits on success and rolls back
  (re-raising) on any exception; a transient failure reaches the caller unchanged.
* :func:`run_transaction` takes the unit as a callable ``fn(session, *args, **kwargs)`` and runs
  it again, in a fresh transaction, when it fails on a transient error (see :func:`is_transient`).
  ``fn`` may therefore run several times: it must not have side effects outside the database
  that it cannot repeat (send no mail, move no file), or it must make them idempotent.

:func:`transactional` turns a service function ``fn(session, ...)`` into one that callers hand
either a ``Database`` (a retried unit of its own) or a ``Session`` (joins the caller's unit).

Nesting. A unit works in the current session of its ``Database`` (``db.current_session()``) or,
if there is none, opens one around itself. The outermost unit owns the transaction; a unit
started while a transaction is active on that session joins it through a SAVEPOINT: an inner
failure rolls back to the savepoint and re-raises, the outer commit commits everything. Retrying
belongs to the outermost unit only, because a serialization failure or a lost connection aborts
the whole transaction, not just the savepoint: a nested :func:`run_transaction` runs ``fn`` once
and lets the error reach the outer unit, which retries if it is itself a :func:`run_transaction`.
Nested units record no span and no log record of their own; their SAVEPOINT statements appear
under the outer unit. "Active" means begun on purpose (by a unit, or ``session.begin()``): a
transaction SQLAlchemy autobegan for statements the session's owner ran earlier is no unit, and
nobody would commit it (``Database.session()`` discards uncommitted work), so a unit commits it
first and then begins its own.

Telemetry of the outermost unit: one ``db.transaction`` span (INTERNAL) that covers every attempt,
with ``db.system.name``, ``vrp.db.transaction.attempts`` and ``vrp.db.transaction.outcome``; a
``retry`` event, a ``vrp.db.transaction.retries`` count and a WARNING log record per retry; and
one log record when the unit ends. Outcomes and their log levels:

* ``commit`` (INFO): committed.
* ``rollback`` (WARNING): the unit's code raised an application exception (a validation error, a
  not-found, ...); the transaction was rolled back and the exception re-raised.
* ``error`` (ERROR): the database or this package failed the unit: a SQLAlchemy / driver error
  (integrity violation, lost connection, failed commit), an exhausted pool, or retries that ran
  out (:class:`~instrumentation.errors.TransactionRetryError`).

``error.type`` on spans, events, metrics and log records is :func:`error_type`, the rule the
statement spans use too. Neither spans nor log records ever carry exception messages, which may
quote SQL parameter values.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import (
    TYPE_CHECKING,
    Concatenate,
    Final,
    Literal,
    NoReturn,
    ParamSpec,
    TypeGuard,
    TypeVar,
    overload,
)

import sqlalchemy as sa
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from sqlalchemy.orm import Session, SessionTransactionOrigin
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from instrumentation.errors import InstrumentationError, TransactionRetryError
from instrumentation.sqlite import READONLY_OPTION
from instrumentation.statements import error_type

if TYPE_CHECKING:
    from instrumentation.database import Database

__all__ = ["error_type", "is_transient", "run_transaction", "transaction", "transactional"]

P = ParamSpec("P")
R = TypeVar("R")

Outcome = Literal["commit", "rollback", "error"]
_Transience = Literal["conflict", "disconnect"]

logger = logging.getLogger(__name__)

SPAN_NAME: Final = "db.transaction"
RETRIES_METRIC: Final = "vrp.db.transaction.retries"

_LOG_LEVELS: Final[dict[Outcome, int]] = {
    "commit": logging.INFO,
    "rollback": logging.WARNING,
    "error": logging.ERROR,
}
_LOG_VERBS: Final[dict[Outcome, str]] = {
    "commit": "committed",
    "rollback": "rolled back",
    "error": "failed",
}

# The server aborted the transaction and says so; nothing was committed, retrying is safe.
_CONFLICT_SQLSTATES: Final = frozenset({"40001", "40P01"})
# admin_shutdown, crash_shutdown, cannot_connect_now; class 08 (connection exception) is
# matched by prefix.
_SHUTDOWN_SQLSTATES: Final = frozenset({"57P01", "57P02", "57P03"})
_SQLITE_BUSY_CODES: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_SQLITE_BUSY_MESSAGES: Final = ("database is locked", "database table is locked")


def is_transient(exc: BaseException) -> bool:
    """Whether running the whole unit of work again may succeed where this attempt failed.

    True for PostgreSQL serialization failures (SQLSTATE ``40001``) and deadlocks (``40P01``),
    for a connection that was invalidated or dropped (SQLAlchemy ``connection_invalidated``,
    SQLSTATE class ``08``, server shutdown ``57P01``-``57P03``) and for SQLite's busy / locked
    errors. False for everything else, integrity and validation errors included. Wrappers are
    looked through: :class:`sqlalchemy.exc.StatementError` ``.orig`` and ``__cause__`` chains,
    except that a :class:`TransactionRetryError` (a unit that already gave up) is never transient.
    """
    return _transience(exc) is not None


@contextmanager
def transaction(db: Database) -> Iterator[Session]:
    """One attempt of a unit of work on ``db``; yields the session to work with.

    Uses the current session of ``db`` in this context, or opens one around the unit. Commits
    when the block ends normally, rolls back and re-raises when it raises. Never retries (a
    ``with`` body cannot be re-run): use :func:`run_transaction` for that. Inside an active
    transaction it joins it through a SAVEPOINT (see the module doc).
    """
    current = db.current_session()
    if _unit_active(current):
        with current.begin_nested():
            yield current
        return
    with _session_for(db, current) as session, _unit(db, session) as unit:
        unit.attempts = 1
        with session.begin():
            yield session


def run_transaction(
    db: Database, fn: Callable[Concatenate[Session, P], R], /, *args: P.args, **kwargs: P.kwargs
) -> R:
    """Run ``fn(session, *args, **kwargs)`` as a unit of work on ``db``, retrying transient errors.

    Each attempt runs in its own transaction, flushed and committed at the end; a transient error
    (see :func:`is_transient`) rolls it back and, after an exponential backoff with jitter
    (``retry_initial_delay`` growing to ``retry_max_delay``), runs ``fn`` again. It stops after
    ``retry_attempts`` attempts, or before a sleep that would end past ``retry_deadline`` seconds
    from the first attempt, raising :class:`TransactionRetryError` from the last error. Only the
    attempt running when the deadline passes can overrun it.

    A connection lost while COMMIT was in flight is not retried: the server may have committed,
    and running the unit again could apply it twice. That error is re-raised unchanged, as is any
    non-transient one (after the rollback). Returns what ``fn`` returned on the committed attempt.

    Inside an active transaction ``fn`` runs once, joined through a SAVEPOINT, and retrying is
    left to the outermost unit (see the module doc).
    """
    current = db.current_session()
    if _unit_active(current):
        with current.begin_nested():
            return fn(current, *args, **kwargs)
    with _session_for(db, current) as session, _unit(db, session) as unit:
        return unit.run(session, fn, *args, **kwargs)


Service = Callable[Concatenate[Session, P], R]
BoundService = Callable[Concatenate["Database | Session", P], R]


@overload
def transactional(fn: Service[P, R], /) -> BoundService[P, R]: ...


@overload
def transactional(*, readonly: bool = False) -> Callable[[Service[P, R]], BoundService[P, R]]: ...


def transactional(
    fn: Service[P, R] | None = None, /, *, readonly: bool = False
) -> BoundService[P, R] | Callable[[Service[P, R]], BoundService[P, R]]:
    """Decorate a service ``fn(session, ...)`` so that callers pass a ``Database`` or a ``Session``.

    Given a ``Database`` the call is a retried unit of its own (:func:`run_transaction`), so
    ``fn`` may run more than once. Given a ``Session`` it joins the caller's unit: inside a
    SAVEPOINT if a transaction is active, else in a plain ``session.begin()`` block that commits
    on return; it neither retries nor records a ``db.transaction`` span there.

    ``@transactional(readonly=True)`` marks a unit that only reads: on SQLite its own
    transaction begins DEFERRED instead of IMMEDIATE, so it never queues behind writers (see
    :data:`instrumentation.sqlite.READONLY_OPTION`); other backends ignore the mark.
    """
    if fn is None:
        return functools.partial(_bind, readonly=readonly)
    return _bind(fn, readonly=readonly)


def _bind(fn: Service[P, R], *, readonly: bool) -> BoundService[P, R]:
    unit = functools.partial(_read_only_unit, fn) if readonly else fn

    @functools.wraps(fn)
    def wrapper(target: Database | Session, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if not isinstance(target, Session):
            return run_transaction(target, unit, *args, **kwargs)
        if target.in_transaction():
            with target.begin_nested():
                return fn(target, *args, **kwargs)
        with target.begin():
            return fn(target, *args, **kwargs)

    return wrapper


def _read_only_unit(fn: Service[P, R], session: Session, /, *args: P.args, **kwargs: P.kwargs) -> R:
    # Only the unit's own, fresh transaction can choose how it begins; a unit joined through a
    # SAVEPOINT already has its connection.
    if session.get_nested_transaction() is None:
        session.connection(execution_options={READONLY_OPTION: True})
    return fn(session, *args, **kwargs)


def _transience(exc: BaseException) -> _Transience | None:
    """Why ``exc`` is transient: the server rolled back (conflict) or the connection went away."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, TransactionRetryError):
            return None
        seen.add(id(current))
        if isinstance(current, sa.exc.DBAPIError) and current.connection_invalidated:
            return "disconnect"
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str):
            if sqlstate in _CONFLICT_SQLSTATES:
                return "conflict"
            if sqlstate.startswith("08") or sqlstate in _SHUTDOWN_SQLSTATES:
                return "disconnect"
        if isinstance(current, sqlite3.OperationalError) and _sqlite_busy(current):
            return "conflict"
        if isinstance(current, sa.exc.StatementError) and current.orig is not None:
            current = current.orig
        else:
            current = current.__cause__
    return None


def _sqlite_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        # Extended result codes (SQLITE_BUSY_SNAPSHOT, ...) keep the primary code in the low byte.
        return (code & 0xFF) in _SQLITE_BUSY_CODES
    message = str(exc)
    return any(text in message for text in _SQLITE_BUSY_MESSAGES)


def _outcome_of(exc: BaseException) -> Outcome:
    if isinstance(exc, sa.exc.SQLAlchemyError | InstrumentationError):
        return "error"
    return "rollback"


def _unit_active(session: Session | None) -> TypeGuard[Session]:
    """Whether ``session`` runs a transaction begun on purpose, which a new unit must join."""
    if session is None:
        return False
    root = session.get_transaction()
    return root is not None and root.origin is not SessionTransactionOrigin.AUTOBEGIN


def _session_for(db: Database, current: Session | None) -> AbstractContextManager[Session]:
    """The current session as is (its owner closes it), or a new one closed with the unit."""
    if current is not None:
        return nullcontext(current)
    return db.session()


@contextmanager
def _unit(db: Database, session: Session) -> Iterator[_Unit]:
    """The span, timing and log record of an outermost unit about to begin on ``session``."""
    with db.tracer.start_as_current_span(
        SPAN_NAME, kind=SpanKind.INTERNAL, record_exception=False, set_status_on_exception=False
    ) as span:
        unit = _Unit(db, span)
        try:
            if session.in_transaction():
                # Autobegun for the owner's earlier statements (see the module doc).
                session.commit()
            yield unit
        except BaseException as exc:
            unit.finish(exc)
            raise
        unit.finish(None)


class _Unit:
    """The telemetry and retry state of one outermost unit of work."""

    __slots__ = ("attempts", "committing", "db", "span", "start")

    def __init__(self, db: Database, span: Span) -> None:
        self.db = db
        self.span = span
        self.start = time.monotonic()
        self.attempts = 0
        self.committing = False

    def run(
        self,
        session: Session,
        fn: Callable[Concatenate[Session, P], R],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        settings = self.db.settings

        def attempt() -> R:
            self.attempts += 1
            self.committing = False
            with session.begin():
                result = fn(session, *args, **kwargs)
                # Flush here so that only COMMIT itself counts as "in flight" below.
                session.flush()
                self.committing = True
            return result

        retrying = Retrying(
            stop=stop_after_attempt(settings.retry_attempts)
            | stop_before_delay(settings.retry_deadline),
            wait=wait_exponential_jitter(
                multiplier=settings.retry_initial_delay,
                max=settings.retry_max_delay,
                jitter=settings.retry_initial_delay,
            ),
            retry=retry_if_exception(self._retryable),
            before_sleep=self._on_retry,
            retry_error_callback=self._give_up,
        )
        return retrying(attempt)

    def _retryable(self, exc: BaseException) -> bool:
        transience = _transience(exc)
        return transience == "conflict" or (transience == "disconnect" and not self.committing)

    def _on_retry(self, state: RetryCallState) -> None:
        exc = _failure(state)
        kind = error_type(exc)
        delay = state.upcoming_sleep
        if self.span.is_recording():
            self.span.add_event(
                "retry",
                {
                    "error.type": kind,
                    "vrp.db.transaction.attempt": state.attempt_number,
                    "vrp.db.transaction.retry_delay_s": delay,
                },
            )
        self.db.meter.create_counter(
            RETRIES_METRIC,
            unit="{retry}",
            description="Units of work run again after a transient database error.",
        ).add(1, {"error.type": kind})
        if logger.isEnabledFor(logging.WARNING):
            logger.warning(
                "transaction attempt %d failed with %s; retrying in %.3f s",
                state.attempt_number,
                kind,
                delay,
                extra={
                    "attempt": state.attempt_number,
                    "error_type": kind,
                    "delay_s": delay,
                    "db_system": self.db.system,
                },
            )

    def _give_up(self, state: RetryCallState) -> NoReturn:
        last = _failure(state)
        raise TransactionRetryError(self.attempts, time.monotonic() - self.start, last) from last

    def finish(self, exc: BaseException | None) -> None:
        outcome: Outcome = "commit" if exc is None else _outcome_of(exc)
        kind = None if exc is None else error_type(exc)
        span = self.span
        if span.is_recording():
            attributes: dict[str, str | int] = {
                "db.system.name": self.db.system,
                "vrp.db.transaction.attempts": self.attempts,
                "vrp.db.transaction.outcome": outcome,
            }
            if kind is not None:
                attributes["error.type"] = kind
            span.set_attributes(attributes)
            if outcome == "error":
                span.set_status(Status(StatusCode.ERROR, kind))
        level = _LOG_LEVELS[outcome]
        if logger.isEnabledFor(level):
            duration_ms = (time.monotonic() - self.start) * 1000.0
            extra: dict[str, object] = {
                "outcome": outcome,
                "attempts": self.attempts,
                "duration_ms": round(duration_ms, 3),
                "db_system": self.db.system,
            }
            if kind is not None:
                extra["error_type"] = kind
            logger.log(
                level,
                "transaction %s after %d attempt(s) in %.1f ms%s",
                _LOG_VERBS[outcome],
                self.attempts,
                duration_ms,
                "" if kind is None else f": {kind}",
                extra=extra,
            )


def _failure(state: RetryCallState) -> BaseException:
    """The exception of the attempt tenacity just judged (only called for failed attempts)."""
    outcome = state.outcome
    exc = None if outcome is None else outcome.exception()
    if exc is None:
        raise RuntimeError("tenacity reported a retry for an attempt that did not fail")
    return exc
