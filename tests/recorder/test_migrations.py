"""Migrations on SQLite and PostgreSQL: 0002 keeps existing rows and links, and the models match."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from instrumentation.database import Database
from instrumentation.settings import DatabaseSettings
from recorder import schema_version
from recorder.models import Base

# SQLite cannot reflect the expression index on lower(tags.name); autogenerate says so and skips it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*expression-based index:UserWarning",
    "ignore:Skipped unsupported reflection of expression-based index",
)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    database = Database(DatabaseSettings(url=database_url))
    yield database.engine
    database.dispose()


def seed_at_0001(engine: sa.Engine) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO recordings (id, public_id, title, sha256, mime_type, size_bytes, "
                "status, created_at, updated_at, version) VALUES (1, :public_id, 'old', "
                ":sha, 'audio/wav', 10, 'active', :now, :now, 1)"
            ),
            {"public_id": uuid.uuid4().hex, "sha": "a" * 64, "now": now},
        )
        conn.execute(sa.text("INSERT INTO tags (id, name) VALUES (1, 'kept')"))
        conn.execute(sa.text("INSERT INTO recording_tags (recording_id, tag_id) VALUES (1, 1)"))


def test_0002_keeps_rows_and_tag_links_and_the_models_match_the_schema(
    engine: sa.Engine,
) -> None:
    schema_version.upgrade(engine, "0001")
    seed_at_0001(engine)

    schema_version.upgrade(engine)

    assert schema_version.current_revision(engine) == schema_version.head_revision()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM recording_tags")).scalar_one() == 1
        row = conn.execute(
            sa.text("SELECT title, audio_format, idempotency_key FROM recordings")
        ).one()
        assert tuple(row) == ("old", None, None)
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_idempotency_keys_are_unique_but_many_rows_have_none(engine: sa.Engine) -> None:
    schema_version.upgrade(engine)
    now = datetime.now(UTC).replace(tzinfo=None)
    insert = sa.text(
        "INSERT INTO recordings (public_id, title, sha256, mime_type, size_bytes, status, "
        "created_at, updated_at, version, idempotency_key) VALUES (:public_id, 't', :sha, "
        "'audio/wav', 1, 'active', :now, :now, 1, :key)"
    )

    def add(key: str | None) -> None:
        with engine.begin() as conn:
            conn.execute(
                insert, {"public_id": uuid.uuid4().hex, "sha": "b" * 64, "now": now, "key": key}
            )

    add(None)
    add(None)
    add("k")
    with pytest.raises(sa.exc.IntegrityError):
        add("k")


def test_0002_downgrades_to_0001(engine: sa.Engine) -> None:
    schema_version.upgrade(engine)

    downgrade(engine, "0001")

    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("recordings")}
    assert "idempotency_key" not in columns
    assert schema_version.current_revision(engine) == "0001"


def downgrade(engine: sa.Engine, revision: str) -> None:
    config = schema_version.alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
