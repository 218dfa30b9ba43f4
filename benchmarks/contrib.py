"""The anchor for ``overhead.py --contrib``: the OpenTelemetry contrib instrumentations.

``opentelemetry-instrumentation-flask`` and ``-sqlalchemy`` are what a team would reach for
instead of our package, so their cost on the same app, with the same exporters and sink, is the
yardstick for ours. They support SQLAlchemy below 2.1 only, while the project runs 2.1, so they
live in their own virtualenv: ``make bench-contrib`` creates ``.venv-contrib`` (the project plus
``benchmarks/contrib-requirements.txt``) and runs ``overhead.py --contrib`` there. Nothing here
is imported unless ``--contrib`` is given.

The contrib configurations run the app exactly as ``off`` does (our instrumentation handed no-op
providers, the root logger at WARNING) with the two contrib instrumentors added on the SDK
providers of the configuration; they emit no log records of their own. Their defaults are kept
(the HTTP and database semantic conventions their version emits by default), except that the
SQL commenter is off, as it changes the statements sent to the database.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from sqlalchemy import Engine

INSTALL_HINT = (
    "the contrib instrumentations are not installed here (they need SQLAlchemy < 2.1): "
    "run `make bench-contrib`, which builds .venv-contrib and runs overhead.py --contrib in it"
)


class ContribUnavailableError(RuntimeError):
    """``--contrib`` was asked for in an environment without the contrib instrumentations."""


def _modules() -> tuple[Any, Any, Any]:
    try:
        from opentelemetry.instrumentation import sqlalchemy as contrib_sqlalchemy
        from opentelemetry.instrumentation.flask import FlaskInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import engine as contrib_engine
    except ImportError as exc:
        raise ContribUnavailableError(INSTALL_HINT) from exc
    return FlaskInstrumentor, contrib_sqlalchemy, contrib_engine


def check_available() -> None:
    """Raise :class:`ContribUnavailableError` with what to do when the packages are missing."""
    _modules()


def instrument(
    app: Flask,
    engine: Engine,
    tracer_provider: trace_api.TracerProvider,
    meter_provider: metrics_api.MeterProvider,
) -> None:
    """Instrument ``app`` and ``engine`` with the contrib packages on the given providers.

    Flask: ``FlaskInstrumentor.instrument_app``, which is per app. SQLAlchemy: what
    ``SQLAlchemyInstrumentor().instrument(engine=engine)`` installs for one engine - its
    ``EngineTracer`` (statement spans, connection usage metric) and the ``connect`` span around
    ``Engine.connect`` - bound to this engine only. The instrumentor itself cannot be used here:
    it is a process-wide singleton that instruments once, with one tracer provider, and wraps
    ``Engine.connect`` of every engine in the process, which would put contrib spans into the
    other configurations of the run.
    """
    flask_instrumentor, contrib_sqlalchemy, contrib_engine = _modules()
    flask_instrumentor.instrument_app(
        app,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        enable_commenter=False,
    )
    scope = contrib_sqlalchemy.__name__
    version = contrib_sqlalchemy.__version__
    tracer = trace_api.get_tracer(scope, version, tracer_provider)
    meter = metrics_api.get_meter(scope, version, meter_provider)
    usage = meter.create_up_down_counter(
        name="db.client.connections.usage",
        unit="connections",
        description="The number of connections that are currently in state described by the "
        "state attribute.",
    )
    contrib_engine.EngineTracer(tracer, engine, usage, False, {}, False)
    wrap_connect = contrib_engine._wrap_connect(tracer)
    connect = engine.connect

    def traced_connect(*args: Any, **kwargs: Any) -> Any:
        return wrap_connect(connect, engine, args, kwargs)

    engine.connect = traced_connect  # type: ignore[method-assign]
