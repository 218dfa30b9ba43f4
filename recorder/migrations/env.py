"""Alembic environment for the recorder schema.

Run through :mod:`recorder.schema_version` (``vrp db upgrade``), which hands over either an
open connection (``config.attributes["connection"]``) or the URL; there is no alembic.ini.
SQLite needs batch mode for ALTER TABLE, so it is on for every backend (a no-op elsewhere).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from recorder.models import Base

config = context.config
target_metadata = Base.metadata


def _configure_and_run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure_and_run(conn)
    engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations()
