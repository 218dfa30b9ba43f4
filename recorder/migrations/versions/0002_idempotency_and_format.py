"""Recordings remember their Idempotency-Key and the audio format detected at upload.

``idempotency_key`` has a unique index (NULLs allowed: most uploads send none), so a repeated
key finds the recording it created; ``idempotency_fingerprint`` is a SHA-256 of what that upload
held (title, tags, audio), so the same key with another body can be refused. ``audio_format``
names the detected format (``recorder.audio.FORMATS``) and gives downloads the right file
extension; rows stored before this revision keep NULL and are served by their MIME type.

Only nullable columns and an index are added, which SQLite does in place (ADD COLUMN, CREATE
INDEX). Batch mode would copy the table instead, and on SQLite, with foreign keys enforced,
dropping the old ``recordings`` table deletes every ``recording_tags`` row through ON DELETE
CASCADE. The downgrade drops the columns with ALTER TABLE ... DROP COLUMN for the same reason
(SQLite 3.35 and later).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = ("audio_format", "idempotency_key", "idempotency_fingerprint")


def upgrade() -> None:
    op.add_column("recordings", sa.Column("audio_format", sa.String(length=16), nullable=True))
    op.add_column("recordings", sa.Column("idempotency_key", sa.String(length=255), nullable=True))
    op.add_column(
        "recordings", sa.Column("idempotency_fingerprint", sa.String(length=64), nullable=True)
    )
    op.create_index(
        op.f("ix_recordings_idempotency_key"), "recordings", ["idempotency_key"], unique=True
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_recordings_idempotency_key"), table_name="recordings")
    for column in reversed(_COLUMNS):
        op.execute(sa.text(f"ALTER TABLE recordings DROP COLUMN {column}"))
