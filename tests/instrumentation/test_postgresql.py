"""The pre-ping rule of :mod:`instrumentation.postgresql`, on the real PostgreSQL.

The race it covers (libpq has read the killed backend's FATAL answer to the ping but not yet the
end of the stream) shows up about once in ten thousand pings under a backend killer, too rarely
to provoke on demand. These tests kill the backend for real, then have the ping raise what the
dialect's ``do_ping`` raises in that race, before libpq reads anything: its ``finally`` block's
``ProgrammingError`` over the ping's own ``AdminShutdown``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from instrumentation.postgresql import install, ping_lost_connection
from tests.instrumentation.conftest import MakeDatabase
from tests.instrumentation.test_transaction_faults import terminate_backend

pytestmark = pytest.mark.postgres

RACE_MESSAGE = "can't change 'autocommit' now: connection in transaction status ACTIVE"


def raised_over(cause: BaseException, error: BaseException) -> BaseException:
    """``error`` raised while ``cause`` was being handled, as a ``finally`` block raises it."""
    try:
        try:
            raise cause
        finally:
            raise error
    except BaseException as raised:
        return raised


def test_an_error_raised_over_a_lost_connection_counts_as_lost() -> None:
    lost = raised_over(psycopg.errors.AdminShutdown("terminating"), psycopg.ProgrammingError("x"))

    assert ping_lost_connection(lost)
    assert ping_lost_connection(psycopg.OperationalError("server closed the connection"))


def test_an_error_with_no_lost_connection_behind_it_does_not() -> None:
    assert not ping_lost_connection(psycopg.ProgrammingError(RACE_MESSAGE))
    assert not ping_lost_connection(
        raised_over(ValueError("not a database error"), psycopg.ProgrammingError(RACE_MESSAGE))
    )


@pytest.fixture
def racing_ping() -> Iterator[Callable[[sa.Engine], None]]:
    """Make ``engine``'s next pre-ping fail the way the race makes it fail."""
    patched: list[sa.engine.Dialect] = []

    def patch(engine: sa.Engine) -> None:
        dialect = engine.dialect

        def do_ping(dbapi_connection: Any) -> bool:
            vars(dialect).pop("do_ping")
            # The race's state: libpq has not yet seen the stream end, so the connection still
            # looks open, and the ping's AdminShutdown is hidden behind the ProgrammingError of
            # the dialect's ``finally`` block.
            assert not dbapi_connection.closed
            assert not dbapi_connection.broken
            raise raised_over(
                psycopg.errors.AdminShutdown("terminating connection"),
                psycopg.ProgrammingError(RACE_MESSAGE),
            )

        dialect.do_ping = do_ping  # type: ignore[method-assign]
        patched.append(dialect)

    yield patch
    for dialect in patched:
        vars(dialect).pop("do_ping", None)


def backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def test_a_ping_that_raises_over_a_killed_backend_reconnects(
    make_database: MakeDatabase,
    postgres_url: str,
    racing_ping: Callable[[sa.Engine], None],
) -> None:
    db = make_database(postgres_url, pool_size=1, max_overflow=0)
    killed = backend_pid(db.engine)
    terminate_backend(postgres_url, killed)
    racing_ping(db.engine)

    fresh = backend_pid(db.engine)

    assert fresh != killed
    assert db.pool_status().checked_out == 0


def test_without_the_rule_the_same_ping_failure_reaches_the_caller(
    postgres_url: str, racing_ping: Callable[[sa.Engine], None]
) -> None:
    engine = sa.create_engine(
        postgres_url.replace("postgresql://", "postgresql+psycopg://", 1),
        pool_pre_ping=True,
        pool_size=1,
        max_overflow=0,
    )
    try:
        killed = backend_pid(engine)
        terminate_backend(postgres_url, killed)
        racing_ping(engine)
        with pytest.raises(sa.exc.ProgrammingError, match="can't change 'autocommit'"):
            backend_pid(engine)

        install(engine)
        terminate_backend(postgres_url, backend_pid(engine))
        racing_ping(engine)
        assert backend_pid(engine) != killed
    finally:
        engine.dispose()
