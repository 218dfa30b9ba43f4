"""With ``VRP_DASHBOARD_TOKEN`` set, the UI and ``/api/`` need the token; without it, all is open.

Real app (receiver, store in a SQLite file, API, Dash UI), exercised with Flask's test client;
the browser's view of the same rules is in ``test_ui.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from dashboard import attempts
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


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_that_guesses_too_often_is_refused_then_let_back(tmp_path: Path) -> None:
    clock = Clock()
    client = _client(tmp_path, TOKEN)
    app = client.application
    app.token_attempts._clock = clock
    guesser = {"environ_base": {"REMOTE_ADDR": "203.0.113.9"}}
    for index in range(attempts.MAX_FAILURES):
        guess = {"token": f"guess-{index}", "next": "/"}
        assert client.post("/login", data=guess, **guesser).status_code == 401
    # Right or wrong, every token from that address is refused now, on every path.
    refused = client.post("/login", data={"token": TOKEN, "next": "/"}, **guesser)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) == attempts.WINDOW_S
    assert "Too many wrong tokens" in refused.get_data(as_text=True)
    assert COOKIE_NAME not in refused.headers.get("Set-Cookie", "")
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    api = client.get("/api/services", headers=bearer, **guesser)
    assert api.status_code == 429
    assert api.get_json()["code"] == 429
    otlp = client.post(
        "/v1/traces",
        data=b"",
        headers={**bearer, "Content-Type": "application/x-protobuf"},
        **guesser,
    )
    assert otlp.status_code == 429
    assert otlp.headers["Retry-After"]
    # Another address is not affected, and requests without a token are not guesses.
    assert client.get("/api/services", headers=bearer).status_code == 200
    for _ in range(3 * attempts.MAX_FAILURES):
        assert client.get("/api/services").status_code == 401
    assert client.get("/api/services", headers=bearer).status_code == 200
    # Once the oldest failure is older than the window, the address may try again.
    clock.now += attempts.WINDOW_S + 1
    assert client.get("/api/services", headers=bearer, **guesser).status_code == 200


def test_wrong_bearer_tokens_count_on_the_api_and_the_receiver_alike(tmp_path: Path) -> None:
    client = _client(tmp_path, TOKEN)
    guesser = {"environ_base": {"REMOTE_ADDR": "198.51.100.7"}}
    wrong = {"Authorization": "Bearer nope", "Content-Type": "application/x-protobuf"}
    for index in range(attempts.MAX_FAILURES):
        path = "/api/services" if index % 2 else "/v1/traces"
        send = client.get if index % 2 else client.post
        assert send(path, headers=wrong, **guesser).status_code == 401
    right = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/api/services", headers=right, **guesser).status_code == 429


def test_a_signed_in_browser_keeps_working_while_its_address_is_blocked(tmp_path: Path) -> None:
    client = _client(tmp_path, TOKEN)
    shared = {"environ_base": {"REMOTE_ADDR": "192.0.2.1"}}
    assert client.post("/login", data={"token": TOKEN, "next": "/"}, **shared).status_code == 302
    for _ in range(attempts.MAX_FAILURES):
        client.get("/api/services", headers={"Authorization": "Bearer nope"}, **shared)
    assert client.get("/api/services", **shared).status_code == 200


def test_remembered_addresses_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attempts, "MAX_ADDRESSES", 50)
    clock = Clock()
    counter = attempts.TokenAttempts(clock)
    for index in range(500):
        counter.failed(f"10.0.{index // 256}.{index % 256}")
        assert len(counter._failures) <= 50
    clock.now += attempts.WINDOW_S + 1
    assert counter.retry_after("10.0.1.243") == 0
