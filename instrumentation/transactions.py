"""Units of work: one transaction attempt, the retried unit, and the decorator services use.

Python cannot run the body of a ``with`` block twice, so there are two entry points:

* :func:`transaction` is a context manager for ONE attempt. It commits on success and rolls back
  (re-raising) on any exception; a transient failure reaches the caller unchanged.
* :func:`run_transaction` takes the unit as a callable ``fn(session, *args, **kwargs)`` and runs
  it again, in a fresh transaction, when it fails on a transient error (see :func:`is_transient`).
  ``fn`` may therefore run several times: it must not have side effects outside the database
  that it cannot repeat (send no mail, move no file), or it must make them idempotent.
* :func:`run_transaction_with_check` does the same for a unit that can tell whether an earlier
  COMMIT of it landed (see "A failed COMMIT" below).

:func:`transactional` turns a service function ``fn(session, ...)`` into one that callers hand
a ``Database`` or an application's own ``sessionmaker`` (a retried unit of its own, see
:mod:`instrumentation.sessionmakers`) or a ``Session`` (joins the caller's unit).

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

A failed COMMIT. When COMMIT itself fails the unit may or may not have committed, and running
it again blindly could apply it twice. What happens next depends on what the unit declared:

* A unit with a *landed check* (``landed(session, *args, **kwargs)``, same arguments as the unit,
  returning what the unit would have returned if its commit landed, else ``None``; a create
  whose key is chosen before the insert looks its row up by that key) is resolved: after any
  database failure at COMMIT that is transient or unanswered, the next attempt first runs the
  check in a new transaction and returns what it found, and runs the unit again only if it
  found nothing.
* A unit without one: a COMMIT the server answered with an error (an SQLSTATE such as
  ``57P01`` or ``40001``) did not commit, so it is retried like any other transient error (a
  non-transient answer is re-raised). A COMMIT that got no answer at all (the connection went
  away) raises :class:`~instrumentation.errors.CommitOutcomeUnknownError`.

Telemetry of the outermost unit: one ``db.transaction`` span (INTERNAL) that covers every attempt,
with ``db.system.name``, ``vrp.db.transaction.attempts`` and ``vrp.db.transaction.outcome``; a
``retry`` event, a ``vrp.db.transaction.retries`` count and a WARNING log record per retry; and
one log record when the unit ends. Outcomes and their log levels:

* ``commit`` (INFO): committed; DEBUG inside an HTTP request, whose access record counts the
  unit (:mod:`instrumentation.uow`).
* ``rollback``: the unit's code raised an application exception; the transaction was rolled
  back and the exception re-raised. DEBUG when the exception's class sets ``client_error =
  True`` (the caller asked for something that cannot be done: a not-found, a conflict, a failed
  precondition; answering it is the service working as intended) and for SQLAlchemy's
  ``StaleDataError`` (an optimistic-locking conflict), WARNING otherwise.
* ``error`` (ERROR): the database or this package failed the unit: a SQLAlchemy / driver error
  (integrity violation, lost connection, failed commit), an exhausted pool, retries that ran
  out (:class:`~instrumentation.errors.TransactionRetryError`) or a COMMIT whose outcome is
  unknown (:class:`~instrumentation.errors.CommitOutcomeUnknownError`).

Log records carry their fields under the OpenTelemetry attribute names the span uses
(``db.system.name``, ``error.type``, ``vrp.db.transaction.outcome``,
``vrp.db.transaction.attempts``, ...), as the access record does, plus ``duration_ms``.

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
from sqlalchemy.orm import Session, SessionTransactionOrigin, sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from instrumentation import conventions, mysql
from instrumentation.errors import (
    CommitOutcomeUnknownError,
    InstrumentationError,
    TransactionRetryError,
    is_client_error,
)
from instrumentation.sampling import unsampled_parent
from instrumentation.sessionmakers import SessionmakerUnits, units_of
from instrumentation.sqlite import READONLY_OPTION
from instrumentation.statements import error_type
from instrumentation.uow import note_transaction

if TYPE_CHECKING:
    from instrumentation.database import Database

__all__ = [
    "LandedCheck",
    "error_type",
    "is_transient",
    "run_transaction",
    "run_transaction_with_check",
    "transaction",
    "transactional",
]

P = ParamSpec("P")
R = TypeVar("R")

Outcome = Literal["commit", "rollback", "error"]
_Transience = Literal["conflict", "disconnect"]

logger = logging.getLogger(__name__)

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
# Errors that end a unit's retrying for good; they wrap a transient cause that is already spent.
_FINAL_ERRORS: Final = (TransactionRetryError, CommitOutcomeUnknownError)

# Whether a failed COMMIT committed. PostgreSQL answers a COMMIT that did not commit with an
# ErrorResponse carrying an SQLSTATE (serialization failure 40001 at commit under SERIALIZABLE,
# a deferred constraint, or 57P01 "terminating connection due to administrator command" when
# the backend was killed before it ran the COMMIT): such an answer means "not committed". The
# case PostgreSQL documents as committed despite a failure is the wait for synchronous
# replication cut short: the backend has already written the commit locally and only sends a
# WARNING ("canceling the wait for synchronous replication and terminating connection due to
# administrator command", DETAIL "The transaction has already committed locally, but might not
# have been replicated to the standby"); when the wait is cancelled the COMMIT succeeds, when
# the backend is terminated it closes the connection without an error answer. A COMMIT with no
# answer at all (connection closed or reset, the server or the network gone) is therefore
# always treated as unknown, never as "not committed". SQLite runs in-process: its errors are
# always an answer, and a COMMIT it refuses (SQLITE_BUSY) leaves nothing committed.


def is_transient(exc: BaseException) -> bool:
    """Whether running the whole unit of work again may succeed where this attempt failed.

    True for PostgreSQL serialization failures (SQLSTATE ``40001``) and deadlocks (``40P01``),
    for MySQL/MariaDB deadlocks (error ``1213``) and lock wait timeouts (``1205``), for a
    connection that was invalidated or dropped (SQLAlchemy ``connection_invalidated``, SQLSTATE
    class ``08``, server shutdown ``57P01``-``57P03``, MySQL ``2006``/``2013``) and for SQLite's
    busy / locked errors. False for everything else, integrity and validation errors included.
    Wrappers are looked through: :class:`sqlalchemy.exc.StatementError` ``.orig`` and
    ``__cause__`` chains, except that a :class:`TransactionRetryError` (a unit that already gave
    up) is never transient.
    """
    return _transience(exc) is not None


LandedCheck = Callable[Concatenate[Session, P], R | None]
"""``landed(session, *args, **kwargs)``: what the unit returned if an earlier COMMIT of it landed,
else ``None``; runs in a transaction of its own, with the unit's arguments."""


def _units(target: Database | sessionmaker[Session]) -> Database | SessionmakerUnits:
    if isinstance(target, sessionmaker):
        return units_of(target)
    return target


@contextmanager
def transaction(target: Database | sessionmaker[Session]) -> Iterator[Session]:
    """One attempt of a unit of work on ``target``; yields the session to work with.

    Uses the current session of ``target`` in this context, or opens one around the unit.
    Commits when the block ends normally, rolls back and re-raises when it raises. Never retries
    (a ``with`` body cannot be re-run): use :func:`run_transaction` for that. Inside an active
    transaction it joins it through a SAVEPOINT (see the module doc).
    """
    db = _units(target)
    current = db.current_session()
    if _unit_active(current):
        with current.begin_nested():
            yield current
        return
    with _session_for(db, current) as session, _unit(db, session) as unit:
        unit.attempts = 1
        committing = False
        try:
            with session.begin():
                yield session
                session.flush()
                committing = True
        except sa.exc.DBAPIError as exc:
            if committing and not _commit_answered(exc):
                raise CommitOutcomeUnknownError(1, exc) from exc
            raise


def run_transaction(
    db: Database | sessionmaker[Session],
    fn: Callable[Concatenate[Session, P], R],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """Run ``fn(session, *args, **kwargs)`` as a unit of work on ``db``, retrying transient errors.

    Each attempt runs in its own transaction, flushed and committed at the end; a transient error
    (see :func:`is_transient`) rolls it back and, after an exponential backoff with jitter
    (``retry_initial_delay`` growing to ``retry_max_delay``), runs ``fn`` again. It stops after
    ``retry_attempts`` attempts, or before a sleep that would end past ``retry_deadline`` seconds
    from the first attempt, raising :class:`TransactionRetryError` from the last error. Only the
    attempt running when the deadline passes can overrun it.

    A COMMIT the server answered with a transient error did not commit and is retried; one that
    got no answer may have committed, so the unit is not run again and
    :class:`~instrumentation.errors.CommitOutcomeUnknownError` is raised from the driver error
    (use :func:`run_transaction_with_check` for units that can tell). Any non-transient error is
    re-raised unchanged after the rollback. Returns what ``fn`` returned on the committed attempt.

    Inside an active transaction ``fn`` runs once, joined through a SAVEPOINT, and retrying is
    left to the outermost unit (see the module doc).
    """
    return _run(_units(db), fn, None, args, kwargs)


def run_transaction_with_check(
    db: Database | sessionmaker[Session],
    fn: Callable[Concatenate[Session, P], R],
    landed: LandedCheck[P, R],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """:func:`run_transaction` for a unit that can tell whether an earlier COMMIT of it landed.

    After a database failure at COMMIT that is transient or got no answer, the next attempt
    first runs ``landed(session, *args, **kwargs)`` in a transaction of its own; if that returns
    something other than ``None`` it is the unit's result and ``fn`` is not run again. Only if
    the retries run out before any check could answer does the call raise
    :class:`~instrumentation.errors.CommitOutcomeUnknownError`.
    """
    return _run(_units(db), fn, landed, args, kwargs)


def _run(
    db: Database | SessionmakerUnits,
    fn: Callable[..., R],
    landed: Callable[..., R | None] | None,
    args: tuple[object, ...],
    kwargs: dict[str, object],
) -> R:
    current = db.current_session()
    if _unit_active(current):
        with current.begin_nested():
            return fn(current, *args, **kwargs)
    with _session_for(db, current) as session, _unit(db, session) as unit:
        return unit.run(session, fn, landed, args, kwargs)


Service = Callable[Concatenate[Session, P], R]
BoundService = Callable[Concatenate["Database | sessionmaker[Session] | Session", P], R]


@overload
def transactional(fn: Service[P, R], /) -> BoundService[P, R]: ...


@overload
def transactional(
    *, readonly: bool = False, landed: LandedCheck[P, R] | None = None
) -> Callable[[Service[P, R]], BoundService[P, R]]: ...


def transactional(
    fn: Service[P, R] | None = None,
    /,
    *,
    readonly: bool = False,
    landed: LandedCheck[P, R] | None = None,
) -> BoundService[P, R] | Callable[[Service[P, R]], BoundService[P, R]]:
    """Decorate a service ``fn(session, ...)`` so that callers pass a ``Database``, a
    ``sessionmaker`` or a ``Session``.

    Given a ``Database`` or a ``sessionmaker`` the call is a retried unit of its own
    (:func:`run_transaction`), so ``fn`` may run more than once. Given a ``Session`` it joins
    the caller's unit: inside a SAVEPOINT if a transaction is active, else in a plain
    ``session.begin()`` block that commits on return; it neither retries nor records a
    ``db.transaction`` span there.

    ``@transactional(readonly=True)`` marks a unit that only reads: on SQLite its own
    transaction begins DEFERRED instead of IMMEDIATE, so it never queues behind writers (see
    :data:`instrumentation.sqlite.READONLY_OPTION`); other backends ignore the mark.

    ``@transactional(landed=check)`` gives the unit a landed check (see
    :func:`run_transaction_with_check`), used when it runs as a unit of its own.
    """
    if fn is None:
        return functools.partial(_bind, readonly=readonly, landed=landed)
    return _bind(fn, readonly=readonly, landed=landed)


def _bind(
    fn: Service[P, R], *, readonly: bool, landed: LandedCheck[P, R] | None
) -> BoundService[P, R]:
    unit = functools.partial(_read_only_unit, fn) if readonly else fn

    @functools.wraps(fn)
    def wrapper(
        target: Database | sessionmaker[Session] | Session, /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        if not isinstance(target, Session):
            return _run(_units(target), unit, landed, args, kwargs)
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
        if isinstance(current, _FINAL_ERRORS):
            return None
        seen.add(id(current))
        if isinstance(current, sa.exc.DBAPIError) and current.connection_invalidated:
            return "disconnect"
        code = mysql.error_code(current)
        if code in mysql.CONFLICT_CODES:
            return "conflict"
        if code in mysql.DISCONNECT_CODES:
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


def _commit_answered(exc: BaseException) -> bool:
    """Whether the database answered a failed COMMIT with an error (see the note on top)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(getattr(current, "sqlstate", None), str) or isinstance(
            current, sqlite3.Error
        ):
            return True
        code = mysql.error_code(current)
        if code is not None and mysql.is_server_answer(code) and code not in mysql.DISCONNECT_CODES:
            return True
        if isinstance(current, sa.exc.StatementError) and current.orig is not None:
            current = current.orig
        else:
            current = current.__cause__
    return False


def _outcome_of(exc: BaseException) -> Outcome:
    # A stale version is optimistic locking doing its job (the caller lost a race, 409), not a
    # database failure.
    if isinstance(exc, StaleDataError):
        return "rollback"
    if isinstance(exc, sa.exc.SQLAlchemyError | InstrumentationError):
        return "error"
    return "rollback"


def _unit_active(session: Session | None) -> TypeGuard[Session]:
    """Whether ``session`` runs a transaction begun on purpose, which a new unit must join."""
    if session is None:
        return False
    root = session.get_transaction()
    return root is not None and root.origin is not SessionTransactionOrigin.AUTOBEGIN


def _session_for(
    db: Database | SessionmakerUnits, current: Session | None
) -> AbstractContextManager[Session]:
    """The current session as is (its owner closes it), or a new one closed with the unit."""
    if current is not None:
        return nullcontext(current)
    return db.session()


@contextmanager
def _unit(db: Database | SessionmakerUnits, session: Session) -> Iterator[_Unit]:
    """The span, timing and log record of an outermost unit about to begin on ``session``."""
    parent = unsampled_parent(db.drops_unsampled_children)
    started: AbstractContextManager[Span] = (
        nullcontext(parent)
        if parent is not None
        else db.tracer.start_as_current_span(
            conventions.DB_TRANSACTION_SPAN,
            kind=SpanKind.INTERNAL,
            record_exception=False,
            set_status_on_exception=False,
        )
    )
    with started as span:
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

    __slots__ = ("attempts", "committing", "db", "span", "start", "unresolved")

    def __init__(self, db: Database | SessionmakerUnits, span: Span) -> None:
        self.db = db
        self.span = span
        self.start = time.monotonic()
        self.attempts = 0
        self.committing = False
        # A COMMIT of this unit failed and no landed check has answered since.
        self.unresolved = False

    def run(
        self,
        session: Session,
        fn: Callable[..., R],
        landed: Callable[..., R | None] | None,
        args: tuple[object, ...],
        kwargs: dict[str, object],
    ) -> R:
        settings = self.db.settings

        def attempt() -> R:
            self.attempts += 1
            self.committing = False
            if self.unresolved and landed is not None:
                with session.begin():
                    found = landed(session, *args, **kwargs)
                self.unresolved = False
                self._checked(found is not None)
                if found is not None:
                    return found
            try:
                with session.begin():
                    result = fn(session, *args, **kwargs)
                    # Flush here so that only COMMIT itself counts as "in flight" below.
                    session.flush()
                    self.committing = True
            except sa.exc.DBAPIError as exc:
                if self.committing:
                    self._commit_failed(exc, checkable=landed is not None)
                raise
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

    def _commit_failed(self, exc: sa.exc.DBAPIError, *, checkable: bool) -> None:
        answered = _commit_answered(exc)
        if checkable and (not answered or is_transient(exc)):
            self.unresolved = True
        elif not answered:
            raise CommitOutcomeUnknownError(self.attempts, exc) from exc

    def _checked(self, landed: bool) -> None:
        if self.span.is_recording():
            self.span.add_event(
                conventions.LANDED_CHECK_EVENT, {conventions.VRP_DB_TRANSACTION_LANDED: landed}
            )
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "the failed COMMIT of attempt %d %s",
                self.attempts - 1,
                "had landed; its result is used" if landed else "had not landed; running again",
                extra={
                    conventions.DB_SYSTEM_NAME: self.db.system,
                    conventions.VRP_DB_TRANSACTION_ATTEMPT: self.attempts,
                    conventions.VRP_DB_TRANSACTION_LANDED: landed,
                },
            )

    def _retryable(self, exc: BaseException) -> bool:
        return self.unresolved or _transience(exc) is not None

    def _on_retry(self, state: RetryCallState) -> None:
        exc = _failure(state)
        kind = error_type(exc)
        delay = state.upcoming_sleep
        if self.span.is_recording():
            self.span.add_event(
                conventions.RETRY_EVENT,
                {
                    conventions.ERROR_TYPE: kind,
                    conventions.VRP_DB_TRANSACTION_ATTEMPT: state.attempt_number,
                    conventions.VRP_DB_TRANSACTION_RETRY_DELAY: delay,
                },
            )
        self.db.meter.create_counter(
            conventions.VRP_DB_TRANSACTION_RETRIES,
            unit="{retry}",
            description="Units of work run again after a transient database error.",
        ).add(1, {conventions.ERROR_TYPE: kind})
        if logger.isEnabledFor(logging.WARNING):
            logger.warning(
                "transaction attempt %d failed with %s; retrying in %.3f s",
                state.attempt_number,
                kind,
                delay,
                extra={
                    conventions.DB_SYSTEM_NAME: self.db.system,
                    conventions.ERROR_TYPE: kind,
                    conventions.VRP_DB_TRANSACTION_ATTEMPT: state.attempt_number,
                    conventions.VRP_DB_TRANSACTION_RETRY_DELAY: delay,
                },
            )

    def _give_up(self, state: RetryCallState) -> NoReturn:
        last = _failure(state)
        if self.unresolved:
            raise CommitOutcomeUnknownError(self.attempts, last) from last
        raise TransactionRetryError(self.attempts, time.monotonic() - self.start, last) from last

    def finish(self, exc: BaseException | None) -> None:
        outcome: Outcome = "commit" if exc is None else _outcome_of(exc)
        kind = None if exc is None else error_type(exc)
        span = self.span
        if span.is_recording():
            attributes: dict[str, str | int] = {
                conventions.DB_SYSTEM_NAME: self.db.system,
                conventions.VRP_DB_TRANSACTION_ATTEMPTS: self.attempts,
                conventions.VRP_DB_TRANSACTION_OUTCOME: outcome,
            }
            if kind is not None:
                attributes[conventions.ERROR_TYPE] = kind
            span.set_attributes(attributes)
            if outcome == "error":
                span.set_status(Status(StatusCode.ERROR, kind))
        level = _LOG_LEVELS[outcome]
        if outcome == "rollback" and is_client_error(exc):
            level = logging.DEBUG
        if note_transaction(outcome, self.attempts) and outcome == "commit":
            # Inside a request the access record carries the unit (the canonical log line).
            level = logging.DEBUG
        if logger.isEnabledFor(level):
            duration_ms = (time.monotonic() - self.start) * 1000.0
            extra: dict[str, object] = {
                conventions.DB_SYSTEM_NAME: self.db.system,
                conventions.VRP_DB_TRANSACTION_OUTCOME: outcome,
                conventions.VRP_DB_TRANSACTION_ATTEMPTS: self.attempts,
                conventions.LOG_DURATION_MS: round(duration_ms, 3),
            }
            if kind is not None:
                extra[conventions.ERROR_TYPE] = kind
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
