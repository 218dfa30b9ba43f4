"""``vrp up`` runs the API and the dashboard together, the API's telemetry flowing to the dashboard.

Real processes from an empty folder with the default settings (only the ports are chosen free):
the supervisor, ``vrp api`` and ``vrp dashboard`` as its children, the SDK's OTLP exporters
between them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.recorder.fixtures import make_wav

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    env.update(PYTHONPATH=str(ROOT), VRP_LOG_FORMAT="json", **extra)
    return env


def _up(folder: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "recorder.cli", "up", *args],
        cwd=folder,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(process: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vrp up exited with {process.returncode}: {process.stderr.read()[-3000:]}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"{url} did not answer within 45 s: {process.communicate()[1][-3000:]}")


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[1]) == pid:  # the field after the state is the parent's pid
            children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent may not have reaped it yet).
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" not in status.read_text()


@dataclass
class Stack:
    process: subprocess.Popen[str]
    api: str
    dashboard: str
    token: str


TOKEN_LINE = "vrp up: the dashboard's token for this run is "


def _printed_token(process: subprocess.Popen[str]) -> str:
    """The token ``vrp up`` made for its dashboard, from the line it prints on stderr."""
    for line in process.stderr:
        if line.startswith(TOKEN_LINE):
            return line.removeprefix(TOKEN_LINE).split()[0]
    pytest.fail(f"vrp up printed no token and exited with {process.wait()}")


@contextmanager
def _running_stack(folder: Path, **env: str) -> Iterator[Stack]:
    api_port, dashboard_port = _free_port(), _free_port()
    process = _up(folder, "--port", str(api_port), "--dashboard-port", str(dashboard_port), **env)
    try:
        token = env.get("VRP_DASHBOARD_TOKEN") or _printed_token(process)
        running = Stack(
            process, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{dashboard_port}", token
        )
        _wait_for(process, f"{running.api}/healthz")
        _wait_for(process, f"{running.dashboard}/login")
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with _running_stack(tmp_path) as running:
        yield running


def _upload(stack: Stack) -> None:
    response = requests.post(
        f"{stack.api}/api/recordings",
        files={"file": ("some.wav", make_wav(seconds=1.0), "application/octet-stream")},
        data={"title": "through the stack"},
        timeout=10,
    )
    assert response.status_code == 201, response.text


def _uploads_seen(stack: Stack) -> list[dict[str, Any]]:
    """The dashboard's row for the uploads, once the API's telemetry has arrived (30 s)."""
    deadline = time.monotonic() + 30
    headers = {"Authorization": f"Bearer {stack.token}"}
    while time.monotonic() < deadline:
        response = requests.get(f"{stack.dashboard}/api/operations", headers=headers, timeout=5)
        assert response.status_code == 200, response.text
        operations = [
            o
            for o in response.json()["operations"]
            if o["service"] == "vrp-api" and o["operation"] == "POST /api/recordings"
        ]
        if operations:
            return operations
        time.sleep(0.5)
    return []


def test_upload_through_the_api_shows_up_in_the_dashboard(stack: Stack, tmp_path: Path) -> None:
    _upload(stack)
    operations = _uploads_seen(stack)
    assert operations, "the upload never reached the dashboard's /api/operations"
    assert operations[0]["count"] >= 1
    assert (tmp_path / "var" / "vrp.db").exists()
    assert (tmp_path / "var" / "telemetry.db").exists()


def test_with_a_token_the_api_exports_with_it_and_readers_need_it(tmp_path: Path) -> None:
    token = "stack-token-0123456789abcdef0123456789"
    with _running_stack(tmp_path, VRP_DASHBOARD_TOKEN=token) as stack:
        assert stack.token == token
        _upload(stack)
        assert requests.get(f"{stack.dashboard}/api/operations", timeout=5).status_code == 401
        operations = _uploads_seen(stack)
        assert operations, "the API's telemetry did not get through the receiver's token check"


def test_without_a_token_the_stack_makes_one_and_a_local_guesser_cannot_stop_its_telemetry(
    stack: Stack,
) -> None:
    assert len(stack.token) == 43
    assert requests.get(f"{stack.dashboard}/api/operations", timeout=5).status_code == 401
    wrong = {"Authorization": "Bearer guess", "Content-Type": "application/x-protobuf"}
    url = f"{stack.dashboard}/v1/traces"
    answers = {
        requests.post(url, data=b"", headers=wrong, timeout=5).status_code for _ in range(30)
    }
    assert answers == {401, 429}, "the guesser from 127.0.0.1 is refused"
    _upload(stack)
    operations = _uploads_seen(stack)
    assert operations, "the API's telemetry, from the same address, was locked out"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_stops_every_process_cleanly(stack: Stack, signum: int) -> None:
    children = _children(stack.process.pid)
    assert len(children) == 3, "vrp up runs the API, the dashboard and the scheduler as children"
    stack.process.send_signal(signum)
    assert stack.process.wait(timeout=30) == 0, stack.process.stderr.read()[-3000:]
    assert not [pid for pid in children if _alive(pid)]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{stack.api}/healthz", timeout=1)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{stack.dashboard}/api/services", timeout=1)


def _records(stderr: str) -> list[dict[str, Any]]:
    """The JSON log records among the stack's stderr lines (vrp up's own and its children's)."""
    records = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def test_the_dashboard_listens_before_the_others_start_and_stops_after_them(
    stack: Stack, tmp_path: Path
) -> None:
    _upload(stack)
    # Stopped at once: the upload's spans reach the dashboard only by the API's final flush.
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=45) == 0
    records = _records(stack.process.stderr.read())
    messages = [r["message"] for r in records]
    listening = next(i for i, m in enumerate(messages) if m.startswith("dashboard listening"))
    started_api = messages.index(next(m for m in messages if m.startswith("started api")))
    assert listening < started_api, messages[: started_api + 1]
    assert [r["logger"] for r in records if r["message"].startswith("API listening")] == [
        "recorder.cli"
    ]
    noisy = [r for r in records if r["level"] in ("WARNING", "ERROR", "CRITICAL")]
    assert not noisy, "a clean start and stop logs no warning or error"
    with sqlite3.connect(tmp_path / "var" / "telemetry.db") as telemetry:
        uploads = telemetry.execute(
            "SELECT count(*) FROM telemetry_spans WHERE service = 'vrp-api' AND name = ?",
            ("POST /api/recordings",),
        ).fetchone()[0]
    assert uploads == 1, "the API's last spans did not reach the dashboard before it stopped"


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        dashboard_port = taken.getsockname()[1]
        process = _up(
            tmp_path, "--port", str(_free_port()), "--dashboard-port", str(dashboard_port)
        )
        status = process.wait(timeout=60)
    stderr = process.stderr.read()
    assert status == 1, stderr[-3000:]
    assert stderr.strip().splitlines() == [
        f"vrp: cannot listen on 127.0.0.1:{dashboard_port}: address already in use "
        "(pick another with --dashboard-port)"
    ]
    assert not (tmp_path / "var" / "vrp.db").exists()


def test_a_child_that_fails_stops_the_stack_with_its_status(tmp_path: Path) -> None:
    """The dashboard refuses a public address without a token (exit 2) after the API started."""
    api_port = _free_port()
    process = _up(
        tmp_path,
        "--port",
        str(api_port),
        "--dashboard-port",
        str(_free_port()),
        VRP_DASHBOARD_HOST="0.0.0.0",
    )
    try:
        status = process.wait(timeout=60)
    finally:
        process.kill()
    stderr = process.stderr.read()
    assert status == 2, stderr[-3000:]
    assert "refusing to listen on 0.0.0.0 without VRP_DASHBOARD_TOKEN" in stderr
    assert "dashboard exited with status 2" in stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{api_port}/healthz", timeout=1)
