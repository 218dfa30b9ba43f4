"""Search of traces by span attribute: ``key=value`` or ``key`` (the key exists).

A trace matches a condition when any of its spans carries the attribute (the HTTP status and
request headers sit on the root SERVER span, ``error.type`` may sit on a ``db.session`` span).
Values are compared as text: ``404`` matches the integer 404 and the string ``"404"``,
``true``/``false`` match booleans, and a one-element array (the request headers,
``http.request.header.x-request-id``) matches its element; keys and values are case-sensitive,
as OpenTelemetry's are.

Span attributes are stored as one JSON text per span, which no index covers, so an attribute
search reads spans. It is bounded: it reads at most :data:`SCAN_SPANS` spans, the newest of the
range, and says from when it searched (``searched_since``) when the range holds more. Each span
read is first matched by substring (``"key":`` in the JSON text) and only those that hold the
key are parsed by the database's JSON functions (SQLite ``json_extract``, PostgreSQL ``jsonb``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from dashboard.schema import spans

# Spans an attribute search reads at most per request: 50,000 spans are some 8,000 requests of
# the recorder (six spans each), 6 hours at 0.4 requests per second. Reading a span's row costs
# 1-2 us (its attributes are some 160 bytes of JSON), so a search stays within 100 ms.
SCAN_SPANS = 50_000
MAX_CONDITIONS = 5
MAX_VALUE_CHARS = 1024
# OpenTelemetry attribute keys are dotted lower-case names; headers add '-', and other
# instrumentations use ':' or '/'. Quotes, backslashes and spaces are refused, so the key can be
# put in a JSON path and a substring pattern as it is.
ATTRIBUTE_KEY = re.compile(r"^[A-Za-z0-9_.:/@\-]{1,255}$")
SYNTAX = "key=value or key (the key exists), e.g. http.response.status_code=404"


@dataclass(frozen=True)
class AttributeCondition:
    key: str
    value: str | None  # None: the key exists, whatever its value

    @classmethod
    def parse(cls, text: str) -> AttributeCondition:
        """``key=value`` or ``key``; raises ValueError with a message naming the problem."""
        key, equals, value = text.partition("=")
        key = key.strip()
        if not key:
            raise ValueError(f"the attribute key is empty: write {SYNTAX}")
        if not ATTRIBUTE_KEY.match(key):
            raise ValueError(
                "the attribute key may hold letters, digits and _ . : / @ - only "
                f"(1-255 characters): write {SYNTAX}"
            )
        if len(value) > MAX_VALUE_CHARS:
            raise ValueError(f"the attribute value is longer than {MAX_VALUE_CHARS} characters")
        return cls(key, value if equals else None)

    def __str__(self) -> str:
        return self.key if self.value is None else f"{self.key}={self.value}"


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _matches(dialect: str, condition: AttributeCondition) -> sa.ColumnElement[bool]:
    """Whether a span row's attributes satisfy ``condition``, in the store's SQL dialect.

    A substring test on the JSON text comes first: most spans lack the key, and only those
    that have it are parsed.
    """
    attributes = spans.c.attributes
    # orjson writes keys as "key": with no space; the key's characters need no JSON escape.
    holds_key = attributes.like(f'%"{_like_literal(condition.key)}":%', escape="\\")
    if dialect == "postgresql":
        value = sa.cast(attributes, JSONB).op("->>")(condition.key)
        if condition.value is None:
            return sa.and_(holds_key, value.is_not(None))
        # Header attributes are string arrays (["abc"]): a one-element array matches its element.
        wanted = (condition.value, orjson.dumps([condition.value]).decode())
        return sa.and_(holds_key, value.in_(wanted))
    path = f'$."{condition.key}"'
    if condition.value is None:
        return sa.and_(holds_key, sa.func.json_type(attributes, path).is_not(None))
    value = sa.cast(sa.func.json_extract(attributes, path), sa.Text)
    wanted = (condition.value, orjson.dumps([condition.value]).decode())
    if condition.value in ("true", "false"):
        # json_extract gives 1 and 0 for booleans; json_type names them as JSON spells them.
        return sa.and_(
            holds_key,
            sa.or_(value.in_(wanted), sa.func.json_type(attributes, path) == condition.value),
        )
    return sa.and_(holds_key, value.in_(wanted))


def matching_trace_ids(
    conn: sa.Connection,
    conditions: Sequence[AttributeCondition],
    since_ns: int,
    until_ns: int,
) -> list[str]:
    """The ids of the traces with a span starting in ``[since_ns, until_ns]`` that matches
    each of ``conditions``, read once (a scan of the range's spans)."""
    dialect = conn.engine.dialect.name
    selects = [
        sa.select(spans.c.trace_id).where(
            spans.c.start_ns >= since_ns,
            spans.c.start_ns <= until_ns,
            _matches(dialect, condition),
        )
        for condition in conditions
    ]
    query = selects[0].distinct() if len(selects) == 1 else sa.intersect(*selects)
    return sorted(conn.execute(query).scalars())


# Up to this many matching traces, their roots are looked up by trace id; beyond, the roots of
# the range are walked and each tested against the set (most of them match).
LOOKUP_UP_TO = 2_000


def among(trace_id: sa.ColumnElement[str], ids: list[str], engine: sa.Engine) -> Any:
    """``trace_id`` is one of ``ids``, which may be many: passed as one JSON array (SQLite) or
    one array (PostgreSQL) rather than a bound value each (SQLite takes at most 32,766)."""
    if engine.dialect.name == "postgresql":
        return trace_id == sa.any_(sa.bindparam("trace_ids", ids, type_=ARRAY(sa.String)))
    listed = sa.select(sa.column("value", sa.String)).select_from(
        sa.func.json_each(sa.bindparam("trace_ids", orjson.dumps(ids).decode()))
    )
    if len(ids) > LOOKUP_UP_TO:
        # The unary "+" keeps SQLite from looking up each id in the primary key (then reading
        # every span of every matching trace and sorting their roots): it walks the roots in
        # the order asked and tests each against the set (https://sqlite.org/optoverview.html).
        trace_id = sa.literal_column(f"+{trace_id.table.name}.{trace_id.name}", sa.String)
    return trace_id.in_(listed)


def nth_newest_start(conn: sa.Connection, since_ns: int, until_ns: int, n: int) -> int | None:
    """The start of the ``n``-th newest span in ``[since_ns, until_ns]``, None if it holds
    fewer: where an attribute search of :data:`SCAN_SPANS` spans stops reading. Read from the
    start-time index alone."""
    return conn.execute(
        sa.select(spans.c.start_ns)
        .where(spans.c.start_ns >= since_ns, spans.c.start_ns <= until_ns)
        .order_by(spans.c.start_ns.desc())
        .limit(1)
        .offset(n - 1)
    ).scalar()
