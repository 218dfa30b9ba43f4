"""The unit-of-work summary of one HTTP request, for its canonical log line.

High-traffic services log one line per request - the access record - and put on it what the
request did, instead of one record per piece of work. :mod:`instrumentation.flask` opens a
:class:`WorkSummary` for each request it logs (:func:`begin`), the database layer adds to the
summary current in its context (:func:`note_session`, :func:`note_statement`,
:func:`note_transaction`), and the access record carries :meth:`WorkSummary.fields`.

What the fields count, per request:

* ``vrp.db.sessions``: database sessions opened (``db.session`` spans);
* ``vrp.db.transactions``: outermost units of work (``db.transaction`` spans; units joined
  through a SAVEPOINT are part of their outer unit), and per outcome
  ``vrp.db.transactions.commit``, ``.rollback`` and ``.error`` (the outcomes of
  :mod:`instrumentation.transactions`);
* ``vrp.db.attempts``: attempts of those units, ``vrp.db.retries`` the attempts beyond the first;
* ``vrp.db.statements``: statements executed, transaction control excluded (as
  ``vrp.db.session.statements``);
* ``vrp.db.duration_ms``: time spent in statement executions, transaction control included
  (a driver-level COMMIT, as psycopg issues it, is not a statement and is not timed).

Outside a request (the CLI, the scheduler, a script) there is no summary: the notes are no-ops
and :func:`note_transaction` answers ``False``, so a unit logs its own commit at INFO there.
The summary is a plain object in a :class:`~contextvars.ContextVar`: the request's thread (or
task) is the only writer, so the counters need no lock.

The summary also holds the request's statement and pool histogram points until the request
ends (:func:`record`, :func:`flush_points`): :mod:`instrumentation.flask` records them all in a
row next to the request's own duration point. Each ``Histogram.record`` of the SDK runs about
twenty functions (the measurement, its cleaned attributes, the hashed aggregation key, the
exponential bucket mapping); between the app's own work, with the CPU's caches cold, one cost
69 us of CPU inside ``benchmarks/overhead.py``'s requests against 46 us in a row at the
request's end. Each point keeps the context it was made in (the statement's span, for
exemplars) and loses only the moment it joins its aggregation - a few milliseconds, against
export intervals of seconds. Outside a request points are recorded at once.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar, Token
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry.context import Context

from instrumentation import conventions
from instrumentation.bound import BoundHistogram

__all__ = [
    "WorkSummary",
    "begin",
    "current",
    "discard",
    "end",
    "flush_points",
    "note_session",
    "note_statement",
    "note_transaction",
    "record",
]

SESSIONS: Final = conventions.VRP_DB_SESSIONS
TRANSACTIONS: Final = conventions.VRP_DB_TRANSACTIONS
TRANSACTIONS_BY_OUTCOME: Final = {
    "commit": conventions.VRP_DB_TRANSACTIONS_COMMIT,
    "rollback": conventions.VRP_DB_TRANSACTIONS_ROLLBACK,
    "error": conventions.VRP_DB_TRANSACTIONS_ERROR,
}
ATTEMPTS: Final = conventions.VRP_DB_ATTEMPTS
RETRIES: Final = conventions.VRP_DB_RETRIES
STATEMENTS: Final = conventions.VRP_DB_STATEMENTS
DURATION_MS: Final = conventions.VRP_DB_DURATION_MS


class WorkSummary:
    """Counters of the database work one request did (see the module doc)."""

    __slots__ = (
        "attempts",
        "db_seconds",
        "outcomes",
        "points",
        "sessions",
        "statements",
        "transactions",
    )

    def __init__(self) -> None:
        self.sessions = 0
        self.transactions = 0
        self.outcomes = {"commit": 0, "rollback": 0, "error": 0}
        self.attempts = 0
        self.statements = 0
        self.db_seconds = 0.0
        self.points: list[tuple[BoundHistogram, float, Context]] = []

    @property
    def retries(self) -> int:
        return self.attempts - self.transactions

    def fields(self) -> dict[str, int | float]:
        """The summary as log record fields, every field present (zero when nothing ran)."""
        outcomes = self.outcomes
        return {
            SESSIONS: self.sessions,
            TRANSACTIONS: self.transactions,
            TRANSACTIONS_BY_OUTCOME["commit"]: outcomes["commit"],
            TRANSACTIONS_BY_OUTCOME["rollback"]: outcomes["rollback"],
            TRANSACTIONS_BY_OUTCOME["error"]: outcomes["error"],
            ATTEMPTS: self.attempts,
            RETRIES: self.retries,
            STATEMENTS: self.statements,
            DURATION_MS: round(self.db_seconds * 1000, 3),
        }


_CURRENT: ContextVar[WorkSummary | None] = ContextVar("vrp_unit_of_work", default=None)
_log = logging.getLogger(__name__)


def begin() -> Token[WorkSummary | None]:
    """Open a fresh summary for the request starting in this context; pass the token to end."""
    return _CURRENT.set(WorkSummary())


def end(token: Token[WorkSummary | None]) -> None:
    """Close the summary :func:`begin` opened, restoring what was current before.

    Points still held are recorded first.
    """
    flush_points()
    _CURRENT.reset(token)


def discard() -> None:
    """Stop summarising the current request (one that writes no access record)."""
    flush_points()
    _CURRENT.set(None)


def record(point: BoundHistogram, value: float) -> None:
    """``point.record(value)``, held until the request ends inside one."""
    summary = _CURRENT.get()
    if summary is None:
        point.record(value)
    else:
        summary.points.append((point, value, otel_context.get_current()))


def flush_points() -> None:
    """Record the points the current request holds, each in the context it was made in.

    A point the SDK refuses is logged and the others are recorded: telemetry never fails the
    request.
    """
    summary = _CURRENT.get()
    if summary is None or not summary.points:
        return
    points, summary.points = summary.points, []
    for point, value, context in points:
        try:
            point.record(value, context)
        except Exception:
            _log.warning("a held metric point could not be recorded", exc_info=True)


def current() -> WorkSummary | None:
    """The summary of the request being served in this context, ``None`` outside one."""
    return _CURRENT.get()


def note_session() -> None:
    """Count a database session opened in the current request."""
    summary = _CURRENT.get()
    if summary is not None:
        summary.sessions += 1


def note_statement(seconds: float, counted: bool) -> None:
    """Add one statement execution of ``seconds``; ``counted`` is False for transaction control."""
    summary = _CURRENT.get()
    if summary is not None:
        summary.db_seconds += seconds
        if counted:
            summary.statements += 1


def note_transaction(outcome: str, attempts: int) -> bool:
    """Count an outermost unit that ended with ``outcome`` after ``attempts`` attempts.

    Returns whether a request summary took it: the access record then reports the unit, and the
    caller may log a routine outcome below INFO.
    """
    summary = _CURRENT.get()
    if summary is None:
        return False
    summary.transactions += 1
    summary.attempts += attempts
    if outcome in summary.outcomes:
        summary.outcomes[outcome] += 1
    return True
