"""``/api/alerts``, ``/api/alerts/rules`` and the silences over HTTP, against a running
dashboard whose evaluator runs a rule the test switches on and off."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from dashboard.alert_events import DeliveryRecord
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from tests.dashboard.alert_rules import Recorder, Switch
from tests.dashboard.conftest import Live, serve


@dataclass
class Alerting:
    live: Live
    switch: Switch
    notifier: Recorder

    def evaluate(self, at: float) -> None:
        self.live.app.alerts.evaluate(at)

    def alerts(self) -> dict:
        response = requests.get(f"{self.live.url}/api/alerts", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def alerting(store: TelemetryStore) -> Iterator[Alerting]:
    switch, notifier = Switch(for_seconds=60), Recorder()
    for live in serve(DashboardSettings(store_url=store.url), store, notifier):
        live.app.alerts.rules = (*live.app.alerts.rules, switch.rule)
        yield Alerting(live, switch, notifier)


def test_alerts_list_firing_then_pending_then_resolved_with_what_explains_them(
    alerting: Alerting,
) -> None:
    now = time.time()
    alerting.switch.on = {"a": 1.0, "b": 2.0}
    alerting.evaluate(now - 120)
    alerting.switch.on = {"a": 1.5, "b": 2.5}
    alerting.evaluate(now - 60)  # a and b fire
    alerting.switch.on = {"b": 3.0, "c": 4.0}
    alerting.evaluate(now)  # a resolves, c is pending

    body = alerting.alerts()

    mine = [a for a in body["alerts"] if a["rule"] == "QueueBacklog"]
    assert [(a["labels"]["service"], a["state"]) for a in mine] == [
        ("b", "firing"),
        ("c", "pending"),
        ("a", "resolved"),
    ]
    assert body["counts"] == {"firing": 1, "pending": 1, "resolved": 1, "silenced": 0}
    firing = mine[0]
    assert firing["value"] == 3.0 and firing["severity"] == "warning"
    assert firing["annotations"] == {"summary": "backlog of b is 3"}
    assert firing["url"] == "/requests" and not firing["silenced"]
    assert firing["since"] == firing["fired_at"] and firing["resolved_at"] is None
    assert mine[2]["since"] == mine[2]["resolved_at"]
    assert len(firing["fingerprint"]) == 32
    assert body["failed_deliveries"] == [] and body["silences"] == []


def test_rules_lists_builtin_and_added_rules(alerting: Alerting) -> None:
    body = requests.get(f"{alerting.live.url}/api/alerts/rules", timeout=10).json()
    by_name = {r["name"]: r for r in body["rules"]}
    assert body["interval_s"] == 30.0 and body["rules_file"] is None
    assert (
        by_name["BackupOverdue"]["builtin"] and by_name["BackupOverdue"]["severity"] == "critical"
    )
    assert by_name["QueueBacklog"] == {
        "name": "QueueBacklog",
        "builtin": False,
        "severity": "warning",
        "for_s": 60.0,
        "expression": "",
        "description": "a backlog the test switches on",
        "labels": {},
        "annotations": {"summary": "backlog of {{ $labels.service }} is {{ $value }}"},
    }


def test_a_silenced_rule_is_evaluated_and_shown_but_not_notified_until_the_silence_ends(
    alerting: Alerting,
) -> None:
    url = f"{alerting.live.url}/api/alerts/silences"
    now = time.time()
    alerting.switch.on = {"a": 1.0}
    alerting.evaluate(now - 60)
    alerting.evaluate(now)
    assert alerting.notifier.last() == [("a", "firing")]

    made = requests.post(
        url, json={"rule": "QueueBacklog", "duration": "2h", "comment": "known"}, timeout=10
    )
    assert made.status_code == 201, made.text
    silence = made.json()
    alerting.notifier.batches.clear()
    alerting.switch.on = {"a": 2.0, "b": 1.0}
    alerting.evaluate(time.time())

    assert alerting.notifier.batches == [], "nothing to send: every alert is silenced"
    body = alerting.alerts()
    assert body["counts"]["silenced"] == 1
    assert [(a["labels"]["service"], a["silenced"], a["silence_id"]) for a in body["alerts"]] == [
        ("a", True, silence["id"]),
        ("b", True, silence["id"]),
    ]
    assert (
        body["silences"][0]["comment"] == "known" and body["silences"][0]["rule"] == "QueueBacklog"
    )

    assert requests.delete(f"{url}/{silence['id']}", timeout=10).status_code == 204
    alerting.evaluate(time.time())
    assert alerting.notifier.last() == [("a", "firing")]
    assert requests.delete(f"{url}/{silence['id']}", timeout=10).status_code == 404


def test_one_alert_can_be_silenced_by_its_fingerprint(alerting: Alerting) -> None:
    alerting.switch.on = {"a": 1.0, "b": 1.0}
    now = time.time()
    alerting.evaluate(now - 60)
    alerting.evaluate(now)
    (a,) = [x for x in alerting.alerts()["alerts"] if x["labels"]["service"] == "a"]

    made = requests.post(
        f"{alerting.live.url}/api/alerts/silences",
        json={"fingerprint": a["fingerprint"], "duration": 600},
        timeout=10,
    )
    assert made.status_code == 201
    alerting.evaluate(time.time())

    assert alerting.notifier.last() == [("b", "firing")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"duration": "1h"}, "rule"),
        ({"rule": "QueueBacklog", "fingerprint": "a" * 32, "duration": "1h"}, "rule"),
        ({"rule": "NoSuchRule", "duration": "1h"}, "rule"),
        ({"rule": "QueueBacklog"}, "duration"),
        ({"rule": "QueueBacklog", "duration": "soon"}, "duration"),
        ({"rule": "QueueBacklog", "duration": "91d"}, "duration"),
        ({"rule": "QueueBacklog", "duration": -5}, "duration"),
        ({"fingerprint": "XYZ", "duration": "1h"}, "fingerprint"),
        ({"rule": "QueueBacklog", "duration": "1h", "comment": "x" * 1001}, "comment"),
        ({"rule": "QueueBacklog", "duration": "1h", "until": "later"}, "until"),
    ],
)
def test_a_bad_silence_is_a_422_naming_the_field(
    alerting: Alerting, body: dict, field: str
) -> None:
    response = requests.post(f"{alerting.live.url}/api/alerts/silences", json=body, timeout=10)
    assert response.status_code == 422, response.text
    assert field in response.json()["errors"]["json"]


def test_unknown_silences_and_parameters_are_4xx_json(alerting: Alerting) -> None:
    base = alerting.live.url
    assert requests.delete(f"{base}/api/alerts/silences/{'f' * 32}", timeout=10).status_code == 404
    assert requests.delete(f"{base}/api/alerts/silences/nope", timeout=10).status_code == 404
    unknown = requests.get(f"{base}/api/alerts", params={"state": "firing"}, timeout=10)
    assert unknown.status_code == 422 and "state" in unknown.json()["errors"]["query"]
    not_json = requests.post(
        f"{base}/api/alerts/silences",
        data="rule=x",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert not_json.status_code == 400


def test_failed_deliveries_are_listed_without_secrets(alerting: Alerting) -> None:
    sink = alerting.live.app.alerts.alert_store
    now = time.time()
    sink.record_delivery(
        DeliveryRecord(
            "slack", "QueueBacklog", ("a" * 32,), "failed", 4, now, "HTTP 503 after 4 attempts"
        )
    )
    sink.record_delivery(
        DeliveryRecord("webhook", "QueueBacklog", ("a" * 32,), "delivered", 1, now)
    )

    failed = alerting.alerts()["failed_deliveries"]

    assert [(d["channel"], d["attempts"], d["error"]) for d in failed] == [
        ("slack", 4, "HTTP 503 after 4 attempts")
    ]


def test_the_evaluator_and_its_notifier_start_and_stop_with_the_server(alerting: Alerting) -> None:
    app = alerting.live.app
    app.start_background()
    app.start_background()
    app.stop_background()
    app.stop_background()
    assert (alerting.notifier.started, alerting.notifier.stopped) == (1, 1)
