"""The JSON API under ``/api/`` (flask-smorest; OpenAPI at ``/api/openapi.json``).

Every endpoint is a GET whose query parameters are validated by marshmallow: a bad value, or a
parameter the endpoint does not know (a misspelt filter must not silently widen the answer),
is a 422 naming the parameter, never a 500. ``since``/``until`` take ISO 8601 with a zone or a
relative ``15m``/``1h``/``24h``/``7d`` (now minus that); the default is the last hour up to now.
The documents returned are built by :mod:`dashboard.reads`; their schemas, which the OpenAPI
document carries, are in :mod:`dashboard.responses`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import marshmallow as ma
from flask import Flask, current_app
from flask.views import MethodView
from flask_smorest import Api, Blueprint, abort
from marshmallow import fields, validate
from webargs.flaskparser import FlaskParser

from dashboard import backup_status, levels, responses
from dashboard.errors import TraceNotFoundError
from dashboard.reads import database, logs, traces, traffic
from dashboard.reads.window import TimeRange
from dashboard.settings import DashboardSettings, parse_interval
from dashboard.store import TelemetryStore
from dashboard.trace_search import MAX_CONDITIONS, AttributeCondition

_RELATIVE = re.compile(r"^\d+(\.\d+)?[smhd]$")
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_SERVICE_NAME = re.compile(r"^[^\x00-\x1f]{1,255}$")
F = TypeVar("F", bound=Callable[..., Any])
_HEX_TRACE_ID = validate.Regexp(_TRACE_ID, error="must be 32 lower-case hex digits")


# The store keeps times as signed 64-bit nanoseconds since the epoch (up to 2262-04-11), and
# nothing before the epoch is ever written: instants are clamped into that range so that a far
# past or future bound still reads as "everything" rather than overflowing a query.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 1, 1, tzinfo=UTC)
MAX_RELATIVE = timedelta(days=3650)


class _Instant(fields.Field):
    """ISO 8601 with a time zone, or ``15m``/``1h``/``24h``/``7d`` before now (at most 10 years).

    A relative instant loads as the :class:`timedelta` back: :class:`RangeArgs` counts both back
    from one reading of "now", so ``since=6h`` spans 6 h exactly (two readings of the clock
    would make it longer, and pick the next rollup resolution); a relative ``since`` with an
    ISO ``until`` counts back from that instant (``since=1h&until=<instant>``: the hour
    before it).
    """

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> datetime | timedelta:
        text = str(value).strip()
        if _RELATIVE.match(text):
            try:
                back = timedelta(seconds=parse_interval(text))
            except (ValueError, OverflowError):
                raise ma.ValidationError("must be a positive interval such as 15m or 1h") from None
            if back > MAX_RELATIVE:
                raise ma.ValidationError("too far back: at most 3650d (10 years)")
            return back
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ma.ValidationError(
                "must be ISO 8601 with a time zone (2026-11-28T20:00:00Z) or relative "
                "(15m, 1h, 24h, 7d)"
            ) from None
        if moment.tzinfo is None:
            raise ma.ValidationError("must include a time zone, e.g. 2026-11-28T20:00:00Z")
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:
            # 0001-01-01T00:00:00+14:00 or 9999-12-31T23:59:59-14:00: beyond datetime in UTC.
            moment = EARLIEST if moment.year == 1 else LATEST
        return min(max(moment, EARLIEST), LATEST)


def _window_of(
    since: datetime | timedelta | None, until: datetime | timedelta | None
) -> tuple[datetime, datetime]:
    """``since`` and ``until`` as :class:`_Instant` loaded them, made instants: relative ones
    back from one reading of now, except a relative ``since`` with an ISO ``until``, back from
    that. A missing ``until`` is now; a missing ``since`` is ``until`` itself."""
    now = datetime.now(UTC)
    end = now - until if isinstance(until, timedelta) else until or now
    origin = end if isinstance(until, datetime) else now
    start = origin - since if isinstance(since, timedelta) else since or end
    return start, end


class _Query(ma.Schema):
    error_messages = {"unknown": "unknown parameter (the endpoint's are in /api/openapi.json)"}


class NoArgs(_Query):
    """The query of an endpoint that takes no parameters: any one given is unknown."""


class RangeArgs(_Query):
    since = _Instant(metadata={"description": "ISO 8601 with zone, or 15m/1h/24h/7d before until"})
    until = _Instant(metadata={"description": "ISO 8601 with zone, or relative; default now"})
    service = fields.String(
        validate=validate.Regexp(_SERVICE_NAME, error="must be 1-255 printable chars")
    )

    default_span = timedelta(hours=1)

    @ma.validates_schema
    def _ordered(self, data: dict[str, Any], **kwargs: Any) -> None:
        since, until = _window_of(data.get("since"), data.get("until"))
        if data.get("since") is not None and data.get("until") is not None and since >= until:
            raise ma.ValidationError("must be after since", field_name="until")

    @ma.post_load
    def _window(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        since, until = _window_of(
            data.pop("since", None) or self.default_span, data.pop("until", None)
        )
        if since >= until:
            raise ma.ValidationError("must be before until", field_name="since")
        data["window"] = TimeRange(since, until, data.pop("service", None))
        return data


class QueriesArgs(RangeArgs):
    summary = fields.String(validate=validate.Length(1, 1024))


class _Level(fields.String):
    """A level in any case, Python's spelling or OpenTelemetry's; loaded as Python's."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        level = levels.canonical_level(str(super()._deserialize(value, attr, data, **kwargs)))
        if level is None:
            raise ma.ValidationError(
                f"must be one of {', '.join(levels.LEVELS)} (any case; WARN and FATAL too)"
            )
        return level


class LogsArgs(RangeArgs):
    level = _Level(
        validate=validate.Length(1, 16),
        metadata={"description": "this level and above; any case, WARN for WARNING"},
    )
    trace_id = fields.String(validate=_HEX_TRACE_ID)
    q = fields.String(validate=validate.Length(1, 200))
    limit = fields.Integer(load_default=200, validate=validate.Range(1, 1000))
    offset = fields.Integer(
        load_default=0,
        validate=validate.Range(0, 10_000_000),
        metadata={"description": "records to skip (newest first): the next page's is offset+limit"},
    )


class OperationsArgs(RangeArgs):
    top = fields.Integer(
        load_default=5,
        validate=validate.Range(1, 20),
        metadata={"description": "how many of the busiest operations get latency over time"},
    )


class _AttributeCondition(fields.String):
    """``key=value`` or ``key`` (see :mod:`dashboard.trace_search`)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return AttributeCondition.parse(text)
        except ValueError as exc:
            raise ma.ValidationError(str(exc)) from None


class TracesArgs(RangeArgs):
    operation = fields.String(
        validate=validate.Length(1, 1024),
        metadata={"description": "root span name, in any case (GET /api/recordings/{id})"},
    )
    min_duration_ms = fields.Float(validate=validate.Range(min=0))
    status = fields.String(validate=validate.OneOf(("ok", "error")))
    attribute = fields.List(
        _AttributeCondition(),
        validate=validate.Length(max=MAX_CONDITIONS),
        metadata={
            "description": "a span of the trace has this attribute: key=value or key (exists), "
            f"repeatable up to {MAX_CONDITIONS} times (all must match)"
        },
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 100_000))


class BackupsArgs(RangeArgs):
    default_span = timedelta(days=30)
    repository = fields.String(validate=validate.Length(1, 255))


def _store() -> TelemetryStore:
    return current_app.extensions["telemetry_store"]


def _settings() -> DashboardSettings:
    return current_app.extensions["dashboard_settings"]


class _StrictParser(FlaskParser):
    """webargs leaves unknown query parameters out by default; here they are a 422."""

    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION, "query": ma.RAISE}


class _Blueprint(Blueprint):
    ARGUMENTS_PARSER = _StrictParser()


blp = _Blueprint("api", __name__, url_prefix="/api", description="Telemetry read by the dashboard")


def _answers(schema: type[ma.Schema]) -> Callable[[F], F]:
    """Document the 200 body as ``schema`` of :mod:`dashboard.responses`.

    Documented, not dumped: the documents are returned as :mod:`dashboard.reads` builds them,
    and the tests validate real ones against these schemas.
    """
    body = {"description": "OK", "content": {"application/json": {"schema": schema}}}
    return blp.doc(responses={"200": body})


@blp.route("/services")
class ServicesView(MethodView):
    @blp.arguments(NoArgs, location="query")
    @blp.response(200)
    @_answers(responses.ServicesResponse)
    def get(self, _args: dict[str, Any]) -> dict[str, Any]:
        """Services that sent telemetry, with what they sent and when last."""
        return traffic.services(_store())


@blp.route("/summary")
class SummaryView(MethodView):
    @blp.arguments(RangeArgs, location="query")
    @blp.response(200)
    @_answers(responses.SummaryResponse)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Rate, error rate and p50/p95/p99 per service, and over time."""
        return traffic.summary(_store(), args["window"])


@blp.route("/operations")
class OperationsView(MethodView):
    @blp.arguments(OperationsArgs, location="query")
    @blp.response(200)
    @_answers(responses.OperationsResponse)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Per route and method (from the HTTP metric), or per span name (spans-only); the
        busiest ones over time; backup spans apart."""
        return traffic.operations(_store(), args["window"], top=args["top"])


@blp.route("/queries")
class QueriesView(MethodView):
    @blp.arguments(QueriesArgs, location="query")
    @blp.response(200)
    @_answers(responses.QueriesResponse)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Per ``db.query.summary``; slowest examples; N+1 sessions."""
        return database.queries(_store(), args["window"], args.get("summary"))


@blp.route("/pool")
class PoolView(MethodView):
    @blp.arguments(RangeArgs, location="query")
    @blp.response(200)
    @_answers(responses.PoolResponse)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Connections by state, wait time, timeouts and leaks per pool."""
        return database.pool(_store(), args["window"])


@blp.route("/transactions")
class TransactionsView(MethodView):
    @blp.arguments(RangeArgs, location="query")
    @blp.response(200)
    @_answers(responses.TransactionsResponse)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Transaction outcomes and retries by ``error.type``."""
        return database.transactions(_store(), args["window"])


@blp.route("/logs")
class LogsView(MethodView):
    @blp.arguments(LogsArgs, location="query")
    @blp.response(200)
    @_answers(responses.LogsResponse)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Log records, newest first, a page at a time; their volume per level over time."""
        return logs.log_records(
            _store(),
            args["window"],
            level=args.get("level"),
            trace_id=args.get("trace_id"),
            text=args.get("q"),
            limit=args["limit"],
            offset=args["offset"],
        )


@blp.route("/traces")
class TracesView(MethodView):
    @blp.arguments(TracesArgs, location="query")
    @blp.response(200)
    @_answers(responses.TracesResponse)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Traces by root span, slowest first, a page at a time (``has_more``, ``next_offset``);
        an ``attribute`` search reads at most the newest spans of the range (``search``)."""
        return traces.traces(
            _store(),
            args["window"],
            operation=args.get("operation"),
            min_duration_ms=args.get("min_duration_ms"),
            status=args.get("status"),
            attributes=args.get("attribute", ()),
            limit=args["limit"],
            offset=args["offset"],
        )


@blp.route("/traces/<trace_id>")
class TraceView(MethodView):
    @blp.arguments(NoArgs, location="query")
    @blp.response(200)
    @_answers(responses.TraceResponse)
    @blp.alt_response(404, description="No span of this trace is stored")
    @blp.alt_response(422, description="Malformed trace id")
    def get(self, _args: dict[str, Any], trace_id: str) -> dict[str, Any]:
        """The span tree of one trace, parents before children, siblings by start."""
        if not _TRACE_ID.match(trace_id):
            abort(
                422,
                message="Unprocessable Entity",
                errors={"path": {"trace_id": ["must be 32 lower-case hex digits"]}},
            )
        try:
            return traces.trace(_store(), trace_id)
        except TraceNotFoundError as exc:
            abort(404, message=str(exc))
            raise AssertionError("unreachable") from exc


@blp.route("/backups")
class BackupsView(MethodView):
    @blp.arguments(BackupsArgs, location="query")
    @blp.response(200)
    @_answers(responses.BackupsResponse)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Backup runs, and per repository the age of the last good backup against the
        expected interval and the next scheduled run (``repository`` chooses one)."""
        window = args["window"]
        return backup_status.backups(
            _store(),
            window.since_ns,
            window.until_ns,
            _settings().backup_interval_seconds,
            datetime.now(UTC),
            repository=args.get("repository"),
            service=window.service,
        )


def register_api(app: Flask) -> Api:
    """Mount ``/api/`` and its OpenAPI document on ``app``."""
    app.config.setdefault("API_TITLE", "Voice Recorder Pro dashboard")
    app.config.setdefault("API_VERSION", "1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/api")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    api = Api(app)
    api.register_blueprint(blp)
    return api
