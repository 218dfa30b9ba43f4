"""Fixtures for the database-layer tests: self-cleaning databases.

``make_database(url, **settings)`` opens a :class:`Database` reporting into the test's
``telemetry`` (the in-memory providers shared by the whole suite); at teardown it checks that
the test returned every connection it took, then disposes the database. ``db`` is one such
database on ``database_url`` (SQLite and PostgreSQL), already connected once so that
SQLAlchemy's first-connect queries are out of the way. :func:`create_recordings` gives a test
the small ``recordings`` table the database-layer tests write to; ``unit_logs`` reads the
records of the units of work (logger ``instrumentation.transactions``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from instrumentation.database import Database
from instrumentation.settings import DatabaseSettings
from instrumentation.testing import InMemoryTelemetry

MakeDatabase = Callable[..., Database]
LogReader = Callable[[], list[logging.LogRecord]]
TRANSACTIONS_LOGGER = "instrumentation.transactions"


def create_recordings(db: Database) -> None:
    """Create ``recordings (id INTEGER PRIMARY KEY, title TEXT NOT NULL)`` on ``db``."""
    with db.session() as session:
        session.execute(
            sa.text("CREATE TABLE recordings (id INTEGER PRIMARY KEY, title TEXT NOT NULL)")
        )
        session.commit()


@pytest.fixture
def make_database(telemetry: InMemoryTelemetry) -> Iterator[MakeDatabase]:
    opened: list[Database] = []

    def make(url: str, *, telemetry_: InMemoryTelemetry | None = None, **settings: Any) -> Database:
        recorded = telemetry_ or telemetry
        database = Database(
            DatabaseSettings(url=url, **settings),
            tracer_provider=recorded.tracer_provider,
            meter_provider=recorded.meter_provider,
        )
        opened.append(database)
        return database

    yield make
    leftovers = {db.name: db.pool_status().checked_out for db in opened}
    for database in opened:
        database.dispose()
    assert not any(leftovers.values()), f"connections still checked out: {leftovers}"


@pytest.fixture
def db(database_url: str, make_database: MakeDatabase, telemetry: InMemoryTelemetry) -> Database:
    database = make_database(database_url)
    database.ping()
    telemetry.clear()
    return database


def field(record: logging.LogRecord, name: str) -> Any:
    """An extra field of a log record, by its OpenTelemetry attribute name (``error.type``)."""
    return record.__dict__[name]


@pytest.fixture
def unit_logs(caplog: pytest.LogCaptureFixture) -> LogReader:
    """Reads the records of the transactions logger captured so far in the test."""
    caplog.set_level(logging.INFO, logger=TRANSACTIONS_LOGGER)
    return lambda: [record for record in caplog.records if record.name == TRANSACTIONS_LOGGER]
