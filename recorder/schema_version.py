"""Migrations: upgrade the schema, and refuse to serve a database that is behind.

The Alembic scripts live in ``recorder/migrations`` (one file per revision under
``versions/``, linear history, named ``NNNN_<what>.py``). There is no ``alembic.ini``: the
configuration is built here so that ``vrp db upgrade`` works from any working directory.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from recorder.errors import SchemaOutOfDateError

logger = logging.getLogger(__name__)


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "recorder:migrations")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise SchemaOutOfDateError("no migrations found in recorder/migrations")
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Create or upgrade the schema to ``revision`` inside one transaction where the backend can."""
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    logger.info("database schema at revision %s", current_revision(engine))


def check_current(engine: sa.Engine) -> None:
    """Raise :class:`SchemaOutOfDateError` unless the database is at the newest revision."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        raise SchemaOutOfDateError(
            f"database schema is at revision {current or 'none (empty database)'}, "
            f"this version needs {head}: run `vrp db upgrade`"
        )
