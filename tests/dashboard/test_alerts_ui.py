"""The Alerts page in a real browser (Debian's headless Chromium, as :mod:`test_ui`).

A backup scheduler's failed run reaches the dashboard through the SDK's OTLP exporters; one
evaluation later the page lists the firing alerts with the trace that explains the failure,
the navbar's badge counts them, and silencing a rule from the page takes it out of the count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dash.testing.application_runners import ThreadedRunner
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from backup.telemetry import STATUS_FAILED
from dashboard.app import create_app
from dashboard.server import DashboardServer
from dashboard.settings import DashboardSettings
from tests.dashboard import test_ui
from tests.dashboard.alert_rules import Recorder
from tests.dashboard.test_backup_repositories import STACK_A, _process
from tests.dashboard.test_ui import (
    _click,
    _element,
    _free_port,
    _holding,
    _no_errors,
    _screenshot,
    _wait,
)

BADGE = "#nav-alerts-badge"
# test_ui's headless Chromium, one per module.
chromium = test_ui.browser


@dataclass
class Running:
    base: str
    server: DashboardServer
    trace_id: str
    notifier: Recorder


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder: Path = tmp_path_factory.mktemp("alerts-ui")
    settings = DashboardSettings(
        store_url=f"sqlite:///{folder / 'telemetry.db'}", refresh_seconds=1
    )
    notifier = Recorder()
    app = create_app(settings, notifier=notifier)
    runner = ThreadedRunner()
    port = _free_port()
    runner.start(app, port=port, host="127.0.0.1", start_timeout=15)
    base = f"http://127.0.0.1:{port}"
    try:
        with _process(base, "vrp-scheduler") as scheduler:
            with scheduler.telemetry.run_span("nightly", "schedule", STACK_A) as run:
                run.set_attribute("vrp.backup.status", STATUS_FAILED)
            scheduler.export()
        app.server.alerts.evaluate(time.time())
        yield Running(base, app.server, format(run.get_span_context().trace_id, "032x"), notifier)
    finally:
        runner.stop()


def _row_holding(*words: str) -> Callable[[WebDriver], bool]:
    """Whether a row of the alerts table holds every one of ``words`` (looked up afresh: the
    page refreshes every second)."""

    def found(driver: WebDriver) -> bool:
        rows = driver.find_elements(By.CSS_SELECTOR, "#alerts-table tr")
        return any(all(word in row.text for word in words) for row in rows)

    return found


def _badge(driver: WebDriver) -> str:
    return driver.find_element(By.CSS_SELECTOR, BADGE).text


def test_firing_alerts_are_listed_with_their_trace_and_counted_in_the_navbar(
    chromium: WebDriver, failing: Running
) -> None:
    chromium.get(f"{failing.base}/alerts")

    _wait(chromium, _row_holding("BackupFailed", "firing", "critical"), "the firing alert")
    _element(chromium, "#alerts-table tr", "BackupOverdue")
    _wait(chromium, lambda d: _badge(d) == "2", "the badge counting two firing alerts")
    assert "bg-danger" in chromium.find_element(By.CSS_SELECTOR, BADGE).get_attribute("class")
    _element(chromium, "#alerts-deliveries, .notice", "Every notification was delivered")
    _no_errors(chromium)
    _screenshot(chromium, "alerts")

    _click(chromium, _holding("#alerts-table tr", "BackupFailed", "a"), "the failed run's trace")
    _wait(chromium, lambda d: f"trace={failing.trace_id}" in d.current_url, "the trace page")
    _element(chromium, "#traces-waterfall-graph", "backup.run")


def test_silencing_a_rule_from_the_page_takes_it_out_of_the_badge(
    chromium: WebDriver, failing: Running
) -> None:
    chromium.get(f"{failing.base}/alerts")
    _wait(chromium, lambda d: _badge(d) == "2", "the badge counting two firing alerts")
    _wait(
        chromium,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#alerts-silence-rule option")) >= 7,
        "the rules to choose from",
    )

    Select(chromium.find_element(By.ID, "alerts-silence-rule")).select_by_value("BackupOverdue")
    Select(chromium.find_element(By.ID, "alerts-silence-duration")).select_by_value("4h")
    chromium.find_element(By.ID, "alerts-silence-comment").send_keys("restoring the disk")
    _click(chromium, lambda d: d.find_element(By.ID, "alerts-silence-button"), "Silence")

    _element(chromium, "#alerts-silence-done", "BackupOverdue silenced until")
    _wait(chromium, lambda d: _badge(d) == "1", "the badge without the silenced alert")
    _wait(chromium, _row_holding("BackupOverdue", "silenced"), "the silenced alert")
    _element(chromium, "#alerts-silences", "restoring the disk")
    silences = failing.server.alerts.alert_store.silences(time.time())
    assert [(s.rule, round((s.ends_at - s.created_at) / 3600)) for s in silences] == [
        ("BackupOverdue", 4)
    ]
    failing.notifier.batches.clear()
    failing.server.alerts.evaluate(time.time())
    assert [e.rule for e in failing.notifier.batches[-1]] == ["BackupFailed"]
    _no_errors(chromium)
