"""HTTP rollups count client errors (4xx) and redirects (3xx) apart from errors (5xx).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows written before this revision counted their 4xx and 3xx with the 2xx: they read as 0.
    op.add_column(
        "telemetry_rollups",
        sa.Column("client_errors", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column(
        "telemetry_rollups",
        sa.Column("redirects", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("telemetry_rollups") as batch:
        batch.drop_column("redirects")
        batch.drop_column("client_errors")
