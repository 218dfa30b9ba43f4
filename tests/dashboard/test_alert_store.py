"""Alert states, history, silences and deliveries live in the store: a restart keeps them,
on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dashboard.alert_events import DeliveryRecord
from dashboard.alerts.evaluator import AlertEvaluator
from dashboard.alerts.store import AlertStore
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from tests.dashboard.alert_rules import Recorder, Switch


@pytest.fixture
def any_store(database_url: str) -> Iterator[TelemetryStore]:
    store = TelemetryStore(database_url)
    store.upgrade()
    yield store
    store.dispose()


def _evaluator(url: str, switch: Switch, notifier: Recorder) -> AlertEvaluator:
    store = TelemetryStore(url)
    store.check_current()
    return AlertEvaluator(store, DashboardSettings(store_url=url), notifier, rules=[switch.rule])


def test_a_restart_keeps_pending_time_firing_alerts_history_and_silences(
    any_store: TelemetryStore,
) -> None:
    switch, notifier = Switch(for_seconds=60), Recorder()
    first = _evaluator(any_store.url, switch, notifier)
    switch.on = {"vrp-api": 12.0, "vrp-worker": 3.0}
    assert first.evaluate(1000.0) == []
    first.alert_store.add_silence("QueueBacklog", None, 3600, "deploying", 1000.0)
    first.store.dispose()

    again = _evaluator(any_store.url, switch, notifier)
    events = again.evaluate(1060.0)

    assert events == [], "firing, but silenced (the silence outlived the restart)"
    alerts = {a.labels["service"]: a for a in again.alert_store.alerts()}
    assert {s: (a.state, a.active_since, a.fired_at) for s, a in alerts.items()} == {
        "vrp-api": ("firing", 1000.0, 1060.0),
        "vrp-worker": ("firing", 1000.0, 1060.0),
    }
    (silence,) = again.alert_store.silences(1060.0)
    assert again.alert_store.expire_silence(silence.id, 1061.0)
    again.store.dispose()

    third = _evaluator(any_store.url, switch, notifier)
    switch.on = {"vrp-api": 20.0}
    events = third.evaluate(1090.0)

    assert notifier.last() == [("vrp-api", "firing"), ("vrp-worker", "resolved")]
    resolved = next(e for e in events if e.state == "resolved")
    assert (resolved.starts_at, resolved.ends_at, resolved.value) == (1060.0, 1090.0, 3.0)
    moves = [(h["labels"]["service"], h["from"], h["to"]) for h in third.alert_store.history()]
    assert sorted(moves) == sorted(
        [
            ("vrp-api", "inactive", "pending"),
            ("vrp-worker", "inactive", "pending"),
            ("vrp-api", "pending", "firing"),
            ("vrp-worker", "pending", "firing"),
            ("vrp-worker", "firing", "resolved"),
        ]
    )
    third.store.dispose()


def test_deliveries_are_kept_and_the_failed_ones_listed_newest_first(
    any_store: TelemetryStore,
) -> None:
    alerts = AlertStore(any_store)
    for at, outcome, error in ((10.0, "failed", "HTTP 500"), (20.0, "delivered", None)):
        alerts.record_delivery(
            DeliveryRecord("webhook", "g1", ("a" * 32,), outcome, 3, at, error, ("firing",))
        )
    alerts.record_delivery(
        DeliveryRecord("email", "g2", ("b" * 32, "c" * 32), "failed", 5, 30.0, "timed out")
    )

    failed = alerts.failed_deliveries(since=0.0)

    assert [(d.channel, d.at, d.error, d.attempts) for d in failed] == [
        ("email", 30.0, "timed out", 5),
        ("webhook", 10.0, "HTTP 500", 3),
    ]
    assert failed[1].fingerprints == ("a" * 32,) and failed[1].states == ("firing",)
    assert alerts.failed_deliveries(since=15.0)[0].channel == "email"
