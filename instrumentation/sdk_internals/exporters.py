"""The SDK exporters' state that :mod:`instrumentation.exporters` and the telemetry bootstrap read.

* :mod:`instrumentation.exporters` runs the OTLP/HTTP exporters' own ``export()`` with another
  encoder, so it reads their ``_shutdown``, ``_metrics``, ``_client`` and ``_max_request_size``
  and reuses the size check ``_is_request_too_large``. :func:`wire_export_usable` checks, once
  per exporter when it is built, that all of it is there with the expected shape; otherwise the
  exporter runs the SDK's own ``export()`` (SDK encoder, same data, more CPU).
* The bootstrap wraps each metric exporter to count failed exports, and a reader asks the
  exporter it is given for its preferred temporality and aggregation, so the wrapper must carry
  the inner exporter's: :func:`metric_preferences` reads them, or answers ``None`` and the
  exporter is used unwrapped (its failures are then not counted; the metrics are unchanged).

Either fallback logs one WARNING naming the SDK version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from instrumentation import sdk_internals

try:
    # Private helpers of the SDK exporter, reused so that the size limit behaves exactly as there.
    from opentelemetry.exporter.otlp.proto.http._common import (
        RequestPayloadTooLargeError,
        _is_request_too_large,
    )
except ImportError as missing:  # depends on the installed exporter
    _IMPORT_PROBLEM: str | None = f"private module or name gone: {missing}"
    RequestPayloadTooLargeError = RuntimeError
    _is_request_too_large = None
else:
    _IMPORT_PROBLEM = None

__all__ = [
    "EXPORT_CONCERN",
    "PREFERENCES_CONCERN",
    "RequestPayloadTooLargeError",
    "is_request_too_large",
    "metric_preferences",
    "wire_export_usable",
]

EXPORT_CONCERN = "OTLP/HTTP exporter state"
PREFERENCES_CONCERN = "metric exporter preferences"


def is_request_too_large(data: bytes, limit: int) -> bool:
    """The SDK exporter's own size test (only called once :func:`wire_export_usable` said yes)."""
    check: Callable[[bytes, int], bool] = _is_request_too_large  # type: ignore[assignment]
    return check(data, limit)


# What the wire export reads of an SDK exporter, and what each must be.
_EXPORT_STATE: tuple[tuple[str, Callable[[Any], bool]], ...] = (
    ("_shutdown", lambda value: isinstance(value, bool)),
    ("_max_request_size", lambda value: isinstance(value, int)),
    ("_client", lambda value: callable(getattr(value, "export", None))),
    ("_metrics", lambda value: callable(getattr(value, "export_operation", None))),
)
_PREFERENCES = ("_preferred_temporality", "_preferred_aggregation")


def _export_state_problem(exporter: Any) -> str | None:
    if _IMPORT_PROBLEM is not None:
        return _IMPORT_PROBLEM
    for name, expected in _EXPORT_STATE:
        if not hasattr(exporter, name):
            return f"the exporter has no {name}"
        if not expected(getattr(exporter, name)):
            return f"the exporter's {name} is of another shape"
    return None


def wire_export_usable(exporter: Any) -> bool:
    """Whether ``exporter`` (an SDK OTLP/HTTP exporter) has the state the wire export reads."""
    problem = _export_state_problem(exporter)
    if problem is None:
        return True
    sdk_internals.fall_back(
        EXPORT_CONCERN, problem, "spans and logs are encoded and sent by the SDK's export()"
    )
    return False


def metric_preferences(exporter: Any) -> tuple[Any, Any] | None:
    """``exporter``'s preferred temporality and aggregation (constructor keyword values)."""
    temporality, aggregation = (getattr(exporter, name, None) for name in _PREFERENCES)
    if isinstance(temporality, dict) and isinstance(aggregation, dict):
        return temporality, aggregation
    sdk_internals.fall_back(
        PREFERENCES_CONCERN,
        "_preferred_temporality or _preferred_aggregation is gone",
        "metric exporters are used unwrapped and their failed exports are not counted",
    )
    return None
