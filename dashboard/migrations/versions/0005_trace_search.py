"""Trace search: root spans by lower-case name and duration, and the links of each span.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # /api/traces?operation= matches in any case: without this index, an operation that few
    # traces have (or a misspelt one) walks every root of the range, 3 to 5 s over a day or a
    # week of 1,000,000 spans.
    op.create_index(
        "ix_telemetry_spans_root_name",
        "telemetry_spans",
        [sa.text("lower(name)"), "duration_ms"],
        sqlite_where=sa.text("is_root = 1"),
        postgresql_where=sa.text("is_root"),
    )
    # Spans stored before this revision read as having no links.
    op.add_column(
        "telemetry_spans",
        sa.Column("links", sa.Text(), nullable=False, server_default="[]"),
    )


def downgrade() -> None:
    # The expression index first: SQLite's batch mode rebuilds the table from its reflection,
    # which does not carry expression indexes.
    op.drop_index("ix_telemetry_spans_root_name", table_name="telemetry_spans")
    with op.batch_alter_table("telemetry_spans") as batch:
        batch.drop_column("links")
