"""The notification settings: read with the dashboard's, secrets never shown, bad values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.errors import DashboardConfigError
from dashboard.settings import load_dashboard_settings
from tests.dashboard.test_cli import run_vrp

SLACK_URL = "https://hooks.slack.com/services/T0A1B2C3D4/B5E6F7G8H9/x9Yz8Wv7Ut6Sr5Qp4On3Ml2"
WEBHOOK_URL = "https://alerts.example.com/hook?token=a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
PASSWORD = "correct-horse-battery-staple-0123456789"
SMTP = {
    "VRP_DASHBOARD_ALERT_SMTP_HOST": "smtp.example.com",
    "VRP_DASHBOARD_ALERT_SMTP_FROM": "vrp@example.com",
    "VRP_DASHBOARD_ALERT_SMTP_TO": "ops@example.com, oncall@example.org",
}


def test_without_alert_variables_no_channel_is_configured_and_links_use_the_dashboard() -> None:
    settings = load_dashboard_settings({"VRP_DASHBOARD_PORT": "8051"}).notify

    assert not settings.has_channels
    assert settings.external_url == "http://127.0.0.1:8051"
    assert (settings.group_wait, settings.group_interval, settings.repeat_interval) == (
        30.0,
        300.0,
        14400.0,
    )


def test_every_channel_and_timing_is_read(tmp_path: Path) -> None:
    (tmp_path / "smtp-password").write_text(PASSWORD + "\n")
    settings = load_dashboard_settings(
        {
            **SMTP,
            "VRP_DASHBOARD_ALERT_WEBHOOK_URL": WEBHOOK_URL,
            "VRP_DASHBOARD_ALERT_SLACK_URL": SLACK_URL,
            "VRP_DASHBOARD_ALERT_SMTP_PORT": "587",
            "VRP_DASHBOARD_ALERT_SMTP_STARTTLS": "yes",
            "VRP_DASHBOARD_ALERT_SMTP_USER": "alerts",
            "VRP_DASHBOARD_ALERT_SMTP_PASSWORD_FILE": "smtp-password",
            "VRP_DASHBOARD_ALERT_GROUP_BY": "service, route",
            "VRP_DASHBOARD_ALERT_GROUP_WAIT": "10s",
            "VRP_DASHBOARD_ALERT_GROUP_INTERVAL": "2m",
            "VRP_DASHBOARD_ALERT_REPEAT_INTERVAL": "1h",
            "VRP_DASHBOARD_ALERT_TIMEOUT": "3",
            "VRP_DASHBOARD_EXTERNAL_URL": "https://dashboard.example.com/vrp/",
        },
        cwd=tmp_path,
    )
    notify = settings.notify

    assert notify.webhook_url == WEBHOOK_URL
    assert notify.slack_url == SLACK_URL
    assert notify.smtp is not None
    assert notify.smtp.password == PASSWORD
    assert notify.smtp.recipients == ("ops@example.com", "oncall@example.org")
    assert (notify.smtp.port, notify.smtp.starttls, notify.smtp.user) == (587, True, "alerts")
    assert notify.group_by == ("service", "route")
    assert (notify.group_wait, notify.group_interval, notify.repeat_interval) == (10, 120, 3600)
    assert notify.timeout == 3.0
    assert notify.external_url == "https://dashboard.example.com/vrp"
    shown = repr(settings)
    for secret in (PASSWORD, SLACK_URL, WEBHOOK_URL, "x9Yz8Wv7Ut6Sr5Qp4On3Ml2"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VRP_DASHBOARD_ALERT_SLACK_URL", SLACK_URL.replace("https", "ftp")),
        ("VRP_DASHBOARD_ALERT_WEBHOOK_URL", WEBHOOK_URL.replace("https://", "")),
        ("VRP_DASHBOARD_ALERT_WEBHOOK_URL", WEBHOOK_URL.replace(".com/", ".com:99999/")),
    ],
)
def test_a_bad_webhook_url_is_refused_without_showing_it(name: str, value: str) -> None:
    with pytest.raises(DashboardConfigError) as caught:
        load_dashboard_settings({name: value})

    assert str(caught.value).startswith(f"{name}='***': must be an http:// or https:// URL")


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (
            {"VRP_DASHBOARD_ALERT_SMTP_TO": ""},
            "VRP_DASHBOARD_ALERT_SMTP_TO: is required when VRP_DASHBOARD_ALERT_SMTP_HOST is set",
        ),
        (
            {"VRP_DASHBOARD_ALERT_SMTP_TO": "ops@example.com, ops"},
            "VRP_DASHBOARD_ALERT_SMTP_TO='ops@example.com, ops': ops is not an e-mail address",
        ),
        (
            {"VRP_DASHBOARD_ALERT_SMTP_FROM": "vrp at example.com"},
            "VRP_DASHBOARD_ALERT_SMTP_FROM='vrp at example.com': must be an e-mail address such "
            "as alerts@example.com",
        ),
        (
            {"VRP_DASHBOARD_ALERT_SMTP_USER": "alerts"},
            "VRP_DASHBOARD_ALERT_SMTP_PASSWORD_FILE: is required with "
            "VRP_DASHBOARD_ALERT_SMTP_USER and VRP_DASHBOARD_ALERT_SMTP_PASSWORD_FILE",
        ),
        (
            {
                "VRP_DASHBOARD_ALERT_SMTP_USER": "alerts",
                "VRP_DASHBOARD_ALERT_SMTP_PASSWORD_FILE": "/run/secrets/smtp",
            },
            "VRP_DASHBOARD_ALERT_SMTP_USER='alerts': needs VRP_DASHBOARD_ALERT_SMTP_STARTTLS="
            "true: the password must not travel in clear text",
        ),
        (
            {
                "VRP_DASHBOARD_ALERT_SMTP_USER": "alerts",
                "VRP_DASHBOARD_ALERT_SMTP_STARTTLS": "on",
                "VRP_DASHBOARD_ALERT_SMTP_PASSWORD_FILE": "missing-password-file",
            },
            "VRP_DASHBOARD_ALERT_SMTP_PASSWORD_FILE='***': cannot read the file "
            "(No such file or directory)",
        ),
        (
            {"VRP_DASHBOARD_ALERT_GROUP_WAIT": "soon"},
            "VRP_DASHBOARD_ALERT_GROUP_WAIT='soon': must be an interval such as 6h, 30m, 1d or "
            "a number of seconds",
        ),
    ],
)
def test_an_incomplete_or_unsafe_smtp_setting_is_one_line_naming_it(
    tmp_path: Path, extra: dict[str, str], line: str
) -> None:
    with pytest.raises(DashboardConfigError) as caught:
        load_dashboard_settings({**SMTP, **extra}, cwd=tmp_path)

    assert str(caught.value) == line


def test_smtp_details_without_a_host_are_refused() -> None:
    with pytest.raises(DashboardConfigError) as caught:
        load_dashboard_settings({"VRP_DASHBOARD_ALERT_SMTP_TO": "ops@example.com"})

    assert str(caught.value) == (
        "VRP_DASHBOARD_ALERT_SMTP_TO='ops@example.com': needs VRP_DASHBOARD_ALERT_SMTP_HOST"
    )


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    settings = {
        **SMTP,
        "VRP_DASHBOARD_ALERT_SMTP_USER": "alerts",
        "VRP_DASHBOARD_ALERT_SMTP_STARTTLS": "1",
        "VRP_DASHBOARD_ALERT_SMTP_PASSWORD_FILE": str(tmp_path / "empty"),
    }
    with pytest.raises(DashboardConfigError, match="the file holds no password"):
        load_dashboard_settings(settings)


def test_vrp_dashboard_exits_2_with_one_line_that_does_not_show_the_slack_url(
    tmp_path: Path,
) -> None:
    result = run_vrp(tmp_path, VRP_DASHBOARD_ALERT_SLACK_URL=SLACK_URL.replace("https:", "hxxp:"))

    assert result.returncode == 2
    assert result.stderr == (
        "vrp: invalid configuration: VRP_DASHBOARD_ALERT_SLACK_URL='***': "
        "must be an http:// or https:// URL with a host\n"
    )
