"""Bound histograms: one instrument with one fixed attribute set, recorded cheaply.

The OpenTelemetry metrics API has no bound instruments (the specification dropped them; the
Python SDK never had them), so every ``Histogram.record(value, attributes)`` redoes work that
depends only on the attributes: the SDK's ``Measurement`` cleans and copies them, each view
match copies them again, filters them by the view's keys and hashes them recursively into the
aggregation key; only then is the value added to its aggregation. The instrumentation records
the same few attribute sets over and over (one per statement, pool and route with status), so
:class:`BoundHistogram` does the attribute work once and, per point, hands the SDK's own
aggregation the same measurement ``record`` would have made. This is hand-written because no
library offers it; it reads SDK internals, so it checks them when it first records and falls
back to ``Histogram.record`` for good if they are not what it expects (another SDK version,
a no-op or proxy instrument). ``tests/instrumentation/test_bound.py`` compares what both paths
export, cumulative and delta, and that the pinned SDK takes the fast path.

Measured in a loop (``thread_time``, the histogram of ``db.client.operation.duration`` with its
four attributes): ``record`` 17.3 -> 7.5 us per point. What stays per point is the SDK's own:
the exemplar filter's verdict and the aggregation (the exponential bucket mapping, under the
aggregation's lock).

Points wait for their collection. Between the app's own work that SDK code runs with the CPU's
caches cold: 17-20 us per point inside ``benchmarks/overhead.py``'s requests against 3.5 us in a
row. An aggregation is only read when a reader collects it, so when every reader of the
provider aggregates pending points first (:class:`DrainsBoundPoints`, which the readers of
:mod:`instrumentation.telemetry` and :mod:`instrumentation.testing` are), ``record`` only
queues the point - value, time and context, which exemplars need - and the collection
aggregates the queue in a row before it reads anything (:func:`drain`). Every collection
exports what it would have exported with the points aggregated at once; the export thread does
the work, warm. The queue never holds more than :data:`MAX_PENDING` points: past that, the
recording thread drains it. With any other reader points are aggregated at once.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from time import time_ns
from typing import Any

from opentelemetry.context import Context, get_current
from opentelemetry.metrics import Histogram
from opentelemetry.sdk.metrics.view import DefaultAggregation

_log = logging.getLogger(__name__)

try:  # SDK internals (see the module doc); without them every point takes Histogram.record.
    from opentelemetry.attributes import _clean_attribute_value
    from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes
    from opentelemetry.sdk.metrics._internal.instrument import Histogram as _SdkHistogram
    from opentelemetry.sdk.metrics._internal.measurement import Measurement
except ImportError:  # pragma: no cover - depends on the installed SDK
    _SdkHistogram = None

# One aggregation target: the view match, the aggregation key, the attributes it keeps, whether
# collections discard its aggregations, and what makes its aggregation (under the match's lock).
_Route = tuple[Any, Any, dict[str, Any], bool, Callable[[Any, dict[str, Any]], Any]]

MAX_PENDING = 100_000
"""Most points queued for the next collection (about 10 MB); more and the recorder drains."""

# Points waiting for a collection: (bound histogram, value, time in ns, context).
_pending: deque[tuple[BoundHistogram, float, int, Context]] = deque()
_drain_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # A fork during a drain would leave the child a lock no thread of it releases; the parent's
    # queued points are the parent's to export.
    global _drain_lock
    _drain_lock = threading.Lock()
    _pending.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def pending() -> int:
    """How many points wait for a collection."""
    return len(_pending)


def drain() -> None:
    """Aggregate every queued point (see the module doc). Thread-safe; never raises."""
    with _drain_lock:
        failed = 0
        take = _pending.popleft
        for _ in range(len(_pending)):
            point, value, now, context = take()
            try:
                point._aggregate(value, now, context)
            except Exception:  # one bad point must not cost the others
                failed += 1
        if failed:
            _log.warning("%d metric point(s) could not be aggregated and were dropped", failed)


class DrainsBoundPoints:
    """Mixin for a ``MetricReader``: queued bound points are aggregated before each collection.

    Put it first in the bases (``class R(DrainsBoundPoints, PeriodicExportingMetricReader)``).
    """

    def collect(self, timeout_millis: float = 10_000) -> None:
        drain()
        super().collect(timeout_millis=timeout_millis)  # type: ignore[misc]


class BoundHistogram:
    """``histogram`` with ``attributes`` fixed: ``record(value)`` is ``histogram.record(value,
    attributes)`` with the attribute work done once (see the module doc).

    ``attributes`` must not change after binding. Thread-safe as the SDK's ``record`` is.
    """

    __slots__ = (
        "_attributes",
        "_cleaned",
        "_consumer",
        "_deferred",
        "_histogram",
        "_routes",
        "_storages",
        "_unusable",
    )

    def __init__(self, histogram: Histogram, attributes: Mapping[str, Any]) -> None:
        self._histogram = histogram
        self._attributes = attributes
        self._cleaned: dict[str, Any] = {}
        self._consumer: Any = None
        self._storages: Any = None
        self._routes: tuple[_Route, ...] | None = None
        self._unusable = False
        self._deferred = False

    @property
    def fast(self) -> bool:
        """Whether points take the fast path (known after the first one)."""
        return self._routes is not None

    def record(self, value: float, context: Context | None = None) -> None:
        """Record ``value`` in the context it belongs to (the current one by default)."""
        histogram: Any = self._histogram
        routes = self._routes
        if routes is None and (self._unusable or not self._resolve()):
            histogram.record(value, self._attributes, context)
            return
        consumer = self._consumer
        # Disabled instruments, and values the SDK warns about, take its own path.
        if not histogram._is_enabled() or not 0 <= value < math.inf:
            histogram.record(value, self._attributes, context)
            return
        # A reader added or removed since: bind again.
        if consumer._reader_storages is not self._storages and not self._resolve():
            histogram.record(value, self._attributes, context)
            return
        if context is None:
            context = get_current()
        if self._deferred:
            _pending.append((self, value, time_ns(), context))
            if len(_pending) > MAX_PENDING:
                drain()
            return
        self._aggregate(value, time_ns(), context)

    def _aggregate(self, value: float, now: int, context: Context) -> None:
        """What ``record`` does once the attributes are known: into each view's aggregation."""
        cleaned = self._cleaned
        # The Measurement record() makes, its attributes cleaned once at binding.
        measurement = Measurement(value, now, self._histogram, context, None)
        object.__setattr__(measurement, "attributes", cleaned)
        consumer = self._consumer
        sample = consumer._sdk_config.exemplar_filter.should_sample(value, now, cleaned, context)
        for match, key, kept, reset_on_collect, create in self._routes or ():
            # As _ViewInstrumentMatch.consume_measurement, from the aggregation key on.
            if reset_on_collect:
                with match._lock:
                    create(key, kept).aggregate(measurement, sample)
                continue
            aggregation = match._attributes_aggregation.get(key)
            if aggregation is None:
                with match._lock:
                    aggregation = create(key, kept)
            aggregation.aggregate(measurement, sample)

    def _resolve(self) -> bool:
        """Find the aggregations' view matches; ``False`` (and fall back for good) if unusable."""
        histogram: Any = self._histogram
        self._routes = None
        self._unusable = True
        if _SdkHistogram is None or not isinstance(histogram, _SdkHistogram):
            return False
        try:
            consumer = histogram._measurement_consumer
            storages = consumer._reader_storages
            cleaned = dict(_clean_attribute_value(self._attributes, None))
            routes: list[_Route] = []
            for storage in list(storages.values()):
                for match in storage._get_or_init_view_instrument_match(histogram):
                    keys = match._view._attribute_keys
                    kept = (
                        dict(cleaned)
                        if keys is None
                        else {key: value for key, value in cleaned.items() if key in keys}
                    )
                    if not all(hasattr(match, name) for name in _MATCH_INTERNALS):
                        raise AttributeError("_ViewInstrumentMatch")
                    routes.append(
                        (
                            match,
                            _hash_attributes(kept),
                            kept,
                            bool(getattr(match, "_reset_on_collect", False)),
                            _aggregation_maker(match),
                        )
                    )
            if not callable(consumer._sdk_config.exemplar_filter.should_sample):
                raise TypeError("exemplar_filter")
        except (AttributeError, TypeError):
            _log.debug("the SDK's internals differ: points take Histogram.record", exc_info=True)
            return False
        self._cleaned = cleaned
        self._storages = storages
        self._consumer = consumer
        self._deferred = bool(storages) and all(
            isinstance(reader, DrainsBoundPoints) for reader in storages
        )
        self._routes = tuple(routes)
        self._unusable = False
        return True


# What record() uses of each view match, checked when it binds.
_MATCH_INTERNALS = ("_attributes_aggregation", "_lock", "_view", "_instrument")


def _aggregation_maker(match: Any) -> Callable[[Any, dict[str, Any]], Any]:
    """What makes ``match``'s aggregation for a new attribute set, called under its lock.

    SDK 1.45.2 has a method for it (with the cardinality limit); 1.45.0 and 1.45.1, which the
    project's lower bound admits and the contrib instrumentations' venv runs, make it inline in
    ``consume_measurement``, as :func:`_make_inline` does.
    """
    method = getattr(match, "_get_or_create_aggregation", None)
    if callable(method):
        return method  # type: ignore[no-any-return]
    return partial(_make_inline, match)


def _make_inline(match: Any, key: Any, attributes: dict[str, Any]) -> Any:
    """``consume_measurement``'s aggregation for a new attribute set in SDK 1.45.0 and 1.45.1."""
    aggregation = match._attributes_aggregation.get(key)
    if aggregation is not None:
        return aggregation
    view = match._view
    kind = view._aggregation
    if isinstance(kind, DefaultAggregation):
        kind = match._instrument_class_aggregation[match._instrument.__class__]
    aggregation = kind._create_aggregation(
        match._instrument, attributes, view._exemplar_reservoir_factory, time_ns()
    )
    match._attributes_aggregation[key] = aggregation
    return aggregation
