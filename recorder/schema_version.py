"""Migrations: upgrade the schema, and refuse to serve a database that is behind.

The Alembic scripts live in ``recorder/migrations`` (one file per revision under
``versions/``, linear history, named ``NNNN_<what>.py``). There is no ``alembic.ini``: the
configuration is built here so that ``vrp db upgrade`` works from any working directory.

Checking and upgrading run inside one ``db.migrate`` span, so that the statements Alembic sends
on an instrumented engine sit under it instead of each starting a trace of its own. Alembic's
own INFO lines ("Context impl ...") are quieted where logging is configured
(:mod:`instrumentation.logs`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from instrumentation import conventions
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


@contextmanager
def _migrate_span(engine: sa.Engine, tracer: trace.Tracer | None) -> Iterator[None]:
    tracer = tracer or trace.get_tracer(__name__)
    with tracer.start_as_current_span(
        conventions.DB_MIGRATE_SPAN,
        kind=SpanKind.INTERNAL,
        attributes={conventions.DB_SYSTEM_NAME: engine.dialect.name},
    ):
        yield


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(
    engine: sa.Engine, revision: str = "head", *, tracer: trace.Tracer | None = None
) -> None:
    """Create or upgrade the schema to ``revision`` inside one transaction where the backend can.

    ``tracer`` is the engine's (the global provider's when omitted).
    """
    config = alembic_config()
    with _migrate_span(engine, tracer):
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
        current = current_revision(engine)
    logger.info("database schema at revision %s", current)


def check_current(engine: sa.Engine, *, tracer: trace.Tracer | None = None) -> None:
    """Raise :class:`SchemaOutOfDateError` unless the database is at the newest revision.

    ``tracer`` is the engine's (the global provider's when omitted).
    """
    with _migrate_span(engine, tracer):
        current = current_revision(engine)
    head = head_revision()
    if current != head:
        raise SchemaOutOfDateError(
            f"database schema is at revision {current or 'none (empty database)'}, "
            f"this version needs {head}: run `vrp db upgrade`"
        )
