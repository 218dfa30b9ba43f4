"""Every use of a private name of the OpenTelemetry API, SDK or exporters, one module per concern.

The package reaches into the SDK where the public API costs measurable time or cannot say what
it needs. Each such use lives here, behind a function that checks the private names exist and
behave (a self-test, run once when the feature is first used) and otherwise falls back to the
public path: slower, or with one statistic missing, but never a stopped process and never
dropped telemetry. The first fallback of each concern logs one WARNING naming the installed
``opentelemetry-sdk`` version (:func:`fall_back`).

Private names, by module, and the public path each falls back to:

* :mod:`.histograms` - ``Histogram._is_enabled``, the measurement consumer's
  ``_reader_storages`` and ``_sdk_config``, each view match's ``_attributes_aggregation``,
  ``_lock``, ``_view``..., ``_hash_attributes``, ``Measurement``, attribute cleaning (the bound
  histograms' fast path). Fallback: ``Histogram.record``.
* :mod:`.batching` - the batch processors' ``_batch_processor._metrics`` hook (drop counting).
  Fallback: drops are not counted; the telemetry itself is unaffected.
* :mod:`.logs` - ``Logger._is_enabled``, ``_logger_metrics``, ``_multi_log_record_processor``,
  ``_batch_processor`` (log records queued directly); ``std_to_otel``. Fallback:
  ``Logger.emit``; the logs data model's severity table.
* :mod:`.exporters` - the OTLP/HTTP exporters' ``_shutdown``, ``_metrics``, ``_client``,
  ``_max_request_size`` and ``_is_request_too_large`` (the hand-written wire encoding); a metric
  exporter's ``_preferred_temporality`` / ``_preferred_aggregation``. Fallback: the SDK's own
  ``export()``; the metric exporter unwrapped (its failed exports uncounted).
* :mod:`.api` - ``_SUPPRESS_INSTRUMENTATION_KEY``; the API's global-provider "set once" flags
  (tests' reset only). Fallback: the export-path filter by logger name alone; no reset.
* :mod:`.prometheus` - ``MetricReader._receive_metrics``, the abstract method every reader
  implements, overridden by ``instrumentation.prometheus`` to re-bucket the exponential duration
  histograms. Fallback: the histograms reach the Prometheus exporter unconverted.

Modules named ``_logs`` / ``_log_exporter`` / ``_log_encoder`` are the SDK's only home for the
logs signal, still experimental upstream: they are its public path, imported where used.
``pyproject.toml`` pins the SDK to the minor version these checks were written against;
``.ci/run`` runs the telemetry tests on the newest release (README, "Upgrading the OpenTelemetry
SDK").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from importlib import metadata

__all__ = ["SelfTest", "fall_back", "fallbacks", "reset_fallbacks", "sdk_version"]

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_fallbacks: dict[str, str] = {}


def sdk_version() -> str:
    """The installed ``opentelemetry-sdk`` version, or ``unknown``."""
    try:
        return metadata.version("opentelemetry-sdk")
    except metadata.PackageNotFoundError:
        return "unknown"


def fall_back(concern: str, problem: str, instead: str) -> None:
    """Record that ``concern`` takes the public path; the first time, log one WARNING.

    ``problem`` says what the self-test found, ``instead`` what happens now. Never raises.
    """
    with _lock:
        if concern in _fallbacks:
            return
        _fallbacks[concern] = problem
    _log.warning(
        "opentelemetry-sdk %s: %s (%s); %s. Telemetry stays correct; see the README, "
        "'Upgrading the OpenTelemetry SDK'",
        sdk_version(),
        concern,
        problem,
        instead,
    )


def fallbacks() -> dict[str, str]:
    """The concerns that fell back to the public path since start-up, with what was found."""
    with _lock:
        return dict(_fallbacks)


def reset_fallbacks() -> None:
    """Forget which concerns fell back (for tests, which re-run the self-tests)."""
    with _lock:
        _fallbacks.clear()


class SelfTest:
    """A self-test's verdict: run once per process on first call (thread-safe), then kept.

    ``run`` returns whether the private path may be used (it reports its own fallback). The
    log records' direct path keeps a module global instead: it reads its verdict per record.
    """

    def __init__(self, run: Callable[[], bool]) -> None:
        self._run = run
        self._lock = threading.Lock()
        self._verdict: bool | None = None

    def __call__(self) -> bool:
        verdict = self._verdict
        if verdict is None:
            with self._lock:
                if self._verdict is None:
                    self._verdict = self._run()
                verdict = self._verdict
        return verdict

    def reset(self) -> None:
        """Forget the verdict (for tests that change the SDK under it)."""
        with self._lock:
            self._verdict = None
