"""``vrp up --demo`` fills a newcomer's dashboard within a minute and stops with the stack.

A real ``vrp up --demo`` in an empty folder on free ports: what the test reads is the
dashboard's JSON API, i.e. the API's and the backup run's own telemetry of the demo's traffic.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.e2e.test_up import STOP_SECONDS, _free_port

VRP = Path(sys.executable).with_name("vrp")
DASHBOARD_SECONDS = 90
TOKEN = "demo-" + "t" * 35


def _dashboard(base: str, path: str) -> Any:
    response = requests.get(
        f"{base}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    response.raise_for_status()
    return response.json()


def _eventually(check: Callable[[], Any], deadline: float, what: str, output: Path) -> Any:
    """``check()`` once it returns something true, polling until ``deadline``."""
    while True:
        try:
            found = check()
        except requests.RequestException:
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: {output.read_text()[-3000:]}"
        time.sleep(1)


def _api_operations(base: str) -> set[str]:
    operations = _dashboard(base, "/api/operations")["operations"]
    return {o["operation"] for o in operations if o["service"] == "vrp-api"}


def _client_error_statuses(base: str) -> set[int]:
    """The statuses of the 4xx access records the dashboard received from the API."""
    found = _dashboard(base, "/api/logs?service=vrp-api&limit=1000")["logs"]
    statuses = {r["attributes"].get("http.response.status_code") for r in found}
    return {s for s in statuses if isinstance(s, int) and 400 <= s < 500}


def test_demo_fills_the_dashboard_and_stops_with_the_stack(tmp_path: Path) -> None:
    workdir = tmp_path / "fresh"
    workdir.mkdir()
    api_port, dashboard_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    env["VRP_DASHBOARD_TOKEN"] = TOKEN
    output = tmp_path / "vrp-up.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [
                str(VRP),
                "up",
                "--demo",
                "--port",
                f"{api_port}",
                "--dashboard-port",
                f"{dashboard_port}",
            ],
            cwd=workdir,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    deadline = time.monotonic() + DASHBOARD_SECONDS
    try:
        wanted = {
            "GET /api/recordings",
            "POST /api/recordings",
            "GET /api/recordings/<uuid:recording_id>",
            "GET /api/recordings/<uuid:recording_id>/audio",
            "PATCH /api/recordings/<uuid:recording_id>",
        }
        seen = _eventually(
            lambda: wanted <= (ops := _api_operations(dashboard)) and ops,
            deadline,
            "the demo's requests never reached /api/operations",
            output,
        )
        statuses = _eventually(
            lambda: {404, 422} <= (found := _client_error_statuses(dashboard)) and found,
            deadline,
            "no 404 and 422 among the access records",
            output,
        )
        queries = _eventually(
            lambda: _dashboard(dashboard, "/api/queries")["queries"],
            deadline,
            "no queries on /api/queries",
            output,
        )
        runs = _eventually(
            lambda: [
                r for r in _dashboard(dashboard, "/api/backups")["runs"] if r["trigger"] == "manual"
            ],
            deadline,
            "the demo's backup run never reached /api/backups",
            output,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=STOP_SECONDS + 15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise

    assert status == 0, output.read_text()[-3000:]
    assert "DELETE /api/recordings/<uuid:recording_id>" in seen or len(seen) >= 5
    assert {404, 422} <= statuses
    assert {q["summary"] for q in queries} >= {"SELECT recordings", "INSERT recordings"}
    assert runs[0]["status"] == "success"
    log = output.read_text()
    assert "demo stopped (status 0)" in log
    assert "Traceback" not in log
