"""Hand-built SQLite statements: multi-row inserts of spans and examples, and the example trim.

Multi-row VALUES on the driver, not ``executemany``: one step of SQLite, so the writer gives up
the GIL once (see :func:`dashboard.rollups.add_cells`); not SQLAlchemy's multi-values insert
either, which compiles anew for every row count (10 ms). Each statement's text depends only on
its row count and is built once per count. Only table and column names of
:mod:`dashboard.schema` and this module's integers go into the text; values are parameters.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from dashboard.schema import examples, spans
from dashboard.store.derived_rows import EXAMPLES_PER_GROUP, ExampleGroup
from dashboard.store.span_rows import ROW_FIELDS, SpanRow

# A statement's text and its parameters, for the driver's cursor.
Statement = tuple[str, list[Any]]

# 100 rows of 9 values stay under SQLite's oldest limit of 999 bound values.
_EXAMPLE_ROWS_PER_INSERT = 100
_EXAMPLE_COLUMNS = tuple(column.name for column in examples.columns)
# 200 groups of 4 values stay under SQLite's oldest limit of 999 bound values.
_TRIM_GROUPS_PER_STATEMENT = 200
_SPAN_COLUMNS = tuple(column.name for column in spans.columns)
# Rows per INSERT statement, at most (SQLite allows 32,766 bound values since 3.32, 999
# before): a group of up to 2,730 spans goes in one statement, one wait for the GIL.
_SPAN_ROWS_PER_INSERT = 4096


def execute(driver: Any, statements: Iterable[Statement]) -> None:
    """Run ``statements`` on the ``sqlite3`` connection ``driver``, one cursor for all."""
    cursor = driver.cursor()
    try:
        for sql, parameters in statements:
            cursor.execute(sql, parameters)
    finally:
        cursor.close()


def span_statements(rows: Sequence[SpanRow]) -> list[Statement]:
    """``INSERT OR IGNORE`` statements of many rows each, with their flat parameter lists.

    ``executemany`` gives up the GIL and takes it back around every row; while the request
    threads decode bodies, taking it back waits for them, and the writer, which is the
    bottleneck, crawls (8,192 rows: 20 ms alone, 70 ms next to one busy Python thread in a
    microbenchmark). A statement of many rows gives it up once for all of them, and costs
    less CPU besides (9.0 against 10.3 us per span at 256 rows). The receiver builds them on
    the request's thread (:meth:`TelemetryStore.prepare_spans`).
    """
    per_statement = _span_rows_per_insert()
    return [
        (
            _insert_spans_sql(len(chunk)),
            list(itertools.chain.from_iterable(chunk)),
        )
        for chunk in (rows[i : i + per_statement] for i in range(0, len(rows), per_statement))
    ]


def example_statements(rows: list[dict[str, Any]]) -> list[Statement]:
    """``INSERT OR IGNORE`` statements of the ``examples`` rows ``rows``."""
    statements = []
    for start in range(0, len(rows), _EXAMPLE_ROWS_PER_INSERT):
        chunk = rows[start : start + _EXAMPLE_ROWS_PER_INSERT]
        values = [row[column] for row in chunk for column in _EXAMPLE_COLUMNS]
        statements.append((_insert_examples_sql(len(chunk)), values))
    return statements


def trim_statements(groups: Sequence[ExampleGroup]) -> list[Statement]:
    """Statements that trim each of the example ``groups`` back to its slowest few."""
    return [
        (_trim_sql(len(chunk)), list(itertools.chain.from_iterable(chunk)))
        for chunk in (
            groups[i : i + _TRIM_GROUPS_PER_STATEMENT]
            for i in range(0, len(groups), _TRIM_GROUPS_PER_STATEMENT)
        )
    ]


def _span_row_sql(row: int) -> str:
    """The values of row ``row`` (from 0) of a multi-row INSERT, in the order of the columns.

    ``(end_ns - start_ns) / 1e6`` is the same double in SQLite as in Python: both convert the
    integer difference to the nearest double and divide by 1e6.
    """
    n = {field: f"?{row * len(ROW_FIELDS) + i}" for i, field in enumerate(ROW_FIELDS, 1)}
    values = dict(n)
    values["duration_ms"] = f"({n['end_ns']} - {n['start_ns']}) / 1e6"
    values["is_root"] = f"{n['parent_span_id']} IS NULL"
    return f"({', '.join(values[column] for column in _SPAN_COLUMNS)})"


@functools.cache
def _insert_spans_sql(rows: int) -> str:
    return (
        f"INSERT OR IGNORE INTO {spans.name} ({', '.join(_SPAN_COLUMNS)}) "
        f"VALUES {', '.join(_span_row_sql(row) for row in range(rows))}"
    )


@functools.cache
def _span_rows_per_insert() -> int:
    connection = sqlite3.connect(":memory:")
    try:
        limit = connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    finally:
        connection.close()
    return min(_SPAN_ROWS_PER_INSERT, limit // len(ROW_FIELDS))


@functools.cache
def _insert_examples_sql(rows: int) -> str:
    row = f"({', '.join('?' for _ in _EXAMPLE_COLUMNS)})"
    return (
        f"INSERT OR IGNORE INTO {examples.name} ({', '.join(_EXAMPLE_COLUMNS)}) "
        f"VALUES {', '.join([row] * rows)}"
    )


@functools.cache
def _trim_sql(groups: int) -> str:
    """Delete the rows of ``groups`` example groups beyond their slowest few, in one statement.

    A row goes when at least as many rows of its group as the group keeps are slower
    (``RANK() > keep``): rows as slow as the last one kept stay, as with PostgreSQL's trim
    (:mod:`dashboard.store.span_inserts`).
    """
    keep = " ".join(f"WHEN {r} THEN {k}" for r, k in EXAMPLES_PER_GROUP.items())
    groups_sql = ", ".join(["(?, ?, ?, ?)"] * groups)
    table = examples.name
    # The table's name and the CASE's integers are this module's own; values go as parameters.
    return (
        f"WITH touched (resolution, service, summary, start_s) AS (VALUES {groups_sql}) "
        f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM (SELECT e.rowid AS rowid, "
        "e.resolution AS resolution, RANK() OVER (PARTITION BY e.resolution, e.summary, "
        "e.service, e.start_s ORDER BY e.duration_ms DESC) AS place "
        f"FROM touched CROSS JOIN {table} AS e ON e.resolution = touched.resolution "
        "AND e.summary = touched.summary AND e.service = touched.service "
        "AND e.start_s = touched.start_s) "
        f"WHERE place > CASE resolution {keep} END)"  # nosec B608
    )
