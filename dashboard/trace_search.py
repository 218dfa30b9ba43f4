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

import orjson
import sqlalchemy as sa

from dashboard.schema import spans

# Spans an attribute search reads at most per request: 200,000 spans are some 33,000 requests
# of the recorder (six spans each), a day of 0.4 requests per second.
SCAN_SPANS = 200_000
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
    """Whether a span row's attributes satisfy ``condition``, in the store's SQL dialect."""
    # orjson writes keys as "key": with no space; the key's characters need no JSON escape.
    holds_key = spans.c.attributes.like(f'%"{_like_literal(condition.key)}":%', escape="\\")
    attributes = spans.c.attributes
    if dialect == "postgresql":
        text = sa.cast(attributes, sa.dialects.postgresql.JSONB).op("->>")(condition.key)
    else:
        path = f'$."{condition.key}"'
        kind = sa.func.json_type(attributes, path)
        # json_extract gives 1/0 for booleans: spelled as JSON, as PostgreSQL's ->> gives them.
        text = sa.case(
            (kind == "true", "true"),
            (kind == "false", "false"),
            else_=sa.cast(sa.func.json_extract(attributes, path), sa.Text),
        )
    if condition.value is None:
        return sa.and_(holds_key, text.is_not(None))
    # Header attributes are string arrays (["abc"]): a one-element array matches its element.
    one_element = orjson.dumps([condition.value]).decode()
    return sa.and_(holds_key, text.in_((condition.value, one_element)))


def matching_trace_ids(
    dialect: str,
    conditions: Sequence[AttributeCondition],
    since_ns: int,
    until_ns: int,
) -> sa.Select[tuple[str]] | sa.CompoundSelect | None:
    """The ids of the traces with a span starting in ``[since_ns, until_ns]`` that matches
    each of ``conditions`` (None when there are none), for ``trace_id.in_(...)``."""
    if not conditions:
        return None
    selects = [
        sa.select(spans.c.trace_id).where(
            spans.c.start_ns >= since_ns,
            spans.c.start_ns <= until_ns,
            _matches(dialect, condition),
        )
        for condition in conditions
    ]
    if len(selects) == 1:
        return selects[0]
    return sa.intersect(*selects)


def scan_start(conn: sa.Connection, since_ns: int, until_ns: int) -> int | None:
    """The start of the oldest span an attribute search reads, when the range holds more than
    :data:`SCAN_SPANS` spans (None: it reads them all). Read from the start-time index."""
    return conn.execute(
        sa.select(spans.c.start_ns)
        .where(spans.c.start_ns >= since_ns, spans.c.start_ns <= until_ns)
        .order_by(spans.c.start_ns.desc())
        .limit(1)
        .offset(SCAN_SPANS - 1)
    ).scalar()
