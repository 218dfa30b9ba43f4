"""Alertmanager's timings, on the grouper alone with explicit times (no threads, no sleeps)."""

from __future__ import annotations

from dashboard.alert_events import AlertEvent
from dashboard.notify.grouping import Grouper, group_key

T0 = 1_765_000_000.0


def alert(
    fingerprint: str, state: str = "firing", *, rule: str = "http_5xx_rate", service: str = "api"
) -> AlertEvent:
    return AlertEvent(
        rule=rule,
        fingerprint=fingerprint,
        state=state,  # type: ignore[arg-type]
        severity="warning",
        labels={"service": service},
        annotations={},
        value=0.07,
        starts_at=T0,
        ends_at=None if state == "firing" else T0 + 600,
        url=f"/requests?service={service}",
    )


def grouper(group_by: tuple[str, ...] = ()) -> Grouper:
    return Grouper(group_by=group_by, group_wait=30, group_interval=300, repeat_interval=4 * 3600)


def test_a_new_group_waits_group_wait_and_takes_every_alert_that_came_meanwhile() -> None:
    groups = grouper()
    groups.add([alert("a")], T0)
    assert groups.due(T0 + 29) == []
    groups.add([alert("a"), alert("b", service="worker")], T0 + 20)

    [notification] = groups.due(T0 + 30)

    assert notification.fingerprints == ("a", "b")
    assert notification.status == "firing"
    assert notification.group_key == '{}:{alertname="http_5xx_rate"}'


def test_a_change_waits_for_the_next_group_interval() -> None:
    groups = grouper()
    groups.add([alert("a")], T0)
    groups.due(T0 + 30)
    groups.add([alert("a"), alert("b")], T0 + 60)

    assert groups.due(T0 + 329) == []
    [notification] = groups.due(T0 + 330)
    assert notification.fingerprints == ("a", "b")


def test_an_unchanged_group_is_quiet_until_repeat_interval() -> None:
    groups = grouper()
    groups.add([alert("a")], T0)
    groups.due(T0 + 30)
    quiet = [groups.due(T0 + 30 + 300 * k) for k in range(1, 48)]

    assert quiet == [[]] * 47
    [repeat] = groups.due(T0 + 30 + 300 * 48)  # 4 h after the first message
    assert repeat.fingerprints == ("a",)


def test_a_resolve_is_sent_once_and_the_group_is_forgotten() -> None:
    groups = grouper()
    groups.add([alert("a")], T0)
    groups.due(T0 + 30)
    groups.add([alert("a", "resolved")], T0 + 100)

    [notification] = groups.due(T0 + 330)

    assert notification.status == "resolved"
    assert notification.states == ("resolved",)
    assert len(groups) == 0
    groups.add([alert("a", "resolved")], T0 + 400)
    assert groups.due(T0 + 10_000) == []


def test_an_alert_resolved_before_any_message_is_never_sent() -> None:
    groups = grouper()
    groups.add([alert("a")], T0)
    groups.add([alert("a", "resolved")], T0 + 10)

    assert groups.due(T0 + 30) == []
    assert len(groups) == 0


def test_a_message_lists_firing_alerts_then_the_ones_it_resolves() -> None:
    groups = grouper()
    groups.add([alert("a"), alert("b")], T0)
    groups.due(T0 + 30)
    groups.add([alert("a", "resolved"), alert("b")], T0 + 60)

    [notification] = groups.due(T0 + 330)

    assert notification.fingerprints == ("b", "a")
    assert notification.states == ("firing", "resolved")
    assert notification.status == "firing"


def test_group_by_labels_split_a_rule_into_groups() -> None:
    groups = grouper(group_by=("service",))
    groups.add([alert("a", service="api"), alert("b", service="worker")], T0)

    notifications = groups.due(T0 + 30)

    assert sorted(n.group_key for n in notifications) == [
        '{}:{alertname="http_5xx_rate", service="api"}',
        '{}:{alertname="http_5xx_rate", service="worker"}',
    ]
    assert {n.group_key: n.group_labels for n in notifications}[
        '{}:{alertname="http_5xx_rate", service="api"}'
    ] == {"alertname": "http_5xx_rate", "service": "api"}


def test_group_keys_quote_label_values_as_json() -> None:
    assert group_key({"alertname": "x", "route": 'GET /a"b'}) == (
        '{}:{alertname="x", route="GET /a\\"b"}'
    )


def test_next_due_is_the_earliest_group() -> None:
    groups = grouper()
    assert groups.next_due() is None
    groups.add([alert("a")], T0)
    groups.add([alert("b", rule="p95_latency")], T0 + 5)
    assert groups.next_due() == T0 + 30


def test_a_resolve_of_an_alert_that_fired_before_a_restart_is_still_sent() -> None:
    groups = grouper()  # a new process: it never saw "a" firing
    long_firing = alert("a", "resolved")  # fired from T0 to T0 + 600, longer than group_wait
    groups.add([long_firing], T0 + 700)

    [notification] = groups.due(T0 + 730)

    assert notification.states == ("resolved",)
    assert notification.status == "resolved"


def test_the_same_resolve_submitted_twice_is_sent_once() -> None:
    groups = grouper()
    groups.add([alert("a"), alert("b")], T0)
    groups.due(T0 + 30)
    groups.add([alert("a", "resolved"), alert("b")], T0 + 60)
    [resolving] = groups.due(T0 + 330)
    groups.add([alert("a", "resolved"), alert("b")], T0 + 360)

    assert resolving.states == ("firing", "resolved")
    assert groups.due(T0 + 630) == []


def test_an_alert_that_fires_again_after_its_resolve_is_resolved_again() -> None:
    groups = grouper()
    groups.add([alert("a")], T0)
    groups.due(T0 + 30)
    groups.add([alert("a", "resolved")], T0 + 60)
    groups.due(T0 + 330)
    groups.add([alert("a")], T0 + 400)
    [fired_again] = groups.due(T0 + 430)
    groups.add([alert("a", "resolved")], T0 + 500)

    [resolved_again] = groups.due(T0 + 730)

    assert (fired_again.status, resolved_again.status) == ("firing", "resolved")
