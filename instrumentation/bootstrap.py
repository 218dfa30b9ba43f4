"""One entry point: :func:`init` sets everything up in the right order and returns a handle.

The order, and why: logging first (when asked for), so that what set-up itself logs reaches
the application's handlers and ours; then the OpenTelemetry providers, which move every engine,
``Database`` and Flask app instrumented earlier onto themselves (:mod:`instrumentation.providers`),
so nothing needs to be built after this call; then the SIGTERM handler, which flushes telemetry
before the process ends; last the Flask app, if one is given. Engines can be instrumented before
or after :func:`init`, with the same result.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from instrumentation import logs, telemetry
from instrumentation.settings import LoggingSettings, TelemetrySettings

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["Instrumentation", "init"]


@dataclass
class Instrumentation:
    """What :func:`init` set up; :meth:`shutdown` takes it down, once."""

    telemetry: telemetry.Telemetry
    app: Flask | None
    configured_logging: bool
    signal_handlers: bool
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _shut_down: bool = field(default=False, repr=False)

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Flush and stop telemetry, restore the SIGTERM handler and remove our log handlers.

        Idempotent and never raises. The Flask app and engines stay instrumented; their spans
        and metrics go to no-op providers from then on.
        """
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
        telemetry.shutdown(timeout_ms)
        if self.signal_handlers:
            telemetry.uninstall_signal_handlers()
        if self.configured_logging:
            logs.shutdown_logging()


def init(
    app: Flask | None = None,
    *,
    service_name: str,
    service_version: str | None = None,
    environment: str | None = None,
    telemetry_settings: TelemetrySettings | None = None,
    logging_settings: LoggingSettings | None = None,
    signal_handlers: bool = True,
    excluded_routes: Collection[str] = (),
    step_spans: bool = True,
) -> Instrumentation:
    """Set up telemetry (and logging, signal handlers, ``app``) for this process.

    ``telemetry_settings`` defaults to :class:`TelemetrySettings` for ``service_name`` (the
    standard ``OTEL_*`` variables still apply); ``service_name``, ``service_version`` and
    ``environment`` override what it says. ``logging_settings=None`` leaves logging as the
    application configured it (records still go out over OTLP); given, our JSON handlers are
    added beside the application's own (:func:`instrumentation.configure_logging`). Signal
    handlers can only be installed from the main thread; elsewhere this is logged and skipped.
    ``app`` is instrumented with :func:`instrumentation.instrument_app`, which changes none of
    its responses (``excluded_routes`` and ``step_spans`` are passed on to it). Calling
    :func:`init` again returns a handle on the first set-up.
    """
    settings = telemetry_settings or TelemetrySettings(service_name=service_name)
    settings = replace(
        settings,
        service_name=service_name,
        service_version=service_version or settings.service_version,
        environment=environment or settings.environment,
    )
    if logging_settings is not None:
        logs.configure_logging(logging_settings, service=service_name)
    built = telemetry.setup(settings)
    installed = signal_handlers and telemetry.install_signal_handlers()
    if app is not None:
        from instrumentation.flask import instrument_app

        instrument_app(app, excluded_routes=excluded_routes, step_spans=step_spans)
    return Instrumentation(
        telemetry=built,
        app=app,
        configured_logging=logging_settings is not None,
        signal_handlers=installed,
    )
