"""Fixtures for the database-layer tests: self-cleaning databases.

``make_database(url, **settings)`` opens a :class:`Database` reporting into the test's
``telemetry`` (the in-memory providers shared by the whole suite); at teardown it checks that
the test returned every connection it took, then disposes the database. ``db`` is one such
database on ``database_url`` (SQLite and PostgreSQL), already connected once so that
SQLAlchemy's first-connect queries are out of the way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from instrumentation.database import Database
from instrumentation.settings import DatabaseSettings
from instrumentation.testing import InMemoryTelemetry

MakeDatabase = Callable[..., Database]


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
