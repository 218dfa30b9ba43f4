"""Configuration is validated once; a bad value names the variable, the value and the rule."""

from __future__ import annotations

import pytest

from recorder.config import load_settings
from recorder.errors import ConfigError


def test_defaults_point_at_var() -> None:
    settings = load_settings({})
    assert settings.database.url == "sqlite:///var/vrp.db"
    assert str(settings.storage_dir) == "var/recordings"
    assert settings.api_port == 5000
    assert settings.telemetry.service_name == "vrp-api"


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
        ({"VRP_DATABSE_URL": "x"}, "VRP_DATABSE_URL='x': unknown setting"),
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


def test_passwords_never_appear_in_config_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"VRP_DATABASE_URL": "mysql://user:hunter2@db/x"})
    assert "hunter2" not in str(caught.value)
