"""The Alerts page in a real browser (Debian's headless Chromium, as :mod:`test_ui`).

A backup scheduler's failed run reaches the dashboard through the SDK's OTLP exporters; one
evaluation later the page lists the firing alerts with the trace that explains the failure,
the navbar's badge counts them, silencing a rule from the page takes it out of the count, and
ending a silence from the page puts it back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from dash.testing.application_runners import ThreadedRunner
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
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
    # Nothing was clicked: the silence form says nothing yet.
    assert chromium.find_element(By.ID, "alerts-silence-result").text == ""
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


def test_ending_a_silence_from_the_page_notifies_its_alerts_again(
    chromium: WebDriver, failing: Running
) -> None:
    comment = "looking into the failed run"
    made = requests.post(
        f"{failing.base}/api/alerts/silences",
        json={"rule": "BackupFailed", "duration": "1h", "comment": comment},
        timeout=5,
    )
    assert made.status_code == 201, made.text
    chromium.get(f"{failing.base}/alerts?range=24h")
    _wait(chromium, _row_holding("BackupFailed", "silenced"), "the silenced alert")
    # The link that explains the alert keeps the view's range, as every link to a page does.
    explained = _holding("#alerts-table tr", "BackupFailed", "a")(chromium)
    assert isinstance(explained, WebElement) and "range=24h" in explained.get_attribute("href")

    _click(chromium, _holding("#alerts-silences tr", comment, "button"), "End")

    _element(chromium, "#alerts-silence-ended", "The silence of BackupFailed ended")
    _wait(
        chromium,
        lambda d: comment not in d.find_element(By.ID, "alerts-body").text,
        "the silence gone from the table",
    )
    _wait(
        chromium,
        lambda d: (
            _row_holding("BackupFailed", "firing")(d)
            and not _row_holding("BackupFailed", "silenced")(d)
        ),
        "the alert no longer silenced",
    )
    body = requests.get(f"{failing.base}/api/alerts", timeout=5).json()
    assert made.json()["id"] not in [s["id"] for s in body["silences"]]
    assert not next(a for a in body["alerts"] if a["rule"] == "BackupFailed")["silenced"]
    counted = str(body["counts"]["firing"] - body["counts"]["silenced"])
    _wait(chromium, lambda d: _badge(d) == counted, f"the badge counting {counted}")
    _no_errors(chromium)


def test_ending_a_silence_a_script_ended_first_says_so(
    chromium: WebDriver, failing: Running
) -> None:
    comment = "ended by a script meanwhile"
    made = requests.post(
        f"{failing.base}/api/alerts/silences",
        json={"rule": "BackupFailed", "duration": "1h", "comment": comment},
        timeout=5,
    ).json()
    chromium.get(f"{failing.base}/alerts")
    _element(chromium, "#alerts-silences", comment)
    # No refresh may redraw the table between the script's DELETE and the click.
    _click(chromium, lambda d: d.find_element(By.CSS_SELECTOR, "label[for=auto-refresh]"), "off")
    _wait(chromium, lambda d: not d.find_element(By.ID, "auto-refresh").is_selected(), "no refresh")
    ended = requests.delete(f"{failing.base}/api/alerts/silences/{made['id']}", timeout=5)
    assert ended.status_code == 204

    _click(chromium, _holding("#alerts-silences tr", comment, "button"), "End")

    _element(chromium, "#alerts-silence-ended", "The silence of BackupFailed had already ended")
    _wait(
        chromium,
        lambda d: comment not in d.find_element(By.ID, "alerts-body").text,
        "the table read again",
    )
    _no_errors(chromium)
