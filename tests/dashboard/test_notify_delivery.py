"""Alert notifications reach real receivers on 127.0.0.1: a webhook, a Slack-compatible
webhook and SMTP servers (aiosmtpd, plain and with STARTTLS and AUTH LOGIN)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from dashboard.alert_events import AlertEvent, DeliveryRecord
from dashboard.notify.dispatcher import Dispatcher
from dashboard.notify.notifier import NullNotifier, build_notifier
from dashboard.notify.settings import NotifySettings, SmtpSettings
from dashboard.settings import DashboardSettings
from instrumentation import conventions
from tests.dashboard.notify_receivers import (
    HOST,
    HttpReceiver,
    Mailbox,
    Sink,
    free_port,
    smtp_server,
)

# Secrets of at least 32 characters, looked for in every record and log line.
HOOK_SECRET = "T0A1B2C3D4/B5E6F7G8H9/x9Yz8Wv7Ut6Sr5Qp4On3Ml2Kj1"
SLACK_SECRET = "T9Z8Y7X6W5/B4V3U2T1S0/a1Bc2De3Fg4Hi5Jk6Lm7No8Pq9"
PASSWORD = "correct-horse-battery-staple-0123456789"
EXTERNAL = "https://dashboard.example.com/vrp"
FAST = NotifySettings(
    external_url=EXTERNAL,
    group_wait=0.3,
    group_interval=0.3,
    repeat_interval=3600.0,
    timeout=5.0,
    retry_attempts=5,
    retry_initial=0.05,
    retry_max=0.2,
)


def alert(
    fingerprint: str = "f-1",
    state: str = "firing",
    *,
    rule: str = "backup_overdue",
    repository: str = "r-1",
    ends_at: float | None = None,
) -> AlertEvent:
    return AlertEvent(
        rule=rule,
        fingerprint=fingerprint,
        state=state,  # type: ignore[arg-type]
        severity="critical",
        labels={"repository": repository, "service": "vrp-scheduler"},
        annotations={"summary": f"No backup of {repository} for 26 h", "runbook": "docs/backup"},
        value=93600.0,
        starts_at=1_765_000_000.0,
        ends_at=ends_at,
        url=f"/backups?repository={repository}",
    )


@pytest.fixture
def webhook() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def slack() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    with smtp_server(box) as port:
        yield box, port


def _started(settings: NotifySettings, sink: Sink) -> Dispatcher:
    dispatcher = Dispatcher(settings, sink, tick=0.05)
    dispatcher.start()
    return dispatcher


def test_firing_then_resolved_reach_the_webhook_slack_and_email(
    webhook: HttpReceiver, slack: HttpReceiver, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    smtp = SmtpSettings(
        host=HOST, port=port, sender="vrp@example.com", recipients=("ops@example.com",)
    )
    settings = replace(
        FAST,
        webhook_url=webhook.url(f"/hooks/{HOOK_SECRET}"),
        slack_url=slack.url(f"/services/{SLACK_SECRET}"),
        smtp=smtp,
    )
    sink = Sink()
    dispatcher = _started(settings, sink)
    try:
        dispatcher.submit([alert()])
        webhook.wait_for(1)
        dispatcher.submit([alert(state="resolved", ends_at=1_765_003_600.0)])
        records = sink.wait_for(6)
    finally:
        dispatcher.stop()

    # The channels deliver side by side: the order between them is not fixed.
    assert sorted((r.channel, r.states) for r in records) == sorted(
        (channel, states)
        for states in (("firing",), ("resolved",))
        for channel in ("webhook", "slack", "email")
    )
    assert all(r.outcome == "delivered" and r.error is None for r in records)

    first, second = webhook.wait_for(2)
    assert first.path == f"/hooks/{HOOK_SECRET}"
    assert first.body["version"] == "4"
    assert first.body["status"] == "firing"
    assert first.body["groupKey"] == '{}:{alertname="backup_overdue"}'
    assert first.body["groupLabels"] == {"alertname": "backup_overdue"}
    assert first.body["commonLabels"] == {
        "alertname": "backup_overdue",
        "severity": "critical",
        "repository": "r-1",
        "service": "vrp-scheduler",
    }
    assert first.body["externalURL"] == EXTERNAL
    [firing] = first.body["alerts"]
    assert firing["status"] == "firing"
    assert firing["startsAt"] == "2025-12-06T05:46:40.000Z"
    assert firing["endsAt"] == "0001-01-01T00:00:00Z"
    assert firing["generatorURL"] == f"{EXTERNAL}/backups?repository=r-1"
    assert firing["annotations"]["summary"] == "No backup of r-1 for 26 h"
    assert second.body["status"] == "resolved"
    assert second.body["alerts"][0]["endsAt"] == "2025-12-06T06:46:40.000Z"

    slack_first, slack_second = slack.wait_for(2)
    assert slack_first.body["text"].startswith("[FIRING:1] backup_overdue")
    assert f"<{EXTERNAL}/backups?repository=r-1|No backup of r-1 for 26 h>" in str(
        slack_first.body["blocks"]
    )
    assert slack_second.body["text"].startswith("[RESOLVED] backup_overdue")

    (sender, recipients, fired_mail), (_, _, resolved_mail) = box.wait_for(2)
    assert (sender, recipients) == ("vrp@example.com", ["ops@example.com"])
    assert fired_mail["Subject"].startswith("[FIRING:1] backup_overdue")
    body = fired_mail.get_payload(decode=True).decode()
    assert "No backup of r-1 for 26 h" in body
    assert f"link: {EXTERNAL}/backups?repository=r-1" in body
    assert resolved_mail["Subject"].startswith("[RESOLVED] backup_overdue")
    assert "Resolved (1):" in resolved_mail.get_payload(decode=True).decode()
    assert dispatcher.stats() == {
        channel: {"delivered": 2, "failed": 0} for channel in ("webhook", "slack", "email")
    }


def test_starttls_and_auth_login_deliver_the_email(tmp_path: Path) -> None:
    box = Mailbox()
    with smtp_server(box, tls_folder=tmp_path, user="alerts", password=PASSWORD) as port:
        smtp = SmtpSettings(
            host=HOST,
            port=port,
            starttls=True,
            ca_file=str(tmp_path / "smtp-cert.pem"),
            user="alerts",
            password=PASSWORD,
            sender="vrp@example.com",
            recipients=("ops@example.com", "oncall@example.org"),
        )
        sink = Sink()
        dispatcher = Dispatcher(replace(FAST, smtp=smtp), sink)
        dispatcher.submit([alert()])
        [record] = dispatcher.step(now=time.time() + 1)
        messages = box.wait_for(1)

    assert (record.channel, record.outcome, record.attempts) == ("email", "delivered", 1)
    assert box.logins == ["LOGIN:alerts"]
    [(_, recipients, message)] = messages
    assert recipients == ["ops@example.com", "oncall@example.org"]
    assert message["Subject"].startswith("[FIRING:1] backup_overdue")


def test_two_alerts_of_one_rule_within_group_wait_go_in_one_message(
    webhook: HttpReceiver,
) -> None:
    now = [1_796_600_000.0]
    settings = replace(FAST, webhook_url=webhook.url("/hook"), group_wait=30)
    dispatcher = Dispatcher(settings, Sink(), clock=lambda: now[0])
    dispatcher.submit([alert("f-1", repository="r-1")])
    now[0] += 20
    dispatcher.submit([alert("f-1", repository="r-1"), alert("f-2", repository="r-2")])

    assert dispatcher.step(now=now[0] + 9) == []
    [record] = dispatcher.step(now=now[0] + 10)

    [received] = webhook.received
    assert [a["labels"]["repository"] for a in received.body["alerts"]] == ["r-1", "r-2"]
    assert received.body["commonLabels"] == {
        "alertname": "backup_overdue",
        "severity": "critical",
        "service": "vrp-scheduler",
    }
    assert record.fingerprints == ("f-1", "f-2")


def test_a_group_still_firing_is_sent_again_after_repeat_interval(webhook: HttpReceiver) -> None:
    settings = replace(
        FAST, webhook_url=webhook.url("/hook"), group_interval=0.2, repeat_interval=1.2
    )
    dispatcher = _started(settings, Sink())
    try:
        dispatcher.submit([alert()])
        first, second = webhook.wait_for(2, timeout=10)
        time.sleep(0.4)
    finally:
        dispatcher.stop()

    assert len(webhook.received) == 2
    # Not before repeat_interval; the upper bound leaves room for a loaded machine.
    assert 1.15 <= second.at - first.at < 3.0
    assert second.body["alerts"] == first.body["alerts"]


def test_a_receiver_answering_500_twice_gets_the_notification_on_the_third_attempt(
    webhook: HttpReceiver,
) -> None:
    webhook.answers = [500, 500]
    sink = Sink()
    dispatcher = Dispatcher(replace(FAST, webhook_url=webhook.url("/hook")), sink)
    dispatcher.submit([alert()])

    [record] = dispatcher.step(now=time.time() + 1)

    assert (record.outcome, record.attempts, record.error) == ("delivered", 3, None)
    assert webhook.attempts == 3
    assert len(webhook.received) == 1
    assert sink.records == [record]


def test_a_dead_channel_gives_a_failed_record_with_no_secret_in_it_nor_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead_url = f"http://{HOST}:{free_port()}/hooks/{HOOK_SECRET}"
    box = Mailbox()
    caplog.set_level(logging.DEBUG)
    with smtp_server(box, tls_folder=tmp_path, user="alerts", password="not-" + PASSWORD) as port:
        smtp = SmtpSettings(
            host=HOST,
            port=port,
            starttls=True,
            ca_file=str(tmp_path / "smtp-cert.pem"),
            user="alerts",
            password=PASSWORD,
            sender="vrp@example.com",
            recipients=("ops@example.com",),
        )
        settings = replace(FAST, webhook_url=dead_url, smtp=smtp, retry_attempts=3)
        sink = Sink()
        dispatcher = Dispatcher(settings, sink)
        dispatcher.submit([alert()])
        records = dispatcher.step(now=time.time() + 1)

    by_channel = {record.channel: record for record in records}
    assert by_channel["webhook"].outcome == "failed"
    assert by_channel["webhook"].attempts == 3
    assert by_channel["webhook"].error == "connection failed (Connection refused)"
    assert by_channel["email"].outcome == "failed"
    assert by_channel["email"].attempts == 1  # a refused login is not retried
    assert by_channel["email"].error == f"SMTP {HOST}:{port}: SMTP 535 (login refused)"
    assert sink.records == records
    assert box.messages == []
    assert dispatcher.stats()["webhook"] == {"delivered": 0, "failed": 1}

    lines = [record.getMessage() for record in caplog.records]
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("dashboard.")
    ]
    assert len(warnings) == 2
    assert any("not delivered on webhook after 3 attempts" in line for line in warnings)
    text = "\n".join(lines + [repr(r.__dict__) for r in caplog.records] + [repr(records)])
    for secret in (HOOK_SECRET, dead_url, PASSWORD):
        assert secret not in text
    assert HOOK_SECRET not in repr(DashboardSettings(notify=settings))
    assert PASSWORD not in repr(DashboardSettings(notify=settings))


def test_a_slow_channel_does_not_delay_another(webhook: HttpReceiver, slack: HttpReceiver) -> None:
    slack.delay = 8.0
    settings = replace(
        FAST, webhook_url=webhook.url("/hook"), slack_url=slack.url("/slow"), group_wait=0.1
    )
    sink = Sink()
    dispatcher = _started(settings, sink)
    try:
        started = time.monotonic()
        dispatcher.submit([alert()])
        [fast] = webhook.wait_for(1, timeout=5)
        assert fast.at - started < 3.0
        assert slack.received == []
        second_started = time.monotonic()
        dispatcher.submit([alert("f-9", rule="http_5xx_rate")])
        webhook.wait_for(2, timeout=5)
        assert time.monotonic() - second_started < 3.0
        slack.release.set()
        records = sink.wait_for(4)
    finally:
        dispatcher.stop()

    assert sorted((r.channel, r.outcome) for r in records) == [
        ("slack", "delivered"),
        ("slack", "delivered"),
        ("webhook", "delivered"),
        ("webhook", "delivered"),
    ]


def test_stop_abandons_a_waiting_retry_and_reports_it_failed(webhook: HttpReceiver) -> None:
    webhook.answers = [503] * 10
    settings = replace(
        FAST, webhook_url=webhook.url("/hook"), group_wait=0.1, retry_initial=30, retry_max=60
    )
    sink = Sink()
    dispatcher = _started(settings, sink)
    dispatcher.submit([alert()])
    webhook.wait_for_arrivals(1)
    time.sleep(0.2)  # the 503 is answered: the worker waits for its retry

    before = time.monotonic()
    dispatcher.stop(timeout=2.0)
    took = time.monotonic() - before

    assert took < 2.0  # not the 30 s the retry would have waited
    [record] = sink.wait_for(1)
    assert record.outcome == "failed"
    assert record.attempts == 1
    assert record.error is not None and record.error.startswith("not sent: the dashboard stopped")


def test_without_any_channel_the_notifier_sends_nothing() -> None:
    notifier = build_notifier(DashboardSettings(), Sink())
    assert isinstance(notifier, NullNotifier)
    notifier.start()
    notifier.submit([alert()])
    notifier.stop()


def test_build_notifier_makes_a_dispatcher_for_the_configured_channels(
    webhook: HttpReceiver,
) -> None:
    notify = replace(FAST, webhook_url=webhook.url("/hook"), slack_url=webhook.url("/slack"))
    notifier = build_notifier(DashboardSettings(notify=notify), Sink())
    assert isinstance(notifier, Dispatcher)
    assert notifier.channels == ("webhook", "slack")


def test_stop_returns_within_its_timeout_while_a_receiver_hangs(slack: HttpReceiver) -> None:
    slack.delay = 30.0
    settings = replace(FAST, slack_url=slack.url("/hang"), group_wait=0.1, timeout=20.0)
    sink = Sink()
    dispatcher = _started(settings, sink)
    dispatcher.submit([alert("f-1")])
    slack.wait_for_arrivals(1)  # the first notification is in flight...
    dispatcher.submit([alert("f-2", rule="http_5xx_rate")])
    time.sleep(0.5)  # ...and the second queued behind it

    before = time.monotonic()
    dispatcher.stop(timeout=1.0)
    took = time.monotonic() - before

    assert took < 3.0  # not the 30 s the receiver keeps the request
    [queued] = sink.records
    assert queued.fingerprints == ("f-2",)
    assert (queued.outcome, queued.error) == ("failed", "not sent: the dashboard stopped first")


def test_deliveries_and_failures_are_counted_by_channel_and_outcome(
    webhook: HttpReceiver,
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    webhook.answers = [404]
    settings = replace(FAST, webhook_url=webhook.url("/hook"), slack_url=webhook.url("/slack"))
    dispatcher = Dispatcher(settings, Sink(), meter_provider=provider)
    dispatcher.submit([alert()])

    records = dispatcher.step(now=time.time() + 1)

    data = reader.get_metrics_data()
    [metric] = [
        metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == conventions.VRP_ALERT_NOTIFICATIONS
    ]
    counted = {
        (
            point.attributes[conventions.VRP_ALERT_CHANNEL],
            point.attributes[conventions.VRP_ALERT_DELIVERY_OUTCOME],
        ): point.value
        for point in metric.data.data_points
    }
    assert counted == {("webhook", "failed"): 1, ("slack", "delivered"): 1}
    assert [(r.channel, r.attempts, r.error) for r in records] == [
        ("webhook", 1, "HTTP 404 from the receiver"),  # a 4xx is not retried
        ("slack", 1, None),
    ]
    provider.shutdown()


def test_a_group_of_600_alerts_reaches_every_receiver_within_their_limits(
    webhook: HttpReceiver, slack: HttpReceiver, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    smtp = SmtpSettings(
        host=HOST, port=port, sender="vrp@example.com", recipients=("ops@example.com",)
    )
    settings = replace(
        FAST, webhook_url=webhook.url("/hook"), slack_url=slack.url("/slack"), smtp=smtp
    )
    dispatcher = Dispatcher(settings, Sink())
    dispatcher.submit([alert(f"f-{n:03}", repository=f"r-{n:03}") for n in range(600)])

    records = dispatcher.step(now=time.time() + 1)

    assert [r.outcome for r in records] == ["delivered"] * 3
    [hook] = webhook.wait_for(1)
    assert len(hook.body["alerts"]) == 600
    [message] = slack.wait_for(1)
    blocks = message.body["blocks"]
    assert len(blocks) <= 50
    assert all(len(block["text"]["text"]) <= 3000 for block in blocks if "text" in block)
    assert blocks[-1]["elements"][0]["text"].startswith("and 590 more alerts")
    [(_, _, mail)] = box.wait_for(1)
    body = mail.get_payload(decode=True).decode()
    assert mail["Subject"].startswith("[FIRING:600] backup_overdue")
    assert body.count("  link: ") == 600


class _BrokenSink(Sink):
    def record_delivery(self, record: DeliveryRecord) -> None:
        super().record_delivery(record)
        raise RuntimeError("the alert store is read-only")


def test_a_failing_sink_is_logged_and_delivery_goes_on(
    webhook: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    sink = _BrokenSink()
    dispatcher = _started(replace(FAST, webhook_url=webhook.url("/hook"), group_wait=0.1), sink)
    try:
        dispatcher.submit([alert("f-1")])
        sink.wait_for(1)
        dispatcher.submit([alert("f-2", rule="http_5xx_rate")])
        records = sink.wait_for(2)
    finally:
        dispatcher.stop()

    assert [r.outcome for r in records] == ["delivered", "delivered"]
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and r.name.startswith("dashboard.")
    ]
    assert len(errors) == 2
    assert errors[0].endswith("on webhook failed (RuntimeError)")


def test_a_webhook_that_is_not_an_http_server_is_a_failed_record(
    mailbox: tuple[Mailbox, int],
) -> None:
    _, port = mailbox
    settings = replace(FAST, webhook_url=f"http://{HOST}:{port}/hook", retry_attempts=2)
    dispatcher = Dispatcher(settings, Sink())
    dispatcher.submit([alert()])

    [record] = dispatcher.step(now=time.time() + 1)

    assert (record.outcome, record.attempts) == ("failed", 2)
    assert record.error == "not an HTTP answer (BadStatusLine)"


def test_a_notification_not_delivered_goes_out_again_at_the_next_group_interval(
    webhook: HttpReceiver, slack: HttpReceiver
) -> None:
    settings = replace(
        FAST,
        webhook_url=webhook.url("/hook"),
        slack_url=slack.url("/slack"),
        group_wait=30,
        group_interval=300,
        retry_attempts=2,
    )
    t0 = 1_796_600_000.0
    dispatcher = Dispatcher(settings, Sink(), clock=lambda: t0)
    dispatcher.submit([alert()])
    webhook.answers = [500, 500]

    fired = dispatcher.step(now=t0 + 30)
    again = dispatcher.step(now=t0 + 330)
    dispatcher.submit([alert(state="resolved", ends_at=t0 + 400)])
    webhook.answers = [503, 503]
    resolved = dispatcher.step(now=t0 + 630)
    resolved_again = dispatcher.step(now=t0 + 930)
    quiet = dispatcher.step(now=t0 + 1230)

    def outcomes(records: list[DeliveryRecord]) -> list[tuple[str, str, tuple[str, ...]]]:
        return [(r.channel, r.outcome, r.states) for r in records]

    assert outcomes(fired) == [
        ("webhook", "failed", ("firing",)),
        ("slack", "delivered", ("firing",)),
    ]
    assert outcomes(again) == [("webhook", "delivered", ("firing",))]  # slack already has it
    assert outcomes(resolved) == [
        ("webhook", "failed", ("resolved",)),
        ("slack", "delivered", ("resolved",)),
    ]
    assert outcomes(resolved_again) == [("webhook", "delivered", ("resolved",))]
    assert quiet == []
    assert [r.body["status"] for r in webhook.received] == ["firing", "resolved"]
    assert [r.body["text"].split()[0] for r in slack.received] == ["[FIRING:1]", "[RESOLVED]"]
