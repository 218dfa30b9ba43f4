"""A command run by hand exports to the local dashboard only when it may: a real dashboard
(receiver, store in a SQLite file) served over HTTP in a thread, with or without a token."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from dashboard.app import create_app
from dashboard.settings import DashboardSettings
from recorder.config import load_settings
from recorder.local_dashboard import with_local_dashboard

TOKEN = "local-dashboard-token-0123456789abcdef"


def _serve(tmp_path: Path, token: str | None) -> Iterator[int]:
    settings = DashboardSettings(store_url=f"sqlite:///{tmp_path / 'telemetry.db'}", token=token)
    server = make_server("127.0.0.1", 0, create_app(settings).server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.port
    finally:
        server.shutdown()
        thread.join()


@pytest.fixture
def protected_port(tmp_path: Path) -> Iterator[int]:
    yield from _serve(tmp_path, TOKEN)


@pytest.fixture
def open_port(tmp_path: Path) -> Iterator[int]:
    yield from _serve(tmp_path, None)


def test_a_dashboard_that_wants_an_unknown_token_gets_no_export(protected_port: int) -> None:
    settings = load_settings({}, service_name="vrp-cli")
    env = {"VRP_DASHBOARD_PORT": str(protected_port)}
    assert with_local_dashboard(settings, env) == settings


def test_with_the_token_the_command_exports_with_it(protected_port: int) -> None:
    settings = load_settings({}, service_name="vrp-cli")
    env = {"VRP_DASHBOARD_PORT": str(protected_port), "VRP_DASHBOARD_TOKEN": TOKEN}
    telemetry = with_local_dashboard(settings, env).telemetry
    assert telemetry.otlp_endpoint == f"http://127.0.0.1:{protected_port}"
    assert telemetry.otlp_headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_dashboard_without_a_token_gets_the_export(open_port: int) -> None:
    settings = load_settings({}, service_name="vrp-cli")
    env = {"VRP_DASHBOARD_PORT": str(open_port)}
    telemetry = with_local_dashboard(settings, env).telemetry
    assert telemetry.otlp_endpoint == f"http://127.0.0.1:{open_port}"
    assert "Authorization" not in telemetry.otlp_headers
