"""``vrp dashboard``: refusals with one line and the right exit status, and no telemetry loop.

Each test runs the real command in a subprocess, from a temporary folder, with a clean
``VRP_*`` / ``OTEL_*`` environment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from dashboard.cli import is_loopback, points_at_itself
from dashboard.settings import load_dashboard_settings

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token-for-tests-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    env.update(PYTHONPATH=str(ROOT), VRP_LOG_FORMAT="json", **extra)
    return env


def run_vrp(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recorder.cli", "dashboard", *args],
        cwd=tmp_path,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_until_up(process: subprocess.Popen[str], base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vrp dashboard exited with {process.returncode}: {process.stderr.read()}")
        try:
            requests.get(f"{base}/api/services", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    pytest.fail("vrp dashboard did not come up within 30 s")


Start = Callable[..., str]


@pytest.fixture
def started() -> Iterator[Start]:
    """Starts ``vrp dashboard`` processes; at the end each must stop cleanly on SIGTERM."""
    processes: list[subprocess.Popen[str]] = []

    def start(folder: Path, port: int, **env: str) -> str:
        folder.mkdir(exist_ok=True)
        process = subprocess.Popen(
            [sys.executable, "-m", "recorder.cli", "dashboard", "--port", str(port)],
            cwd=folder,
            env=clean_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_until_up(process, base)
        return base

    yield start
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            assert process.wait(timeout=20) == 0, process.stderr.read()
        finally:
            process.kill()


def test_bad_setting_exits_2_with_one_line_naming_it(tmp_path: Path) -> None:
    result = run_vrp(tmp_path, VRP_DASHBOARD_PORT="eighty")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "VRP_DASHBOARD_PORT" in lines[0] and "eighty" in lines[0]


def test_unknown_setting_exits_2(tmp_path: Path) -> None:
    result = run_vrp(tmp_path, VRP_DASHBOARD_PROT="8050")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "VRP_DASHBOARD_PROT" in lines[0], result.stderr


def test_bad_token_value_is_never_echoed(tmp_path: Path) -> None:
    result = run_vrp(tmp_path, VRP_DASHBOARD_TOKEN="short")
    assert result.returncode == 2
    assert "VRP_DASHBOARD_TOKEN" in result.stderr
    assert "short" not in result.stderr.replace("VRP_DASHBOARD_TOKEN", "")


def test_a_mistyped_secret_is_never_echoed(tmp_path: Path) -> None:
    result = run_vrp(tmp_path, VRP_DASHBOARD_TOKN="supersecret")
    assert result.returncode == 2
    assert result.stderr == (
        "vrp: invalid configuration: VRP_DASHBOARD_TOKN: unknown setting; "
        "see the Configuration section of the README\n"
    )


def test_token_prints_a_new_token_of_256_bits(tmp_path: Path) -> None:
    # Even with a token that is now too short: the command is how to replace it.
    first = run_vrp(tmp_path, "token", VRP_DASHBOARD_TOKEN="short")
    second = run_vrp(tmp_path, "token")
    assert (first.returncode, first.stderr, second.returncode) == (0, "", 0), first.stderr
    tokens = [first.stdout.strip(), second.stdout.strip()]
    assert [len(token) for token in tokens] == [43, 43]
    assert tokens[0] != tokens[1]
    assert load_dashboard_settings({"VRP_DASHBOARD_TOKEN": tokens[0]}).token == tokens[0]
    assert not (tmp_path / "var").exists(), "printing a token creates nothing"


@pytest.mark.parametrize("how", ["option", "variable"])
def test_non_loopback_bind_without_token_is_refused(tmp_path: Path, how: str) -> None:
    if how == "option":
        result = run_vrp(tmp_path, "--host", "0.0.0.0")
    else:
        result = run_vrp(tmp_path, VRP_DASHBOARD_HOST="0.0.0.0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "0.0.0.0" in lines[0] and "VRP_DASHBOARD_TOKEN" in lines[0]
    assert not (tmp_path / "var").exists(), "nothing is created before the refusal"


def test_port_in_use_exits_1_with_one_line_before_creating_the_store(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_vrp(tmp_path, "--port", str(port))
    assert result.returncode == 1
    refusal = [line for line in result.stderr.splitlines() if line.startswith("vrp dashboard:")]
    assert len(refusal) == 1, result.stderr
    assert f"127.0.0.1:{port}" in refusal[0] and "--port" in refusal[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "var" / "telemetry.db").exists(), "the store was created first"


def test_unreachable_store_exits_1_with_one_line_and_no_password(tmp_path: Path) -> None:
    url = f"postgresql://vrp:hunter2secret@127.0.0.1:{free_port()}/telemetry"
    result = run_vrp(tmp_path, "--port", str(free_port()), VRP_DASHBOARD_STORE_URL=url)
    assert result.returncode == 1
    refusal = [line for line in result.stderr.splitlines() if line.startswith("vrp dashboard:")]
    assert len(refusal) == 1, result.stderr
    assert "cannot open the telemetry store postgresql://vrp:***@127.0.0.1" in refusal[0]
    assert "hunter2secret" not in result.stderr and "Traceback" not in result.stderr


def test_non_loopback_bind_with_token_serves_and_requires_it(
    tmp_path: Path, started: Start
) -> None:
    port = free_port()
    started(tmp_path, port, VRP_DASHBOARD_HOST="0.0.0.0", VRP_DASHBOARD_TOKEN=TOKEN)
    base = f"http://127.0.0.1:{port}"
    assert requests.get(f"{base}/api/services", timeout=5).status_code == 401
    authorized = requests.get(
        f"{base}/api/services", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    assert authorized.status_code == 200


def _services_seen(base: str) -> set[str]:
    body = requests.get(f"{base}/api/services", timeout=5).json()
    return {service["name"] for service in body["services"]}


def test_own_telemetry_never_loops_back_but_reaches_another_dashboard(
    tmp_path: Path, started: Start
) -> None:
    """A dashboard pointed at itself exports nothing; pointed at another one, it does export.

    The second half shows the first is not vacuous: the dashboard does emit telemetry.
    """
    collector_port, looping_port, exporting_port = free_port(), free_port(), free_port()
    collector = started(tmp_path / "collector", collector_port)
    looping = started(
        tmp_path / "looping",
        looping_port,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://localhost:{looping_port}",
        OTEL_BLRP_SCHEDULE_DELAY="100",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    started(
        tmp_path / "exporting",
        exporting_port,
        OTEL_EXPORTER_OTLP_ENDPOINT=collector,
        OTEL_BLRP_SCHEDULE_DELAY="100",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    deadline = time.monotonic() + 20
    while "vrp-dashboard" not in _services_seen(collector) and time.monotonic() < deadline:
        requests.get(f"{looping}/api/services", timeout=5)
        time.sleep(0.3)
    assert "vrp-dashboard" in _services_seen(collector), "the exporting dashboard sent nothing"
    assert _services_seen(looping) == set()


@pytest.mark.parametrize(
    ("endpoint", "host", "port", "expected"),
    [
        ("http://127.0.0.1:8050", "127.0.0.1", 8050, True),
        ("http://localhost:8050/", "127.0.0.1", 8050, True),
        ("http://127.0.0.1:8050/v1/traces", "127.0.0.1", 8050, True),
        ("http://127.0.0.1:8050", "0.0.0.0", 8050, True),
        ("http://127.0.0.1:4318", "127.0.0.1", 8050, False),
        ("http://127.0.0.1", "127.0.0.1", 80, True),
        ("https://collector.invalid:8050", "127.0.0.1", 8050, False),
        ("not a url", "127.0.0.1", 8050, False),
    ],
)
def test_points_at_itself(endpoint: str, host: str, port: int, expected: bool) -> None:
    assert points_at_itself(endpoint, host, port) is expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False), ("::", False)],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected
