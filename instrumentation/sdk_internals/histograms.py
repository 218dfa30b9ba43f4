"""The SDK names behind :class:`instrumentation.bound.BoundHistogram`'s fast path.

``Histogram.record`` redoes per point the attribute work that depends only on the attributes
(see :mod:`instrumentation.bound`). Skipping it means reaching the SDK's measurement consumer,
its reader storages and each view match's aggregations, all private. :func:`resolve` finds them
for one histogram and attribute set and raises :class:`Unusable` when any is missing or of
another shape; :func:`check_sdk` is the self-test (one histogram of a throw-away provider,
recorded through both paths, must export the same points), run once per process before the
first binding. When either fails, every bound histogram records through the public
``Histogram.record`` and :func:`instrumentation.sdk_internals.fall_back` warns once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from time import time_ns
from typing import Any

from opentelemetry.sdk.metrics.view import DefaultAggregation

try:
    from opentelemetry.attributes import _clean_attribute_value
    from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes
    from opentelemetry.sdk.metrics._internal.instrument import Histogram as SdkHistogram
    from opentelemetry.sdk.metrics._internal.measurement import Measurement
except ImportError as missing:  # depends on the installed SDK
    SdkHistogram = None
    Measurement = None
    _IMPORT_PROBLEM: str | None = f"private module or name gone: {missing}"
else:
    _IMPORT_PROBLEM = None

__all__ = ["CONCERN", "Measurement", "Resolution", "Route", "Unusable", "import_problem", "resolve"]

CONCERN = "bound histograms"

# One aggregation target: the view match, the aggregation key, the attributes it keeps, whether
# collections discard its aggregations, and what makes its aggregation (under the match's lock).
Route = tuple[Any, Any, dict[str, Any], bool, Callable[[Any, dict[str, Any]], Any]]

# What the fast path uses of each view match.
_MATCH_INTERNALS = ("_attributes_aggregation", "_lock", "_view", "_instrument")


class Unusable(Exception):
    """The private names :func:`resolve` needs are missing or of another shape."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a bound histogram needs to aggregate a point without ``Histogram.record``."""

    consumer: Any
    storages: Any
    cleaned: dict[str, Any]
    routes: tuple[Route, ...]


def import_problem() -> str | None:
    """Why the private modules could not be imported, or ``None``."""
    return _IMPORT_PROBLEM


def is_sdk_histogram(histogram: object) -> bool:
    """Whether ``histogram`` is the SDK's own (not a no-op or proxy instrument)."""
    return SdkHistogram is not None and isinstance(histogram, SdkHistogram)


def reader_storages(histogram: Any) -> Any:
    """The object that changes when a reader is added or removed (compared by identity)."""
    return histogram._measurement_consumer._reader_storages


def resolve(histogram: Any, attributes: Mapping[str, Any]) -> Resolution:
    """The view matches ``histogram.record(value, attributes)`` would aggregate into."""
    if _IMPORT_PROBLEM is not None or not is_sdk_histogram(histogram):
        raise Unusable(_IMPORT_PROBLEM or "not an SDK histogram")
    try:
        is_enabled = histogram._is_enabled
        consumer = histogram._measurement_consumer
        storages = consumer._reader_storages
        cleaned = dict(_clean_attribute_value(attributes, None))
        routes: list[Route] = []
        for storage in list(storages.values()):
            for match in storage._get_or_init_view_instrument_match(histogram):
                keys = match._view._attribute_keys
                kept = (
                    dict(cleaned)
                    if keys is None
                    else {key: value for key, value in cleaned.items() if key in keys}
                )
                missing = [name for name in _MATCH_INTERNALS if not hasattr(match, name)]
                if missing:
                    raise Unusable(f"_ViewInstrumentMatch has no {', '.join(missing)}")
                routes.append(
                    (
                        match,
                        _hash_attributes(kept),
                        kept,
                        bool(getattr(match, "_reset_on_collect", False)),
                        _aggregation_maker(match),
                    )
                )
        if not callable(is_enabled) or not callable(
            consumer._sdk_config.exemplar_filter.should_sample
        ):
            raise Unusable("_is_enabled or the exemplar filter is not callable")
    except (AttributeError, TypeError) as exc:
        raise Unusable(f"{type(exc).__name__}: {exc}") from exc
    return Resolution(consumer, storages, cleaned, tuple(routes))


def _aggregation_maker(match: Any) -> Callable[[Any, dict[str, Any]], Any]:
    """What makes ``match``'s aggregation for a new attribute set, called under its lock.

    SDK 1.45.2 has a method for it (with the cardinality limit); 1.45.0 and 1.45.1, which the
    project's lower bound admits and the contrib instrumentations' venv runs, make it inline in
    ``consume_measurement``, as :func:`make_inline` does.
    """
    method = getattr(match, "_get_or_create_aggregation", None)
    if callable(method):
        return method  # type: ignore[no-any-return]
    return partial(make_inline, match)


def make_inline(match: Any, key: Any, attributes: dict[str, Any]) -> Any:
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
