"""Alembic environment for the telemetry store's schema.

Run through :meth:`dashboard.store.TelemetryStore.upgrade`, which hands over an open connection
(``config.attributes["connection"]``); there is no alembic.ini. The version table is the
store's own (``dashboard_alembic_version``), so the store may share a database with the app.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from dashboard.schema import metadata

config = context.config
VERSION_TABLE = config.get_main_option("version_table") or "dashboard_alembic_version"


def _configure_and_run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
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


run_migrations()
