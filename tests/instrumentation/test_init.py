"""``instrumentation.init``: one entry point whose order against engines, ``Database`` objects and
Flask apps does not matter, with an idempotent ``shutdown()``. Telemetry goes to a real OTLP/HTTP
receiver through the SDK's exporters."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from instrumentation import (
    Database,
    DatabaseSettings,
    TelemetrySettings,
    init,
    instrument_engine,
    uninstrument_engine,
)
from instrumentation.engines import instrumentation_of
from instrumentation.testing import reset_for_tests
from tests.adoption.otlp_receiver import OtlpReceiver, running_receiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    reset_for_tests()
    with running_receiver() as server:
        yield server
    reset_for_tests()


def _settings(receiver: OtlpReceiver) -> TelemetrySettings:
    return TelemetrySettings(service_name="shop", otlp_endpoint=receiver.endpoint)


def _is_sdk(component: object) -> bool:
    return type(component).__module__.startswith("opentelemetry.sdk")


@pytest.mark.parametrize("order", ["engine first", "init first"])
def test_an_engine_reports_through_init_whichever_comes_first(
    order: str, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    if order == "engine first":
        instrument_engine(engine)
        handle = init(service_name="shop", telemetry_settings=_settings(receiver))
    else:
        handle = init(service_name="shop", telemetry_settings=_settings(receiver))
        instrument_engine(engine)
    instrumented = instrumentation_of(engine)
    assert instrumented is not None
    assert _is_sdk(instrumented.meter) and _is_sdk(instrumented.tracer)

    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    handle.shutdown()

    assert ("SELECT", {"db.system.name": "sqlite", "db.namespace": "shop.db"}) in [
        (name, {k: v for k, v in attrs.items() if k in ("db.system.name", "db.namespace")})
        for name, attrs in receiver.spans()
    ]
    assert {"db.client.operation.duration", "db.client.connection.count"} <= (
        receiver.metric_names()
    )
    uninstrument_engine(engine)
    engine.dispose()


@pytest.mark.parametrize("order", ["database first", "init first"])
def test_a_database_reports_through_init_whichever_comes_first(
    order: str, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    settings = DatabaseSettings(url=f"sqlite:///{tmp_path / 'shop.db'}")
    if order == "database first":
        db = Database(settings)
        handle = init(service_name="shop", telemetry_settings=_settings(receiver))
    else:
        handle = init(service_name="shop", telemetry_settings=_settings(receiver))
        db = Database(settings)
    assert _is_sdk(db.tracer) and _is_sdk(db.meter)

    with db.session() as session:
        session.execute(sa.text("SELECT 1"))
    db.dispose()
    handle.shutdown()

    names = {name for name, _ in receiver.spans()}
    assert {"db.session", "SELECT"} <= names


def test_init_instruments_the_app_without_touching_its_error_handlers_and_shuts_down_once(
    receiver: OtlpReceiver,
) -> None:
    app = Flask("shop")

    @app.get("/")
    def index() -> str:
        return "welcome"

    handlers_before = {k: dict(v) for k, v in app.error_handler_spec[None].items() if v}
    previous = signal.getsignal(signal.SIGTERM)
    handle = init(app, service_name="shop", telemetry_settings=_settings(receiver))
    assert signal.getsignal(signal.SIGTERM) is not previous

    assert app.test_client().get("/").get_data(as_text=True) == "welcome"
    handle.shutdown()
    handle.shutdown()

    assert signal.getsignal(signal.SIGTERM) == previous
    assert {k: dict(v) for k, v in app.error_handler_spec[None].items() if v} == handlers_before
    assert ("GET /", 200) in [
        (name, attrs.get("http.response.status_code")) for name, attrs in receiver.spans()
    ]
    assert receiver.service_names() == {"shop"}
