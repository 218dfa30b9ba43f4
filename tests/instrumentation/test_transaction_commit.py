"""A failed COMMIT on the real PostgreSQL: resolved by a landed check, retried when the server
answered, reported as unknown when nobody can tell.

Faults are injected at the dialect's COMMIT of one engine (:class:`LostCommitAnswer`): the
COMMIT either reaches the server and commits, or never does, and then the client's connection
is closed as if the network had dropped it, so the driver raises a connection error that
carries no SQLSTATE, exactly what a real lost answer looks like to the client.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from instrumentation.database import Database
from instrumentation.errors import CommitOutcomeUnknownError
from instrumentation.testing import InMemoryTelemetry
from instrumentation.transactions import (
    run_transaction,
    run_transaction_with_check,
    transaction,
    transactional,
)
from tests.instrumentation.conftest import LogReader, MakeDatabase, field
from tests.instrumentation.test_transaction_faults import (
    attribute,
    entries,
    ledger,
    open_fast_retrying,
    retries_counted,
    transaction_spans,
)

pytestmark = pytest.mark.postgres


class LostCommitAnswer:
    """Replaces COMMIT on one engine: the first ``times`` COMMITs lose their answer.

    With ``landed=True`` the COMMIT runs on the server first (it committed, the client never
    hears so); with ``landed=False`` it never reaches the server (the server rolls back when the
    connection closes). Either way the client's connection is then closed and the driver error
    of a dropped connection is raised.
    """

    def __init__(self, db: Database, *, landed: bool, times: int = 1) -> None:
        self._commit = db.engine.dialect.do_commit
        self.landed = landed
        self.remaining = times

    def __call__(self, connection: Any) -> None:
        if self.remaining <= 0:
            self._commit(connection)
            return
        self.remaining -= 1
        if self.landed:
            self._commit(connection)
        getattr(connection, "dbapi_connection", connection).close()
        raise psycopg.OperationalError(
            "consuming input failed: server closed the connection unexpectedly"
        )


@pytest.fixture
def db(make_database: MakeDatabase, telemetry: InMemoryTelemetry, postgres_url: str) -> Database:
    return open_fast_retrying(make_database, telemetry, postgres_url)


def lose_commit_answers(
    monkeypatch: pytest.MonkeyPatch, db: Database, *, landed: bool, times: int = 1
) -> LostCommitAnswer:
    fault = LostCommitAnswer(db, landed=landed, times=times)
    monkeypatch.setattr(db.engine.dialect, "do_commit", fault)
    return fault


class Recorder:
    """A unit inserting one ledger entry, counting its runs, with a landed check by entry."""

    def __init__(self) -> None:
        self.calls = 0
        self.checks = 0

    def record(self, session: Session, entry: str) -> str:
        self.calls += 1
        session.execute(sa.insert(ledger).values(entry=entry))
        return f"inserted {entry}"

    def landed(self, session: Session, entry: str) -> str | None:
        self.checks += 1
        found = session.scalar(sa.select(ledger.c.entry).where(ledger.c.entry == entry))
        return None if found is None else f"found {found}"


def test_commit_that_landed_but_lost_its_answer_is_found_by_the_check_and_not_run_again(
    db: Database,
    telemetry: InMemoryTelemetry,
    monkeypatch: pytest.MonkeyPatch,
    unit_logs: LogReader,
) -> None:
    lose_commit_answers(monkeypatch, db, landed=True)
    unit = Recorder()

    result = run_transaction_with_check(db, unit.record, unit.landed, "once")

    assert result == "found once"
    assert (unit.calls, unit.checks) == (1, 1)
    assert entries(db) == ["once"]
    (span,) = transaction_spans(telemetry)
    assert attribute(span, "vrp.db.transaction.attempts") == 2
    assert attribute(span, "vrp.db.transaction.outcome") == "commit"
    retry, check = span.events
    assert retry.name == "retry"
    assert retry.attributes is not None
    assert retry.attributes["error.type"] == "psycopg.OperationalError"
    assert check.name == "landed_check"
    assert check.attributes is not None
    assert check.attributes["vrp.db.transaction.landed"] is True
    assert retries_counted(telemetry) == {"psycopg.OperationalError": 1}
    resolved = [r for r in unit_logs() if "vrp.db.transaction.landed" in r.__dict__]
    assert [field(r, "vrp.db.transaction.landed") for r in resolved] == [True]


def test_commit_that_did_not_land_is_checked_then_run_again_once(
    db: Database, telemetry: InMemoryTelemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    lose_commit_answers(monkeypatch, db, landed=False)
    unit = Recorder()

    result = run_transaction_with_check(db, unit.record, unit.landed, "once")

    assert result == "inserted once"
    assert (unit.calls, unit.checks) == (2, 1)
    assert entries(db) == ["once"]
    (span,) = transaction_spans(telemetry)
    assert attribute(span, "vrp.db.transaction.attempts") == 2
    assert attribute(span, "vrp.db.transaction.outcome") == "commit"
    check = span.events[-1]
    assert check.attributes is not None
    assert check.attributes["vrp.db.transaction.landed"] is False


def test_the_decorator_gives_a_service_its_landed_check(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    lose_commit_answers(monkeypatch, db, landed=True)
    unit = Recorder()
    service = transactional(landed=unit.landed)(unit.record)

    assert service(db, "once") == "found once"
    assert (unit.calls, unit.checks) == (1, 1)
    assert entries(db) == ["once"]


@pytest.mark.parametrize("landed", [True, False], ids=["landed", "not-landed"])
def test_unit_without_a_check_whose_commit_got_no_answer_raises_outcome_unknown(
    db: Database,
    telemetry: InMemoryTelemetry,
    monkeypatch: pytest.MonkeyPatch,
    unit_logs: LogReader,
    landed: bool,
) -> None:
    lose_commit_answers(monkeypatch, db, landed=landed)
    unit = Recorder()

    with pytest.raises(CommitOutcomeUnknownError) as raised:
        run_transaction(db, unit.record, "maybe")

    assert unit.calls == 1
    assert entries(db) == (["maybe"] if landed else [])
    assert isinstance(raised.value.__cause__, sa.exc.OperationalError)
    assert "unknown" in str(raised.value)
    (span,) = transaction_spans(telemetry)
    assert attribute(span, "vrp.db.transaction.attempts") == 1
    assert attribute(span, "vrp.db.transaction.outcome") == "error"
    assert attribute(span, "error.type") == "instrumentation.errors.CommitOutcomeUnknownError"
    assert retries_counted(telemetry) == {}
    (record,) = unit_logs()
    assert record.levelno == logging.ERROR


def test_single_attempt_transaction_reports_a_lost_commit_answer_as_outcome_unknown(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    lose_commit_answers(monkeypatch, db, landed=True)

    with pytest.raises(CommitOutcomeUnknownError), transaction(db) as session:
        session.execute(sa.insert(ledger).values(entry="maybe"))

    assert entries(db) == ["maybe"]


def test_checked_unit_that_runs_out_of_attempts_before_any_check_is_outcome_unknown(
    make_database: MakeDatabase,
    telemetry: InMemoryTelemetry,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = open_fast_retrying(make_database, telemetry, postgres_url, retry_attempts=1)
    lose_commit_answers(monkeypatch, db, landed=False)
    unit = Recorder()

    with pytest.raises(CommitOutcomeUnknownError):
        run_transaction_with_check(db, unit.record, unit.landed, "maybe")

    assert (unit.calls, unit.checks) == (1, 0)
    assert entries(db) == []


def set_entry_constraint(db: Database, deferred: bool) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE ledger DROP CONSTRAINT ledger_entry_key"))
        conn.execute(
            sa.text(
                "ALTER TABLE ledger ADD CONSTRAINT ledger_entry_key UNIQUE (entry)"
                + (" DEFERRABLE INITIALLY DEFERRED" if deferred else "")
            )
        )


def test_commit_refused_by_a_deferred_constraint_is_raised_unchanged_even_with_a_check(
    db: Database,
) -> None:
    run_transaction(db, lambda session: session.execute(sa.insert(ledger).values(entry="x")))
    unit = Recorder()
    set_entry_constraint(db, deferred=True)
    try:
        with pytest.raises(sa.exc.IntegrityError):
            run_transaction_with_check(db, unit.record, unit.landed, "x")
    finally:
        set_entry_constraint(db, deferred=False)

    assert (unit.calls, unit.checks) == (1, 0)
    assert entries(db) == ["x"]
