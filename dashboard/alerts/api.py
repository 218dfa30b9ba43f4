"""``/api/alerts``: alerts as they stand, the rules, and silences.

* ``GET /api/alerts`` - firing alerts first, then pending, then those resolved in the last
  :data:`RECENT_S` (newest first within each), each with its rule, labels, severity, state,
  since, value, annotations, the dashboard path that explains it and whether a silence covers
  it; the silences in force; the notification deliveries that failed in the same time;
* ``GET /api/alerts/rules`` - every rule evaluated, built-in and from the rules file;
* ``POST /api/alerts/silences`` - ``{"rule": ...}`` or ``{"fingerprint": ...}``, a
  ``duration`` (``2h``, ``30m`` or seconds) and a ``comment``: a 201 with the silence, or a 422
  naming the field;
* ``DELETE /api/alerts/silences/<id>`` - ends a silence now (204; 404 when none in force).

Times are ISO 8601 UTC, as everywhere under ``/api/``.
"""

from __future__ import annotations

import re
import time
from typing import Any

import marshmallow as ma
from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import fields, validate

from dashboard.alerts.evaluator import AlertEvaluator, silenced_fingerprints
from dashboard.alerts.state import FIRING, PENDING, RESOLVED, Alert
from dashboard.alerts.store import Silence
from dashboard.api import NoArgs, _StrictParser
from dashboard.reads.window import iso
from dashboard.settings import parse_interval

RECENT_S = 24 * 3600
MAX_SILENCE_S = 90 * 86400
STATE_ORDER = {FIRING: 0, PENDING: 1, RESOLVED: 2}
_FINGERPRINT = re.compile(r"^[0-9a-f]{32}$")
_SILENCE_ID = re.compile(r"^[0-9a-f]{32}$")


class _Blueprint(Blueprint):
    ARGUMENTS_PARSER = _StrictParser()


blp = _Blueprint(
    "alerts", __name__, url_prefix="/api/alerts", description="Alerts, their rules and silences"
)


# -- schemas ----------------------------------------------------------------------------------


class _Duration(fields.Field):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ma.ValidationError("must be an interval such as 30m, 2h, 1d or seconds")
        try:
            seconds = parse_interval(str(value))
        except ValueError:
            raise ma.ValidationError("must be an interval such as 30m, 2h, 1d or seconds") from None
        if seconds > MAX_SILENCE_S:
            raise ma.ValidationError("must be at most 90d")
        return seconds


class SilenceArgs(ma.Schema):
    rule = fields.String(validate=validate.Length(1, 255))
    fingerprint = fields.String(
        validate=validate.Regexp(_FINGERPRINT, error="must be 32 lower-case hex digits")
    )
    duration = _Duration(required=True, metadata={"description": "30m, 2h, 1d or seconds"})
    comment = fields.String(load_default="", validate=validate.Length(max=1000))

    @ma.validates_schema
    def _one_target(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("rule" in data) == ("fingerprint" in data):
            raise ma.ValidationError("give exactly one of rule or fingerprint", field_name="rule")


class SilenceSchema(ma.Schema):
    id = fields.String(required=True)
    rule = fields.String(allow_none=True)
    fingerprint = fields.String(allow_none=True)
    comment = fields.String()
    created_at = fields.String()
    ends_at = fields.String()


class AlertSchema(ma.Schema):
    rule = fields.String(required=True)
    fingerprint = fields.String(required=True)
    state = fields.String(validate=validate.OneOf((FIRING, PENDING, RESOLVED)))
    severity = fields.String()
    labels = fields.Dict(keys=fields.String(), values=fields.String())
    annotations = fields.Dict(keys=fields.String(), values=fields.String())
    value = fields.Float(allow_none=True)
    since = fields.String(metadata={"description": "when the alert entered its state"})
    active_since = fields.String()
    fired_at = fields.String(allow_none=True)
    resolved_at = fields.String(allow_none=True)
    url = fields.String(metadata={"description": "the dashboard path that explains it"})
    silenced = fields.Boolean()
    silence_id = fields.String(allow_none=True)


class DeliverySchema(ma.Schema):
    channel = fields.String()
    group_key = fields.String()
    fingerprints = fields.List(fields.String())
    states = fields.List(fields.String())
    outcome = fields.String()
    attempts = fields.Integer()
    at = fields.String()
    error = fields.String(allow_none=True)


class AlertCountsSchema(ma.Schema):
    firing = fields.Integer()
    pending = fields.Integer()
    resolved = fields.Integer()
    silenced = fields.Integer()


class AlertsSchema(ma.Schema):
    counts = fields.Nested(AlertCountsSchema)
    alerts = fields.List(fields.Nested(AlertSchema))
    silences = fields.List(fields.Nested(SilenceSchema))
    failed_deliveries = fields.List(fields.Nested(DeliverySchema))
    evaluated_at = fields.String(allow_none=True)


class RuleSchema(ma.Schema):
    name = fields.String()
    builtin = fields.Boolean()
    severity = fields.String()
    for_s = fields.Float()
    expression = fields.String()
    description = fields.String()
    labels = fields.Dict(keys=fields.String(), values=fields.String())
    annotations = fields.Dict(keys=fields.String(), values=fields.String())


class RulesSchema(ma.Schema):
    interval_s = fields.Float()
    rules_file = fields.String(allow_none=True)
    rules = fields.List(fields.Nested(RuleSchema))


# -- documents --------------------------------------------------------------------------------


def _evaluator() -> AlertEvaluator:
    return current_app.extensions["alert_evaluator"]


def _time(value: float | None) -> str | None:
    return None if value is None else iso(value)


def _alert(alert: Alert, silence_id: str | None) -> dict[str, Any]:
    return {
        "rule": alert.rule,
        "fingerprint": alert.fingerprint,
        "state": alert.state,
        "severity": alert.severity,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "value": alert.value,
        "since": iso(alert.since),
        "active_since": iso(alert.active_since),
        "fired_at": _time(alert.fired_at),
        "resolved_at": _time(alert.resolved_at),
        "url": alert.url,
        "silenced": silence_id is not None,
        "silence_id": silence_id,
    }


def _silence(silence: Silence) -> dict[str, Any]:
    return {
        "id": silence.id,
        "rule": silence.rule,
        "fingerprint": silence.fingerprint,
        "comment": silence.comment,
        "created_at": iso(silence.created_at),
        "ends_at": iso(silence.ends_at),
    }


def alerts_document(evaluator: AlertEvaluator, now: float) -> dict[str, Any]:
    """The body of ``GET /api/alerts`` at ``now``."""
    store = evaluator.alert_store
    shown = [
        a for a in store.alerts() if a.state != RESOLVED or (a.resolved_at or 0.0) >= now - RECENT_S
    ]
    shown.sort(key=lambda a: (STATE_ORDER[a.state], -a.since, a.rule, a.fingerprint))
    silences = store.silences(now)
    covered = silenced_fingerprints(shown, silences, now)
    counts = {state: sum(1 for a in shown if a.state == state) for state in STATE_ORDER}
    counts["silenced"] = sum(1 for a in shown if a.state == FIRING and a.fingerprint in covered)
    deliveries = store.failed_deliveries(now - RECENT_S)
    return {
        "counts": counts,
        "alerts": [_alert(a, covered.get(a.fingerprint)) for a in shown],
        "silences": [_silence(s) for s in silences],
        "failed_deliveries": [
            {
                "channel": d.channel,
                "group_key": d.group_key,
                "fingerprints": list(d.fingerprints),
                "states": list(d.states),
                "outcome": d.outcome,
                "attempts": d.attempts,
                "at": iso(d.at),
                "error": d.error,
            }
            for d in deliveries
        ],
        "evaluated_at": _time(max((a.evaluated_at for a in shown), default=None)),
    }


# -- endpoints --------------------------------------------------------------------------------


@blp.route("")
class AlertsView(MethodView):
    @blp.arguments(NoArgs, location="query")
    @blp.response(200, AlertsSchema)
    def get(self, _args: dict[str, Any]) -> dict[str, Any]:
        """Firing, pending and recently resolved alerts; silences; failed deliveries."""
        return alerts_document(_evaluator(), time.time())


@blp.route("/rules")
class RulesView(MethodView):
    @blp.arguments(NoArgs, location="query")
    @blp.response(200, RulesSchema)
    def get(self, _args: dict[str, Any]) -> dict[str, Any]:
        """Every rule evaluated: the built-in ones, then the rules file's."""
        evaluator = _evaluator()
        return {
            "interval_s": evaluator.settings.alerts.interval_seconds,
            "rules_file": evaluator.settings.alerts.rules_file,
            "rules": [
                {
                    "name": rule.name,
                    "builtin": rule.builtin,
                    "severity": rule.severity,
                    "for_s": rule.for_seconds,
                    "expression": rule.expression,
                    "description": rule.description,
                    "labels": dict(rule.labels),
                    "annotations": dict(rule.annotations),
                }
                for rule in evaluator.rules
            ],
        }


@blp.route("/silences")
class SilencesView(MethodView):
    @blp.arguments(NoArgs, location="query")
    @blp.arguments(SilenceArgs)
    @blp.response(201, SilenceSchema)
    def post(self, _query: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        """Silence a rule's alerts, or one alert, for a time: they are evaluated and shown,
        not notified."""
        evaluator = _evaluator()
        rule = args.get("rule")
        if rule is not None and rule not in {r.name for r in evaluator.rules}:
            abort(
                422,
                message="Unprocessable Entity",
                errors={"json": {"rule": ["no rule of that name (see /api/alerts/rules)"]}},
            )
        silence = evaluator.alert_store.add_silence(
            rule, args.get("fingerprint"), args["duration"], args["comment"], time.time()
        )
        return _silence(silence)


@blp.route("/silences/<silence_id>")
class SilenceView(MethodView):
    @blp.arguments(NoArgs, location="query")
    @blp.response(204)
    @blp.alt_response(404, description="No silence in force has this id")
    def delete(self, _args: dict[str, Any], silence_id: str) -> None:
        """End a silence now."""
        if not _SILENCE_ID.match(silence_id) or not _evaluator().alert_store.expire_silence(
            silence_id, time.time()
        ):
            abort(404, message=f"no silence in force with id {silence_id[:64]}")
