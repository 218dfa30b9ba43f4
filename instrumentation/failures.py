"""The one way a failure inside telemetry is handled: counted, logged sparingly, never raised.

Every place in this package that records telemetry on the host's behalf (a statement listener,
a pool event, the Flask middleware, a session span) catches what goes wrong and calls
:func:`telemetry_failed` with a short name of the place. The host's own work goes on as if
telemetry were not there. The failure is counted per place (read the counts with
:func:`failure_counts`, their sum with :func:`instrumentation.telemetry_stats`) and logged as a
WARNING with its traceback on logger ``instrumentation.failures`` at most once a minute per place;
the record also says how many failures of that place went unlogged since the last one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from instrumentation import conventions

__all__ = ["LOG_INTERVAL_S", "failure_counts", "reset_failures", "telemetry_failed"]

LOG_INTERVAL_S = 60.0

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Place:
    count: int = 0
    unlogged: int = 0
    next_log: float = 0.0


_lock = threading.Lock()
_places: dict[str, _Place] = {}


def telemetry_failed(place: str) -> None:
    """Count the exception being handled as a telemetry failure at ``place``; never raises.

    Call it from an ``except`` block: the WARNING carries that exception's traceback.
    """
    try:
        now = time.monotonic()
        with _lock:
            state = _places.get(place)
            if state is None:
                state = _places[place] = _Place()
            state.count += 1
            if now < state.next_log:
                state.unlogged += 1
                return
            state.next_log = now + LOG_INTERVAL_S
            unlogged, state.unlogged = state.unlogged, 0
        _log.warning(
            "telemetry failed in %s (%d more since the last report); the application's own "
            "work is unaffected",
            place,
            unlogged,
            exc_info=True,
            extra={conventions.TELEMETRY_FAILURE_PLACE: place},
        )
    # Reporting a telemetry failure must not fail the host either.
    except Exception:  # nosec B110
        pass


def failure_counts() -> dict[str, int]:
    """Telemetry failures per place since the process started (or :func:`reset_failures`)."""
    with _lock:
        return {place: state.count for place, state in _places.items()}


def reset_failures() -> None:
    """Forget every count and rate limit (for tests)."""
    with _lock:
        _places.clear()
