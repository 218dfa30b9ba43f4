"""The telemetry store's own Alembic history, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from dashboard.errors import StoreError
from dashboard.schema import metadata
from dashboard.store import TelemetryStore
from dashboard.store.schema_version import VERSION_TABLE, alembic_config


def test_store_upgrades_downgrades_and_upgrades_again_with_its_own_version_table(
    database_url: str,
) -> None:
    store = TelemetryStore(database_url)
    try:
        with pytest.raises(StoreError, match="revision none"):
            store.check_current()
        store.upgrade()
        store.upgrade()
        store.check_current()
        tables = set(sa.inspect(store.engine).get_table_names())
        assert set(metadata.tables) | {VERSION_TABLE} <= tables
        config = alembic_config()
        with store.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        assert not set(metadata.tables) & set(sa.inspect(store.engine).get_table_names())
        store.upgrade()
        store.check_current()
    finally:
        store.dispose()
