"""N+1 detection: the one definition that the store, the JSON API and the pages share.

A finding is a ``db.session`` span under which one statement text (``db.query.text`` of the
CLIENT spans at any depth below the session) ran :data:`THRESHOLD` or more times. A session
gives at most one finding: its most repeated text (on a tie, the text that sorts first, so that
every reader of one trace gets the same answer). The store computes the findings as spans
arrive and keeps them; ``/api/traces/<id>`` computes them with these same functions over the
stored trace and names the statement spans of each finding, so the pages draw what the API
says and never detect anything themselves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dashboard.otlp import SPAN_KIND_CLIENT
from instrumentation import conventions as names

THRESHOLD = 5


class Node(Protocol):
    """What detection reads of a span (a stored row or a received record)."""

    @property
    def span_id(self) -> str: ...

    @property
    def kind(self) -> int: ...

    @property
    def attributes(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Finding:
    """The repeated statement of one session, and the spans that ran it."""

    query_text: str
    span_ids: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.span_ids)


def statements_below(
    session_id: str, children: Mapping[str, Sequence[Node]]
) -> dict[str, list[str]]:
    """The statement spans below ``session_id`` (at any depth), their ids by query text."""
    found: dict[str, list[str]] = defaultdict(list)
    stack = list(children.get(session_id, ()))
    while stack:
        span = stack.pop()
        if span.kind == SPAN_KIND_CLIENT:
            text = span.attributes.get(names.DB_QUERY_TEXT)
            if isinstance(text, str):
                found[text].append(span.span_id)
        stack.extend(children.get(span.span_id, ()))
    return found


def finding(session_id: str, children: Mapping[str, Sequence[Node]]) -> Finding | None:
    """The session's N+1 finding, or None when no statement ran :data:`THRESHOLD` times."""
    return most_repeated(statements_below(session_id, children))


def most_repeated(statements: Mapping[str, Sequence[str]]) -> Finding | None:
    """The finding among ``statements`` (span ids by query text), if one ran often enough."""
    best: tuple[int, str] | None = None
    for text, ids in statements.items():
        # Most spans first; on a tie the text that sorts first.
        if best is None or (len(ids), best[1]) > (best[0], text):
            best = (len(ids), text)
    if best is None or best[0] < THRESHOLD:
        return None
    return Finding(best[1], tuple(sorted(statements[best[1]])))


def children_of(spans: Iterable[Any]) -> dict[str, list[Any]]:
    """Spans by the id of their parent (root spans left out)."""
    children: dict[str, list[Any]] = defaultdict(list)
    for span in spans:
        if span.parent_span_id:
            children[span.parent_span_id].append(span)
    return children
