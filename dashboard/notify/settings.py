"""Settings of alert notifications: the ``VRP_DASHBOARD_ALERT_*`` channels and timings.

:class:`NotifySettingsSchema` declares the variables; the dashboard's schema
(:class:`dashboard.settings.DashboardSettingsSchema`) inherits them, so they are validated with
every other ``VRP_DASHBOARD_*`` variable and a bad one stops the process with one line
(exit code 2). :func:`notify_settings` turns the loaded values into :class:`NotifySettings`.

Secrets: the webhook URLs (a Slack incoming webhook carries its credential in its path) and the
SMTP password, read from the file named by ``VRP_DASHBOARD_ALERT_SMTP_PASSWORD_FILE`` so that it
never stands on a command line nor in the environment of every child process. None of them is
part of a ``repr`` or shown in an error message (:func:`instrumentation.envsettings.shown_value`
masks variables named ``*WEBHOOK*``, ``*SLACK*`` and ``*PASSWORD*``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import marshmallow as ma
from marshmallow import fields, validate

from dashboard.intervals import Interval
from instrumentation.envsettings import Flag

DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0
DEFAULT_TIMEOUT = 10.0
# Five attempts with waits of about 2, 4, 8 and 16 s: a notification that keeps failing is given
# up within about a minute and a half (30 s of waits, and at most five connection timeouts).
DEFAULT_RETRY_ATTEMPTS = 5
DEFAULT_RETRY_INITIAL = 2.0
DEFAULT_RETRY_MAX = 30.0
MAX_PASSWORD_BYTES = 4096
MAX_ADDRESS = 254
_HTTP_SCHEMES = ("http", "https")

WEBHOOK_URL = "VRP_DASHBOARD_ALERT_WEBHOOK_URL"
SLACK_URL = "VRP_DASHBOARD_ALERT_SLACK_URL"
SMTP_HOST = "VRP_DASHBOARD_ALERT_SMTP_HOST"
SMTP_PORT = "VRP_DASHBOARD_ALERT_SMTP_PORT"
SMTP_STARTTLS = "VRP_DASHBOARD_ALERT_SMTP_STARTTLS"
SMTP_CA_FILE = "VRP_DASHBOARD_ALERT_SMTP_CA_FILE"
SMTP_USER = "VRP_DASHBOARD_ALERT_SMTP_USER"
# The name of a variable, not a password.
SMTP_PASSWORD_FILE = "VRP_DASHBOARD_ALERT_SMTP_PASSWORD_FILE"  # nosec B105
SMTP_FROM = "VRP_DASHBOARD_ALERT_SMTP_FROM"
SMTP_TO = "VRP_DASHBOARD_ALERT_SMTP_TO"
GROUP_BY = "VRP_DASHBOARD_ALERT_GROUP_BY"
GROUP_WAIT = "VRP_DASHBOARD_ALERT_GROUP_WAIT"
GROUP_INTERVAL = "VRP_DASHBOARD_ALERT_GROUP_INTERVAL"
REPEAT_INTERVAL = "VRP_DASHBOARD_ALERT_REPEAT_INTERVAL"
TIMEOUT = "VRP_DASHBOARD_ALERT_TIMEOUT"
EXTERNAL_URL = "VRP_DASHBOARD_EXTERNAL_URL"


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how alert e-mail is sent."""

    host: str
    sender: str
    recipients: tuple[str, ...]
    port: int = 25
    starttls: bool = False
    # PEM file of the certificate authorities to trust for STARTTLS (the system's when None).
    ca_file: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class NotifySettings:
    """Validated notification settings; no channel configured means no notification is sent.

    ``retry_*`` are not environment variables: tests shorten them.
    """

    webhook_url: str | None = field(default=None, repr=False)
    slack_url: str | None = field(default=None, repr=False)
    smtp: SmtpSettings | None = None
    # The dashboard's address as people reach it: the base of every link in a message.
    external_url: str = "http://127.0.0.1:8050"
    # Labels that, with the rule's name, make the group key (one message per group).
    group_by: tuple[str, ...] = ()
    group_wait: float = DEFAULT_GROUP_WAIT
    group_interval: float = DEFAULT_GROUP_INTERVAL
    repeat_interval: float = DEFAULT_REPEAT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    retry_attempts: int = DEFAULT_RETRY_ATTEMPTS
    retry_initial: float = DEFAULT_RETRY_INITIAL
    retry_max: float = DEFAULT_RETRY_MAX

    @property
    def has_channels(self) -> bool:
        return bool(self.webhook_url or self.slack_url or self.smtp)


def _validate_http_url(value: str) -> None:
    """An absolute http(s) URL; the message never repeats the value (it may be a secret)."""
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError for a port out of range
    except ValueError:
        raise ma.ValidationError("must be an http:// or https:// URL") from None
    if parts.scheme not in _HTTP_SCHEMES or not parts.hostname or port == 0:
        raise ma.ValidationError("must be an http:// or https:// URL with a host")


class _Words(fields.Field):
    """A comma-separated list, loaded as a tuple of its non-empty, stripped items."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[str, ...]:
        return tuple(item.strip() for item in str(value).split(",") if item.strip())


def is_address(text: str) -> bool:
    """``text`` looks like ``local@domain``: the SMTP server has the last word.

    Checked without a regular expression (marshmallow's ``Email`` validator backtracks), as
    every pattern of this project must run in linear time.
    """
    local, at, domain = text.rpartition("@")
    return (
        bool(at and local and domain)
        and len(text) <= MAX_ADDRESS
        and not any(char.isspace() or char in "<>,;" for char in text)
        and "." in domain.strip(".")
    )


def _validate_address(text: str) -> None:
    if not is_address(text):
        raise ma.ValidationError("must be an e-mail address such as alerts@example.com")


class _Addresses(_Words):
    """A comma-separated list of e-mail addresses (at least one)."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[str, ...]:
        addresses = super()._deserialize(value, attr, data, **kwargs)
        if not addresses:
            raise ma.ValidationError("must list at least one e-mail address")
        for address in addresses:
            if not is_address(address):
                raise ma.ValidationError(f"{address} is not an e-mail address")
        return addresses


class NotifySettingsSchema(ma.Schema):
    """The notification variables, by variable name (inherited by the dashboard's schema)."""

    VRP_DASHBOARD_EXTERNAL_URL = fields.String(load_default=None, validate=_validate_http_url)
    VRP_DASHBOARD_ALERT_WEBHOOK_URL = fields.String(load_default=None, validate=_validate_http_url)
    VRP_DASHBOARD_ALERT_SLACK_URL = fields.String(load_default=None, validate=_validate_http_url)
    VRP_DASHBOARD_ALERT_SMTP_HOST = fields.String(
        load_default=None, validate=validate.Length(1, 255)
    )
    VRP_DASHBOARD_ALERT_SMTP_PORT = fields.Integer(
        load_default=25, validate=validate.Range(1, 65535)
    )
    VRP_DASHBOARD_ALERT_SMTP_STARTTLS = Flag(load_default=False)
    VRP_DASHBOARD_ALERT_SMTP_CA_FILE = fields.String(load_default=None)
    VRP_DASHBOARD_ALERT_SMTP_USER = fields.String(
        load_default=None, validate=validate.Length(1, 255)
    )
    VRP_DASHBOARD_ALERT_SMTP_PASSWORD_FILE = fields.String(load_default=None)
    VRP_DASHBOARD_ALERT_SMTP_FROM = fields.String(load_default=None, validate=_validate_address)
    VRP_DASHBOARD_ALERT_SMTP_TO = _Addresses(load_default=None)
    VRP_DASHBOARD_ALERT_GROUP_BY = _Words(load_default=())
    VRP_DASHBOARD_ALERT_GROUP_WAIT = Interval(load_default=DEFAULT_GROUP_WAIT)
    VRP_DASHBOARD_ALERT_GROUP_INTERVAL = Interval(load_default=DEFAULT_GROUP_INTERVAL)
    VRP_DASHBOARD_ALERT_REPEAT_INTERVAL = Interval(load_default=DEFAULT_REPEAT_INTERVAL)
    VRP_DASHBOARD_ALERT_TIMEOUT = fields.Float(
        load_default=DEFAULT_TIMEOUT, validate=validate.Range(min=0.1, max=600)
    )

    @ma.validates_schema
    def _smtp_is_complete(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        """E-mail needs a sender and recipients; a password travels only over STARTTLS."""
        if data.get(SMTP_HOST) is None:
            for name in (SMTP_USER, SMTP_PASSWORD_FILE, SMTP_FROM, SMTP_TO, SMTP_CA_FILE):
                if data.get(name) is not None:
                    raise ma.ValidationError(f"needs {SMTP_HOST}", name)
            return
        for name in (SMTP_FROM, SMTP_TO):
            if data.get(name) is None:
                raise ma.ValidationError(f"is required when {SMTP_HOST} is set", name)
        if (data.get(SMTP_USER) is None) != (data.get(SMTP_PASSWORD_FILE) is None):
            missing = SMTP_PASSWORD_FILE if data.get(SMTP_PASSWORD_FILE) is None else SMTP_USER
            raise ma.ValidationError(
                f"is required with {SMTP_USER} and {SMTP_PASSWORD_FILE}", missing
            )
        if data.get(SMTP_USER) is not None and not data.get(SMTP_STARTTLS):
            raise ma.ValidationError(
                f"needs {SMTP_STARTTLS}=true: the password must not travel in clear text", SMTP_USER
            )
        if data.get(SMTP_CA_FILE) is not None and not data.get(SMTP_STARTTLS):
            raise ma.ValidationError(f"needs {SMTP_STARTTLS}=true", SMTP_CA_FILE)


def _absolute(path: str, cwd: Path) -> Path:
    resolved = Path(path)
    return resolved if resolved.is_absolute() else (cwd / resolved).resolve()


def _read_password(path: Path) -> str:
    """The first line of ``path``; :class:`marshmallow.ValidationError` naming the variable."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_PASSWORD_BYTES + 1)
    except OSError as exc:
        problem = f"cannot read the file ({exc.strerror or type(exc).__name__})"
        raise ma.ValidationError(problem, SMTP_PASSWORD_FILE) from None
    if len(raw) > MAX_PASSWORD_BYTES:
        raise ma.ValidationError(f"the file exceeds {MAX_PASSWORD_BYTES} bytes", SMTP_PASSWORD_FILE)
    password = raw.decode("utf-8", errors="strict").splitlines()[0] if raw.strip() else ""
    if not password:
        raise ma.ValidationError("the file holds no password", SMTP_PASSWORD_FILE)
    return password


def notify_settings(data: Mapping[str, Any], *, host: str, port: int, cwd: Path) -> NotifySettings:
    """:class:`NotifySettings` from the values the schema loaded.

    ``host`` and ``port`` are the dashboard's, the default base of links. Relative files are
    resolved against ``cwd`` once, here. Raises :class:`marshmallow.ValidationError` naming the
    variable when the password file cannot be read.
    """
    smtp = None
    if data[SMTP_HOST] is not None:
        ca_file = data[SMTP_CA_FILE]
        if ca_file is not None:
            ca_path = _absolute(ca_file, cwd)
            if not ca_path.is_file():
                raise ma.ValidationError("is not a file", SMTP_CA_FILE)
            ca_file = str(ca_path)
        password_file = data[SMTP_PASSWORD_FILE]
        smtp = SmtpSettings(
            host=data[SMTP_HOST],
            port=data[SMTP_PORT],
            starttls=data[SMTP_STARTTLS],
            ca_file=ca_file,
            user=data[SMTP_USER],
            password=None
            if password_file is None
            else _read_password(_absolute(password_file, cwd)),
            sender=data[SMTP_FROM],
            recipients=data[SMTP_TO],
        )
    bracketed = f"[{host}]" if ":" in host else host
    return NotifySettings(
        webhook_url=data[WEBHOOK_URL],
        slack_url=data[SLACK_URL],
        smtp=smtp,
        external_url=(data[EXTERNAL_URL] or f"http://{bracketed}:{port}").rstrip("/"),
        group_by=data[GROUP_BY],
        group_wait=data[GROUP_WAIT],
        group_interval=data[GROUP_INTERVAL],
        repeat_interval=data[REPEAT_INTERVAL],
        timeout=data[TIMEOUT],
    )
