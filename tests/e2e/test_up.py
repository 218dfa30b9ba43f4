"""``vrp up`` on a fresh folder serves the API over real HTTP, as the README promises."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.recorder.fixtures import make_wav

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def running_stack(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    env.update(PYTHONPATH=str(ROOT), VRP_API_PORT=str(port), VRP_LOG_FORMAT="json")
    process = subprocess.Popen(
        [sys.executable, "-m", "recorder.cli", "up"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"vrp up did not come up: {err[-2000:]}")
        time.sleep(0.1)
    yield base
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    finally:
        process.kill()


def test_vrp_up_serves_uploads_with_duration(running_stack: str, tmp_path: Path) -> None:
    response = requests.post(
        f"{running_stack}/api/recordings",
        files={"file": ("some.wav", make_wav(seconds=1.5), "application/octet-stream")},
        data={"title": "hello"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    assert response.json()["duration_seconds"] == 1.5
    assert response.headers["X-Request-ID"]
    assert requests.get(f"{running_stack}/readyz", timeout=5).status_code == 200
    assert (tmp_path / "var" / "vrp.db").exists()
    log_files = list((tmp_path / "var" / "log").glob("*.log"))
    assert log_files, "the API writes JSON logs under var/log"
