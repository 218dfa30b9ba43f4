"""Root spans by lower-case name and duration, for /api/traces?operation= in any case.

Revision ID: 0004_root_names
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_root_names"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Without it, a search for an operation that few traces have (or a misspelt one) walks
    # every root of the range: 3 to 5 s over a day or a week of 1,000,000 spans.
    op.create_index(
        "ix_telemetry_spans_root_name",
        "telemetry_spans",
        [sa.text("lower(name)"), "duration_ms"],
        sqlite_where=sa.text("is_root = 1"),
        postgresql_where=sa.text("is_root"),
    )


def downgrade() -> None:
    op.drop_index("ix_telemetry_spans_root_name", table_name="telemetry_spans")
