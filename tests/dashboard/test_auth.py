"""With ``VRP_DASHBOARD_TOKEN`` set, the UI and ``/api/`` need the token; without it, all is open.

Real app (receiver, store in a SQLite file, API, Dash UI), exercised with Flask's test client;
the browser's view of the same rules is in ``test_ui.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

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


def test_a_cookie_replayed_after_logout_is_refused(client: FlaskClient) -> None:
    client.post("/login", data={"token": TOKEN})
    cookie = client.get_cookie(COOKIE_NAME)
    assert cookie is not None
    assert client.get("/api/services").status_code == 200
    client.post("/logout")
    client.set_cookie(COOKIE_NAME, cookie.value)
    assert client.get("/api/services").status_code == 401
    assert client.get("/queries").status_code == 302


def test_each_sign_in_is_a_session_of_its_own(tmp_path: Path) -> None:
    laptop = _client(tmp_path, TOKEN)
    laptop.post("/login", data={"token": TOKEN})
    phone = laptop.application.test_client()
    phone.post("/login", data={"token": TOKEN})
    first, second = laptop.get_cookie(COOKIE_NAME), phone.get_cookie(COOKIE_NAME)
    assert first is not None and second is not None and first.value != second.value
    laptop.get("/logout")
    assert phone.get("/api/services").status_code == 200


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "javascript:x",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\nSet-Cookie: x=1",
        "/\\evil.example",
        "/\\/evil.example",
        "/ /evil.example",
        "/\u00a0/evil.example",
        "/\u2028/evil.example",
        "/" + "a" * 5000,
    ],
)
def test_login_never_redirects_off_site(client: FlaskClient, target: str) -> None:
    response = client.post("/login", data={"token": TOKEN, "next": target})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_the_tab_trick_of_the_audit_lands_on_the_home_page(client: FlaskClient) -> None:
    # ``next=/%09/evil.com`` in the form body: browsers drop the tab and go to //evil.com.
    response = client.post(
        "/login",
        data=f"token={TOKEN}&next=/%09/evil.com",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("target", ["/queries", "/traces?trace=0123&since=1h", "/logs#top"])
def test_login_goes_back_to_a_local_page(client: FlaskClient, target: str) -> None:
    response = client.post("/login", data={"token": TOKEN, "next": target})
    assert response.headers["Location"] == target


def test_a_page_address_with_control_characters_redirects_to_the_login(
    client: FlaskClient,
) -> None:
    response = client.get("/queries%0d%0aSet-Cookie:%20x=1")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/"
    assert "x=1" not in response.headers.get("Set-Cookie", "")


@pytest.mark.parametrize("path", ["/loginx", "/login/x", "/_favicon.icox", "/assets", "/v1x"])
def test_open_paths_are_matched_whole(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")
    assert b"dash" not in response.data.lower()


def _cookie_header(response: TestResponse) -> str:
    return str(response.headers["Set-Cookie"])


def test_the_cookie_is_secure_over_https_only_by_default(tmp_path: Path) -> None:
    client = _client(tmp_path, TOKEN)
    plain = client.post("/login", data={"token": TOKEN})
    assert "Secure" not in _cookie_header(plain)
    tls = client.post("/login", data={"token": TOKEN}, base_url="https://localhost")
    assert "Secure" in _cookie_header(tls)


def test_cookie_secure_setting_marks_the_cookie_behind_a_tls_proxy(tmp_path: Path) -> None:
    settings = DashboardSettings(
        store_url=f"sqlite:///{tmp_path / 'telemetry.db'}", token=TOKEN, cookie_secure=True
    )
    client = create_app(settings).server.test_client()
    response = client.post("/login", data={"token": TOKEN})
    assert "Secure" in _cookie_header(response)
    assert "Secure" in _cookie_header(client.get("/logout"))


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/login", {}),
        ("GET", "/queries", {}),
        ("GET", "/api/services", {}),
        ("GET", "/api/services", {"Authorization": f"Bearer {TOKEN}"}),
        ("GET", "/api/nope", {"Authorization": f"Bearer {TOKEN}"}),
        ("GET", "/assets/bootstrap.min.css", {}),
        ("POST", "/v1/traces", {"Content-Type": "application/x-protobuf"}),
    ],
)
def test_every_response_forbids_framing_and_sniffing(
    client: FlaskClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = client.open(path, method=method, headers=headers, data=b"")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_signed_in_ui_forbids_framing_too(client: FlaskClient) -> None:
    client.post("/login", data={"token": TOKEN})
    for path in ("/", "/_dash-layout", "/_dash-dependencies"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


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
    # Wrong tokens from that address are refused now, on every path, without being checked.
    refused = client.post("/login", data={"token": "guess-x", "next": "/"}, **guesser)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) == attempts.WINDOW_S
    assert "Too many wrong tokens" in refused.get_data(as_text=True)
    assert COOKIE_NAME not in refused.headers.get("Set-Cookie", "")
    wrong = {"Authorization": "Bearer guess-y"}
    api = client.get("/api/services", headers=wrong, **guesser)
    assert api.status_code == 429
    assert api.get_json()["code"] == 429
    otlp = client.post(
        "/v1/traces",
        data=b"",
        headers={**wrong, "Content-Type": "application/x-protobuf"},
        **guesser,
    )
    assert otlp.status_code == 429
    assert otlp.headers["Retry-After"]
    # Another address is not affected, and requests without a token are not guesses.
    other = {"environ_base": {"REMOTE_ADDR": "203.0.113.10"}}
    assert client.get("/api/services", headers=wrong, **other).status_code == 401
    for _ in range(3 * attempts.MAX_FAILURES):
        assert client.get("/api/services").status_code == 401
    # Once the oldest failure is older than the window, the address may try again.
    clock.now += attempts.WINDOW_S + 1
    assert client.get("/api/services", headers=wrong, **guesser).status_code == 401


def test_the_right_token_passes_from_an_address_that_sent_wrong_ones(tmp_path: Path) -> None:
    # Anyone on 127.0.0.1 could otherwise stop the API's telemetry under `vrp up`.
    client = _client(tmp_path, TOKEN)
    shared = {"environ_base": {"REMOTE_ADDR": "127.0.0.1"}}
    wrong = {"Authorization": "Bearer nope", "Content-Type": "application/x-protobuf"}
    for _ in range(3 * attempts.MAX_FAILURES):
        client.post("/v1/traces", data=b"", headers=wrong, **shared)
    assert client.post("/v1/traces", data=b"", headers=wrong, **shared).status_code == 429
    right = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-protobuf"}
    assert client.post("/v1/traces", data=b"", headers=right, **shared).status_code == 200
    assert client.get("/api/services", headers=right, **shared).status_code == 200
    signed_in = client.post("/login", data={"token": TOKEN, "next": "/queries"}, **shared)
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"] == "/queries"


def test_wrong_bearer_tokens_count_on_the_api_and_the_receiver_alike(tmp_path: Path) -> None:
    client = _client(tmp_path, TOKEN)
    guesser = {"environ_base": {"REMOTE_ADDR": "198.51.100.7"}}
    wrong = {"Authorization": "Bearer nope", "Content-Type": "application/x-protobuf"}
    for index in range(attempts.MAX_FAILURES):
        path = "/api/services" if index % 2 else "/v1/traces"
        send = client.get if index % 2 else client.post
        assert send(path, headers=wrong, **guesser).status_code == 401
    assert client.get("/api/services", headers=wrong, **guesser).status_code == 429


def test_a_signed_in_browser_keeps_working_while_its_address_is_blocked(tmp_path: Path) -> None:
    client = _client(tmp_path, TOKEN)
    shared = {"environ_base": {"REMOTE_ADDR": "192.0.2.1"}}
    assert client.post("/login", data={"token": TOKEN, "next": "/"}, **shared).status_code == 302
    for _ in range(attempts.MAX_FAILURES):
        client.get("/api/services", headers={"Authorization": "Bearer nope"}, **shared)
    assert client.get("/api/services", **shared).status_code == 200


def test_the_addresses_of_one_ipv6_64_count_together(tmp_path: Path) -> None:
    client = _client(tmp_path, TOKEN)
    wrong = {"Authorization": "Bearer nope"}
    for index in range(attempts.MAX_FAILURES):
        host = {"environ_base": {"REMOTE_ADDR": f"2001:db8:1:2::{index + 1:x}"}}
        assert client.get("/api/services", headers=wrong, **host).status_code == 401
    same_64 = {"environ_base": {"REMOTE_ADDR": "2001:db8:1:2:ffff:ffff:ffff:ffff"}}
    assert client.get("/api/services", headers=wrong, **same_64).status_code == 429
    next_64 = {"environ_base": {"REMOTE_ADDR": "2001:db8:1:3::1"}}
    assert client.get("/api/services", headers=wrong, **next_64).status_code == 401


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("2001:db8::1", "2001:db8::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("in-process", "in-process"),
        (None, ""),
    ],
)
def test_failures_count_per_ipv4_address_and_per_ipv6_64(address: str | None, network: str) -> None:
    assert attempts.network_of(address) == network


def test_remembered_networks_stay_bounded_forgetting_the_oldest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(attempts, "MAX_NETWORKS", 50)
    counter = attempts.TokenAttempts(Clock())
    blocked = "192.0.2.200"
    for _ in range(attempts.MAX_FAILURES):
        counter.failed(blocked)
    # A flood of new addresses does not clear the table: the blocked one stays blocked ...
    for index in range(49):
        counter.failed(f"10.0.0.{index}")
    assert counter.remembered() == 50
    assert counter.retry_after(blocked) > 0
    counter.failed("10.0.1.1")
    assert counter.remembered() == 50
    assert counter.retry_after(blocked) > 0
    assert counter.retry_after("10.0.0.0") == 0
    # ... until it is the one heard from least recently.
    for index in range(500):
        counter.failed(f"10.1.{index // 256}.{index % 256}")
        assert counter.remembered() <= 50
    assert counter.retry_after(blocked) == 0
