"""Configuration of the whole stack, read once from the environment and validated.

Every ``VRP_*`` variable is declared in :class:`SettingsSchema`; an unknown ``VRP_*`` variable
is an error too (a typo such as ``VRP_DATABSE_URL`` must not be ignored silently), except the
``VRP_TEST_*`` family that only the test suite reads. The standard ``OTEL_*`` variables the
project depends on are checked here as well, but the OpenTelemetry SDK keeps reading them
itself, as the specification defines. :func:`load_settings` raises :class:`ConfigError` with
one line naming the variable, the value and what is allowed.

Every folder and the file of a SQLite database come out absolute, resolved once against the
working folder the command was started in (see :mod:`instrumentation.paths`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from instrumentation import (
    ConfigurationError,
    DatabaseSettings,
    LoggingSettings,
    TelemetrySettings,
)
from instrumentation.envsettings import invalid_setting_line
from instrumentation.paths import absolute_path, absolute_sqlite_url
from instrumentation.settings import (
    DEFAULT_CHANNEL_TIMEOUT,
    DEFAULT_CONNECTION_LIMIT,
    MAX_CONNECTION_LIMIT,
    MIN_CONNECTION_LIMIT,
)
from instrumentation.urls import parse_database_url
from recorder import __version__
from recorder.errors import ConfigError

PREFIX = "VRP_"
IGNORED_PREFIXES = ("VRP_TEST_",)
# The dashboard and backup packages declare and validate their own variables.
DELEGATED_PREFIXES = ("VRP_DASHBOARD_", "VRP_BACKUP_")
SUPPORTED_DATABASES = ("sqlite", "postgresql")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class _Bool(fields.Boolean):
    truthy = set(_TRUE)
    falsy = set(_FALSE)


class _UpperCase(fields.String):
    """A name matched in any case (``debug``, ``Debug``), loaded in upper case."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).upper()


def _validate_database_url(value: str) -> None:
    try:
        url = parse_database_url(value)
    except ConfigurationError as exc:
        raise ma.ValidationError(f"{exc}; expected e.g. sqlite:///var/vrp.db") from None
    if url.get_backend_name() not in SUPPORTED_DATABASES:
        raise ma.ValidationError(f"backend must be one of {', '.join(SUPPORTED_DATABASES)}")


class SettingsSchema(ma.Schema):
    """The ``VRP_*`` and ``OTEL_*`` variables, by variable name."""

    class Meta:
        unknown = ma.RAISE

    VRP_DATABASE_URL = fields.String(
        load_default="sqlite:///var/vrp.db", validate=_validate_database_url
    )
    VRP_STORAGE_DIR = fields.String(load_default="var/recordings", validate=validate.Length(1))
    VRP_LOG_DIR = fields.String(load_default="var/log", validate=validate.Length(1))
    VRP_LOG_LEVEL = _UpperCase(load_default="INFO", validate=validate.OneOf(LOG_LEVELS))
    VRP_LOG_FORMAT = fields.String(
        load_default="auto", validate=validate.OneOf(("auto", "json", "text"))
    )
    VRP_LOG_MAX_BYTES = fields.Integer(
        load_default=10 * 1024 * 1024, validate=validate.Range(min=1024), strict=False
    )
    VRP_LOG_BACKUP_COUNT = fields.Integer(load_default=5, validate=validate.Range(min=0, max=100))
    VRP_LOG_FLUSH_MS = fields.Integer(load_default=200, validate=validate.Range(min=0, max=10_000))
    VRP_ENVIRONMENT = fields.String(load_default="development", validate=validate.Length(1, 64))
    VRP_API_HOST = fields.String(load_default="127.0.0.1", validate=validate.Length(1, 255))
    VRP_API_PORT = fields.Integer(load_default=5000, validate=validate.Range(min=1, max=65535))
    VRP_API_THREADS = fields.Integer(load_default=8, validate=validate.Range(min=1, max=256))
    VRP_API_CONNECTION_LIMIT = fields.Integer(
        load_default=DEFAULT_CONNECTION_LIMIT,
        validate=validate.Range(min=MIN_CONNECTION_LIMIT, max=MAX_CONNECTION_LIMIT),
    )
    VRP_API_CHANNEL_TIMEOUT = fields.Integer(
        load_default=DEFAULT_CHANNEL_TIMEOUT, validate=validate.Range(min=1, max=3600)
    )
    VRP_API_WORKERS = fields.Integer(load_default=1, validate=validate.Range(min=1, max=64))
    VRP_API_METRICS_ENABLED = _Bool(load_default=False)
    VRP_STEP_SPANS = _Bool(load_default=True)
    VRP_MAX_UPLOAD_BYTES = fields.Integer(
        load_default=200 * 1024 * 1024, validate=validate.Range(min=1024)
    )
    VRP_REQUIRE_IF_MATCH = _Bool(load_default=False)
    VRP_DB_POOL_SIZE = fields.Integer(load_default=5, validate=validate.Range(min=1, max=1000))
    VRP_DB_MAX_OVERFLOW = fields.Integer(load_default=10, validate=validate.Range(min=0, max=1000))
    VRP_DB_POOL_TIMEOUT = fields.Float(load_default=10.0, validate=validate.Range(min=0.01))
    VRP_DB_POOL_RECYCLE = fields.Integer(load_default=1800, validate=validate.Range(min=-1))
    VRP_DB_STATEMENT_TIMEOUT_MS = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=1)
    )
    VRP_DB_BUSY_TIMEOUT_MS = fields.Integer(load_default=5000, validate=validate.Range(min=0))
    VRP_DB_LEAK_SECONDS = fields.Float(load_default=30.0, validate=validate.Range(min=0.01))
    VRP_DB_LEAK_STACK = _Bool(load_default=False)
    VRP_DB_RETRY_ATTEMPTS = fields.Integer(load_default=5, validate=validate.Range(min=1, max=100))
    VRP_DB_RETRY_DEADLINE = fields.Float(load_default=10.0, validate=validate.Range(min=0.01))
    OTEL_SDK_DISABLED = _Bool(load_default=False)
    OTEL_SERVICE_NAME = fields.String(load_default=None, validate=validate.Length(1, 255))
    OTEL_EXPORTER_OTLP_ENDPOINT = fields.Url(
        load_default=None, require_tld=False, schemes={"http", "https"}
    )
    OTEL_TRACES_SAMPLER = fields.String(
        load_default=None,
        validate=validate.OneOf(
            (
                "always_on",
                "always_off",
                "traceidratio",
                "parentbased_always_on",
                "parentbased_always_off",
                "parentbased_traceidratio",
            )
        ),
    )
    OTEL_TRACES_SAMPLER_ARG = fields.Float(load_default=None, validate=validate.Range(0.0, 1.0))
    OTEL_METRICS_EXEMPLAR_FILTER = fields.String(
        load_default=None, validate=validate.OneOf(("always_on", "always_off", "trace_based"))
    )


@dataclass(frozen=True)
class Settings:
    """Validated settings, split into the typed objects each package takes."""

    database: DatabaseSettings
    logging: LoggingSettings
    telemetry: TelemetrySettings
    storage_dir: Path
    max_upload_bytes: int
    require_if_match: bool
    api_host: str
    api_port: int
    api_threads: int
    api_connection_limit: int = DEFAULT_CONNECTION_LIMIT
    api_channel_timeout: int = DEFAULT_CHANNEL_TIMEOUT
    api_workers: int = 1
    # `vrp api` serves /metrics to Prometheus (instrumentation.prometheus).
    api_metrics_enabled: bool = False
    # The request's INTERNAL step spans (parse, storage, serialize, ...; docs/telemetry.md).
    step_spans: bool = True

    def for_service(self, service_name: str) -> Settings:
        """The same settings for another process of the stack (``vrp-dashboard``, ...)."""
        telemetry = TelemetrySettings(
            **{**self.telemetry.__dict__, "service_name": service_name},
        )
        return Settings(**{**self.__dict__, "telemetry": telemetry})


_SCHEMA = SettingsSchema()
_OTEL_NAMES = {name for name in _SCHEMA.fields if name.startswith("OTEL_")}


def load_settings(
    environ: Mapping[str, str] | None = None, *, service_name: str = "vrp-api"
) -> Settings:
    """Validate the environment once; raise :class:`ConfigError` naming the first bad variable."""
    env = os.environ if environ is None else environ
    raw = {
        name: value
        for name, value in env.items()
        if (
            name.startswith(PREFIX)
            and not name.startswith(IGNORED_PREFIXES)
            and not name.startswith(DELEGATED_PREFIXES)
        )
        or name in _OTEL_NAMES
    }
    # An empty value means "unset" for every variable, as the OpenTelemetry spec says for OTEL_*.
    raw = {name: value for name, value in raw.items() if value.strip() != ""}
    try:
        data = _SCHEMA.load(raw)
    except ma.ValidationError as exc:
        line = invalid_setting_line(exc, raw)
        raise ConfigError(line) from None
    if data["OTEL_SERVICE_NAME"]:
        service_name = data["OTEL_SERVICE_NAME"]
    return Settings(
        database=DatabaseSettings(
            url=absolute_sqlite_url(data["VRP_DATABASE_URL"]),
            pool_size=data["VRP_DB_POOL_SIZE"],
            max_overflow=data["VRP_DB_MAX_OVERFLOW"],
            pool_timeout=data["VRP_DB_POOL_TIMEOUT"],
            pool_recycle=data["VRP_DB_POOL_RECYCLE"],
            statement_timeout_ms=data["VRP_DB_STATEMENT_TIMEOUT_MS"],
            sqlite_busy_timeout_ms=data["VRP_DB_BUSY_TIMEOUT_MS"],
            leak_seconds=data["VRP_DB_LEAK_SECONDS"],
            leak_stack=data["VRP_DB_LEAK_STACK"],
            retry_attempts=data["VRP_DB_RETRY_ATTEMPTS"],
            retry_deadline=data["VRP_DB_RETRY_DEADLINE"],
            application_name="vrp",
        ),
        logging=LoggingSettings(
            level=data["VRP_LOG_LEVEL"],
            log_dir=absolute_path(data["VRP_LOG_DIR"]),
            max_bytes=data["VRP_LOG_MAX_BYTES"],
            backup_count=data["VRP_LOG_BACKUP_COUNT"],
            stderr_format=data["VRP_LOG_FORMAT"],
            flush_ms=data["VRP_LOG_FLUSH_MS"],
            lean=True,
        ),
        telemetry=TelemetrySettings(
            service_name=service_name,
            service_version=__version__,
            environment=data["VRP_ENVIRONMENT"],
            disabled=data["OTEL_SDK_DISABLED"],
        ),
        storage_dir=absolute_path(data["VRP_STORAGE_DIR"]),
        max_upload_bytes=data["VRP_MAX_UPLOAD_BYTES"],
        require_if_match=data["VRP_REQUIRE_IF_MATCH"],
        api_host=data["VRP_API_HOST"],
        api_port=data["VRP_API_PORT"],
        api_threads=data["VRP_API_THREADS"],
        api_connection_limit=data["VRP_API_CONNECTION_LIMIT"],
        api_channel_timeout=data["VRP_API_CHANNEL_TIMEOUT"],
        api_workers=data["VRP_API_WORKERS"],
        api_metrics_enabled=data["VRP_API_METRICS_ENABLED"],
        step_spans=data["VRP_STEP_SPANS"],
    )
