"""With ``VRP_DASHBOARD_TOKEN`` set, the UI and ``/api/`` need the token; without it, all is open.

Real app (receiver, store in a SQLite file, API, Dash UI), exercised with Flask's test client;
the browser's view of the same rules is in ``test_ui.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from dashboard.app import create_app
from dashboard.auth import COOKIE_NAME
from dashboard.settings import DashboardSettings

TOKEN = "correct-horse-battery-staple"


def _client(tmp_path: Path, token: str | None) -> FlaskClient:
    settings = DashboardSettings(store_url=f"sqlite:///{tmp_path / 'telemetry.db'}", token=token)
    return create_app(settings).server.test_client()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlaskClient]:
    yield _client(tmp_path, TOKEN)


@pytest.mark.parametrize("path", ["/api/services", "/api/summary", "/api/openapi.json"])
def test_api_without_token_is_401_json(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.is_json and response.json["code"] == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_api_with_wrong_bearer_is_401(client: FlaskClient) -> None:
    response = client.get("/api/services", headers={"Authorization": "Bearer not-the-token"})
    assert response.status_code == 401


def test_api_with_bearer_token_answers(client: FlaskClient) -> None:
    response = client.get("/api/services", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.json == {"services": []}


@pytest.mark.parametrize("path", ["/", "/queries", "/traces?trace=0123"])
def test_ui_without_token_redirects_to_login(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/")


@pytest.mark.parametrize("path", ["/_dash-layout", "/_dash-dependencies"])
def test_dash_data_without_token_is_401(client: FlaskClient, path: str) -> None:
    assert client.get(path).status_code == 401


def test_dash_callbacks_without_token_are_401(client: FlaskClient) -> None:
    response = client.post("/_dash-update-component", json={"output": "page.children"})
    assert response.status_code == 401


def test_login_page_and_assets_stay_open(client: FlaskClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    assert b'name="token"' in page.data
    assert client.get("/assets/bootstrap.min.css").status_code == 200


def test_wrong_token_on_login_sets_no_cookie(client: FlaskClient) -> None:
    response = client.post("/login", data={"token": "guess", "next": "/queries"})
    assert response.status_code == 401
    assert b"Wrong token" in response.data
    assert client.get_cookie(COOKIE_NAME) is None


def test_login_sets_a_signed_httponly_lax_cookie_that_opens_ui_and_api(
    client: FlaskClient,
) -> None:
    response = client.post("/login", data={"token": TOKEN, "next": "/queries"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/queries"
    set_cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    cookie = client.get_cookie(COOKIE_NAME)
    assert cookie is not None and TOKEN not in cookie.value
    assert client.get("/queries").status_code == 200
    assert client.get("/_dash-layout").status_code == 200
    assert client.get("/api/services").status_code == 200


def test_a_forged_or_foreign_cookie_is_refused(tmp_path: Path, client: FlaskClient) -> None:
    other = _client(tmp_path / "other", "another-token-entirely")
    other.post("/login", data={"token": "another-token-entirely"})
    foreign = other.get_cookie(COOKIE_NAME)
    assert foreign is not None
    client.set_cookie(COOKIE_NAME, foreign.value)
    assert client.get("/api/services").status_code == 401
    client.set_cookie(COOKIE_NAME, "forged.value.here")
    assert client.get("/api/services").status_code == 401


def test_logout_clears_the_cookie(client: FlaskClient) -> None:
    client.post("/login", data={"token": TOKEN})
    client.get("/logout")
    assert client.get("/api/services").status_code == 401


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "javascript:x"])
def test_login_never_redirects_off_site(client: FlaskClient, target: str) -> None:
    response = client.post("/login", data={"token": TOKEN, "next": target})
    assert response.headers["Location"] == "/"


def test_receiver_keeps_its_own_bearer_check(client: FlaskClient) -> None:
    response = client.post(
        "/v1/traces", data=b"", headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status_code == 401
    accepted = client.post(
        "/v1/traces",
        data=b"",
        headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {TOKEN}"},
    )
    assert accepted.status_code == 200


def test_an_unknown_api_path_is_404_json_not_the_ui(client: FlaskClient) -> None:
    response = client.get("/api/nope", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404
    assert response.is_json


def test_without_a_token_configured_everything_is_open(tmp_path: Path) -> None:
    client = _client(tmp_path, None)
    assert client.get("/api/services").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/_dash-layout").status_code == 200
