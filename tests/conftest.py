"""Fixtures shared by the whole suite.

Every test that touches a database takes ``database_url`` and so runs twice: against a SQLite
file in ``tmp_path`` and against the real PostgreSQL server. The PostgreSQL database is created
once per test session from ``VRP_TEST_POSTGRES_URL`` under a random name and dropped at the end.
In CI (``CI=true``) a missing server fails the run; on a laptop without one the PostgreSQL
variants are skipped with the reason. After every test, no open ``Database`` may still hold a
checked-out connection.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from instrumentation.database import open_databases
from instrumentation.failures import reset_failures


@pytest.fixture(autouse=True)
def _fresh_telemetry_failure_counts() -> None:
    """Each test sees its own telemetry failures, logged as if for the first time."""
    reset_failures()


@pytest.fixture(autouse=True)
def _no_connection_left_checked_out() -> Iterator[None]:
    """After every test, no live ``Database`` may still have a connection checked out."""
    yield
    held = {db.name: db.pool_status().checked_out for db in open_databases()}
    assert not any(held.values()), f"connections still checked out after the test: {held}"


pytest_plugins = ["tests.recorder.fixtures"]

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _as_psycopg(url: str) -> sa.URL:
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def reset_postgres(url: str) -> None:
    """Drop every table (and type, sequence...) of the test database."""
    engine = sa.create_engine(_as_psycopg(url), poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL database for this test session, as a ``postgresql://`` URL."""
    admin_url = _as_psycopg(os.environ.get("VRP_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    name = f"vrp_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        reason = f"PostgreSQL not reachable at {admin_url.render_as_string(hide_password=True)}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (mandatory in CI): {exc.orig}")
        pytest.skip(reason)
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    yield url.replace("postgresql+psycopg://", "postgresql://", 1)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


DEFAULT_MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """A throw-away MariaDB database for this test session (``VRP_TEST_MARIADB_URL`` names the
    server, default root without a password on 127.0.0.1:3306), as a ``mysql+pymysql://`` URL.
    Mandatory in CI, skipped with the reason elsewhere when the server is not reachable."""
    admin_url = make_url(os.environ.get("VRP_TEST_MARIADB_URL", DEFAULT_MARIADB_URL))
    admin = sa.create_engine(admin_url, poolclass=sa.NullPool)
    name = f"vrp_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{name}`"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        reason = f"MariaDB not reachable at {admin_url.render_as_string(hide_password=True)}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (mandatory in CI): {exc.orig}")
        pytest.skip(reason)
    yield admin_url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a fresh schema-less PostgreSQL database.

    For PostgreSQL every test gets the same session database with all tables dropped first, so
    tests stay independent without paying for CREATE DATABASE each time.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    url: str = request.getfixturevalue("postgres_url")
    reset_postgres(url)
    yield url
