from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from backup.errors import BackupConfigError
from backup.settings import load_backup_settings
from dashboard.errors import DashboardConfigError
from dashboard.settings import MIN_TOKEN_LENGTH, load_dashboard_settings
from recorder.config import load_settings
from recorder.errors import ConfigError


def test_defaults_resolve_the_sqlite_store_against_the_working_folder(tmp_path: Path) -> None:
    settings = load_dashboard_settings({}, cwd=tmp_path)
    assert settings.store_url == f"sqlite:///{tmp_path / 'var' / 'telemetry.db'}"
    assert (settings.host, settings.port, settings.token) == ("127.0.0.1", 8050, None)
    assert settings.max_body_bytes == 16 * 1024 * 1024
    assert settings.backup_interval_seconds == 86400


@pytest.mark.parametrize(
    ("text", "seconds"), [("6h", 21600), ("30m", 1800), ("1d", 86400), ("90", 90)]
)
def test_backup_interval_accepts_units_and_seconds(text: str, seconds: float) -> None:
    settings = load_dashboard_settings({"VRP_DASHBOARD_BACKUP_INTERVAL": text})
    assert settings.backup_interval_seconds == seconds


def test_an_unknown_variable_is_named_but_a_mistyped_secret_never_shown() -> None:
    with pytest.raises(DashboardConfigError) as info:
        load_dashboard_settings({"VRP_DASHBOARD_TOKN": "supersecret"})
    assert str(info.value) == (
        "VRP_DASHBOARD_TOKN: unknown setting; see the Configuration section of the README"
    )


@pytest.mark.parametrize(
    ("load", "error", "name"),
    [
        (load_dashboard_settings, DashboardConfigError, "VRP_DASHBOARD_PROT"),
        (load_backup_settings, BackupConfigError, "VRP_BACKUP_KEPP_DAILY"),
        (load_settings, ConfigError, "VRP_DATABSE_URL"),
    ],
)
def test_every_package_words_an_unknown_variable_the_same(
    load: Callable[[dict[str, str]], object], error: type[Exception], name: str
) -> None:
    with pytest.raises(error) as info:
        load({name: "hunter2"})
    assert (
        str(info.value) == f"{name}: unknown setting; see the Configuration section of the README"
    )


@pytest.mark.parametrize(
    ("load", "error", "name"),
    [
        (load_dashboard_settings, DashboardConfigError, "VRP_DASHBOARD_PORT"),
        (load_backup_settings, BackupConfigError, "VRP_BACKUP_KEEP_LAST"),
        (load_settings, ConfigError, "VRP_API_PORT"),
    ],
)
def test_every_package_words_a_bad_number_the_same(
    load: Callable[[dict[str, str]], object], error: type[Exception], name: str
) -> None:
    with pytest.raises(error) as info:
        load({name: "many"})
    assert str(info.value) == f"{name}='many': Not a valid integer."


@pytest.mark.parametrize(("text", "secure"), [("yes", True), ("1", True), ("off", False)])
def test_cookie_secure_is_a_yes_or_no(text: str, secure: bool) -> None:
    settings = load_dashboard_settings({"VRP_DASHBOARD_COOKIE_SECURE": text})
    assert settings.cookie_secure is secure


def test_cookie_secure_refuses_anything_else() -> None:
    with pytest.raises(DashboardConfigError, match=r"VRP_DASHBOARD_COOKIE_SECURE='maybe'"):
        load_dashboard_settings({"VRP_DASHBOARD_COOKIE_SECURE": "maybe"})


def test_bad_port_names_variable_value_and_range() -> None:
    with pytest.raises(DashboardConfigError, match=r"VRP_DASHBOARD_PORT='0'.*65535"):
        load_dashboard_settings({"VRP_DASHBOARD_PORT": "0"})


def test_token_never_appears_in_errors_or_repr() -> None:
    with pytest.raises(DashboardConfigError) as info:
        load_dashboard_settings({"VRP_DASHBOARD_TOKEN": "short"})
    assert "short" not in str(info.value)
    token = "s3cret-" + "t" * MIN_TOKEN_LENGTH
    settings = load_dashboard_settings({"VRP_DASHBOARD_TOKEN": token})
    assert settings.token == token
    assert "s3cret" not in repr(settings)


def test_a_token_shorter_than_128_bits_in_hex_is_refused() -> None:
    assert MIN_TOKEN_LENGTH == 32
    with pytest.raises(DashboardConfigError) as info:
        load_dashboard_settings({"VRP_DASHBOARD_TOKEN": "f" * 31})
    assert str(info.value).startswith("VRP_DASHBOARD_TOKEN='***': must be 32 to 4096 characters")
    assert "`vrp dashboard token` prints a new one" in str(info.value)
    assert load_dashboard_settings({"VRP_DASHBOARD_TOKEN": "f" * 32}).token == "f" * 32


def test_postgres_url_password_hidden_in_errors() -> None:
    with pytest.raises(DashboardConfigError) as info:
        load_dashboard_settings({"VRP_DASHBOARD_STORE_URL": "mysql://u:hunter2@h/db"})
    assert "hunter2" not in str(info.value)
