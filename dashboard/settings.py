"""Settings of the dashboard, read once from the ``VRP_DASHBOARD_*`` variables and validated.

Every variable is declared in :class:`DashboardSettingsSchema`; an unknown ``VRP_DASHBOARD_*``
variable is an error (a typo must not be ignored silently). :func:`load_dashboard_settings`
raises :class:`~dashboard.errors.DashboardConfigError` with one line naming the variable, the
value (never a token, nor the value of an unknown variable: it may be a mistyped token) and
what is allowed, worded by :mod:`instrumentation.envsettings` as for every package. A relative
SQLite path is resolved to an absolute one here, once, against the working folder the command
was started in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate
from sqlalchemy.engine import make_url

from dashboard.errors import DashboardConfigError
from dashboard.intervals import Interval
from dashboard.intervals import parse_interval as parse_interval
from dashboard.notify.settings import NotifySettings, NotifySettingsSchema, notify_settings
from instrumentation.envsettings import Flag, invalid_setting_line, prefixed, shown_value
from instrumentation.errors import ConfigurationError
from instrumentation.settings import (
    DEFAULT_CHANNEL_TIMEOUT,
    DEFAULT_CONNECTION_LIMIT,
    MAX_CONNECTION_LIMIT,
    MIN_CONNECTION_LIMIT,
)
from instrumentation.urls import parse_database_url

PREFIX = "VRP_DASHBOARD_"
# 128 bits written in hex; ``vrp dashboard token`` prints 256 bits in 43 characters.
MIN_TOKEN_LENGTH = 32
MAX_TOKEN_LENGTH = 4096
SUPPORTED_STORES = ("sqlite", "postgresql")
_RULE_NAMES = re.compile(r"^[A-Za-z0-9_, ]{0,1000}$")
_RULE_NAMES_ERROR = "must be built-in rule names separated by commas, e.g. ServiceSilent,SlowRoute"


def _validate_store_url(value: str) -> None:
    try:
        url = parse_database_url(value)
    except ConfigurationError as exc:
        raise ma.ValidationError(
            f"{exc}; expected e.g. sqlite:///var/telemetry.db or postgresql+psycopg://user@host/db"
        ) from None
    if url.get_backend_name() not in SUPPORTED_STORES:
        raise ma.ValidationError(f"backend must be one of {', '.join(SUPPORTED_STORES)}")


class DashboardSettingsSchema(NotifySettingsSchema):
    """The ``VRP_DASHBOARD_*`` variables, by variable name (with the notification variables)."""

    class Meta:
        unknown = ma.RAISE

    VRP_DASHBOARD_STORE_URL = fields.String(
        load_default="sqlite:///var/telemetry.db", validate=_validate_store_url
    )
    VRP_DASHBOARD_TOKEN = fields.String(
        load_default=None,
        validate=validate.Length(
            MIN_TOKEN_LENGTH,
            MAX_TOKEN_LENGTH,
            error=f"must be {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} characters (at least 128 "
            "bits; `vrp dashboard token` prints a new one)",
        ),
    )
    VRP_DASHBOARD_COOKIE_SECURE = Flag(load_default=False)
    VRP_DASHBOARD_HOST = fields.String(load_default="127.0.0.1", validate=validate.Length(1, 255))
    VRP_DASHBOARD_PORT = fields.Integer(load_default=8050, validate=validate.Range(1, 65535))
    VRP_DASHBOARD_MAX_BODY_BYTES = fields.Integer(
        load_default=16 * 1024 * 1024, validate=validate.Range(min=1024)
    )
    VRP_DASHBOARD_CONNECTION_LIMIT = fields.Integer(
        load_default=DEFAULT_CONNECTION_LIMIT,
        validate=validate.Range(min=MIN_CONNECTION_LIMIT, max=MAX_CONNECTION_LIMIT),
    )
    VRP_DASHBOARD_CHANNEL_TIMEOUT = fields.Integer(
        load_default=DEFAULT_CHANNEL_TIMEOUT, validate=validate.Range(min=1, max=3600)
    )
    VRP_DASHBOARD_SPAN_RETENTION_HOURS = fields.Float(
        load_default=24.0, validate=validate.Range(min=0.01)
    )
    VRP_DASHBOARD_LOG_RETENTION_HOURS = fields.Float(
        load_default=24.0, validate=validate.Range(min=0.01)
    )
    VRP_DASHBOARD_MAX_SPANS = fields.Integer(load_default=1_000_000, validate=validate.Range(1))
    VRP_DASHBOARD_MAX_LOGS = fields.Integer(load_default=1_000_000, validate=validate.Range(1))
    VRP_DASHBOARD_ROLLUP_RETENTION_DAYS = fields.Float(
        load_default=30.0, validate=validate.Range(min=0.01)
    )
    VRP_DASHBOARD_BACKUP_INTERVAL = Interval(load_default=24 * 3600.0)
    VRP_DASHBOARD_REFRESH_SECONDS = fields.Integer(
        load_default=10, validate=validate.Range(1, 3600)
    )
    VRP_DASHBOARD_METRICS_ENABLED = fields.Boolean(load_default=False)
    # Alerts (dashboard.alerts): how often rules are evaluated, the user's rules file and the
    # thresholds of the built-in rules.
    VRP_DASHBOARD_ALERT_INTERVAL = Interval(load_default=30.0)
    VRP_DASHBOARD_ALERT_RULES = fields.String(load_default=None, validate=validate.Length(1, 4096))
    VRP_DASHBOARD_ALERT_WINDOW = Interval(load_default=300.0)
    VRP_DASHBOARD_ALERT_ERROR_RATE = fields.Float(
        load_default=0.05, validate=validate.Range(min=0, max=1, min_inclusive=False)
    )
    VRP_DASHBOARD_ALERT_P95_MS = fields.Float(
        load_default=1000.0, validate=validate.Range(min=0, min_inclusive=False)
    )
    VRP_DASHBOARD_ALERT_MIN_REQUESTS = fields.Integer(load_default=20, validate=validate.Range(1))
    VRP_DASHBOARD_ALERT_SILENT_AFTER = Interval(load_default=600.0)
    # Unset: as long as the interval, so that the alert agrees with the Backups page's
    # "overdue" (twice the interval) and with docker/prometheus/rules.yml.
    VRP_DASHBOARD_ALERT_BACKUP_GRACE = Interval(load_default=None)
    VRP_DASHBOARD_ALERT_DISABLED = fields.String(
        load_default="", validate=validate.Regexp(_RULE_NAMES, error=_RULE_NAMES_ERROR)
    )


@dataclass(frozen=True)
class AlertSettings:
    """How alert rules are evaluated (:mod:`dashboard.alerts`); ``rules`` are the user's rules
    read from ``rules_file`` (``dashboard.alerts.rules.Rule``), validated with the settings."""

    interval_seconds: float = 30.0
    rules_file: str | None = None
    rules: tuple[Any, ...] = ()
    window_seconds: float = 300.0
    error_rate: float = 0.05
    p95_ms: float = 1000.0
    min_requests: int = 20
    silent_after_seconds: float = 600.0
    # None: the expected backup interval (VRP_DASHBOARD_BACKUP_INTERVAL).
    backup_grace_seconds: float | None = None
    disabled: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DashboardSettings:
    """Validated settings of the dashboard; every path is absolute."""

    store_url: str = "sqlite:///var/telemetry.db"
    token: str | None = None
    # The sign-in cookie is Secure on every response, not only on HTTPS requests (for a
    # dashboard behind a proxy that terminates TLS).
    cookie_secure: bool = False
    host: str = "127.0.0.1"
    port: int = 8050
    max_body_bytes: int = 16 * 1024 * 1024
    connection_limit: int = DEFAULT_CONNECTION_LIMIT
    channel_timeout: int = DEFAULT_CHANNEL_TIMEOUT
    span_retention_hours: float = 24.0
    log_retention_hours: float = 24.0
    max_spans: int = 1_000_000
    max_logs: int = 1_000_000
    rollup_retention_days: float = 30.0
    backup_interval_seconds: float = 24 * 3600.0
    refresh_seconds: int = 10
    # Serve /metrics to Prometheus (dashboard.prometheus).
    metrics_enabled: bool = False
    # Alert notifications (dashboard.notify); its repr leaves out the webhook URLs and password.
    notify: NotifySettings = field(default_factory=NotifySettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)

    def __repr__(self) -> str:
        # The token must never reach a log line through a repr.
        shown = {**self.__dict__, "token": "***" if self.token else None}
        shown["store_url"] = shown_value("VRP_DASHBOARD_STORE_URL", self.store_url)
        body = ", ".join(f"{key}={value!r}" for key, value in shown.items())
        return f"DashboardSettings({body})"


_SCHEMA = DashboardSettingsSchema()


def resolve_store_url(url: str, cwd: Path) -> str:
    """An SQLite URL with a relative file path made absolute against ``cwd``; others unchanged."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return url
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return url
    path = Path(database)
    if not path.is_absolute():
        path = (cwd / path).resolve()
    return parsed.set(database=str(path)).render_as_string(hide_password=False)


def load_dashboard_settings(
    environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> DashboardSettings:
    """Validate the ``VRP_DASHBOARD_*`` variables once.

    Raises :class:`DashboardConfigError` naming the first bad variable. An empty value means
    unset.
    """
    raw = prefixed(os.environ if environ is None else environ, PREFIX)
    cwd = cwd or Path.cwd()
    try:
        data = _SCHEMA.load(raw)
        notify = notify_settings(
            data, host=data["VRP_DASHBOARD_HOST"], port=data["VRP_DASHBOARD_PORT"], cwd=cwd
        )
    except ma.ValidationError as exc:
        line = invalid_setting_line(exc, raw)
        raise DashboardConfigError(line) from None
    return DashboardSettings(
        store_url=resolve_store_url(data["VRP_DASHBOARD_STORE_URL"], cwd),
        token=data["VRP_DASHBOARD_TOKEN"],
        cookie_secure=data["VRP_DASHBOARD_COOKIE_SECURE"],
        host=data["VRP_DASHBOARD_HOST"],
        port=data["VRP_DASHBOARD_PORT"],
        max_body_bytes=data["VRP_DASHBOARD_MAX_BODY_BYTES"],
        connection_limit=data["VRP_DASHBOARD_CONNECTION_LIMIT"],
        channel_timeout=data["VRP_DASHBOARD_CHANNEL_TIMEOUT"],
        span_retention_hours=data["VRP_DASHBOARD_SPAN_RETENTION_HOURS"],
        log_retention_hours=data["VRP_DASHBOARD_LOG_RETENTION_HOURS"],
        max_spans=data["VRP_DASHBOARD_MAX_SPANS"],
        max_logs=data["VRP_DASHBOARD_MAX_LOGS"],
        rollup_retention_days=data["VRP_DASHBOARD_ROLLUP_RETENTION_DAYS"],
        backup_interval_seconds=data["VRP_DASHBOARD_BACKUP_INTERVAL"],
        refresh_seconds=data["VRP_DASHBOARD_REFRESH_SECONDS"],
        metrics_enabled=data["VRP_DASHBOARD_METRICS_ENABLED"],
        notify=notify,
        alerts=_alert_settings(data, cwd or Path.cwd()),
    )


def _alert_settings(data: dict[str, Any], cwd: Path) -> AlertSettings:
    """The ``VRP_DASHBOARD_ALERT_*`` values, with the rules file read and validated.

    Raises :class:`DashboardConfigError` naming the variable and the file, the rule and the
    field of a bad rules file, or a disabled rule name that is not a built-in rule.
    """
    from dashboard.alerts.builtin import BUILTIN_NAMES
    from dashboard.alerts.rules import load_rules_file

    disabled = frozenset(n.strip() for n in data["VRP_DASHBOARD_ALERT_DISABLED"].split(",")) - {""}
    unknown = sorted(disabled - set(BUILTIN_NAMES))
    if unknown:
        raise DashboardConfigError(
            f"VRP_DASHBOARD_ALERT_DISABLED={data['VRP_DASHBOARD_ALERT_DISABLED']!r}: "
            f"{unknown[0]} is not a built-in rule (they are {', '.join(BUILTIN_NAMES)})"
        )
    rules_file = data["VRP_DASHBOARD_ALERT_RULES"]
    rules: tuple[Any, ...] = ()
    if rules_file is not None:
        path = Path(rules_file)
        rules_file = str(path if path.is_absolute() else (cwd / path).resolve())
        rules = load_rules_file(Path(rules_file), reserved=BUILTIN_NAMES)
    return AlertSettings(
        interval_seconds=data["VRP_DASHBOARD_ALERT_INTERVAL"],
        rules_file=rules_file,
        rules=rules,
        window_seconds=data["VRP_DASHBOARD_ALERT_WINDOW"],
        error_rate=data["VRP_DASHBOARD_ALERT_ERROR_RATE"],
        p95_ms=data["VRP_DASHBOARD_ALERT_P95_MS"],
        min_requests=data["VRP_DASHBOARD_ALERT_MIN_REQUESTS"],
        silent_after_seconds=data["VRP_DASHBOARD_ALERT_SILENT_AFTER"],
        backup_grace_seconds=data["VRP_DASHBOARD_ALERT_BACKUP_GRACE"],
        disabled=disabled,
    )
