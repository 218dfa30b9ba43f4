"""Backup runs name their repository and database, so that stacks are told apart.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "telemetry_backup_runs", sa.Column("repository_id", sa.String(length=255), nullable=True)
    )
    op.add_column("telemetry_backup_runs", sa.Column("database", sa.Text(), nullable=True))
    op.create_index(
        "ix_telemetry_backup_runs_repository",
        "telemetry_backup_runs",
        ["repository_id", "start_ns"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_telemetry_backup_runs_repository", table_name="telemetry_backup_runs")
    with op.batch_alter_table("telemetry_backup_runs") as batch:
        batch.drop_column("database")
        batch.drop_column("repository_id")
