"""Initial telemetry store: series, rollups, stream state, spans, logs and derived tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_backup_runs",
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("span_id", sa.String(length=16), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("backup_id", sa.String(length=255), nullable=True),
        sa.Column("trigger", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=True),
        sa.Column("files", sa.BigInteger(), nullable=True),
        sa.Column("verified", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("trace_id", "span_id"),
    )
    op.create_index(
        "ix_telemetry_backup_runs_start", "telemetry_backup_runs", ["start_ns"], unique=False
    )
    op.create_table(
        "telemetry_logs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("time_ns", sa.BigInteger(), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("severity_number", sa.SmallInteger(), nullable=False),
        sa.Column("severity_text", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=True),
        sa.Column("span_id", sa.String(length=16), nullable=True),
        sa.Column("attributes", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_telemetry_logs_time", "telemetry_logs", ["time_ns"], unique=False)
    op.create_index("ix_telemetry_logs_trace", "telemetry_logs", ["trace_id"], unique=False)
    op.create_table(
        "telemetry_n_plus_one",
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("session_span_id", sa.String(length=16), nullable=False),
        sa.Column("query_text", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("trace_id", "session_span_id"),
    )
    op.create_index(
        "ix_telemetry_n_plus_one_start", "telemetry_n_plus_one", ["start_ns"], unique=False
    )
    op.create_table(
        "telemetry_query_examples",
        sa.Column("resolution", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("span_id", sa.String(length=16), nullable=False),
        sa.Column("start_s", sa.BigInteger(), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("summary", sa.String(length=1024), nullable=False),
        sa.Column("query_text", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("resolution", "trace_id", "span_id"),
    )
    op.create_index(
        "ix_telemetry_query_examples_group",
        "telemetry_query_examples",
        ["resolution", "summary", "service", "start_s"],
        unique=False,
    )
    op.create_index(
        "ix_telemetry_query_examples_t",
        "telemetry_query_examples",
        ["resolution", "start_s"],
        unique=False,
    )
    op.create_table(
        "telemetry_rollups",
        sa.Column("series_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("resolution", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("start_s", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.Column("min", sa.Float(), nullable=True),
        sa.Column("max", sa.Float(), nullable=True),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("zero_count", sa.BigInteger(), nullable=False),
        sa.Column("bucket_offset", sa.Integer(), nullable=False),
        sa.Column("buckets", sa.LargeBinary(), nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("last_time", sa.BigInteger(), nullable=True),
        sa.Column("p50", sa.Float(), nullable=True),
        sa.Column("p95", sa.Float(), nullable=True),
        sa.Column("p99", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("series_id", "resolution", "start_s"),
    )
    op.create_index(
        "ix_telemetry_rollups_t", "telemetry_rollups", ["resolution", "start_s"], unique=False
    )
    op.create_table(
        "telemetry_series",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("span_kind", sa.SmallInteger(), nullable=True),
        sa.Column("attributes", sa.Text(), nullable=False),
        sa.Column("histogram", sa.String(length=12), nullable=True),
        sa.Column("bounds", sa.Text(), nullable=True),
        sa.Column("unit", sa.String(length=64), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index(
        "ix_telemetry_series_name", "telemetry_series", ["name", "service"], unique=False
    )
    op.create_table(
        "telemetry_services",
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("last_seen_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("service", "source"),
    )
    op.create_table(
        "telemetry_spans",
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("span_id", sa.String(length=16), nullable=False),
        sa.Column("parent_span_id", sa.String(length=16), nullable=True),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("end_ns", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("is_root", sa.Boolean(), nullable=False),
        sa.Column("attributes", sa.Text(), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("trace_id", "span_id"),
    )
    op.create_index(
        "ix_telemetry_spans_root_duration",
        "telemetry_spans",
        ["duration_ms"],
        unique=False,
        sqlite_where=sa.text("is_root = 1"),
        postgresql_where=sa.text("is_root"),
    )
    op.create_index("ix_telemetry_spans_start", "telemetry_spans", ["start_ns"], unique=False)
    op.create_table(
        "telemetry_stream_state",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("time_ns", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("min", sa.Float(), nullable=True),
        sa.Column("max", sa.Float(), nullable=True),
        sa.Column("zero_count", sa.BigInteger(), nullable=False),
        sa.Column("bucket_offset", sa.Integer(), nullable=False),
        sa.Column("buckets", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("telemetry_stream_state")
    op.drop_index("ix_telemetry_spans_start", table_name="telemetry_spans")
    op.drop_index("ix_telemetry_spans_root_duration", table_name="telemetry_spans")
    op.drop_table("telemetry_spans")
    op.drop_table("telemetry_services")
    op.drop_index("ix_telemetry_series_name", table_name="telemetry_series")
    op.drop_table("telemetry_series")
    op.drop_index("ix_telemetry_rollups_t", table_name="telemetry_rollups")
    op.drop_table("telemetry_rollups")
    op.drop_index("ix_telemetry_query_examples_t", table_name="telemetry_query_examples")
    op.drop_index("ix_telemetry_query_examples_group", table_name="telemetry_query_examples")
    op.drop_table("telemetry_query_examples")
    op.drop_index("ix_telemetry_n_plus_one_start", table_name="telemetry_n_plus_one")
    op.drop_table("telemetry_n_plus_one")
    op.drop_index("ix_telemetry_logs_trace", table_name="telemetry_logs")
    op.drop_index("ix_telemetry_logs_time", table_name="telemetry_logs")
    op.drop_table("telemetry_logs")
    op.drop_index("ix_telemetry_backup_runs_start", table_name="telemetry_backup_runs")
    op.drop_table("telemetry_backup_runs")
