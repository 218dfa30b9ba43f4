"""The contract's own price: the telemetry ``full`` emits, replayed straight through the SDK.

``overhead.py`` compares the instrumented app with the app instrumented by nothing. That gap
holds two things: what the OpenTelemetry SDK and the log pipeline charge for the spans, metric
points and log records the telemetry contract (DESIGN.md, issue 3) asks for, and what our
instrumentation logic adds on top (SQLAlchemy and Flask listeners, statement parsing, request
ids, route lookup, pool and leak tracking, the transaction and retry machinery). This module
separates them.

:class:`Recorder` runs requests on an app instrumented as ``full`` is, with in-memory spans and
a meter that tapes every measurement, and keeps what one request emitted as a
:class:`Template`: the span tree (name, kind, final attributes) and each metric point
(instrument, value, attributes), filed under the span that was current when it was recorded.

:class:`ReplayMiddleware` wraps the WSGI app of a configuration built like ``off`` (our
instrumentation present but handed no-op providers, as ``OTEL_SDK_DISABLED`` leaves it) and, on
every request, replays the template of the request's operation with the fewest SDK calls that
produce it: ``start_span`` with all attributes at once (the cheapest way), ``attach`` only for
spans that have children or points, ``record`` / ``add`` on SDK instruments of the same names,
units and buckets. The app's own call runs inside the replayed server span, so the request does
all of its real work; with :meth:`Replayer.listen`, statement spans and their points are emitted
from SQLAlchemy's cursor events around the statements the app really runs, the rest of the tree
right after the app returns. Log records are not replayed: the app writes the same access and
transaction records whatever the providers (``off`` only has them below the root level), so the
replay configuration runs with ``full``'s log handlers and level and lets the app's own records,
made while the replayed server span is current, flow through them.

So ``replay`` costs what the contract costs with almost none of our logic (what remains is the
two log calls and listeners that find no-op providers, which ``off`` pays too); ``full`` -
``replay`` is ours. Every shortcut taken here (attributes set once, no error handling, no
lookups) only makes the replay cheaper than any instrumentation that has to discover the same
facts while the request runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partialmethod
from typing import Any, TypeVar

import sqlalchemy as sa
from opentelemetry import context as otel_context
from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import event

T = TypeVar("T")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class Instrument:
    """Enough to create the same synchronous instrument on another meter."""

    meter: str
    kind: str
    name: str
    unit: str
    description: str
    options: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Point:
    instrument: Instrument
    value: float
    attributes: dict[str, Any] | None


@dataclass
class Node:
    """One span of a template, with what was emitted while it was current."""

    name: str
    kind: SpanKind
    attributes: dict[str, Any]
    children: list[Node] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)

    @property
    def needs_context(self) -> bool:
        return bool(self.children or self.points)


@dataclass
class Template:
    """What one request of an operation emitted: usually a single server-span tree."""

    roots: list[Node]
    # Points recorded while no span of the request was current.
    loose_points: list[Point] = field(default_factory=list)


# --- capture ---------------------------------------------------------------------------------


def _current_span_id() -> int:
    return trace_api.get_current_span().get_span_context().span_id


class _Tape:
    """Metric points in the order they were made, each with the id of the current span."""

    def __init__(self) -> None:
        self.points: list[tuple[int, Point]] = []

    def clear(self) -> None:
        self.points.clear()


class _TapedInstrument:
    def __init__(self, tape: _Tape, instrument: Instrument) -> None:
        self._tape = tape
        self._instrument = instrument

    def _keep(self, value: float, attributes: Any = None, *_: Any, **__: Any) -> None:
        kept = None if attributes is None else dict(attributes)
        self._tape.points.append((_current_span_id(), Point(self._instrument, value, kept)))

    record = _keep
    add = _keep
    set = _keep


class _TapedMeter:
    """Hands out taping instruments; observable instruments are left out (they cost nothing
    per request: they are read at export time)."""

    def __init__(self, tape: _Tape, name: str) -> None:
        self._tape = tape
        self._name = name

    def _make(
        self, kind: str, name: str, unit: str = "", description: str = "", **options: Any
    ) -> _TapedInstrument:
        instrument = Instrument(
            self._name, kind, name, unit, description, tuple(sorted(options.items()))
        )
        return _TapedInstrument(self._tape, instrument)

    create_histogram = partialmethod(_make, "histogram")
    create_counter = partialmethod(_make, "counter")
    create_up_down_counter = partialmethod(_make, "up_down_counter")
    create_gauge = partialmethod(_make, "gauge")

    def __getattr__(self, name: str) -> Any:  # create_observable_*: callbacks, no per-call cost
        return getattr(metrics_api.NoOpMeter(self._name), name)


class TapedMeterProvider(metrics_api.MeterProvider):
    """A meter provider that remembers every synchronous measurement instead of aggregating."""

    def __init__(self) -> None:
        self.tape = _Tape()

    def get_meter(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> Any:
        return _TapedMeter(self.tape, name)


@dataclass
class Recorder:
    """Providers for the capture app, and the tapes they fill."""

    tracer_provider: TracerProvider
    meter_provider: TapedMeterProvider
    spans: InMemorySpanExporter

    @classmethod
    def create(cls) -> Recorder:
        spans = InMemorySpanExporter()
        tracer_provider = TracerProvider(shutdown_on_exit=False)
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        return cls(tracer_provider, TapedMeterProvider(), spans)

    def take(self, request: Callable[[], T]) -> tuple[Template, T]:
        """Run ``request``; return what it emitted, as a template, and what it returned."""
        tape = self.meter_provider.tape
        self.spans.clear()
        tape.clear()
        result = request()
        return _template(self.spans.get_finished_spans(), tape), result


def _template(spans: Iterable[ReadableSpan], tape: _Tape) -> Template:
    by_id: dict[int, Node] = {}
    parents: dict[int, int | None] = {}
    order = sorted(spans, key=lambda span: span.start_time or 0)
    for span in order:
        span_id = span.get_span_context().span_id
        by_id[span_id] = Node(span.name, span.kind, dict(span.attributes or {}))
        parents[span_id] = span.parent.span_id if span.parent is not None else None
    template = Template(roots=[])
    for span_id, node in by_id.items():
        parent = parents[span_id]
        if parent in by_id:
            by_id[parent].children.append(node)
        else:
            template.roots.append(node)
    for span_id, point in tape.points:
        (by_id[span_id].points if span_id in by_id else template.loose_points).append(point)
    return template


# --- replay ----------------------------------------------------------------------------------


class Instruments:
    """SDK instruments made on demand, one per captured :class:`Instrument`."""

    def __init__(self, meter_provider: metrics_api.MeterProvider) -> None:
        self._provider = meter_provider
        self._made: dict[Instrument, Callable[..., None]] = {}

    def __getitem__(self, spec: Instrument) -> Callable[..., None]:
        emit = self._made.get(spec)
        if emit is None:
            meter = self._provider.get_meter(spec.meter)
            create = getattr(meter, f"create_{spec.kind}")
            made = create(
                spec.name, unit=spec.unit, description=spec.description, **dict(spec.options)
            )
            emit = (
                made.record
                if spec.kind in ("histogram",)
                else (made.set if spec.kind == "gauge" else made.add)
            )
            self._made[spec] = emit
        return emit


def _is_statement(node: Node) -> bool:
    return node.kind is SpanKind.CLIENT and not node.children


def _statements(nodes: list[Node]) -> Iterator[Node]:
    """The statement spans of a tree, in the order they started."""
    for node in nodes:
        if _is_statement(node):
            yield node
        else:
            yield from _statements(node.children)


# The statement spans the current request has yet to replay, when they follow real statements.
_PENDING: ContextVar[Iterator[Node] | None] = ContextVar("replay_pending", default=None)
_IN_FLIGHT = "benchmarks.replay.statement"


class Replayer:
    """Emits a template through SDK providers.

    After :meth:`listen`, statement spans (and their points) are not replayed in a burst after
    the app but one per statement the app really runs, from SQLAlchemy's cursor events, so that
    they cost what they cost in the middle of real work (the SDK's code then runs with cold
    caches, as ours does). Listener bookkeeping is a ``next()`` and a dict entry per statement.
    """

    def __init__(
        self, tracer_provider: trace_api.TracerProvider, meter_provider: metrics_api.MeterProvider
    ) -> None:
        self._tracer = tracer_provider.get_tracer("benchmarks.replay")
        self._instruments = Instruments(meter_provider)
        self._interleaved = False

    def listen(self, engine: sa.Engine) -> None:
        """Replay statement spans as ``engine`` runs statements (see the class doc)."""
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        self._interleaved = True

    def _before(self, conn: sa.Connection, *_: Any) -> None:
        pending = _PENDING.get()
        node = None if pending is None else next(pending, None)
        if node is not None:
            span = self._tracer.start_span(node.name, kind=node.kind, attributes=node.attributes)
            conn.info[_IN_FLIGHT] = (span, node)

    def _after(self, conn: sa.Connection, *_: Any) -> None:
        in_flight = conn.info.pop(_IN_FLIGHT, None)
        if in_flight is not None:
            span, node = in_flight
            self._record(node.points)
            span.end()

    def _record(self, points: list[Point]) -> None:
        instruments = self._instruments
        for point in points:
            instruments[point.instrument](point.value, point.attributes)

    def node(self, node: Node, inside: Callable[[], Any] | None = None) -> Any:
        """Replay ``node``'s subtree; ``inside`` (the app) runs first, within its span."""
        span = self._tracer.start_span(node.name, kind=node.kind, attributes=node.attributes)
        if not node.needs_context and inside is None:
            span.end()
            return None
        token = otel_context.attach(trace_api.set_span_in_context(span))
        try:
            result = inside() if inside is not None else None
            for child in node.children:
                if not (self._interleaved and _is_statement(child)):
                    self.node(child)
            self._record(node.points)
            return result
        finally:
            span.end()
            otel_context.detach(token)

    def request(self, template: Template, app: Callable[[], Any]) -> Any:
        pending = _statements(template.roots) if self._interleaved else None
        reset = _PENDING.set(pending)
        try:
            if not template.roots:
                result = app()
            else:
                result = self.node(template.roots[0], app)
                for root in template.roots[1:]:
                    self.node(root)
        finally:
            _PENDING.reset(reset)
        # Statements the app did not run this time (there are none when it runs the same work).
        for node in pending or ():
            self.node(node)
        self._record(template.loose_points)
        return result


class ReplayMiddleware:
    """Wraps a WSGI app; every request replays the template ``operation(environ)`` names."""

    def __init__(
        self,
        app: WSGIApp,
        replayer: Replayer,
        templates: dict[str, Template],
        operation: Callable[[dict[str, Any]], str],
    ) -> None:
        self._app = app
        self._replayer = replayer
        self._templates = templates
        self._operation = operation

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        template = self._templates[self._operation(environ)]
        return self._replayer.request(template, lambda: self._app(environ, start_response))
