"""Tables of the telemetry store (SQLAlchemy Core); ``dashboard/migrations`` creates them.

Ids are lower-case hex, times are Unix nanoseconds (rollup buckets: Unix seconds), durations
in rollups are seconds and in span rows milliseconds.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

metadata = sa.MetaData()

series = sa.Table(
    "telemetry_series",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(64), nullable=False, unique=True),
    sa.Column("source", sa.String(8), nullable=False),
    sa.Column("service", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("span_kind", sa.SmallInteger, nullable=True),
    sa.Column("attributes", sa.Text, nullable=False),
    sa.Column("histogram", sa.String(12), nullable=True),
    sa.Column("bounds", sa.Text, nullable=True),
    sa.Column("unit", sa.String(64), nullable=False, server_default=""),
    sa.Index("ix_telemetry_series_name", "name", "service"),
)

rollup = sa.Table(
    "telemetry_rollups",
    metadata,
    sa.Column("series_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("resolution", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("start_s", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("sum", sa.Float, nullable=False),
    sa.Column("min", sa.Float, nullable=True),
    sa.Column("max", sa.Float, nullable=True),
    sa.Column("errors", sa.BigInteger, nullable=False),
    # HTTP duration rows only: responses with a 4xx (client errors) and a 3xx status, counted
    # apart from the errors (5xx); the 2xx are what is left of the count.
    sa.Column("client_errors", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("redirects", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("zero_count", sa.BigInteger, nullable=False),
    sa.Column("bucket_offset", sa.Integer, nullable=False),
    sa.Column("buckets", sa.LargeBinary, nullable=True),
    sa.Column("last_value", sa.Float, nullable=True),
    sa.Column("last_time", sa.BigInteger, nullable=True),
    # p50/p95/p99 of an exponential histogram row, kept current by every merge, so that a
    # panel reading one row per time bucket does not walk its buckets.
    sa.Column("p50", sa.Float, nullable=True),
    sa.Column("p95", sa.Float, nullable=True),
    sa.Column("p99", sa.Float, nullable=True),
    sa.Index("ix_telemetry_rollups_t", "resolution", "start_s"),
)

stream_state = sa.Table(
    "telemetry_stream_state",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("start_ns", sa.BigInteger, nullable=False),
    sa.Column("time_ns", sa.BigInteger, nullable=False),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("sum", sa.Float, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("min", sa.Float, nullable=True),
    sa.Column("max", sa.Float, nullable=True),
    sa.Column("zero_count", sa.BigInteger, nullable=False),
    sa.Column("bucket_offset", sa.Integer, nullable=False),
    sa.Column("buckets", sa.LargeBinary, nullable=True),
)

spans = sa.Table(
    "telemetry_spans",
    metadata,
    sa.Column("trace_id", sa.String(32), primary_key=True),
    sa.Column("span_id", sa.String(16), primary_key=True),
    sa.Column("parent_span_id", sa.String(16), nullable=True),
    sa.Column("service", sa.String(255), nullable=False),
    sa.Column("name", sa.String(1024), nullable=False),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("start_ns", sa.BigInteger, nullable=False),
    sa.Column("end_ns", sa.BigInteger, nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("status_code", sa.SmallInteger, nullable=False),
    sa.Column("status_message", sa.Text, nullable=False),
    sa.Column("is_root", sa.Boolean, nullable=False),
    sa.Column("attributes", sa.Text, nullable=False),
    sa.Column("events", sa.Text, nullable=False),
    # The spans this one links to, JSON: [{"trace_id", "span_id", "attributes"}].
    sa.Column("links", sa.Text, nullable=False, server_default="[]"),
    sa.Index("ix_telemetry_spans_start", "start_ns"),
    # Only root spans are searched by duration (/api/traces): a partial index keeps the other
    # five in six spans out of it.
    sa.Index(
        "ix_telemetry_spans_root_duration",
        "duration_ms",
        sqlite_where=sa.text("is_root = 1"),
        postgresql_where=sa.text("is_root"),
    ),
    # /api/traces?operation= matches the root span's name in any case: rare or misspelt
    # operations are found without walking every root of the range.
    sa.Index(
        "ix_telemetry_spans_root_name",
        sa.func.lower(sa.column("name")),
        "duration_ms",
        sqlite_where=sa.text("is_root = 1"),
        postgresql_where=sa.text("is_root"),
    ),
)

logs = sa.Table(
    "telemetry_logs",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("time_ns", sa.BigInteger, nullable=False),
    sa.Column("service", sa.String(255), nullable=False),
    sa.Column("severity_number", sa.SmallInteger, nullable=False),
    sa.Column("severity_text", sa.String(32), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("trace_id", sa.String(32), nullable=True),
    sa.Column("span_id", sa.String(16), nullable=True),
    sa.Column("attributes", sa.Text, nullable=False),
    sa.Index("ix_telemetry_logs_time", "time_ns"),
    sa.Index("ix_telemetry_logs_trace", "trace_id"),
)

# The slowest statements per (service, summary) and minute, and per hour: at most
# dashboard.store.derived_rows.EXAMPLES_PER_GROUP rows each, so a panel reads a bounded
# number of rows.
examples = sa.Table(
    "telemetry_query_examples",
    metadata,
    sa.Column("resolution", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("trace_id", sa.String(32), primary_key=True),
    sa.Column("span_id", sa.String(16), primary_key=True),
    sa.Column("start_s", sa.BigInteger, nullable=False),
    sa.Column("service", sa.String(255), nullable=False),
    sa.Column("summary", sa.String(1024), nullable=False),
    sa.Column("query_text", sa.Text, nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("start_ns", sa.BigInteger, nullable=False),
    sa.Index("ix_telemetry_query_examples_t", "resolution", "start_s"),
    sa.Index("ix_telemetry_query_examples_group", "resolution", "summary", "service", "start_s"),
)

n_plus_one = sa.Table(
    "telemetry_n_plus_one",
    metadata,
    sa.Column("trace_id", sa.String(32), primary_key=True),
    sa.Column("session_span_id", sa.String(16), primary_key=True),
    sa.Column("query_text", sa.Text, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("service", sa.String(255), nullable=False),
    sa.Column("start_ns", sa.BigInteger, nullable=False),
    sa.Index("ix_telemetry_n_plus_one_start", "start_ns"),
)

backup_runs = sa.Table(
    "telemetry_backup_runs",
    metadata,
    sa.Column("trace_id", sa.String(32), primary_key=True),
    sa.Column("span_id", sa.String(16), primary_key=True),
    sa.Column("service", sa.String(255), nullable=False),
    sa.Column("backup_id", sa.String(255), nullable=True),
    sa.Column("trigger", sa.String(32), nullable=True),
    sa.Column("status", sa.String(32), nullable=True),
    sa.Column("start_ns", sa.BigInteger, nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=True),
    sa.Column("stored_bytes", sa.BigInteger, nullable=True),
    sa.Column("files", sa.BigInteger, nullable=True),
    sa.Column("verified", sa.Boolean, nullable=True),
    sa.Column("repository_id", sa.String(255), nullable=True),
    sa.Column("database", sa.Text, nullable=True),
    sa.Index("ix_telemetry_backup_runs_start", "start_ns"),
    sa.Index("ix_telemetry_backup_runs_repository", "repository_id", "start_ns"),
)

services_seen = sa.Table(
    "telemetry_services",
    metadata,
    sa.Column("service", sa.String(255), primary_key=True),
    sa.Column("source", sa.String(8), primary_key=True),
    sa.Column("last_seen_ns", sa.BigInteger, nullable=False),
)


def insert_for(engine: sa.Engine, table: sa.Table) -> Any:
    """The dialect's INSERT construct, which knows ``ON CONFLICT``."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
