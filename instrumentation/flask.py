"""Flask integration: one SERVER span, one duration point, one request id and one access-log
record per request; opt-in JSON error responses for pool exhaustion (503) and crashes (500).

Call :func:`instrument_app` once per app after creating it (a second call is a no-op);
:func:`uninstrument_app` undoes it, for tests.

Where the hooks sit, and why
    ``app.wsgi_app`` is wrapped by a WSGI middleware, and the span itself starts on Flask's
    ``request_started`` signal. The middleware sees every request - matched or not (404/405),
    handled or crashed - so it owns the request id, the ``X-Request-ID`` response header, the
    status code (read from ``start_response``), the duration histogram and the access log.
    ``request_started`` is the first point where Flask has matched the URL, and it fires before
    ``url_value_preprocessors`` and every ``before_request`` function, so the span is named by
    its route from the start (samplers see ``http.route``) and everything after it is inside
    the span: failing ``before_request`` hooks, flask-smorest's 422 handling, the view, error
    handlers, ``after_request`` and ``teardown_request`` functions (database sessions closed on
    teardown nest under the request). Should Flask fail before that signal (a broken session
    interface), the middleware still emits a span named ``{METHOD}`` when the request ends.

What callers can rely on
    * Span ``{METHOD} {route}`` (``{METHOD}`` alone when no rule matched; ``HTTP`` stands for a
      method outside the standard set, which is recorded as ``_OTHER`` with
      ``http.request.method_original``), kind SERVER, parent taken from the incoming W3C
      ``traceparent``, current while the request runs. Status ERROR for 5xx only; ``error.type``
      is the qualified exception class when one escaped the view or an error handler named it
      with :func:`record_error`, else the 5xx status code.
    * Two INTERNAL children of that span, so that the time around the view is explained:
      ``http.request.route`` from the request's start to the view's call (request context, URL
      routing, ``before_request`` hooks) and ``http.response.finalize`` from the view's return
      to the request's end (``make_response``, ``after_request`` hooks, error handlers,
      teardown). ``app.dispatch_request`` is wrapped on the app (not the class) to find those
      two moments. Neither is started in a trace the sampler dropped. The server span ends
      where the duration below ends, before the access record is written.
    * ``http.server.request.duration`` (seconds) for every request, sampled or not.
    * ``flask.g.request_id`` and :func:`current_request_id`: the incoming ``X-Request-ID`` when
      it is a sane token (at most 128 of ``[A-Za-z0-9._:-]``), else a fresh uuid4 hex; it is
      echoed in the ``X-Request-ID`` response header and set as the span attribute the app names
      in ``request_id_attribute`` (the recorder: ``vrp.request.id``).
    * One INFO record on logger ``instrumentation.access`` per request, the canonical log line:
      it also carries the request's unit-of-work summary (``vrp.db.sessions``,
      ``vrp.db.transactions`` and per outcome, ``vrp.db.attempts``, ``vrp.db.retries``,
      ``vrp.db.statements``, ``vrp.db.duration_ms``; see :mod:`instrumentation.uow`), so that
      the units of work inside the request log their commits at DEBUG.
    * Never recorded: query strings, request headers other than ``User-Agent``, bodies.
      Exception messages on spans pass through :func:`instrumentation.redaction.redact_text`.
    * Routes listed in ``excluded_routes`` (URL rules as registered, e.g. ``/healthz``) get no
      span, no duration point and no access-log record; they still get a request id. Spans
      opened inside them are not suppressed and start their own trace.
    * The duration ends when the view's response is ready; the time a client takes to read a
      streamed body (``send_file``) is not included, and code running while the body streams
      is outside the span and the request id.

Errors
    :func:`instrument_app` registers no error handler: what the app answers is the app's.
    An unhandled exception reaches the span and the metric through Flask's
    ``got_request_exception`` signal (and through the middleware when ``PROPAGATE_EXCEPTIONS``
    re-raises it). :func:`register_error_responses` is the opt-in for JSON bodies:
    :class:`~instrumentation.errors.PoolExhaustedError` and SQLAlchemy's pool ``TimeoutError``
    become ``503`` with ``Retry-After: 1`` and a WARNING record, any other unhandled exception a
    JSON ``500`` carrying the request id and no stack trace. It never replaces a handler the app
    registered before (for ``500``: any handler of that code). The ``500`` handler is registered
    for ``InternalServerError`` so that Flask's own path keeps working: it logs the exception at
    ERROR with ``exc_info``, sends ``got_request_exception``, hands the error to
    ``teardown_request`` functions, and re-raises instead when ``PROPAGATE_EXCEPTIONS`` (testing,
    debug) is on.

Telemetry never breaks a request: a failure while tracing, measuring or logging is caught and
handed to :func:`instrumentation.failures.telemetry_failed` (counted, logged once a minute).
"""

from __future__ import annotations

import logging
import re
import time
import traceback
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import sqlalchemy.exc
from flask import Flask, Response, g, jsonify, request
from flask.signals import got_request_exception, request_started
from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from werkzeug.exceptions import InternalServerError

from instrumentation import conventions, direct, providers, uow
from instrumentation.bound import BoundHistogram
from instrumentation.errors import PoolExhaustedError
from instrumentation.failures import telemetry_failed
from instrumentation.redaction import redact_text
from instrumentation.requestid import REQUEST_ID, current_request_id
from instrumentation.sampling import drops_unsampled_children

__all__ = [
    "DURATION_BUCKETS",
    "EXTENSION_KEY",
    "REQUEST_ID_HEADER",
    "RETRY_AFTER_SECONDS",
    "current_request_id",
    "instrument_app",
    "register_error_responses",
    "uninstrument_app",
]

REQUEST_ID_HEADER = "X-Request-ID"
EXTENSION_KEY = "instrumentation.flask"

# Semantic-conventions advice for http.server.request.duration.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
RETRY_AFTER_SECONDS = 1

_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
_OTHER_METHOD = "_OTHER"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_DEFAULT_PORTS = {"http": 80, "https": 443}

_logger = logging.getLogger(__name__)
_access_logger = logging.getLogger("instrumentation.access")

_StartResponse = Callable[..., Callable[[bytes], object]]
_WSGIApp = Callable[[dict[str, Any], _StartResponse], Iterable[bytes]]


@dataclass(slots=True)
class _RequestState:
    """What the middleware and the Flask hooks share about one request."""

    instrumentation: _FlaskInstrumentation
    request_id: str
    environ: dict[str, Any]
    start_ns: int
    start: float
    status: int = 500
    route: _Route | None = None
    span: Span | None = None
    token: object | None = None
    excluded: bool = False
    exception: BaseException | None = None
    # time_ns when the view returned (0: Flask never called it).
    returned_ns: int = 0


_current: ContextVar[_RequestState | None] = ContextVar(
    "instrumentation_flask_request", default=None
)


@dataclass(slots=True)
class _Route:
    """Per (method, URL rule) values computed once and reused by every request."""

    method: str
    template: str | None
    span_name: str
    span_attributes: dict[str, Any]
    _duration_points: dict[int, BoundHistogram] = field(default_factory=dict)

    @classmethod
    def build(cls, method: str, template: str | None) -> _Route:
        name_method = "HTTP" if method == _OTHER_METHOD else method
        attributes: dict[str, Any] = {conventions.HTTP_REQUEST_METHOD: method}
        if template is not None:
            attributes[conventions.HTTP_ROUTE] = template
        name = name_method if template is None else f"{name_method} {template}"
        return cls(method, template, name, attributes)

    def duration_point(
        self, histogram: metrics.Histogram, status: int, error_type: str | None
    ) -> BoundHistogram:
        """``histogram`` bound to this route's metric attributes for ``status``.

        One per status, kept (a route's histogram is its instrumentation's, fixed); an error
        type, rare, gets a point of its own.
        """
        if error_type is not None:
            attributes = {
                **self.span_attributes,
                conventions.HTTP_RESPONSE_STATUS_CODE: status,
                conventions.ERROR_TYPE: error_type,
            }
            return BoundHistogram(histogram, attributes)
        point = self._duration_points.get(status)
        if point is None:
            attributes = {**self.span_attributes, conventions.HTTP_RESPONSE_STATUS_CODE: status}
            point = self._duration_points[status] = BoundHistogram(histogram, attributes)
        return point


class _EnvironGetter(Getter[Mapping[str, Any]]):
    """Reads propagation headers (``traceparent``...) straight from a WSGI environ."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        environ_key = self._keys.get(key)
        if environ_key is None:
            environ_key = "HTTP_" + key.upper().replace("-", "_")
            self._keys[key] = environ_key
        value = carrier.get(environ_key)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [key[5:].lower().replace("_", "-") for key in carrier if key.startswith("HTTP_")]


_ENVIRON_GETTER = _EnvironGetter()


class _FlaskInstrumentation:
    """The WSGI middleware installed as ``app.wsgi_app``, and the state behind the hooks."""

    def __init__(
        self,
        app: Flask,
        tracer: trace.Tracer,
        duration: metrics.Histogram,
        excluded_routes: Collection[str],
        request_id_attribute: str | None,
    ) -> None:
        self.wrapped: _WSGIApp = app.wsgi_app
        self.request_id_attribute = request_id_attribute
        self.tracer = tracer
        self.duration = duration
        self.excluded_routes = frozenset(excluded_routes)
        self.drops_unsampled_children = drops_unsampled_children(tracer)
        self.active = True
        self._routes: dict[tuple[str, str | None], _Route] = {}

    def __call__(self, environ: dict[str, Any], start_response: _StartResponse) -> Iterable[bytes]:
        if not self.active:
            return self.wrapped(environ, start_response)
        state = _RequestState(
            self,
            _request_id(environ.get("HTTP_X_REQUEST_ID")),
            environ,
            time.time_ns(),
            time.perf_counter(),
        )
        reset = _current.set(state)
        reset_id = REQUEST_ID.set(state.request_id)
        reset_work = uow.begin()

        def _start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            try:
                state.status = int(status[:3])
            except ValueError:
                state.status = 500
            if not any(name.lower() == "x-request-id" for name, _ in headers):
                headers.append((REQUEST_ID_HEADER, state.request_id))
            return start_response(status, headers, exc_info)

        try:
            return self.wrapped(environ, _start_response)
        except Exception as exc:
            state.exception = exc
            state.status = 500
            raise
        finally:
            self._finish(state)
            uow.end(reset_work)
            REQUEST_ID.reset(reset_id)
            _current.reset(reset)

    def on_request_started(self, sender: Flask, **_: Any) -> None:
        """``request_started`` receiver: sets ``g.request_id`` and starts the current span."""
        state = _current.get()
        if state is None or state.instrumentation is not self:
            return
        try:
            req = request._get_current_object()
            g.request_id = state.request_id
            rule = req.url_rule
            template = None if rule is None else rule.rule
            if template in self.excluded_routes:
                state.excluded = True
                uow.discard()
                return
            state.environ = req.environ
            self._start_span(state, template, make_current=True)
        except Exception:
            self.telemetry_failed("start the request span")

    def dispatch(self, dispatch_request: Callable[[], Any]) -> Any:
        """Flask's ``dispatch_request`` (the view), between the request's two step spans.

        What came before the view (request context, URL routing, ``before_request`` hooks,
        starting the server span) becomes ``http.request.route``, started and ended here with
        the request's start time; what comes after it (``make_response``, ``after_request``
        hooks, error handlers, teardown) becomes ``http.response.finalize`` when the request
        ends (see :meth:`_finish`).
        """
        state = _current.get()
        if state is None or state.span is None or state.instrumentation is not self:
            return dispatch_request()
        try:
            self._step(state, conventions.HTTP_REQUEST_ROUTE_SPAN, state.start_ns, None)
        except Exception:
            self.telemetry_failed("record the routing span")
        try:
            return dispatch_request()
        finally:
            state.returned_ns = time.time_ns()

    def _step(self, state: _RequestState, name: str, start_ns: int, end_ns: int | None) -> None:
        """A step span of the request that has already happened: started and ended at once.

        Nothing is started under a request span the sampler dropped (see
        :mod:`instrumentation.sampling`).
        """
        span = state.span
        if span is None or (not span.is_recording() and self.drops_unsampled_children):
            return
        self.tracer.start_span(
            name, trace.set_span_in_context(span), SpanKind.INTERNAL, start_time=start_ns
        ).end(end_ns)

    def _route(self, raw_method: str, template: str | None) -> _Route:
        method = raw_method if raw_method in _KNOWN_METHODS else _OTHER_METHOD
        route = self._routes.get((method, template))
        if route is None:
            route = self._routes[(method, template)] = _Route.build(method, template)
        return route

    def _start_span(
        self, state: _RequestState, template: str | None, *, make_current: bool
    ) -> None:
        environ = state.environ
        raw_method = environ.get("REQUEST_METHOD", "")
        route = state.route = self._route(raw_method, template)
        parent = propagate.extract(environ, getter=_ENVIRON_GETTER)
        span = state.span = self.tracer.start_span(
            route.span_name,
            parent,
            SpanKind.SERVER,
            route.span_attributes,
            start_time=state.start_ns,
        )
        if make_current:
            state.token = otel_context.attach(trace.set_span_in_context(span, parent))
        if span.is_recording():
            attributes = _request_attributes(environ, route, raw_method, state.request_id)
            if self.request_id_attribute is not None:
                attributes[self.request_id_attribute] = state.request_id
            span.set_attributes(attributes)

    def _finish(self, state: _RequestState) -> None:
        if state.excluded:
            return
        duration = time.perf_counter() - state.start
        # The request's span ends where its duration does, before the bookkeeping below.
        end_ns = state.start_ns + int(duration * 1e9)
        try:
            if state.route is None:
                self._start_span(state, None, make_current=False)
        except Exception:
            self.telemetry_failed("start the request span")
        route = state.route
        if route is None:
            return
        status = state.status
        exception = state.exception
        if exception is not None:
            error_type: str | None = _qualified_name(type(exception))
        else:
            error_type = str(status) if status >= 500 else None
        try:
            route.duration_point(self.duration, status, error_type).record(duration)
        except Exception:
            self.telemetry_failed("record the request duration")
        try:
            if _access_logger.isEnabledFor(logging.INFO):
                _log_access(state, route, status, duration)
        except Exception:
            self.telemetry_failed("write the access log")
        try:
            if state.returned_ns:
                self._step(
                    state, conventions.HTTP_RESPONSE_FINALIZE_SPAN, state.returned_ns, end_ns
                )
        except Exception:
            self.telemetry_failed("record the finalizing span")
        try:
            if state.span is not None:
                _end_span(state.span, status, error_type, exception, end_ns)
        except Exception:
            self.telemetry_failed("end the request span")
        finally:
            if state.token is not None:
                otel_context.detach(state.token)

    def rebind(self) -> None:
        """Take the tracer and the duration histogram afresh from the global providers."""
        self.tracer = trace.get_tracer(__name__)
        self.duration = _duration_histogram(metrics.get_meter(__name__))
        self._routes = {}

    def telemetry_failed(self, action: str) -> None:
        """Hand a telemetry failure to the package's one failure path."""
        telemetry_failed(f"flask: {action}")

    def on_request_exception(self, sender: Flask, exception: BaseException, **_: Any) -> None:
        """``got_request_exception`` receiver: the exception Flask is about to answer 500 for."""
        state = _current.get()
        if state is not None and state.instrumentation is self:
            state.exception = exception


def instrument_app(
    app: Flask,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    excluded_routes: Collection[str] = (),
    request_id_attribute: str | None = None,
    step_spans: bool = True,
) -> None:
    """Trace, measure and access-log every request of ``app``; its responses stay its own.

    ``tracer_provider`` / ``meter_provider`` default to the global ones (resolved lazily, so
    :func:`instrumentation.telemetry.setup` may run later). ``excluded_routes`` holds URL rules
    exactly as registered. ``request_id_attribute`` names the server span attribute that carries
    the request id, for an app that wants it on spans (no standard name exists, so none by
    default). ``step_spans=False`` leaves out the request's two step spans
    (``http.request.route`` and ``http.response.finalize``) for an app that wants fewer spans
    per request; the server span and its children are unchanged. Idempotent per app: later
    calls change nothing, call :func:`uninstrument_app` first to change the providers.
    """
    if EXTENSION_KEY in app.extensions:
        return
    tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
    duration = _duration_histogram(metrics.get_meter(__name__, meter_provider=meter_provider))
    instrumentation = _FlaskInstrumentation(
        app, tracer, duration, excluded_routes, request_id_attribute
    )
    app.extensions[EXTENSION_KEY] = instrumentation
    app.wsgi_app = instrumentation  # type: ignore[method-assign]
    if step_spans:
        # Shadows the method on this app only; uninstrument_app deletes it again.
        app.dispatch_request = partial(  # type: ignore[method-assign]
            instrumentation.dispatch, app.dispatch_request
        )
    # Weakly held: the app and its extensions keep the receiver alive, and a collected app
    # leaves nothing behind in the process-wide signal.
    request_started.connect(instrumentation.on_request_started, sender=app)
    got_request_exception.connect(instrumentation.on_request_exception, sender=app)
    if tracer_provider is None and providers.global_providers_pending():
        providers.rebind_when_installed(instrumentation.rebind)


def _duration_histogram(meter: metrics.Meter) -> metrics.Histogram:
    return meter.create_histogram(
        conventions.HTTP_SERVER_REQUEST_DURATION,
        unit="s",
        description="Duration of HTTP server requests.",
        explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
    )


def register_error_responses(app: Flask) -> None:
    """Answer pool exhaustion with a JSON 503 and crashes with a JSON 500 (see the module doc).

    Opt-in, and only where ``app`` has no handler of its own: an exception class already
    handled keeps its handler, and so does ``500`` when any handler of that code exists.
    """
    by_code = app.error_handler_spec[None]
    for exc_class in (PoolExhaustedError, sqlalchemy.exc.TimeoutError):
        if exc_class not in by_code[None]:
            app.register_error_handler(exc_class, _service_unavailable)
    if not by_code[500]:
        app.register_error_handler(InternalServerError, _internal_server_error)


def uninstrument_app(app: Flask) -> None:
    """Undo :func:`instrument_app`; a no-op for an app that is not instrumented.

    When another middleware has wrapped ``app.wsgi_app`` since, ours stays in the chain but
    passes requests straight through. Handlers of :func:`register_error_responses` stay.
    """
    instrumentation = app.extensions.pop(EXTENSION_KEY, None)
    if not isinstance(instrumentation, _FlaskInstrumentation):
        return
    instrumentation.active = False
    if app.wsgi_app is instrumentation:
        app.wsgi_app = instrumentation.wrapped  # type: ignore[method-assign]
    dispatch = vars(app).get("dispatch_request")
    if isinstance(dispatch, partial) and dispatch.func == instrumentation.dispatch:
        del app.dispatch_request
    # Without a sender: disconnecting from one sender would leave the receiver registered.
    request_started.disconnect(instrumentation.on_request_started)
    got_request_exception.disconnect(instrumentation.on_request_exception)


def record_error(error: BaseException) -> None:
    """Name ``error`` as the cause of the current request's error response.

    For an application's own error handlers that turn an exception into a 5xx response: the
    server span then carries the exception's qualified class as ``error.type`` (and an
    exception event), and so does the duration metric, instead of the bare status code. A
    no-op outside a request this module instruments.
    """
    state = _current.get()
    if state is not None:
        state.exception = error


def _service_unavailable(error: Exception) -> Response:
    record_error(error)
    state = _current.get()
    _logger.warning(
        "database connections exhausted, answering 503: %s",
        error,
        extra={conventions.ERROR_TYPE: _qualified_name(type(error))},
    )
    response = _json_error(503, "Service Unavailable", "the service is busy; retry shortly", state)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _internal_server_error(error: InternalServerError) -> Response:
    # Flask has already logged the original exception at ERROR with its traceback.
    if error.original_exception is not None:
        record_error(error.original_exception)
    return _json_error(500, "Internal Server Error", "internal error", _current.get())


def _json_error(code: int, status: str, message: str, state: _RequestState | None) -> Response:
    body: dict[str, Any] = {"code": code, "status": status, "message": message}
    if state is not None:
        body["request_id"] = state.request_id
    response = jsonify(body)
    response.status_code = code
    return response


def _request_id(incoming: str | None) -> str:
    if incoming is not None and _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def _url_path(environ: Mapping[str, Any]) -> str:
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    if not path.isascii():
        # PEP 3333 hands the raw bytes over as latin-1; clients send UTF-8.
        path = path.encode("latin-1").decode("utf-8", "replace")
    return path or "/"


def _server_address(environ: Mapping[str, Any]) -> tuple[str | None, int | None]:
    host = environ.get("HTTP_HOST")
    if not host:
        port = environ.get("SERVER_PORT", "")
        return environ.get("SERVER_NAME"), int(port) if port.isdigit() else None
    if host.startswith("["):
        address, _, rest = host[1:].partition("]")
        port = rest[1:]
    else:
        address, _, port = host.partition(":")
    if port.isdigit():
        return address, int(port)
    return address, _DEFAULT_PORTS.get(environ.get("wsgi.url_scheme", "http"))


def _request_attributes(
    environ: Mapping[str, Any], route: _Route, raw_method: str, request_id: str
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        conventions.URL_PATH: _url_path(environ),
        conventions.URL_SCHEME: environ.get("wsgi.url_scheme", "http"),
    }
    address, port = _server_address(environ)
    if address:
        attributes[conventions.SERVER_ADDRESS] = address
    if port is not None:
        attributes[conventions.SERVER_PORT] = port
    user_agent = environ.get("HTTP_USER_AGENT")
    if user_agent:
        attributes[conventions.USER_AGENT_ORIGINAL] = user_agent
    client = environ.get("REMOTE_ADDR")
    if client:
        attributes[conventions.CLIENT_ADDRESS] = client
    if route.method == _OTHER_METHOD:
        attributes[conventions.HTTP_REQUEST_METHOD_ORIGINAL] = raw_method
    return attributes


def _end_span(
    span: Span, status: int, error_type: str | None, exception: BaseException | None, end_ns: int
) -> None:
    if span.is_recording():
        span.set_attribute(conventions.HTTP_RESPONSE_STATUS_CODE, status)
        if error_type is not None:
            span.set_attribute(conventions.ERROR_TYPE, error_type)
        if exception is not None:
            span.record_exception(exception, attributes=_exception_event_attributes(exception))
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
    span.end(end_ns)


def _exception_event_attributes(exception: BaseException) -> dict[str, str]:
    # Messages may carry SQL parameter values or secrets; mask them as the log pipeline does.
    return {
        conventions.EXCEPTION_MESSAGE: redact_text(str(exception)),
        conventions.EXCEPTION_STACKTRACE: redact_text(
            "".join(traceback.format_exception(exception))
        ),
    }


def _log_access(state: _RequestState, route: _Route, status: int, duration: float) -> None:
    environ = state.environ
    path = _url_path(environ)
    duration_ms = round(duration * 1000, 3)
    direct.log(
        _access_logger,
        logging.INFO,
        "%s %s %d %.1fms",
        (route.method, path, status, duration_ms),
        {
            conventions.LOG_REQUEST_ID: state.request_id,
            conventions.HTTP_REQUEST_METHOD: route.method,
            conventions.HTTP_ROUTE: route.template,
            conventions.URL_PATH: path,
            conventions.HTTP_RESPONSE_STATUS_CODE: status,
            conventions.LOG_DURATION_MS: duration_ms,
            conventions.CLIENT_ADDRESS: environ.get("REMOTE_ADDR"),
            conventions.USER_AGENT_ORIGINAL: environ.get("HTTP_USER_AGENT"),
            **_work_fields(),
        },
    )


def _work_fields() -> dict[str, int | float]:
    summary = uow.current()
    return {} if summary is None else summary.fields()


def _qualified_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
