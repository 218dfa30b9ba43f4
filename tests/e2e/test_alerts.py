"""A scheduler that stops sending backup runs: ``BackupOverdue`` fires within the configured
window, and the scheduler started again resolves it; both reach a webhook receiver and an SMTP
server.

Real processes: ``vrp dashboard`` evaluating its rules every second, ``vrp scheduler`` exporting
its runs over OTLP/HTTP, stopped, then started again. The scheduler backs up every minute, as the
dashboard expects, with a grace of 10 s: the alert is due 70 s after the last good backup, and the
scheduler started again catches up at once, its newest backup being older than its schedule.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.backup.helpers import repository_dir
from tests.dashboard.notify_receivers import HttpReceiver, Mailbox, smtp_server
from tests.e2e.test_stack import _free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "alerts-e2e-token-0123456789abcdef0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
EXPECTED_S, GRACE_S, EVALUATE_EVERY_S = 60.0, 10.0, 1.0

pytestmark = pytest.mark.slow


def _env(folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        VRP_LOG_FORMAT="json",
        VRP_DATABASE_URL=f"sqlite:///{folder / 'vrp.db'}",
        VRP_STORAGE_DIR=str(folder / "recordings"),
        VRP_LOG_DIR=str(folder / "log"),
        VRP_BACKUP_DIR=str(folder / "backups"),
        **extra,
    )
    return env


def _vrp(*args: str) -> list[str]:
    return [sys.executable, "-m", "recorder.cli", *args]


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    try:
        yield processes
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _get(base: str, path: str, **params: str) -> dict[str, Any]:
    response = requests.get(f"{base}{path}", params=params, headers=HEADERS, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def _until(what: str, timeout: float, check: Any) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except requests.ConnectionError:
            found = None
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"{what} did not happen within {timeout:.0f} s")


def _overdue(base: str) -> dict[str, Any] | None:
    alerts = _get(base, "/api/alerts")["alerts"]
    return next((a for a in alerts if a["rule"] == "BackupOverdue"), None)


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _notified(receiver: HttpReceiver, status: str) -> dict[str, Any] | None:
    for received in receiver.received:
        if received.body["status"] == status and any(
            a["labels"].get("alertname") == "BackupOverdue" for a in received.body["alerts"]
        ):
            return received.body
    return None


def _mailed(mailbox: Mailbox, word: str) -> str | None:
    for _, _, message in mailbox.messages:
        if word in str(message["Subject"]) and "BackupOverdue" in str(message["Subject"]):
            return str(message.get_payload())
    return None


def test_backup_overdue_reaches_webhook_and_mail_when_the_scheduler_stops_and_resolves_on_restart(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    with HttpReceiver() as webhook:
        mailbox = Mailbox()
        with smtp_server(mailbox) as smtp_port:
            _overdue_then_resolved(tmp_path, started, webhook, mailbox, smtp_port)


def _overdue_then_resolved(
    tmp_path: Path,
    started: list[subprocess.Popen[bytes]],
    webhook: HttpReceiver,
    mailbox: Mailbox,
    smtp_port: int,
) -> None:
    port = _free_port()
    hook_url = webhook.url("/hooks/T0A1B2C3D4-secret-path-0123456789abcdef")
    base = f"http://127.0.0.1:{port}"
    repository_dir(tmp_path / "backups")
    dashboard = _env(
        tmp_path,
        VRP_DASHBOARD_STORE_URL=f"sqlite:///{tmp_path / 'telemetry.db'}",
        VRP_DASHBOARD_TOKEN=TOKEN,
        VRP_DASHBOARD_BACKUP_INTERVAL=f"{EXPECTED_S:.0f}s",
        VRP_DASHBOARD_ALERT_BACKUP_GRACE=f"{GRACE_S:.0f}s",
        VRP_DASHBOARD_ALERT_INTERVAL=f"{EVALUATE_EVERY_S:.0f}s",
        VRP_DASHBOARD_ALERT_WEBHOOK_URL=hook_url,
        VRP_DASHBOARD_ALERT_SMTP_HOST="127.0.0.1",
        VRP_DASHBOARD_ALERT_SMTP_PORT=str(smtp_port),
        VRP_DASHBOARD_ALERT_SMTP_FROM="vrp@example.com",
        VRP_DASHBOARD_ALERT_SMTP_TO="oncall@example.com",
        VRP_DASHBOARD_ALERT_GROUP_WAIT="1s",
        VRP_DASHBOARD_ALERT_GROUP_INTERVAL="1s",
    )
    exporting = _env(
        tmp_path,
        OTEL_EXPORTER_OTLP_ENDPOINT=base,
        OTEL_EXPORTER_OTLP_HEADERS=f"Authorization=Bearer {TOKEN}",
        OTEL_METRIC_EXPORT_INTERVAL="500",
        OTEL_BSP_SCHEDULE_DELAY="200",
        VRP_BACKUP_SCHEDULE="every 1 minutes",
    )
    subprocess.run(_vrp("db", "upgrade"), env=exporting, check=True, capture_output=True)
    with (tmp_path / "dashboard.out").open("wb") as out:
        started.append(
            subprocess.Popen(
                _vrp("dashboard", "--port", str(port)), env=dashboard, stdout=out, stderr=out
            )
        )
    _until("the dashboard answering", 60, lambda: _get(base, "/api/alerts/rules"))
    with (tmp_path / "scheduler.out").open("wb") as out:
        scheduler = subprocess.Popen(_vrp("scheduler"), env=exporting, stdout=out, stderr=out)
    started.append(scheduler)

    # A scheduler without a recent backup takes one at once.
    status = _until(
        "the scheduler's first backup reaching the dashboard",
        90,
        lambda: (body := _get(base, "/api/backups")) and body["last_success"] and body,
    )
    last_success = _seconds(status["last_success"])
    assert _overdue(base) is None, "a fresh backup is not overdue"
    scheduler.send_signal(signal.SIGTERM)
    assert scheduler.wait(timeout=30) == 0

    alert = _until(
        "BackupOverdue firing",
        120,
        lambda: (found := _overdue(base)) and found["state"] == "firing" and found,
    )
    fired_after = _seconds(alert["fired_at"]) - last_success
    assert EXPECTED_S + GRACE_S <= fired_after <= EXPECTED_S + GRACE_S + EVALUATE_EVERY_S + 3
    assert alert["severity"] == "critical" and alert["url"] == "/backups"
    assert alert["labels"]["repository"] == status["repositories"][0]["repository_id"]
    assert _get(base, "/api/alerts")["counts"]["firing"] >= 1
    firing = _until(
        "the firing notification at the webhook", 30, lambda: _notified(webhook, "firing")
    )
    assert firing["alerts"][0]["labels"]["repository"] == alert["labels"]["repository"]
    assert _until("the firing e-mail", 30, lambda: _mailed(mailbox, "FIRING"))

    # The scheduler back: it catches up at once (its last backup is overdue) and resolves it.
    with (tmp_path / "scheduler-again.out").open("wb") as out:
        started.append(subprocess.Popen(_vrp("scheduler"), env=exporting, stdout=out, stderr=out))
    resolved = _until(
        "BackupOverdue resolved",
        60,
        lambda: (found := _overdue(base)) and found["state"] == "resolved" and found,
    )
    assert resolved["fingerprint"] == alert["fingerprint"]
    _until("the resolve at the webhook", 30, lambda: _notified(webhook, "resolved"))
    assert _until("the resolve e-mail", 30, lambda: _mailed(mailbox, "RESOLVED"))
    # The webhook URL is a secret: neither the dashboard's output nor its API shows it.
    assert "secret-path" not in (tmp_path / "dashboard.out").read_text()
    assert "secret-path" not in requests.get(f"{base}/api/alerts", headers=HEADERS, timeout=5).text
