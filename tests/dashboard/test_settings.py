from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.errors import DashboardConfigError
from dashboard.settings import load_dashboard_settings


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


def test_unknown_variable_is_named() -> None:
    with pytest.raises(DashboardConfigError, match=r"VRP_DASHBOARD_PROT='1'.*unknown setting"):
        load_dashboard_settings({"VRP_DASHBOARD_PROT": "1"})


def test_bad_port_names_variable_value_and_range() -> None:
    with pytest.raises(DashboardConfigError, match=r"VRP_DASHBOARD_PORT='0'.*65535"):
        load_dashboard_settings({"VRP_DASHBOARD_PORT": "0"})


def test_token_never_appears_in_errors_or_repr() -> None:
    with pytest.raises(DashboardConfigError) as info:
        load_dashboard_settings({"VRP_DASHBOARD_TOKEN": "short"})
    assert "short" not in str(info.value)
    settings = load_dashboard_settings({"VRP_DASHBOARD_TOKEN": "s3cret-token-value"})
    assert settings.token == "s3cret-token-value"
    assert "s3cret" not in repr(settings)


def test_postgres_url_password_hidden_in_errors() -> None:
    with pytest.raises(DashboardConfigError) as info:
        load_dashboard_settings({"VRP_DASHBOARD_STORE_URL": "mysql://u:hunter2@h/db"})
    assert "hunter2" not in str(info.value)
