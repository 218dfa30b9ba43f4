"""Private names of the OpenTelemetry API: the suppression key and the global-provider flags.

* :data:`SUPPRESS_INSTRUMENTATION_KEY` is the context key the SDK's exporters set while they
  export; the OTLP log handler drops records logged under it so that an export cannot feed
  itself. ``None`` if the API no longer has it: the handler then goes by logger names alone
  (``opentelemetry.*``, ``urllib3``...), which cover the SDK's own exporters.
* :func:`reset_global_providers` clears the API's "set once" flags so that a test may install
  providers again (:func:`instrumentation.testing.reset_for_tests`). Where the names moved it
  leaves the globals alone and one WARNING says so: tests then share the first providers.
"""

from __future__ import annotations

import importlib
from typing import Any

from instrumentation import sdk_internals

try:
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
except ImportError:  # depends on the installed API
    _SUPPRESS_INSTRUMENTATION_KEY = None

__all__ = ["RESET_CONCERN", "SUPPRESS_INSTRUMENTATION_KEY", "reset_global_providers"]

RESET_CONCERN = "resetting the global providers (tests)"
SUPPRESS_INSTRUMENTATION_KEY: str | None = _SUPPRESS_INSTRUMENTATION_KEY

# (module, "set once" flag, provider, proxy) for traces, metrics and logs.
_GLOBALS = (
    ("opentelemetry.trace", "_TRACER_PROVIDER_SET_ONCE", "_TRACER_PROVIDER", None),
    (
        "opentelemetry.metrics._internal",
        "_METER_PROVIDER_SET_ONCE",
        "_METER_PROVIDER",
        ("_PROXY_METER_PROVIDER", "_ProxyMeterProvider"),
    ),
    ("opentelemetry._logs._internal", "_LOGGER_PROVIDER_SET_ONCE", "_LOGGER_PROVIDER", None),
)


def reset_global_providers() -> bool:
    """Let the process install each global provider again; whether that could be done.

    The proxy meter provider keeps the meters handed out before a provider was set and replays
    them onto the next one: it is replaced by a fresh one, so that one test's instruments do not
    register in the next's.
    """
    try:
        from opentelemetry.util._once import Once

        modules: list[tuple[Any, str, str, tuple[str, str] | None]] = []
        for module_name, once_name, provider_name, proxy in _GLOBALS:
            module = importlib.import_module(module_name)
            for name in (once_name, provider_name, *(proxy or ())):
                getattr(module, name)
            modules.append((module, once_name, provider_name, proxy))
    except (ImportError, AttributeError) as exc:
        sdk_internals.fall_back(
            RESET_CONCERN, f"{type(exc).__name__}: {exc}", "the global providers stay as set"
        )
        return False
    for module, once_name, provider_name, proxy in modules:
        setattr(module, once_name, Once())
        setattr(module, provider_name, None)
        if proxy is not None:
            proxy_name, proxy_class = proxy
            setattr(module, proxy_name, getattr(module, proxy_class)())
    return True
