"""What an alert rule is, and the user's rules read from a YAML file.

A rule is a name, a severity, a ``for:`` duration, labels and annotations, and a callable that
returns the rule's *active* samples at one instant: one per label set whose condition holds,
with the value that made it hold and the dashboard path that explains it. What happens to
those samples over time (pending, firing, resolved) is :mod:`dashboard.alerts.state`'s.

The user's rules (``VRP_DASHBOARD_ALERT_RULES``, see ``docs/alert-rules.example.yaml``) are
read with PyYAML's ``safe_load`` and validated with marshmallow when the settings are read; a
bad file stops the dashboard with one line naming the file, the rule and the field
(:class:`AlertRulesError`, exit code 2).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import marshmallow as ma
import yaml
from marshmallow import fields, validate

from dashboard.errors import DashboardConfigError
from dashboard.settings import parse_interval

if TYPE_CHECKING:
    from dashboard.settings import DashboardSettings
    from dashboard.store import TelemetryStore

SEVERITIES = ("critical", "warning", "info")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
AGGREGATES = (
    "count",
    "rate",
    "sum",
    "avg",
    "max",
    "last",
    "p50",
    "p95",
    "p99",
    "error_rate",
    "client_error_rate",
)
MAX_RULES_FILE_BYTES = 1024 * 1024
MAX_WINDOW_S = 6 * 3600
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_CONDITION = re.compile(
    r"^\s*+(>=|<=|==|!=|>|<)\s*+([-+]?\d{1,20}(?:\.\d{1,20})?(?:[eE][-+]?\d{1,3})?)\s*+$"
)
_LABEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$")
# Annotation templates, as Prometheus writes them: {{ $value }} and {{ $labels.service }}.
_TEMPLATE = re.compile(r"\{\{ *+\$(value|labels\.[A-Za-z0-9_.]{1,128}) *+\}\}")


class AlertRulesError(DashboardConfigError):
    """The rules file cannot be read or holds an invalid rule (the CLI exits with code 2)."""


@dataclass(frozen=True)
class Sample:
    """One label set for which a rule's condition holds, at one evaluation."""

    labels: Mapping[str, str]
    value: float | None
    url: str
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """What a rule may read at one evaluation: the store, the settings, the instant (epoch s)
    and what the OTLP receiver refused over the alert window, by signal."""

    store: TelemetryStore
    settings: DashboardSettings
    now: float
    receiver_refusals: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """A rule: ``active(context)`` returns the samples whose condition holds now."""

    name: str
    description: str
    severity: str
    for_seconds: float
    active: Callable[[Context], Sequence[Sample]]
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    builtin: bool = False
    expression: str = ""


def render(template: str, labels: Mapping[str, str], value: float | None) -> str:
    """``{{ $value }}`` and ``{{ $labels.name }}`` of an annotation replaced by their values."""

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "value":
            return "n/a" if value is None else f"{value:.4g}"
        return labels.get(key[len("labels.") :], "")

    return _TEMPLATE.sub(replace, template)


# -- the YAML file ----------------------------------------------------------------------------


class _IntervalField(fields.Field):
    def __init__(self, maximum: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.maximum = maximum

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ma.ValidationError("must be an interval such as 30s, 5m or 1h")
        if value in (0, "0"):
            return 0.0
        try:
            seconds = parse_interval(str(value))
        except ValueError:
            raise ma.ValidationError("must be an interval such as 30s, 5m or 1h") from None
        if self.maximum is not None and seconds > self.maximum:
            raise ma.ValidationError(f"must be at most {self.maximum:.0f} s")
        return seconds


class _Condition(fields.Field):
    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[str, float]:
        match = _CONDITION.match(str(value)) if isinstance(value, str) else None
        if match is None:
            raise ma.ValidationError(
                "must be an operator and a number, e.g. '> 0.05' (operators: "
                + ", ".join(OPERATORS)
                + ")"
            )
        return match.group(1), float(match.group(2))


_LABELS = fields.Dict(
    keys=fields.String(validate=validate.Regexp(_LABEL_KEY, error="must be a label name")),
    values=fields.String(validate=validate.Length(max=1024)),
    load_default=dict,
)


class FilterSchema(ma.Schema):
    service = fields.String(validate=validate.Length(1, 255))
    route = fields.String(validate=validate.Length(1, 1024))
    attributes = fields.Dict(
        keys=fields.String(validate=validate.Length(1, 255)),
        values=fields.Raw(),
        load_default=dict,
    )


class RuleSchema(ma.Schema):
    """One user rule. Exactly one of ``metric`` (a metric's rollups) or ``span`` (the rollups
    of the spans of that name)."""

    name = fields.String(
        required=True,
        validate=validate.Regexp(_NAME, error="must be letters, digits and _ (as Prometheus)"),
    )
    metric = fields.String(validate=validate.Length(1, 255))
    span = fields.String(validate=validate.Length(1, 1024))
    filter = fields.Nested(FilterSchema, load_default=dict)
    aggregate = fields.String(required=True, validate=validate.OneOf(AGGREGATES))
    group_by = fields.List(
        fields.String(validate=validate.Length(1, 255)),
        load_default=lambda: ["service"],
        validate=validate.Length(max=8),
    )
    window = _IntervalField(maximum=MAX_WINDOW_S, load_default=300.0)
    condition = _Condition(required=True)
    for_ = _IntervalField(data_key="for", load_default=0.0)
    severity = fields.String(load_default="warning", validate=validate.OneOf(SEVERITIES))
    labels = _LABELS
    annotations = fields.Dict(
        keys=fields.String(validate=validate.Regexp(_LABEL_KEY, error="must be a name")),
        values=fields.String(validate=validate.Length(max=4096)),
        load_default=dict,
    )

    @ma.validates_schema
    def _one_source(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("metric" in data) == ("span" in data):
            raise ma.ValidationError("give exactly one of metric or span", field_name="metric")


class _FileSchema(ma.Schema):
    rules = fields.List(fields.Raw(), required=True)


def _problem(error: ma.ValidationError) -> tuple[str, str]:
    """The first field of a validation error (dotted path) and what is wrong with it."""
    messages: Any = error.normalized_messages()
    path = []
    while isinstance(messages, dict) and messages:
        key = sorted(messages, key=str)[0]
        path.append(str(key))
        messages = messages[key]
    if isinstance(messages, list):
        messages = " ".join(str(m) for m in messages)
    return ".".join(path) or "(rule)", str(messages)


def load_rules_file(path: Path, *, reserved: Collection[str] = ()) -> tuple[Rule, ...]:
    """The rules of ``path``; :class:`AlertRulesError` naming the file, the rule and the field.

    ``reserved`` are names a user rule may not take (the built-in rules').
    """
    from dashboard.alerts.expressions import user_rule

    where = f"VRP_DASHBOARD_ALERT_RULES={str(path)!r}"
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_RULES_FILE_BYTES + 1)
    except OSError as exc:
        raise AlertRulesError(f"{where}: cannot read the file: {exc.strerror or exc}") from None
    if len(text) > MAX_RULES_FILE_BYTES:
        raise AlertRulesError(f"{where}: larger than {MAX_RULES_FILE_BYTES} bytes")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise AlertRulesError(f"{where}: not valid YAML{line}") from None
    if not isinstance(document, dict):
        raise AlertRulesError(f"{where}: must be a mapping with a 'rules' list")
    try:
        raw_rules = _FileSchema().load(document)["rules"]
    except ma.ValidationError as exc:
        name, problem = _problem(exc)
        raise AlertRulesError(f"{where}: field {name}: {problem}") from None
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_rules, 1):
        label = f"rule #{index}"
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            label = f"rule {raw['name']!r}"
        if not isinstance(raw, dict):
            raise AlertRulesError(f"{where}: {label}: must be a mapping of fields")
        try:
            data = RuleSchema().load(raw)
        except ma.ValidationError as exc:
            name, problem = _problem(exc)
            raise AlertRulesError(f"{where}: {label}: field {name}: {problem}") from None
        if data["name"] in seen or data["name"] in reserved:
            taken = "another rule's" if data["name"] in seen else "a built-in rule's"
            raise AlertRulesError(f"{where}: {label}: field name: is {taken} name")
        seen.add(data["name"])
        rules.append(user_rule(data))
    return tuple(rules)
