"""The Flask integration against a real flask-smorest app and in-memory SDK pipelines.

``telemetry`` (an :class:`~instrumentation.testing.InMemoryTelemetry`) comes from the folder's
``conftest.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import marshmallow as ma
import pytest
import sqlalchemy.exc
from flask import Flask, g
from flask.signals import request_started
from flask.testing import FlaskClient
from flask_smorest import Api, Blueprint
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace import TracerProvider as ApiTracerProvider

from instrumentation.errors import PoolExhaustedError
from instrumentation.failures import failure_counts
from instrumentation.flask import (
    EXTENSION_KEY,
    current_request_id,
    instrument_app,
    register_error_responses,
    uninstrument_app,
)
from instrumentation.testing import InMemoryTelemetry

DURATION = "http.server.request.duration"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN_ID = "b7ad6b7169203331"


class ListArgs(ma.Schema):
    limit = ma.fields.Integer(load_default=10, validate=ma.validate.Range(min=1, max=100))


def create_app(tracer_provider: ApiTracerProvider) -> Flask:
    app = Flask(__name__)
    app.config.update(API_TITLE="test", API_VERSION="1", OPENAPI_VERSION="3.0.3")
    api = Api(app)
    blp = Blueprint("items", __name__, url_prefix="/api")
    tracer = tracer_provider.get_tracer("test.views")

    @blp.route("/items", methods=["GET"])
    @blp.arguments(ListArgs, location="query")
    def list_items(args: dict[str, int]) -> dict[str, int]:
        return {"limit": args["limit"]}

    @blp.route("/items/<int:item_id>", methods=["GET"])
    def get_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @blp.route("/boom", methods=["GET"])
    def boom() -> dict[str, str]:
        raise RuntimeError("exploded with token=abc123")

    @blp.route("/busy", methods=["GET"])
    def busy() -> dict[str, str]:
        raise PoolExhaustedError("main", 2.0)

    @blp.route("/pool-timeout", methods=["GET"])
    def pool_timeout() -> dict[str, str]:
        raise sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached")

    @blp.route("/nested", methods=["GET"])
    def nested() -> dict[str, str]:
        with tracer.start_as_current_span("child"):
            return {"ok": "yes"}

    @blp.route("/request-id", methods=["GET"])
    def request_id() -> dict[str, str | None]:
        return {"g": g.request_id, "current": current_request_id()}

    api.register_blueprint(blp)
    app.add_url_rule("/healthz", "healthz", lambda: "ok")
    app.add_url_rule("/cache", "purge", lambda: "purged", methods=["PURGE"])
    return app


InstrumentedApp = Callable[[ApiTracerProvider, InMemoryTelemetry], Flask]


@pytest.fixture
def instrumented_app() -> Iterator[InstrumentedApp]:
    """Builds instrumented test apps tracing to a given provider; uninstruments them after."""
    apps: list[Flask] = []

    def build(tracer_provider: ApiTracerProvider, telemetry: InMemoryTelemetry) -> Flask:
        app = create_app(tracer_provider)
        instrument_app(
            app,
            tracer_provider=tracer_provider,
            meter_provider=telemetry.meter_provider,
            excluded_routes=["/healthz"],
            request_id_attribute="vrp.request.id",
        )
        register_error_responses(app)
        apps.append(app)
        return app

    yield build
    for app in apps:
        uninstrument_app(app)


@pytest.fixture
def app(telemetry: InMemoryTelemetry, instrumented_app: InstrumentedApp) -> Flask:
    return instrumented_app(telemetry.tracer_provider, telemetry)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="instrumentation.access")
    return caplog


def server_span(telemetry: InMemoryTelemetry) -> ReadableSpan:
    spans = [span for span in telemetry.spans() if span.kind is SpanKind.SERVER]
    assert len(spans) == 1, [span.name for span in spans]
    return spans[0]


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "instrumentation.access"]


def test_matched_route_span_is_named_by_route_with_http_attributes(
    client: FlaskClient, telemetry: InMemoryTelemetry
) -> None:
    response = client.get(
        "/api/items/7", headers={"User-Agent": "pytest-agent", "Host": "api.example:8443"}
    )

    assert response.status_code == 200
    span = server_span(telemetry)
    assert span.name == "GET /api/items/<int:item_id>"
    assert span.kind is SpanKind.SERVER
    assert span.status.status_code is StatusCode.UNSET
    attributes = dict(span.attributes or {})
    request_id = attributes.pop("vrp.request.id")
    assert request_id == response.headers["X-Request-ID"]
    assert attributes == {
        "http.request.method": "GET",
        "http.route": "/api/items/<int:item_id>",
        "http.response.status_code": 200,
        "url.path": "/api/items/7",
        "url.scheme": "http",
        "server.address": "api.example",
        "server.port": 8443,
        "user_agent.original": "pytest-agent",
        "client.address": "127.0.0.1",
    }


def test_duration_histogram_uses_semconv_buckets_and_low_cardinality_attributes(
    client: FlaskClient, telemetry: InMemoryTelemetry
) -> None:
    client.get("/api/items/1")
    client.get("/api/items/2")

    [point] = telemetry.metric_points(DURATION)
    assert point.count == 2
    assert dict(point.attributes) == {
        "http.request.method": "GET",
        "http.route": "/api/items/<int:item_id>",
        "http.response.status_code": 200,
    }
    assert list(point.explicit_bounds) == [
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
    ]  # fmt: skip


def test_unmatched_path_span_is_named_by_method_only(
    client: FlaskClient, telemetry: InMemoryTelemetry, access_log: pytest.LogCaptureFixture
) -> None:
    response = client.get("/no/such/thing")

    assert response.status_code == 404
    assert response.get_json() == {"code": 404, "status": "Not Found"}
    span = server_span(telemetry)
    assert span.name == "GET"
    assert "http.route" not in span.attributes
    assert span.attributes["http.response.status_code"] == 404
    assert "error.type" not in span.attributes
    assert span.status.status_code is StatusCode.UNSET
    [point] = telemetry.metric_points(DURATION)
    assert dict(point.attributes) == {
        "http.request.method": "GET",
        "http.response.status_code": 404,
    }
    [record] = access_records(access_log)
    assert record.getMessage().startswith("GET /no/such/thing 404 ")


def test_wrong_method_gets_smorest_405_and_a_method_only_span(
    client: FlaskClient, telemetry: InMemoryTelemetry
) -> None:
    response = client.delete("/api/items/3")

    assert response.status_code == 405
    assert response.get_json()["status"] == "Method Not Allowed"
    span = server_span(telemetry)
    assert span.name == "DELETE"
    assert span.attributes["http.response.status_code"] == 405


def test_validation_error_422_is_inside_the_span_and_counted(
    client: FlaskClient, telemetry: InMemoryTelemetry, access_log: pytest.LogCaptureFixture
) -> None:
    response = client.get("/api/items?limit=abc")

    assert response.status_code == 422
    assert response.get_json()["errors"] == {"query": {"limit": ["Not a valid integer."]}}
    span = server_span(telemetry)
    assert span.name == "GET /api/items"
    assert span.attributes["http.response.status_code"] == 422
    assert "error.type" not in span.attributes
    assert span.status.status_code is StatusCode.UNSET
    [point] = telemetry.metric_points(DURATION)
    assert point.attributes["http.response.status_code"] == 422
    [record] = access_records(access_log)
    assert record.__dict__["http.response.status_code"] == 422


def test_unhandled_exception_becomes_json_500_recorded_on_the_span(
    client: FlaskClient, telemetry: InMemoryTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.get("/api/boom")

    assert response.status_code == 500
    assert response.get_json() == {
        "code": 500,
        "status": "Internal Server Error",
        "message": "internal error",
        "request_id": response.headers["X-Request-ID"],
    }
    assert b"Traceback" not in response.data
    span = server_span(telemetry)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "RuntimeError"
    assert span.attributes["http.response.status_code"] == 500
    [event] = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "RuntimeError"
    assert "abc123" not in event.attributes["exception.message"]
    assert "abc123" not in event.attributes["exception.stacktrace"]
    [point] = telemetry.metric_points(DURATION)
    assert point.attributes["error.type"] == "RuntimeError"
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None


def test_unhandled_exception_propagates_in_testing_mode_and_is_still_recorded(
    app: Flask, telemetry: InMemoryTelemetry
) -> None:
    app.config["TESTING"] = True

    with pytest.raises(RuntimeError):
        app.test_client().get("/api/boom")

    span = server_span(telemetry)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "RuntimeError"
    assert span.attributes["http.response.status_code"] == 500
    [point] = telemetry.metric_points(DURATION)
    assert point.attributes["http.response.status_code"] == 500


def test_pool_exhausted_becomes_503_with_retry_after(
    client: FlaskClient, telemetry: InMemoryTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.get("/api/busy")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    body = response.get_json()
    assert body["code"] == 503
    assert body["status"] == "Service Unavailable"
    assert body["message"]
    span = server_span(telemetry)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "instrumentation.errors.PoolExhaustedError"
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert [record.name for record in warnings] == ["instrumentation.flask"]


def test_sqlalchemy_pool_timeout_becomes_503(
    client: FlaskClient, telemetry: InMemoryTelemetry
) -> None:
    response = client.get("/api/pool-timeout")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert server_span(telemetry).attributes["error.type"] == "sqlalchemy.exc.TimeoutError"


def test_a_failing_before_request_hook_is_inside_the_route_span(
    app: Flask, telemetry: InMemoryTelemetry
) -> None:
    @app.before_request
    def exhausted() -> None:
        raise PoolExhaustedError("main", 2.0)

    response = app.test_client().get("/api/items/1")

    assert response.status_code == 503
    span = server_span(telemetry)
    assert span.name == "GET /api/items/<int:item_id>"
    assert span.attributes["http.response.status_code"] == 503


def test_incoming_traceparent_makes_the_server_span_a_child(
    client: FlaskClient, telemetry: InMemoryTelemetry
) -> None:
    client.get("/api/items/1", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"})

    span = server_span(telemetry)
    assert span.context.trace_id == int(TRACE_ID, 16)
    assert span.parent is not None
    assert span.parent.span_id == int(PARENT_SPAN_ID, 16)
    assert span.parent.is_remote


def test_spans_opened_in_a_view_are_children_of_the_server_span(
    client: FlaskClient, telemetry: InMemoryTelemetry
) -> None:
    client.get("/api/nested")

    child = telemetry.span_named("child")
    server = server_span(telemetry)
    assert child.parent is not None
    assert child.parent.span_id == server.context.span_id
    assert child.context.trace_id == server.context.trace_id


def test_duration_is_recorded_for_every_request_even_when_no_trace_is_sampled(
    telemetry: InMemoryTelemetry, instrumented_app: InstrumentedApp
) -> None:
    unsampled = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    app = instrumented_app(unsampled, telemetry)
    client = app.test_client()
    failures_before = sum(failure_counts().values())

    for _ in range(3):
        assert client.get("/api/items/1").status_code == 200
    client.get("/api/boom")

    points = {
        point.attributes["http.response.status_code"]: point.count
        for point in telemetry.metric_points(DURATION)
    }
    assert points == {200: 3, 500: 1}
    assert sum(failure_counts().values()) == failures_before


def test_a_sane_incoming_request_id_is_honoured(client: FlaskClient) -> None:
    response = client.get("/api/request-id", headers={"X-Request-ID": "edge-42:a.b_c"})

    assert response.headers["X-Request-ID"] == "edge-42:a.b_c"
    assert response.get_json() == {"g": "edge-42:a.b_c", "current": "edge-42:a.b_c"}


@pytest.mark.parametrize(
    "incoming", ["x" * 129, "has space", "line\nbreak", "semi;colon", ""], ids=repr
)
def test_a_malformed_incoming_request_id_is_replaced(client: FlaskClient, incoming: str) -> None:
    response = client.get("/api/request-id", environ_overrides={"HTTP_X_REQUEST_ID": incoming})

    generated = response.headers["X-Request-ID"]
    assert generated != incoming
    assert len(generated) == 32
    int(generated, 16)
    assert response.get_json()["g"] == generated


def test_a_request_id_is_generated_per_request(client: FlaskClient) -> None:
    first = client.get("/api/request-id").headers["X-Request-ID"]
    second = client.get("/api/request-id").headers["X-Request-ID"]

    assert first != second
    assert current_request_id() is None


def test_one_access_record_per_request_with_structured_fields(
    client: FlaskClient, access_log: pytest.LogCaptureFixture
) -> None:
    response = client.get("/api/items/9", headers={"User-Agent": "pytest-agent"})

    [record] = access_records(access_log)
    assert record.levelno == logging.INFO
    assert record.args
    assert record.getMessage().startswith("GET /api/items/9 200 ")
    assert record.getMessage().endswith("ms")
    fields = record.__dict__
    assert fields["request_id"] == response.headers["X-Request-ID"]
    assert fields["http.request.method"] == "GET"
    assert fields["http.route"] == "/api/items/<int:item_id>"
    assert fields["url.path"] == "/api/items/9"
    assert fields["http.response.status_code"] == 200
    assert fields["duration_ms"] >= 0
    assert fields["client.address"] == "127.0.0.1"
    assert fields["user_agent.original"] == "pytest-agent"


def test_query_string_secrets_never_reach_spans_or_the_access_log(
    client: FlaskClient, telemetry: InMemoryTelemetry, access_log: pytest.LogCaptureFixture
) -> None:
    client.get("/api/items?token=abc&limit=5", headers={"Authorization": "Bearer hunter2"})

    span = server_span(telemetry)
    assert span.attributes["url.path"] == "/api/items"
    rendered = repr(dict(span.attributes)) + repr(span.events)
    [record] = access_records(access_log)
    rendered += record.getMessage() + repr(record.__dict__)
    assert "abc" not in rendered
    assert "hunter2" not in rendered
    assert "token" not in rendered


def test_excluded_routes_get_a_request_id_but_no_span_metric_or_access_log(
    client: FlaskClient, telemetry: InMemoryTelemetry, access_log: pytest.LogCaptureFixture
) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.headers["X-Request-ID"]
    assert telemetry.spans() == []
    assert telemetry.metric_points(DURATION) == []
    assert access_records(access_log) == []


def test_unknown_method_is_recorded_as_other(
    client: FlaskClient, telemetry: InMemoryTelemetry
) -> None:
    response = client.open("/cache", method="PURGE")

    assert response.status_code == 200
    span = server_span(telemetry)
    assert span.name == "HTTP /cache"
    assert span.attributes["http.request.method"] == "_OTHER"
    assert span.attributes["http.request.method_original"] == "PURGE"


class ExplodingProcessor(SpanProcessor):
    def on_start(self, span: object, parent_context: object = None) -> None:
        raise RuntimeError("processor broke on start")

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("processor broke on end")


@pytest.mark.parametrize("broken", ["on_start", "on_end"])
def test_a_failing_span_processor_does_not_break_the_response(
    broken: str,
    telemetry: InMemoryTelemetry,
    instrumented_app: InstrumentedApp,
    caplog: pytest.LogCaptureFixture,
) -> None:
    processor = ExplodingProcessor()
    if broken == "on_end":
        processor.on_start = lambda span, parent_context=None: None  # type: ignore[method-assign]
    telemetry.tracer_provider.add_span_processor(processor)
    app = instrumented_app(telemetry.tracer_provider, telemetry)
    failures_before = _flask_failures()

    response = app.test_client().get("/api/items/1")

    assert response.status_code == 200
    assert response.get_json() == {"id": 1}
    # A broken start leaves no request span (so no step spans); a broken end fails each of the
    # request's three spans (the SERVER span and its route and finalize steps) once.
    assert _flask_failures() == failures_before + (1 if broken == "on_start" else 3)
    assert len(telemetry.metric_points(DURATION)) == 1


def _flask_failures() -> int:
    return sum(n for place, n in failure_counts().items() if place.startswith("flask: "))


def test_instrumenting_twice_is_a_no_op_and_uninstrument_restores_the_app(
    app: Flask, telemetry: InMemoryTelemetry
) -> None:
    middleware = app.wsgi_app
    instrument_app(app, tracer_provider=telemetry.tracer_provider)
    assert app.wsgi_app is middleware

    app.test_client().get("/api/items/1")
    assert len([span for span in telemetry.spans() if span.kind is SpanKind.SERVER]) == 1

    uninstrument_app(app)
    telemetry.clear()
    response = app.test_client().get("/api/items/1")
    assert "X-Request-ID" not in response.headers
    assert telemetry.spans() == []
    assert EXTENSION_KEY not in app.extensions
    assert list(request_started.receivers_for(app)) == []
    # The JSON error responses were asked for on their own and stay with the app.
    assert app.test_client().get("/api/busy").status_code == 503


def _app_with_its_own_pages(telemetry: InMemoryTelemetry) -> Flask:
    app = Flask("pages")

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("exploded")

    @app.get("/busy")
    def busy() -> str:
        raise PoolExhaustedError("main", 2.0)

    @app.errorhandler(500)
    def sorry(error: Exception) -> tuple[str, int]:
        return "<h1>Sorry</h1>", 500

    instrument_app(
        app, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    return app


def test_instrument_app_registers_no_handler_and_records_the_crash_from_the_signal(
    telemetry: InMemoryTelemetry,
) -> None:
    app = _app_with_its_own_pages(telemetry)
    response = app.test_client().get("/boom")

    assert (response.status_code, response.get_data(as_text=True)) == (500, "<h1>Sorry</h1>")
    registered = {k: dict(v) for k, v in app.error_handler_spec[None].items() if v}
    assert list(registered) == [500]
    assert [handler.__name__ for handler in registered[500].values()] == ["sorry"]
    span = server_span(telemetry)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "RuntimeError"
    uninstrument_app(app)


def test_register_error_responses_never_replaces_the_apps_own_500_page(
    telemetry: InMemoryTelemetry,
) -> None:
    app = _app_with_its_own_pages(telemetry)
    register_error_responses(app)
    client = app.test_client()

    crash = client.get("/boom")
    busy = client.get("/busy")

    assert (crash.status_code, crash.get_data(as_text=True)) == (500, "<h1>Sorry</h1>")
    assert busy.status_code == 503
    assert busy.headers["Retry-After"] == "1"
    assert busy.get_json()["status"] == "Service Unavailable"
    uninstrument_app(app)


def test_flasks_work_before_and_after_the_view_has_step_spans_that_meet_the_request_span(
    client: FlaskClient, telemetry: InMemoryTelemetry
) -> None:
    assert client.get("/api/items/7").status_code == 200

    server = server_span(telemetry)
    steps = {
        span.name: span
        for span in telemetry.spans()
        if span.parent is not None and span.parent.span_id == server.context.span_id
    }
    route, finalize = steps["http.request.route"], steps["http.response.finalize"]
    assert route.kind is finalize.kind is SpanKind.INTERNAL
    assert route.start_time == server.start_time
    assert route.end_time <= finalize.start_time
    assert finalize.end_time == server.end_time


def test_no_step_span_is_started_under_an_unsampled_request(
    telemetry: InMemoryTelemetry, instrumented_app: InstrumentedApp
) -> None:
    asked: list[str] = []

    class CountingSampler(ParentBased):
        def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
            asked.append(args[2])
            return super().should_sample(*args, **kwargs)

    unsampled = TracerProvider(sampler=CountingSampler(ALWAYS_OFF), shutdown_on_exit=False)
    app = instrumented_app(unsampled, telemetry)
    failures_before = _flask_failures()

    assert app.test_client().get("/api/items/1").status_code == 200
    assert asked == ["GET /api/items/<int:item_id>"]
    assert _flask_failures() == failures_before


def test_step_spans_false_leaves_the_route_and_finalize_spans_out_and_keeps_the_rest(
    telemetry: InMemoryTelemetry,
) -> None:
    app = create_app(telemetry.tracer_provider)
    instrument_app(
        app,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        step_spans=False,
    )
    try:
        assert "dispatch_request" not in vars(app), "nothing wraps the view without step spans"
        assert app.test_client().get("/api/items/7").status_code == 200
        assert [span.name for span in telemetry.spans()] == ["GET /api/items/<int:item_id>"]
        assert server_span(telemetry).attributes["http.response.status_code"] == 200
    finally:
        uninstrument_app(app)
