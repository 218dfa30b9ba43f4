"""Prometheus: the real server scrapes ``vrp api`` and ``vrp dashboard``, and ``docker/prometheus/``
passes ``promtool``.

Debian's ``prometheus`` package brings both binaries. CI installs it (``.ci/run``) and these
tests fail there without it; elsewhere they are skipped, saying so. The server runs from a
temporary folder on a free loopback port, never as the system service.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.backup.helpers import repository_dir
from tests.e2e.test_stack import _free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "docker" / "prometheus"
TOKEN = "scrape-token-0123456789abcdef0123456789"

pytestmark = pytest.mark.slow


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_binary("promtool"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_shipped_scrape_config_and_rules_are_valid(tmp_path: Path) -> None:
    folder = tmp_path / "prometheus"
    shutil.copytree(CONFIG_DIR, folder)
    # The operator writes the dashboard's token beside the config (see the README).
    (folder / "vrp-dashboard-token").write_text(TOKEN)
    checked = _promtool("check", "config", str(folder / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_every_alert_rule_passes_its_unit_tests() -> None:
    rules = yaml.safe_load((CONFIG_DIR / "rules.yml").read_text())
    tests = yaml.safe_load((CONFIG_DIR / "rules_test.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    firing = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    quiet = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if not case["exp_alerts"]
    }
    assert alerts == firing == quiet
    result = _promtool("test", "rules", str(CONFIG_DIR / "rules_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# --- the real server scraping the real processes ---------------------------------------------


def _env(folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        VRP_LOG_FORMAT="json",
        VRP_DATABASE_URL=f"sqlite:///{folder / 'vrp.db'}",
        VRP_STORAGE_DIR=str(folder / "recordings"),
        VRP_LOG_DIR=str(folder / "log"),
        VRP_BACKUP_DIR=str(repository_dir(folder / "backups")),
        VRP_DASHBOARD_STORE_URL=f"sqlite:///{folder / 'telemetry.db'}",
        VRP_DASHBOARD_TOKEN=TOKEN,
        **extra,
    )
    return env


def _vrp(*args: str) -> list[str]:
    return [sys.executable, "-m", "recorder.cli", *args]


def _wait_for(process: subprocess.Popen[bytes], url: str, **kwargs: Any) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args} exited with {process.returncode} on start-up")
        try:
            if requests.get(url, timeout=2, **kwargs).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer within 60 s")


class _Processes:
    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(
        self, args: list[str], env: dict[str, str] | None, log: Path
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.running.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.running):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def processes() -> Iterator[_Processes]:
    started = _Processes()
    try:
        yield started
    finally:
        started.stop_all()


def _scrape_config(folder: Path, api: str, dashboard: str) -> Path:
    """The shipped prometheus.yml, pointed at this test's ports and scraping every second."""
    config = yaml.safe_load((CONFIG_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    targets = {"vrp-api": api, "vrp-dashboard": dashboard}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    shutil.copy(CONFIG_DIR / "rules.yml", folder / "rules.yml")
    (folder / "vrp-dashboard-token").write_text(TOKEN)
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _query(prometheus: str, expression: str) -> list[dict[str, Any]]:
    response = requests.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _eventually(prometheus: str, expression: str, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := _query(prometheus, expression):
            return found
        time.sleep(0.5)
    pytest.fail(f"Prometheus never had {expression!r} within {timeout:.0f} s")


def test_prometheus_scrapes_the_api_and_the_dashboard(
    tmp_path: Path, processes: _Processes
) -> None:
    prometheus_binary = _binary("prometheus")
    dashboard_port, api_port, prometheus_port = _free_port(), _free_port(), _free_port()
    dashboard = f"127.0.0.1:{dashboard_port}"
    api = f"127.0.0.1:{api_port}"
    exporting = _env(
        tmp_path,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{dashboard}",
        OTEL_EXPORTER_OTLP_HEADERS=f"Authorization=Bearer {TOKEN}",
        VRP_API_METRICS_ENABLED="true",
    )
    subprocess.run(_vrp("db", "upgrade"), env=exporting, check=True, capture_output=True)
    dashboard_process = processes.start(
        _vrp("dashboard", "--port", str(dashboard_port)),
        _env(tmp_path, VRP_DASHBOARD_METRICS_ENABLED="true"),
        tmp_path / "dashboard.out",
    )
    _wait_for(dashboard_process, f"http://{dashboard}/login")
    api_process = processes.start(
        _vrp("api", "--port", str(api_port)), exporting, tmp_path / "api.out"
    )
    _wait_for(api_process, f"http://{api}/healthz")
    for _ in range(5):
        assert requests.get(f"http://{api}/api/recordings", timeout=10).status_code == 200
    backup = subprocess.run(_vrp("backup", "run"), env=exporting, capture_output=True, text=True)
    assert backup.returncode == 0, backup.stderr[-2000:]

    # Without the token the dashboard's /metrics is refused, never redirected to the login.
    refused = requests.get(f"http://{dashboard}/metrics", allow_redirects=False, timeout=5)
    assert refused.status_code == 401

    prometheus = f"http://127.0.0.1:{prometheus_port}"
    processes.start(
        [
            prometheus_binary,
            f"--config.file={_scrape_config(tmp_path, api, dashboard)}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        None,
        tmp_path / "prometheus.out",
    )
    _wait_for(processes.running[-1], f"{prometheus}/-/ready")

    up = _eventually(prometheus, 'count(up{job=~"vrp-api|vrp-dashboard"} == 1) == 2')
    assert up[0]["value"][1] == "2"
    # The API's own metrics, from its meter provider: the five requests of the route.
    requests_seen = _eventually(
        prometheus,
        'http_server_request_duration_seconds_count{job="vrp-api",'
        'http_route="/api/recordings",service_name="vrp-api"} >= 5',
    )
    assert requests_seen[0]["metric"]["service_instance_id"]
    assert _eventually(prometheus, 'db_client_connection_max{job="vrp-api"}')
    # The dashboard's numbers, from its store: the backup run and the API's requests.
    backup_ok = _eventually(prometheus, 'vrp_backup_last_run_success{service="vrp-cli"}')
    assert backup_ok[0]["value"][1] == "1"
    age = _eventually(prometheus, "time() - vrp_backup_last_success_timestamp_seconds")
    assert 0 <= float(age[0]["value"][1]) < 600
    served = _eventually(prometheus, 'vrp_http_server_requests_5m{service="vrp-api"} >= 5')
    assert served[0]["metric"]["job"] == "vrp-dashboard"
    accepted = _eventually(
        prometheus, 'vrp_dashboard_receiver_requests_total{signal="traces",code="200"}'
    )
    assert float(accepted[0]["value"][1]) >= 1
    # The shipped rules loaded, and none fires on a healthy stack.
    rules = requests.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert {group["name"] for group in rules} == {"vrp-backups", "vrp-api", "vrp-telemetry"}
    assert not _query(prometheus, 'ALERTS{alertstate="firing"}')
