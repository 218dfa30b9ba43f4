"""Configuration is validated once; a bad value names the variable, the value and the rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.config import load_settings
from recorder.errors import ConfigError


def test_defaults_point_at_var_under_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    settings = load_settings({})

    assert settings.database.url == f"sqlite:///{tmp_path}/var/vrp.db"
    assert settings.storage_dir == tmp_path / "var" / "recordings"
    assert settings.logging.log_dir == tmp_path / "var" / "log"
    assert settings.api_port == 5000
    assert settings.telemetry.service_name == "vrp-api"


def test_relative_paths_are_resolved_once_against_the_starting_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        {
            "VRP_DATABASE_URL": "sqlite:///data/../db/app.db?timeout=3",
            "VRP_STORAGE_DIR": "audio",
            "VRP_LOG_DIR": "./logs",
        }
    )
    monkeypatch.chdir("/")

    assert settings.database.url == f"sqlite:///{tmp_path}/data/../db/app.db?timeout=3"
    assert settings.storage_dir == tmp_path / "audio"
    assert settings.logging.log_dir == tmp_path / "logs"
    assert settings.storage_dir.is_absolute() and settings.logging.log_dir.is_absolute()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////srv/vrp/vrp.db",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///file:vrp.db?mode=ro&uri=true",
        "postgresql://vrp:secret@db.example:5432/vrp",
    ],
)
def test_urls_without_a_relative_sqlite_file_are_kept_as_given(url: str) -> None:
    assert load_settings({"VRP_DATABASE_URL": url}).database.url == url


def test_absolute_and_home_paths_are_not_joined_to_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    settings = load_settings({"VRP_STORAGE_DIR": "/srv/audio", "VRP_LOG_DIR": "~/logs"})

    assert settings.storage_dir == Path("/srv/audio")
    assert settings.logging.log_dir == tmp_path / "home" / "logs"


def test_values_reach_the_typed_settings() -> None:
    settings = load_settings(
        {
            "VRP_DB_POOL_SIZE": "3",
            "VRP_DB_LEAK_SECONDS": "2.5",
            "VRP_REQUIRE_IF_MATCH": "yes",
            "OTEL_SERVICE_NAME": "custom",
            "VRP_TEST_POSTGRES_URL": "ignored",
            "VRP_API_PORT": "",
        }
    )
    assert settings.database.pool_size == 3
    assert settings.database.leak_seconds == 2.5
    assert settings.require_if_match is True
    assert settings.telemetry.service_name == "custom"
    assert settings.api_port == 5000


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"VRP_DB_POOL_SIZE": "abc"}, "VRP_DB_POOL_SIZE='abc': Not a valid integer."),
        ({"VRP_API_PORT": "70000"}, "VRP_API_PORT='70000': Must be greater than or equal to 1"),
        ({"VRP_LOG_LEVEL": "LOUD"}, "VRP_LOG_LEVEL='LOUD': Must be one of: DEBUG, INFO"),
        (
            {"VRP_LOG_FLUSH_MS": "-5"},
            "VRP_LOG_FLUSH_MS='-5': Must be greater than or equal to 0 and less than or equal to",
        ),
        ({"VRP_DATABSE_URL": "x"}, "VRP_DATABSE_URL: unknown setting"),
        ({"OTEL_SDK_DISABLED": "maybe"}, "OTEL_SDK_DISABLED='maybe': Not a valid boolean."),
        (
            {"OTEL_METRICS_EXEMPLAR_FILTER": "sometimes"},
            "OTEL_METRICS_EXEMPLAR_FILTER='sometimes': Must be one of: always_on",
        ),
        ({"VRP_DATABASE_URL": "mysql://u@h/db"}, "backend must be one of sqlite, postgresql"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["VRP_TOKN", "VRP_DB_PASWORD", "VRP_DASHBORD_TOKEN"])
def test_an_unknown_variable_is_named_but_its_value_never_shown(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: "hunter2"})
    assert str(caught.value).startswith(f"{name}: unknown setting")
    assert "hunter2" not in str(caught.value)


def test_passwords_never_appear_in_config_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"VRP_DATABASE_URL": "mysql://user:hunter2@db/x"})
    assert "hunter2" not in str(caught.value)
