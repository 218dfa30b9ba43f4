"""Fixtures of the dashboard backend tests: a store on a real SQLite file, and a dashboard
server listening on a real socket (Werkzeug in a thread) for the SDK's OTLP exporters."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from dashboard.alert_events import AlertNotifier
from dashboard.server import DashboardServer, create_server
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore


@dataclass
class Live:
    url: str
    app: DashboardServer
    store: TelemetryStore
    settings: DashboardSettings

    def get(self, path: str, **params: object) -> dict:
        with self.app.test_client() as client:
            response = client.get(path, query_string={k: str(v) for k, v in params.items()})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TelemetryStore]:
    store = TelemetryStore(f"sqlite:///{tmp_path / 'telemetry.db'}")
    store.upgrade()
    yield store
    store.dispose()


def serve(
    settings: DashboardSettings, store: TelemetryStore, notifier: AlertNotifier | None = None
) -> Iterator[Live]:
    app = create_server(settings, store=store, notifier=notifier)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Live(f"http://127.0.0.1:{server.server_port}", app, store, settings)
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def live(store: TelemetryStore) -> Iterator[Live]:
    yield from serve(DashboardSettings(store_url=store.url, max_body_bytes=4 * 1024 * 1024), store)
