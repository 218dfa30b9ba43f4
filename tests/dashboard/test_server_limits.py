"""``vrp dashboard`` bounds what a client can make it read and hold, measured on real sockets.

The receiver refuses a request without the right token (401) or with a declared body over
``VRP_DASHBOARD_MAX_BODY_BYTES`` (413) as soon as its headers are in, answering with a
``google.rpc.Status`` as it answers everything; a chunked body is cut off past the server's
limit; wrong tokens sent this way still count towards the guessing limit; a flood of idle
half-requests above ``VRP_DASHBOARD_CONNECTION_LIMIT`` does not keep ``/healthz`` waiting.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.rpc import status_pb2
from werkzeug.serving import make_server

from dashboard.app import create_app
from dashboard.limits import UI_MAX_BODY_BYTES, DashboardGate
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from instrumentation.serving import GateMiddleware
from tests.serving_probes import (
    clean_env,
    closed_by_server,
    free_port,
    idle_flood,
    request_head,
    send_slowly,
    timed_get,
    vrp_server,
)

TOKEN = "s3cret-token-for-the-server-limit-tests"
BODY_LIMIT = 1024 * 1024
GIVE_UP = 8 * 1024 * 1024
PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[int]:
    with vrp_server(
        ["dashboard"],
        tmp_path,
        free_port(),
        VRP_DASHBOARD_TOKEN=TOKEN,
        VRP_DASHBOARD_MAX_BODY_BYTES=str(BODY_LIMIT),
    ) as port:
        yield port


def _status(body: bytes) -> status_pb2.Status:
    status = status_pb2.Status()
    status.ParseFromString(body)
    return status


def test_request_without_token_gets_401_before_its_body(dashboard: int) -> None:
    # Within the body limit: only the missing token can refuse it.
    head = request_head("POST", "/v1/traces", Content_Length=BODY_LIMIT, **PROTOBUF)

    answer = send_slowly(dashboard, head, give_up_after=GIVE_UP)

    assert answer.status == 401, answer
    assert answer.sent < 256 * 1024, f"sent {answer.sent} bytes before the answer"
    assert answer.headers["content-type"] == "application/x-protobuf"
    assert "bearer token" in _status(answer.body).message


def test_wrong_tokens_refused_early_still_count_towards_the_guessing_limit(
    dashboard: int,
) -> None:
    head = request_head(
        "POST",
        "/v1/logs",
        Content_Length=BODY_LIMIT,
        Authorization="Bearer wrong-guess",
        **PROTOBUF,
    )

    answers = [send_slowly(dashboard, head, give_up_after=GIVE_UP) for _ in range(11)]

    assert [a.status for a in answers] == [401] * 10 + [429]
    assert int(answers[-1].headers["retry-after"]) > 0
    assert max(a.sent for a in answers) < 256 * 1024


def test_declared_oversized_body_gets_413_status_before_its_body(dashboard: int) -> None:
    head = request_head(
        "POST",
        "/v1/traces",
        Content_Length=BODY_LIMIT + 1,
        Authorization=f"Bearer {TOKEN}",
        Content_Type="application/json",
    )

    answer = send_slowly(dashboard, head, give_up_after=GIVE_UP)

    assert answer.status == 413, answer
    assert answer.sent < 256 * 1024
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["code"] == 8
    assert "VRP_DASHBOARD_MAX_BODY_BYTES" in answer.json()["message"]


def test_chunked_body_is_cut_off_past_the_server_limit(dashboard: int) -> None:
    head = request_head(
        "POST",
        "/v1/metrics",
        Transfer_Encoding="chunked",
        Authorization=f"Bearer {TOKEN}",
        **PROTOBUF,
    )

    answer = send_slowly(dashboard, head, chunked=True, give_up_after=4 * UI_MAX_BODY_BYTES)

    assert answer.status == 413, answer
    assert answer.sent < UI_MAX_BODY_BYTES + 1024 * 1024
    assert _status(answer.body).code == 8


def test_the_gate_refuses_before_the_body_under_another_wsgi_server(store: TelemetryStore) -> None:
    # Werkzeug's server, like gunicorn's workers, calls the app once the headers are in.
    settings = DashboardSettings(store_url=store.url, token=TOKEN, max_body_bytes=BODY_LIMIT)
    app = create_app(settings, store=store).server
    server = make_server(
        "127.0.0.1", 0, GateMiddleware(app, DashboardGate(settings, app.token_attempts))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # The UI's callback endpoint: Flask alone would read the whole body before judging it.
        head = request_head(
            "POST",
            "/_dash-update-component",
            Content_Length=2 * UI_MAX_BODY_BYTES,
            Content_Type="application/json",
            Authorization=f"Bearer {TOKEN}",
        )
        answer = send_slowly(server.server_port, head, give_up_after=2 * UI_MAX_BODY_BYTES)
    finally:
        server.shutdown()
        thread.join(10)
        app.stop_background()

    assert answer.status == 413, answer
    assert answer.sent < 256 * 1024, f"sent {answer.sent} bytes before the answer"
    assert answer.json()["code"] == 413


def test_healthz_answers_without_a_token(dashboard: int) -> None:
    assert timed_get(dashboard, "/healthz")[0] == 200
    assert timed_get(dashboard, "/api/services")[0] == 401


def test_idle_connections_above_the_limit_do_not_starve_healthz(tmp_path: Path) -> None:
    # 30 against a limit of 20: each round of closing makes room for a limit's worth, and the
    # health check waits behind the flood in the listen backlog, so it gets in on the first.
    with (
        vrp_server(
            ["dashboard"], tmp_path, free_port(), VRP_DASHBOARD_CONNECTION_LIMIT="20"
        ) as port,
        idle_flood(port, 30) as flood,
    ):
        status, seconds = timed_get(port, "/healthz")
        shed = closed_by_server(flood)

    assert status == 200
    assert seconds < 3.0
    # The server made room by closing the quiet ones (so the limit is the one configured).
    assert shed >= 10, shed


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VRP_DASHBOARD_CONNECTION_LIMIT", "9"),
        ("VRP_DASHBOARD_CHANNEL_TIMEOUT", "0"),
        ("VRP_DASHBOARD_CHANNEL_TIMEOUT", "3601"),
    ],
)
def test_bad_server_limit_setting_exits_2_naming_it(tmp_path: Path, name: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "recorder.cli", "dashboard", "--port", str(free_port())],
        cwd=tmp_path,
        env=clean_env(**{name: value}),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert name in result.stderr
