"""Statement CLIENT spans and the ``db.client.operation.duration`` histogram.

:class:`StatementTelemetry` listens on one engine's ``before_cursor_execute``,
``after_cursor_execute`` and ``handle_error`` events. Callers can rely on:

* one CLIENT span per cursor execution (an ``executemany`` or an insertmanyvalues batch is one
  execution), a child of whatever span is current, named ``{db.operation.name}
  {db.collection.name}`` (or the operation alone, or ``db.system.name``);
* span attributes exactly as in DESIGN.md; ``db.query.text`` is the statement as sent to the
  driver, with its placeholders. Bound parameter values are never read, and error messages
  (which may quote values) are never copied: a failed statement carries ``error.type`` and
  ``db.response.status_code`` only;
* one histogram point per execution whatever the sampler decides;
* a listener failure is logged and swallowed, never raised into the statement.

Everything that depends only on the statement text (parse, span name, attribute dictionaries)
is computed once per distinct statement string and cached, so the hot path is a cache hit, one
``start_span`` with a ready-made attribute dictionary, and one ``record``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from time import perf_counter
from typing import Any

import sqlalchemy as sa
from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext, ExecutionContext

from instrumentation import conventions, mysql
from instrumentation.bound import BoundHistogram
from instrumentation.failures import telemetry_failed
from instrumentation.sampling import drops_unsampled_children, unsampled_parent
from instrumentation.uow import note_statement

# Bucket boundaries recommended by the semantic conventions for db.client.operation.duration.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)

# Transaction control is not "a statement the application ran": it is excluded from
# vrp.db.session.statements so that SQLite (where this package emits BEGIN itself) and
# PostgreSQL (where the driver does) count the same work the same way.
_TRANSACTION_CONTROL = frozenset({"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"})

# Keywords after which the first collection name of a statement is found, per operation.
_COLLECTION_MARKERS: Mapping[str, frozenset[str]] = {
    "SELECT": frozenset({"FROM"}),
    "DELETE": frozenset({"FROM"}),
    "INSERT": frozenset({"INTO"}),
    "REPLACE": frozenset({"INTO"}),
    "CREATE": frozenset({"TABLE", "VIEW", "ON"}),
    "DROP": frozenset({"TABLE", "VIEW"}),
    "ALTER": frozenset({"TABLE"}),
}
_SKIPPED_BEFORE_NAME = frozenset({"IF", "NOT", "EXISTS", "ONLY", "TABLE"})

# Linear in the statement's length: an unclosed comment, quoted name or string runs to the end
# of the text instead of failing, so that the next start position does not scan it again.
_TOKEN = re.compile(
    r"""
    \s++ | --[^\n]*+ | /\*.*?(?:\*/|\Z)
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*+)
    | (?P<quoted>"(?:[^"]|"")*+(?:"|\Z)|`[^`]*+(?:`|\Z)|\[[^\]]*+(?:\]|\Z))
    | (?P<string>'(?:[^']|'')*+(?:'|\Z))
    | (?P<other>.)
    """,
    re.DOTALL | re.VERBOSE,
)

_SLOT = "_vrp_statement"


@dataclass(frozen=True, slots=True)
class ParsedStatement:
    """What a statement's text says about itself; ``None`` where the parser cannot tell."""

    operation: str | None
    collection: str | None

    @property
    def summary(self) -> str | None:
        """Low-cardinality ``{operation} {collection}`` (or the operation alone)."""
        if self.operation and self.collection:
            return f"{self.operation} {self.collection}"
        return self.operation


class _Tokens:
    """Significant tokens (no whitespace or comments) with one token of look-ahead."""

    def __init__(self, statement: str) -> None:
        self._matches = _TOKEN.finditer(statement)
        self._peeked: tuple[str, str] | None = None

    def _pull(self) -> tuple[str, str] | None:
        for match in self._matches:
            kind = match.lastgroup
            if kind is not None:
                return kind, match.group(kind)
        return None

    def peek(self) -> tuple[str, str] | None:
        if self._peeked is None:
            self._peeked = self._pull()
        return self._peeked

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return self

    def __next__(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise StopIteration
        self._peeked = None
        return token


def _identifier(tokens: _Tokens) -> str | None:
    """Consume a possibly schema-qualified, possibly quoted name; ``None`` if none is next."""
    parts: list[str] = []
    while True:
        token = tokens.peek()
        if token is None or token[0] not in ("word", "quoted"):
            break
        next(tokens)
        text = token[1]
        parts.append(text[1:-1].replace('""', '"') if token[0] == "quoted" else text)
        if tokens.peek() != ("other", "."):
            break
        next(tokens)
    return ".".join(parts) or None


def _collection(operation: str, tokens: _Tokens) -> str | None:
    if operation in ("UPDATE", "TRUNCATE"):
        while (peeked := tokens.peek()) and peeked[0] == "word":
            upper = peeked[1].upper()
            if upper == "OR":  # SQLite: UPDATE OR IGNORE t
                next(tokens)
                next(tokens, None)
            elif upper in ("ONLY", "TABLE"):
                next(tokens)
            else:
                break
        return _identifier(tokens)
    markers = _COLLECTION_MARKERS.get(operation)
    if markers is None:
        return None
    # The first name after a marker at the statement's own level wins; one found only inside
    # parentheses (SELECT count(*) FROM (SELECT ... FROM t)) is the fallback.
    depth = 0
    nested: str | None = None
    for kind, text in tokens:
        if kind == "other":
            depth += (text == "(") - (text == ")")
        elif kind == "word" and text.upper() in markers:
            while (peeked := tokens.peek()) and peeked[1].upper() in _SKIPPED_BEFORE_NAME:
                next(tokens)
            name = _identifier(tokens)
            if name is not None and depth == 0:
                return name
            nested = nested or name
    return nested


@lru_cache(maxsize=1024)
def parse_statement(statement: str) -> ParsedStatement:
    """Operation (first keyword) and first collection of ``statement``; cached per string."""
    tokens = _Tokens(statement)
    for kind, text in tokens:
        if kind == "word":
            operation = text.upper()
            return ParsedStatement(operation, _collection(operation, tokens))
        if text != "(":
            break
    return ParsedStatement(None, None)


@lru_cache(maxsize=256)
def _qualified_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def response_status_code(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg error, the SQLite result code name or the MySQL/MariaDB error
    number (which the conventions prefer to its SQLSTATE), if the driver gave one."""
    number = mysql.error_code(exc)
    if number is not None:
        return str(number)
    code = getattr(exc, "sqlstate", None) or getattr(exc, "sqlite_errorname", None)
    return code if isinstance(code, str) and code else None


def error_type(exc: BaseException) -> str:
    """``error.type`` for ``exc``, as the database semantic conventions prefer it.

    In order: the driver's status code (SQLSTATE ``"40001"``, ``"SQLITE_BUSY"``), else the
    qualified class name of the driver error SQLAlchemy wrapped, else of ``exc`` itself. The same
    rule as :func:`instrumentation.transactions.error_type`, so spans, metrics and logs agree.
    """
    if isinstance(exc, sa.exc.StatementError) and isinstance(exc.orig, BaseException):
        exc = exc.orig
    return response_status_code(exc) or _qualified_name(type(exc))


@dataclass(frozen=True, slots=True)
class _Described:
    span_name: str
    span_attributes: dict[str, Any]
    metric_attributes: dict[str, Any]
    duration_point: BoundHistogram
    counted: bool


class StatementTelemetry:
    """Spans and duration metrics for every statement one engine sends.

    ``engine_attributes`` are the per-engine span attributes (``db.system.name``,
    ``db.namespace``, ``server.*``), looked up once by the caller. ``on_statement`` is called
    once per executed statement that is not transaction control; the database layer uses it to
    count statements per session.
    """

    def __init__(
        self,
        *,
        tracer: trace.Tracer,
        meter: metrics.Meter,
        system: str,
        engine_attributes: Mapping[str, Any],
        on_statement: Callable[[], None],
    ) -> None:
        self._tracer = tracer
        self._drops_unsampled_children = drops_unsampled_children(tracer)
        self._system = system
        self._engine_attributes = dict(engine_attributes)
        self._on_statement = on_statement
        self._duration = meter.create_histogram(
            conventions.DB_CLIENT_OPERATION_DURATION,
            unit="s",
            description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._describe = lru_cache(maxsize=1024)(self._build)
        self._engine: sa.Engine | None = None

    def attach(self, engine: sa.Engine) -> None:
        """Start listening on ``engine``."""
        # retval=True spares SQLAlchemy's per-call wrapper that would return these two itself.
        event.listen(engine, "before_cursor_execute", self._before, retval=True)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "handle_error", self._error)
        self._engine = engine

    def detach(self) -> None:
        """Stop listening; idempotent."""
        engine, self._engine = self._engine, None
        if engine is None:
            return
        event.remove(engine, "before_cursor_execute", self._before)
        event.remove(engine, "after_cursor_execute", self._after)
        event.remove(engine, "handle_error", self._error)
        self._describe.cache_clear()

    def _build(self, statement: str) -> _Described:
        parsed = parse_statement(statement)
        summary = parsed.summary
        statement_attributes = {
            conventions.DB_OPERATION_NAME: parsed.operation,
            conventions.DB_COLLECTION_NAME: parsed.collection,
        }
        span_attributes = {**self._engine_attributes, **statement_attributes}
        span_attributes[conventions.DB_QUERY_TEXT] = statement
        metric_attributes = {
            conventions.DB_SYSTEM_NAME: self._system,
            **statement_attributes,
            conventions.DB_QUERY_SUMMARY: summary,
        }
        kept_metric_attributes = {k: v for k, v in metric_attributes.items() if v is not None}
        return _Described(
            span_name=summary or self._system,
            span_attributes={k: v for k, v in span_attributes.items() if v is not None},
            metric_attributes=kept_metric_attributes,
            duration_point=BoundHistogram(self._duration, kept_metric_attributes),
            counted=parsed.operation not in _TRANSACTION_CONTROL,
        )

    def _before(
        self,
        conn: sa.Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None,
        executemany: bool,
    ) -> tuple[str, Any]:
        try:
            described = self._describe(statement)
            if described.counted:
                self._on_statement()
            try:
                parent = unsampled_parent(self._drops_unsampled_children)
                span = (
                    parent
                    if parent is not None
                    else self._tracer.start_span(
                        described.span_name,
                        kind=SpanKind.CLIENT,
                        attributes=described.span_attributes,
                    )
                )
            except Exception:
                # A broken span pipeline must not cost the statement its duration metric.
                telemetry_failed("statement start_span")
                span = trace.INVALID_SPAN
            # The execution context carries the in-flight span from before to after/error;
            # SQLAlchemy passes no context for a few dialect-internal executions, for which the
            # connection (used by one thread at a time) does the same job.
            holder: Any = context if context is not None else conn
            setattr(holder, _SLOT, (span, perf_counter(), described))
        except Exception:
            telemetry_failed("statement before_cursor_execute")
        return statement, parameters

    def _after(
        self,
        conn: sa.Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None,
        executemany: bool,
    ) -> None:
        try:
            state = _take_statement(context if context is not None else conn)
            if state is None:
                return
            span, started, described = state
            elapsed = perf_counter() - started
            described.duration_point.record(elapsed)
            note_statement(elapsed, described.counted)
            span.end()
        except Exception:
            telemetry_failed("statement after_cursor_execute")

    def _error(self, error: ExceptionContext) -> None:
        try:
            state = _take_statement(error.execution_context or error.connection)
            if state is None:
                return
            span, started, described = state
            kind = error_type(error.original_exception)
            elapsed = perf_counter() - started
            attributes = {**described.metric_attributes, conventions.ERROR_TYPE: kind}
            BoundHistogram(self._duration, attributes).record(elapsed)
            note_statement(elapsed, described.counted)
            if span.is_recording():
                span.set_attribute(conventions.ERROR_TYPE, kind)
                code = response_status_code(error.original_exception)
                if code is not None:
                    span.set_attribute(conventions.DB_RESPONSE_STATUS_CODE, code)
                span.set_status(Status(StatusCode.ERROR, kind))
            span.end()
        except Exception:
            telemetry_failed("statement handle_error")


def _take_statement(holder: Any) -> tuple[Span, float, _Described] | None:
    """The in-flight statement ``_before`` left on ``holder``, removed so it ends only once."""
    state = getattr(holder, _SLOT, None)
    if state is not None:
        setattr(holder, _SLOT, None)
    return state
