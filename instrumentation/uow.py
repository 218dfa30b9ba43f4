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
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Final

from instrumentation import conventions

__all__ = [
    "WorkSummary",
    "begin",
    "current",
    "discard",
    "end",
    "note_session",
    "note_statement",
    "note_transaction",
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


def begin() -> Token[WorkSummary | None]:
    """Open a fresh summary for the request starting in this context; pass the token to end."""
    return _CURRENT.set(WorkSummary())


def end(token: Token[WorkSummary | None]) -> None:
    """Close the summary :func:`begin` opened, restoring what was current before."""
    _CURRENT.reset(token)


def discard() -> None:
    """Stop summarising the current request (one that writes no access record)."""
    _CURRENT.set(None)


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
