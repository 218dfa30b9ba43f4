from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from instrumentation.errors import ConfigurationError
from instrumentation.urls import (
    database_address,
    database_label,
    parse_database_url,
    shown_url,
    with_default_driver,
    without_credentials,
    without_secrets,
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:///var/vrp.db", "sqlite:///var/vrp.db"),
        ("postgresql://vrp@db/vrp", "postgresql://vrp@db/vrp"),
        ("postgresql://vrp:pw@db/vrp", "postgresql://vrp:***@db/vrp"),
        ("postgresql://vrp@db/vrp?password=pw", "postgresql://vrp@db/vrp?password=***"),
        (
            "postgresql://vrp:a@db/vrp?sslmode=require&sslpassword=k%40y",
            "postgresql://vrp:***@db/vrp?sslmode=require&sslpassword=***",
        ),
        # Not parseable: the whole user info goes, whatever characters the password holds.
        ("postgresql://vrp:p/w@[::1/vrp?password=q", "postgresql://***@[::1/vrp?password=***"),
    ],
)
def test_shown_url_masks_the_password_in_the_user_info_and_the_query(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_shown_url_takes_a_parsed_url_too() -> None:
    url = make_url("postgresql+psycopg://vrp:pw@db/vrp?password=pw")

    assert shown_url(url) == "postgresql+psycopg://vrp:***@db/vrp?password=***"


def test_without_secrets_masks_every_secret_of_the_url_as_written_and_decoded() -> None:
    url = "postgresql://vrp:p%40ss@db/vrp?password=q%2Bpw&connect_timeout=5"
    message = "auth failed for p@ss / p%40ss / q+pw / q%2Bpw; connect_timeout=5"

    assert (
        without_secrets(message, url) == "auth failed for *** / *** / *** / ***; connect_timeout=5"
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://vrp:pw-in-url@[::1/vrp", "not a database URL"),
        ("not a url at all", "not a database URL"),
        ("postgresql://vrp:pw-in-url@db:70000/vrp", "port 70000 is out of range"),
    ],
)
def test_a_malformed_url_is_one_configuration_error_without_the_password(
    url: str, reason: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_database_url(url)

    assert reason in str(caught.value)
    assert "pw-in-url" not in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://vrp@db/vrp", "postgresql+psycopg"),
        ("postgresql+psycopg://vrp@db/vrp", "postgresql+psycopg"),
        ("postgresql+pg8000://vrp@db/vrp", "postgresql+pg8000"),
        ("mysql+pymysql://root@db/vrp", "mysql+pymysql"),
        ("sqlite:///var/vrp.db", "sqlite"),
    ],
)
def test_a_bare_postgresql_url_means_psycopg_3_and_a_named_driver_is_kept(
    url: str, driver: str
) -> None:
    assert with_default_driver(make_url(url)).drivername == driver


@pytest.mark.parametrize(
    ("url", "label"),
    [
        ("sqlite:////srv/vrp/vrp.db", "/srv/vrp/vrp.db"),
        ("postgresql://vrp:pw@db/vrp?password=pw", "vrp on db:5432"),
        ("postgresql+psycopg://vrp@db:6432/vrp", "vrp on db:6432"),
        ("postgresql:///vrp", "vrp on localhost:5432"),
        ("mysql+pymysql://root:pw@db/vrp", "vrp on db:3306"),
    ],
)
def test_database_label_names_the_database_without_user_or_secret(url: str, label: str) -> None:
    assert database_label(url) == label


def test_database_address_compares_two_spellings_of_one_database() -> None:
    assert database_address("postgresql://a:x@localhost/vrp") == database_address(
        "postgresql+psycopg://b@localhost:5432/vrp?sslmode=require"
    )
    assert database_address("postgresql://db/vrp") != database_address("postgresql://db/other")


def test_without_credentials_keeps_driver_host_port_and_database_only() -> None:
    url = "postgresql+psycopg://vrp:pw@db:6432/vrp?sslpassword=key&application_name=x"
    assert without_credentials(url) == "postgresql+psycopg://db:6432/vrp"
