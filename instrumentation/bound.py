"""Bound histograms: one instrument with one fixed attribute set, recorded cheaply.

The OpenTelemetry metrics API has no bound instruments (the specification dropped them; the
Python SDK never had them), so every ``Histogram.record(value, attributes)`` redoes work that
depends only on the attributes: the SDK's ``Measurement`` cleans and copies them, each view
match copies them again, filters them by the view's keys and hashes them recursively into the
aggregation key; only then is the value added to its aggregation. The instrumentation records
the same few attribute sets over and over (one per statement, pool and route with status), so
:class:`BoundHistogram` does the attribute work once and, per point, hands the SDK's own
aggregation the same measurement ``record`` would have made. This is hand-written because no
library offers it; it reads SDK internals (:mod:`instrumentation.sdk_internals.histograms`),
so before the first binding a self-test records through both paths of a throw-away provider,
and every binding checks the names it uses: on any difference (another SDK version) points
take ``Histogram.record`` for good, with one WARNING naming the SDK version; a no-op or proxy
instrument takes it silently. ``tests/instrumentation/test_bound.py`` compares what both paths
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
from collections.abc import Mapping
from time import time_ns
from typing import Any

from opentelemetry.context import Context, get_current
from opentelemetry.metrics import Histogram

from instrumentation import sdk_internals
from instrumentation.sdk_internals import histograms as sdk_histograms
from instrumentation.sdk_internals.histograms import Measurement, Unusable

_log = logging.getLogger(__name__)

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
        self._routes: tuple[sdk_histograms.Route, ...] | None = None
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
        # Disabled instruments, and values the SDK warns about, take its own path. Binding
        # checked that _is_enabled is there (sdk_internals.histograms.resolve).
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
        self._routes = None
        self._unusable = True
        if not sdk_histograms.is_sdk_histogram(self._histogram) or not _sdk_checked():
            return False
        return self._bind()

    def _bind(self) -> bool:
        try:
            found = sdk_histograms.resolve(self._histogram, self._attributes)
        except Unusable as exc:
            sdk_internals.fall_back(
                sdk_histograms.CONCERN, str(exc), "points take Histogram.record"
            )
            return False
        self._cleaned = found.cleaned
        self._storages = found.storages
        self._consumer = found.consumer
        self._deferred = bool(found.storages) and all(
            isinstance(reader, DrainsBoundPoints) for reader in found.storages
        )
        self._routes = found.routes
        self._unusable = False
        return True


_self_test_lock = threading.Lock()
_sdk_ok: bool | None = None


def _sdk_checked() -> bool:
    """Whether the installed SDK passed :func:`_self_test` (run once, at the first binding)."""
    global _sdk_ok
    if _sdk_ok is None:
        with _self_test_lock:
            if _sdk_ok is None:
                _sdk_ok = _self_test()
    return _sdk_ok


_SELF_TEST_VALUES = (0.0005, 0.25, 0.25, 3.0, 12.5)


def _self_test() -> bool:
    """Points through the fast path (mixed with ``record``) of a throw-away provider export what
    ``record`` alone exports."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    problem = sdk_histograms.import_problem()
    if problem is None:
        try:
            exported = []
            for fast in (True, False):
                reader = InMemoryMetricReader()
                provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
                histogram = provider.get_meter(__name__).create_histogram("self_test", unit="s")
                point = BoundHistogram(histogram, {"self_test": "yes"})
                if fast and not point._bind():
                    return False
                # Both paths into one aggregation: a key the SDK no longer computes the same
                # way would split it in two.
                for index, value in enumerate(_SELF_TEST_VALUES):
                    if fast and index % 2:
                        point.record(value)
                    else:
                        histogram.record(value, {"self_test": "yes"})
                exported.append(_histogram_points(reader))
                provider.shutdown()
            if exported[0] != exported[1] or not exported[0]:
                problem = "the fast path exported other points than Histogram.record"
        except Exception as exc:  # any surprise in the SDK's internals: the public path
            problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        sdk_internals.fall_back(sdk_histograms.CONCERN, problem, "points take Histogram.record")
        return False
    return True


def _histogram_points(reader: Any) -> list[tuple[Any, ...]]:
    data = reader.get_metrics_data()
    return [
        (dict(point.attributes), point.count, point.sum, tuple(point.bucket_counts))
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        for point in metric.data.data_points
    ]
