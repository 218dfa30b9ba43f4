"""``vrp api --workers 2``: real gunicorn workers, each with its own telemetry, all of it reaching
the real dashboard, and a master that stops them cleanly and replaces the ones that die.

Real processes only: ``vrp dashboard`` (the OTLP receiver and its store), ``vrp db upgrade``,
and ``vrp api --workers 2`` exporting to it with the SDK's OTLP exporters and serving
``/metrics``.
"""

from __future__ import annotations

import os
import re
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

from tests.e2e.test_stack import Stack as UpStack
from tests.e2e.test_stack import (
    _alive,
    _children,
    _free_port,
    _printed_token,
    _up,
    _upload,
    _uploads_seen,
)

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2
REQUESTS = 60

pytestmark = pytest.mark.slow


def _env(folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        VRP_LOG_FORMAT="json",
        VRP_DATABASE_URL=f"sqlite:///{folder / 'vrp.db'}",
        VRP_STORAGE_DIR=str(folder / "recordings"),
        VRP_LOG_DIR=str(folder / "log"),
        VRP_DASHBOARD_STORE_URL=f"sqlite:///{folder / 'telemetry.db'}",
        **extra,
    )
    return env


def _vrp(*args: str) -> list[str]:
    return [sys.executable, "-m", "recorder.cli", *args]


def _wait_for(process: subprocess.Popen[Any], url: str, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args} exited with {process.returncode} on start-up")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"{process.args} did not stop within 40 s of SIGTERM")
    return process.returncode


@dataclass
class Running:
    folder: Path
    api: str
    dashboard: str
    master: subprocess.Popen[bytes]


@contextmanager
def _running(folder: Path) -> Iterator[Running]:
    dashboard_port, api_port = _free_port(), _free_port()
    dashboard_url = f"http://127.0.0.1:{dashboard_port}"
    env = _env(
        folder,
        OTEL_EXPORTER_OTLP_ENDPOINT=dashboard_url,
        VRP_API_METRICS_ENABLED="true",
    )
    subprocess.run(_vrp("db", "upgrade"), env=env, check=True, capture_output=True)
    dashboard = subprocess.Popen(
        _vrp("dashboard", "--port", str(dashboard_port)),
        env=_env(folder),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    master = None
    try:
        _wait_for(dashboard, f"{dashboard_url}/api/services")
        master = subprocess.Popen(
            _vrp("api", "--workers", str(WORKERS), "--port", str(api_port)),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(master, f"http://127.0.0.1:{api_port}/healthz")
        yield Running(folder, f"http://127.0.0.1:{api_port}", dashboard_url, master)
    finally:
        if master is not None:
            _stop(master)
        _stop(dashboard)


def _workers(master: subprocess.Popen[bytes], count: int = WORKERS) -> list[int]:
    """The master's worker pids, once it has ``count`` of them."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = [pid for pid in _children(master.pid) if _alive(pid)]
        if len(workers) == count:
            return sorted(workers)
        time.sleep(0.1)
    pytest.fail(f"the master never had {count} workers")


_TARGET_INFO = re.compile(r"^target_info\{(?P<labels>[^}]*)\}", re.MULTILINE)
_LABEL = re.compile(r'(?P<name>[a-z_]+)="(?P<value>[^"]*)"')


def _scraped_instances(api: str) -> dict[str, int]:
    """``{service.instance.id: process.pid}`` of the workers seen over fresh connections."""
    seen: dict[str, int] = {}
    for _ in range(100):
        # One connection per scrape: the kernel hands each to whichever worker accepts first.
        text = requests.get(f"{api}/metrics", headers={"Connection": "close"}, timeout=5).text
        match = _TARGET_INFO.search(text)
        assert match, text[:2000]
        labels = dict(_LABEL.findall(match["labels"]))
        seen[labels["service_instance_id"]] = int(labels["process_pid"])
        if len(seen) == WORKERS:
            break
    return seen


def _store_counts(folder: Path) -> tuple[int, int]:
    """(SERVER spans, access records) of ``GET /api/recordings`` in the dashboard's store."""
    with sqlite3.connect(folder / "telemetry.db") as conn:
        spans = conn.execute(
            "SELECT count(*) FROM telemetry_spans WHERE service = 'vrp-api' "
            "AND name = 'GET /api/recordings'"
        ).fetchone()[0]
        logs = conn.execute(
            "SELECT count(*) FROM telemetry_logs WHERE service = 'vrp-api' "
            "AND body LIKE 'GET /api/recordings %'"
        ).fetchone()[0]
    return int(spans), int(logs)


def _dashboard_count(dashboard: str) -> dict[str, int]:
    """``{source: requests}`` of ``vrp-api`` as the dashboard's summary adds them up."""
    summary = requests.get(f"{dashboard}/api/summary", params={"since": "1h"}, timeout=10)
    assert summary.status_code == 200, summary.text
    return {
        row["source"]: row["count"]
        for row in summary.json()["services"]
        if row["service"] == "vrp-api"
    }


def test_two_workers_each_deliver_telemetry_that_the_dashboard_adds_up(tmp_path: Path) -> None:
    with _running(tmp_path) as running:
        pids = _workers(running.master)
        for _ in range(REQUESTS):
            response = requests.get(
                f"{running.api}/api/recordings", headers={"Connection": "close"}, timeout=10
            )
            assert response.status_code == 200, response.text
        instances = _scraped_instances(running.api)
        assert len(instances) == WORKERS, instances
        assert sorted(instances.values()) == pids
        # SIGTERM: each worker flushes its spans, metrics and logs before it exits.
        assert _stop(running.master) == 0
        assert not any(_alive(pid) for pid in pids)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            counts = _dashboard_count(running.dashboard)
            if counts.get("metrics") == REQUESTS and _store_counts(tmp_path) == (
                REQUESTS,
                REQUESTS,
            ):
                break
            time.sleep(0.5)
        assert counts.get("metrics") == REQUESTS, counts
        assert _store_counts(tmp_path) == (REQUESTS, REQUESTS)
    # Each worker served some of the requests, into its own log file.
    for slot in range(1, WORKERS + 1):
        lines = (tmp_path / "log" / f"vrp-api.{slot}.log").read_text().splitlines()
        assert any('"GET /api/recordings 200' in line for line in lines), slot


def test_a_killed_worker_is_replaced_and_the_api_keeps_answering(tmp_path: Path) -> None:
    with _running(tmp_path) as running:
        first, second = _workers(running.master)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            workers = [pid for pid in _children(running.master.pid) if _alive(pid)]
            if len(workers) == WORKERS and first not in workers:
                break
            time.sleep(0.1)
        assert second in workers and first not in workers and len(workers) == WORKERS
        for _ in range(10):
            response = requests.get(
                f"{running.api}/api/recordings", headers={"Connection": "close"}, timeout=10
            )
            assert response.status_code == 200
        assert _stop(running.master) == 0
    # The master's log says what happened, through the same JSON logging as everything else.
    log = (tmp_path / "log" / "vrp-api.log").read_text()
    assert f"Worker (pid:{first}) was sent SIGKILL" in log


def test_vrp_up_serves_the_api_with_the_workers_it_is_told(tmp_path: Path) -> None:
    api_port, dashboard_port = _free_port(), _free_port()
    process = _up(
        tmp_path,
        "--port",
        str(api_port),
        "--dashboard-port",
        str(dashboard_port),
        VRP_API_WORKERS=str(WORKERS),
    )
    stack = UpStack(
        process,
        f"http://127.0.0.1:{api_port}",
        f"http://127.0.0.1:{dashboard_port}",
        _printed_token(process),
    )
    try:
        _wait_for(process, f"{stack.api}/healthz")
        api = next(
            pid
            for pid in _children(process.pid)
            if b"api" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        )
        workers = [pid for pid in _children(api) if _alive(pid)]
        assert len(workers) == WORKERS
        _upload(stack)
        assert _uploads_seen(stack), "the workers' telemetry never reached the dashboard"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0, process.stderr.read()[-3000:]
        assert not [pid for pid in [api, *workers] if _alive(pid)]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_bad_worker_count_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        _vrp("api"), env=_env(tmp_path, VRP_API_WORKERS="0"), capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "VRP_API_WORKERS" in result.stderr


def test_a_port_in_use_is_one_line_and_exit_1_before_any_worker(tmp_path: Path) -> None:
    subprocess.run(_vrp("db", "upgrade"), env=_env(tmp_path), check=True, capture_output=True)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            _vrp("api", "--workers", "2", "--port", str(port)),
            env=_env(tmp_path, VRP_LOG_LEVEL="WARNING"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"vrp: cannot listen on 127.0.0.1:{port}: address already in use (pick another with --port)"
    )
