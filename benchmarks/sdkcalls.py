"""What the SDK's calls cost inside real requests, against the same calls in a tight loop.

``overhead.py --sdk-calls`` wraps, for the timed phases of ``full`` only, the SDK entry points
the instrumentation calls - ``Tracer.start_span``, ``Span.end``, ``Span.set_attribute(s)``, a
histogram's ``record``, a bound histogram's point (:mod:`instrumentation.bound`) and
``logging.Logger.handle`` (one record through the filters and every handler: the JSON file and
the OTLP one) - with a ``perf_counter_ns`` pair each, and reports microseconds per call and
calls per request. :func:`loop_costs` then times a bound point and one log record through the
same handlers in a tight loop. The difference is the price of running the SDK's code between
the app's (cold caches) that a loop-measured floor does not see.

The wrappers add about a quarter of a microsecond per call to ``full``'s request times, so a run
with ``--sdk-calls`` is for reading these figures, not the targets.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.metrics._internal import instrument as sdk_instrument

from instrumentation.bound import BoundHistogram

# (owner, attribute, label): the entry points timed, grouped under a label.
_TIMED: tuple[tuple[Any, str, str], ...] = (
    (sdk_trace.Tracer, "start_span", "start_span"),
    (sdk_trace.Span, "end", "span.end"),
    (sdk_trace.Span, "set_attribute", "span.set_attribute(s)"),
    (sdk_trace.Span, "set_attributes", "span.set_attribute(s)"),
    (BoundHistogram, "record", "histogram point (bound)"),
    (sdk_instrument._Histogram, "record", "histogram.record"),
    (logging.Logger, "handle", "log record (all handlers)"),
)


@dataclass
class CallTimes:
    """Nanoseconds and calls per label, while :func:`timing` is active."""

    ns: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    active: bool = False


def _timed(original: Callable[..., Any], label: str, times: CallTimes) -> Callable[..., Any]:
    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        if not times.active:
            return original(*args, **kwargs)
        started = time.perf_counter_ns()
        try:
            return original(*args, **kwargs)
        finally:
            times.ns[label] += time.perf_counter_ns() - started
            times.calls[label] += 1

    return timed


@contextmanager
def installed(times: CallTimes) -> Iterator[None]:
    """Wrap the entry points for the block; they time only while ``times.active`` is set."""
    # The class's own entry, or None where the method is inherited (then it is deleted after).
    originals = [(owner, name, owner.__dict__.get(name)) for owner, name, _ in _TIMED]
    try:
        for owner, name, label in _TIMED:
            setattr(owner, name, _timed(getattr(owner, name), label, times))
        yield
    finally:
        for owner, name, original in originals:
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


@contextmanager
def timing(times: CallTimes) -> Iterator[None]:
    times.active = True
    try:
        yield
    finally:
        times.active = False


def loop_costs(
    meter_provider: metrics_api.MeterProvider,
    tracer_provider: trace_api.TracerProvider,
    count: int = 1_000,
) -> dict[str, float]:
    """Microseconds per histogram point (bound, as the instrumentation records them) and per log
    record, in a tight loop.

    Both run inside a sampled span, as they do in a request; the log record is an access-like
    INFO record through whatever handlers the root logger has (the caller routes it as
    ``full`` does, with its log queue flushed: ``count`` stays below the queue's bound, so no
    record takes the cheaper path of being dropped).
    """
    histogram = meter_provider.get_meter("benchmarks.sdkcalls").create_histogram(
        "benchmarks.loop.duration", unit="s"
    )
    attributes = {
        "db.system.name": "sqlite",
        "db.operation.name": "SELECT",
        "db.collection.name": "recordings",
        "db.query.summary": "SELECT recordings",
    }
    point = BoundHistogram(histogram, attributes)
    logger = logging.getLogger("benchmarks.sdkcalls")
    extra = {
        "http.request.method": "GET",
        "http.route": "/api/recordings/<uuid:recording_id>",
        "url.path": "/api/recordings/0",
        "http.response.status_code": 200,
        "duration_ms": 1.5,
    }
    tracer = tracer_provider.get_tracer("benchmarks.sdkcalls")
    with tracer.start_as_current_span("loop"):
        started = time.perf_counter_ns()
        for _ in range(count):
            point.record(0.001)
        recorded = time.perf_counter_ns()
        for _ in range(count):
            logger.info("%s %s %d %.1fms", "GET", "/api/recordings/0", 200, 1.5, extra=extra)
        logged = time.perf_counter_ns()
    return {
        "histogram point (bound)": (recorded - started) / count / 1000,
        "log record (all handlers)": (logged - recorded) / count / 1000,
    }
