"""How each dialect inserts spans and statement examples: chosen once, by the store's engine.

Both insert a span at most once, keyed by (trace id, span id), and tell which of the spans were
new, so that only those are counted in the rollups. They differ in how they know:

* SQLite has one writer at a time, and the transaction holds its lock: rows inserted with
  ``INSERT OR IGNORE`` can be counted, and the keys read before inserting are the stored ones.
* PostgreSQL may have several receivers writing at once: ``INSERT ... ON CONFLICT DO NOTHING
  RETURNING`` names the rows this one inserted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import sqlalchemy as sa

from dashboard.schema import examples, insert_for, spans
from dashboard.store import sqlite_sql
from dashboard.store.derived_rows import EXAMPLES_PER_GROUP, ExampleGroup
from dashboard.store.span_rows import SpanRow, span_key, span_params
from dashboard.store.sqlite_sql import Statement

# Trace ids per ``IN (...)`` of the query for the stored keys.
_TRACES_PER_QUERY = 500


class SpanInserts(Protocol):
    """How one dialect inserts spans and statement examples."""

    def span_statements(self, rows: Sequence[SpanRow]) -> list[Statement]:
        """Statements that insert ``rows``, built before the transaction; none if the dialect
        cannot insert them all blindly (:meth:`insert_if_all_new` then returns False)."""
        ...

    def insert_if_all_new(
        self, conn: sa.Connection, statements: Iterable[Statement], count: int
    ) -> bool:
        """Run ``statements`` (of ``count`` rows) and return True if every row was new; else
        change nothing and return False."""
        ...

    def insert_new(self, conn: sa.Connection, rows: Sequence[SpanRow]) -> list[tuple[str, str]]:
        """Insert those of ``rows`` not stored yet; return their keys."""
        ...

    def insert_examples(
        self,
        conn: sa.Connection,
        rows: list[dict[str, Any]],
        groups: dict[ExampleGroup, dict[str, Any]],
    ) -> None:
        """Insert the example ``rows``, then trim each of the ``groups`` back to its slowest
        :data:`~dashboard.store.derived_rows.EXAMPLES_PER_GROUP`."""
        ...


class SqliteSpanInserts:
    """Multi-row statements on the ``sqlite3`` driver (:mod:`dashboard.store.sqlite_sql`)."""

    def span_statements(self, rows: Sequence[SpanRow]) -> list[Statement]:
        return sqlite_sql.span_statements(rows)

    def insert_if_all_new(
        self, conn: sa.Connection, statements: Iterable[Statement], count: int
    ) -> bool:
        """This transaction holds the database's one write lock, so ``INSERT OR IGNORE`` under
        a savepoint and the count of rows it changed tell exactly whether all were new;
        usually they are, and if not the savepoint is undone."""
        driver = conn.connection.driver_connection
        before = driver.total_changes
        conn.exec_driver_sql("SAVEPOINT new_spans")
        sqlite_sql.execute(driver, statements)
        if driver.total_changes - before == count:
            conn.exec_driver_sql("RELEASE new_spans")
            return True
        conn.exec_driver_sql("ROLLBACK TO new_spans")
        conn.exec_driver_sql("RELEASE new_spans")
        return False

    def insert_new(self, conn: sa.Connection, rows: Sequence[SpanRow]) -> list[tuple[str, str]]:
        """This transaction holds the database's one write lock, so reading which keys exist
        and inserting the rest is exact."""
        trace_ids = sorted({row[0] for row in rows})
        existing: set[tuple[str, str]] = set()
        for start in range(0, len(trace_ids), _TRACES_PER_QUERY):
            query = sa.select(spans.c.trace_id, spans.c.span_id).where(
                spans.c.trace_id.in_(trace_ids[start : start + _TRACES_PER_QUERY])
            )
            existing.update((row[0], row[1]) for row in conn.execute(query))
        new = [row for row in rows if span_key(row) not in existing]
        if new:
            sqlite_sql.execute(conn.connection.driver_connection, sqlite_sql.span_statements(new))
        return [span_key(row) for row in new]

    def insert_examples(
        self,
        conn: sa.Connection,
        rows: list[dict[str, Any]],
        groups: dict[ExampleGroup, dict[str, Any]],
    ) -> None:
        # The trim like the inserts: one statement for all groups, not one step per group.
        sqlite_sql.execute(
            conn.connection.driver_connection,
            [*sqlite_sql.example_statements(rows), *sqlite_sql.trim_statements(sorted(groups))],
        )


class PostgresqlSpanInserts:
    """SQLAlchemy statements with ``ON CONFLICT``, safe beside other writers."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def span_statements(self, rows: Sequence[SpanRow]) -> list[Statement]:
        return []

    def insert_if_all_new(
        self, conn: sa.Connection, statements: Iterable[Statement], count: int
    ) -> bool:
        """Never: another writer may insert the same spans meanwhile, so
        :meth:`insert_new` always tells which rows were new."""
        return False

    def insert_new(self, conn: sa.Connection, rows: Sequence[SpanRow]) -> list[tuple[str, str]]:
        """``INSERT ... ON CONFLICT DO NOTHING RETURNING`` tells which rows were new even with
        other writers at work."""
        statement = (
            insert_for(self._engine, spans)
            .on_conflict_do_nothing()
            .returning(spans.c.trace_id, spans.c.span_id)
        )
        params = [span_params(row) for row in rows]
        return [(row[0], row[1]) for row in conn.execute(statement, params)]

    def insert_examples(
        self,
        conn: sa.Connection,
        rows: list[dict[str, Any]],
        groups: dict[ExampleGroup, dict[str, Any]],
    ) -> None:
        conn.execute(insert_for(self._engine, examples).on_conflict_do_nothing(), rows)
        for resolution, trim in _TRIM_EXAMPLES.items():
            touched = [group for key, group in sorted(groups.items()) if key[0] == resolution]
            if touched:
                conn.execute(trim, touched)


_GROUP = sa.and_(
    examples.c.resolution == sa.bindparam("r"),
    examples.c.summary == sa.bindparam("summary"),
    examples.c.service == sa.bindparam("service"),
    examples.c.start_s == sa.bindparam("start_s"),
)
_KEPT = examples.alias("kept")


def _trim_examples(keep: int) -> sa.Delete:
    """Delete the rows of one example group beyond its ``keep`` slowest."""
    return examples.delete().where(
        _GROUP,
        examples.c.duration_ms
        < (
            sa.select(_KEPT.c.duration_ms)
            .where(
                _KEPT.c.resolution == sa.bindparam("r"),
                _KEPT.c.summary == sa.bindparam("summary"),
                _KEPT.c.service == sa.bindparam("service"),
                _KEPT.c.start_s == sa.bindparam("start_s"),
            )
            .order_by(_KEPT.c.duration_ms.desc())
            .limit(1)
            .offset(keep - 1)
            .scalar_subquery()
        ),
    )


_TRIM_EXAMPLES = {
    resolution: _trim_examples(keep) for resolution, keep in EXAMPLES_PER_GROUP.items()
}
