"""The Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask
from opentelemetry import trace

from instrumentation import (
    Database,
    Steps,
    conventions,
    instrument_app,
    register_error_responses,
)
from recorder import __version__, schema_version
from recorder.api import health, jsonbody, limits, recordings, tags
from recorder.api.context import EXTENSION, RecorderContext
from recorder.api.errors import register_error_handlers
from recorder.api.traced import Api
from recorder.config import Settings
from recorder.storage import BlobStore
from recorder.uploads import Uploads


def create_app(
    settings: Settings,
    *,
    db: Database | None = None,
    check_schema: bool = True,
    tracer_provider: Any = None,
    meter_provider: Any = None,
) -> Flask:
    """Build the API around ``settings``.

    Raises :class:`recorder.errors.SchemaOutOfDateError` when ``check_schema`` is set and the
    database is behind the migrations. ``db`` lets a caller share one ``Database`` (tests,
    ``vrp up``); otherwise the app makes its own from ``settings.database``.
    """
    if db is None:
        db = Database(
            settings.database, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
    if check_schema:
        schema_version.check_current(db.engine, tracer=db.tracer)
    # The API serves no static files: no /static/<path:filename> route answering 404s.
    app = Flask("recorder", static_folder=None)
    app.config.update(
        API_TITLE="Voice Recorder Pro",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=limits.max_body_bytes(settings),
        JSON_SORT_KEYS=False,
    )
    store = BlobStore(settings.storage_dir, settings.max_upload_bytes)
    steps = Steps(
        trace.get_tracer("recorder", __version__, tracer_provider=tracer_provider),
        enabled=settings.step_spans,
    )
    app.extensions[EXTENSION] = RecorderContext(
        settings=settings, db=db, store=store, uploads=Uploads(db, store, steps), steps=steps
    )
    api = Api(app)
    for blueprint in (recordings.blp, tags.blp, health.blp):
        api.register_blueprint(blueprint)
    register_error_handlers(app)
    jsonbody.install(app)
    instrument_app(
        app,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        excluded_routes=("/healthz", "/metrics"),
        request_id_attribute=conventions.VRP_REQUEST_ID,
        step_spans=settings.step_spans,
    )
    # JSON 503 on pool exhaustion and JSON 500 on a crash, beside the recorder's own handlers.
    register_error_responses(app)
    if settings.api_metrics_enabled:
        from instrumentation.prometheus import add_metrics_route

        add_metrics_route(app)
    return app
