"""Components built before :func:`instrumentation.telemetry.setup` move onto its providers.

The OpenTelemetry API hands out proxy tracers and meters until a global provider is installed.
They forward to it once it is, but through an extra layer, and this package's fast metric path
(:mod:`instrumentation.bound`) cannot bind to a proxy instrument. So a component created with the
global providers while they are still proxies (an instrumented engine, a ``Database``, an
instrumented Flask app) registers a callback here; :func:`instrumentation.telemetry.setup` calls
:func:`rebind_all` once it has installed its providers, and each component takes fresh tracers
and instruments from them. The set-up order then does not matter. Callbacks are held weakly
(bound methods through :class:`weakref.WeakMethod`), so a registration never keeps a component
alive.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

from opentelemetry import trace

from instrumentation.failures import telemetry_failed

__all__ = ["global_providers_pending", "rebind_all", "rebind_when_installed"]

_lock = threading.Lock()
_pending: list[weakref.WeakMethod[Callable[[], None]]] = []


def global_providers_pending() -> bool:
    """Whether no global tracer provider is installed yet (the API still hands out proxies)."""
    return isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def rebind_when_installed(method: Callable[[], None]) -> None:
    """Call the bound ``method`` once :func:`rebind_all` runs (if its object is still alive)."""
    with _lock:
        _pending.append(weakref.WeakMethod(method))  # type: ignore[arg-type]


def rebind_all() -> None:
    """Call every registered callback once and forget them; a failing one is contained."""
    with _lock:
        pending = list(_pending)
        _pending.clear()
    for ref in pending:
        method = ref()
        if method is None:
            continue
        try:
            method()
        except Exception:
            telemetry_failed("rebind to the installed providers")
