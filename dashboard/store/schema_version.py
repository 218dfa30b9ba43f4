"""The store's schema revision: Alembic scripts in ``dashboard/migrations``, upgraded in place.

The version table is the dashboard's own (:data:`VERSION_TABLE`), so the store can share a
database with an application that has its own Alembic history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from dashboard.errors import StoreError

VERSION_TABLE = "dashboard_alembic_version"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "dashboard:migrations")
    config.set_main_option("version_table", VERSION_TABLE)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: sa.Engine) -> None:
    """Create or upgrade the schema to the newest revision (idempotent)."""
    config = alembic_config()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Receivers starting together on one PostgreSQL store upgrade one at a time.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(8050)"))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def check_current(engine: sa.Engine) -> None:
    """Raise :class:`StoreError` unless the schema is at the newest revision."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()
    if current != head:
        raise StoreError(
            f"telemetry store schema is at revision {current or 'none'}, this version "
            f"needs {head}: start the dashboard once to upgrade it"
        )
