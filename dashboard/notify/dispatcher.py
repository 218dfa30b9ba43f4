"""The notifier the alert evaluator talks to: groups events, hands notifications to channels.

:class:`Dispatcher` implements :class:`~dashboard.alert_events.AlertNotifier`. ``submit`` only
takes the events into their groups (:mod:`~dashboard.notify.grouping`; each channel keeps its
own, so what a failed channel missed is said again on it alone, at the group's next
``group_interval``) under a lock and returns: evaluation never waits for a channel. A
background thread looks at the groups at least every ``tick`` seconds and queues each
notification due on its channel's worker (:mod:`~dashboard.notify.delivery`), which delivers
it with retries. Every outcome is logged (a failure as one WARNING line without any secret),
counted (``vrp.alert.notifications`` and :meth:`Dispatcher.stats`) and handed to the
:class:`~dashboard.alert_events.DeliverySink`.

What is lost on purpose when the process stops: groups still inside their ``group_wait`` and
notifications not yet delivered are reported as failed (``not sent: the dashboard stopped
first``); the alert states are in the store, so the evaluator submits them again after a
restart and the next notification carries them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opentelemetry import metrics

from dashboard.alert_events import AlertEvent, DeliveryRecord, DeliverySink
from dashboard.notify.delivery import Channel, ChannelWorker
from dashboard.notify.grouping import Grouper, Notification
from dashboard.notify.settings import NotifySettings
from dashboard.notify.slack import SlackChannel
from dashboard.notify.smtp import EmailChannel
from dashboard.notify.webhook import WebhookChannel
from instrumentation import conventions as names

logger = logging.getLogger(__name__)
DEFAULT_TICK = 1.0
DEFAULT_STOP_TIMEOUT = 5.0


def build_channels(settings: NotifySettings) -> list[Channel]:
    """One channel per destination the settings configure (none, some or all three)."""
    options = {"external_url": settings.external_url, "timeout": settings.timeout}
    channels: list[Channel] = []
    if settings.webhook_url:
        channels.append(WebhookChannel(settings.webhook_url, **options))
    if settings.slack_url:
        channels.append(SlackChannel(settings.slack_url, **options))
    if settings.smtp is not None:
        channels.append(EmailChannel(settings.smtp, **options))
    return channels


@dataclass(frozen=True)
class _Lane:
    """One channel with its own groups: what was said on one channel is not what was said on
    another when one of them failed (Alertmanager keeps a notification log per receiver)."""

    grouper: Grouper
    worker: ChannelWorker


class Dispatcher:
    """Alertmanager-style grouping and delivery of alert events to every configured channel."""

    def __init__(
        self,
        settings: NotifySettings,
        sink: DeliverySink,
        clock: Callable[[], float] = time.time,
        *,
        tick: float = DEFAULT_TICK,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._clock = clock
        self._tick = tick
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lanes = [self._lane(channel) for channel in build_channels(settings)]
        self._counts: Counter[tuple[str, str]] = Counter()
        self._counts_lock = threading.Lock()
        meter = metrics.get_meter(__name__, meter_provider=meter_provider)
        self._counter = meter.create_counter(
            names.VRP_ALERT_NOTIFICATIONS,
            unit="{notification}",
            description="Alert notifications by channel and outcome (delivered or failed).",
        )

    def _lane(self, channel: Channel) -> _Lane:
        settings = self._settings
        grouper = Grouper(
            group_by=settings.group_by,
            group_wait=settings.group_wait,
            group_interval=settings.group_interval,
            repeat_interval=settings.repeat_interval,
        )

        def report(record: DeliveryRecord, notification: Notification) -> None:
            self._record(record, notification, grouper)

        worker = ChannelWorker(channel, settings, report, self._clock, self._stopping)
        return _Lane(grouper, worker)

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(lane.worker.channel.name for lane in self._lanes)

    def submit(self, events: Sequence[AlertEvent]) -> None:
        """Take the events of one evaluation; returns at once (delivery happens elsewhere)."""
        events = list(events)
        now = self._clock()
        with self._lock:
            for lane in self._lanes:
                lane.grouper.add(events, now)
        self._wake.set()

    def flush(self, now: float | None = None) -> int:
        """Queue every notification due at ``now`` on its channel; return how many."""
        now = self._clock() if now is None else now
        queued = 0
        for lane in self._lanes:
            with self._lock:
                due = lane.grouper.due(now)
            for notification in due:
                lane.worker.put(notification)
            queued += len(due)
        return queued

    def step(self, now: float | None = None) -> list[DeliveryRecord]:
        """Deliver what is due at ``now`` in the caller's thread, channel after channel.

        For tests and one-shot tools: the outcomes are recorded as the background thread
        records them, and returned.
        """
        now = self._clock() if now is None else now
        records = []
        for lane in self._lanes:
            with self._lock:
                due = lane.grouper.due(now)
            for notification in due:
                record = lane.worker.deliver(notification)
                self._record(record, notification, lane.grouper)
                records.append(record)
        return records

    def start(self) -> None:
        """Start the channel workers and the loop that looks at the groups (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        for lane in self._lanes:
            lane.worker.start()
        self._thread = threading.Thread(target=self._run, name="alert-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop within about ``timeout`` seconds, even with a channel that does not answer.

        Retries that wait are abandoned; a delivery in progress gets what is left of
        ``timeout`` to end. Notifications not delivered are reported as failed.
        """
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(deadline - time.monotonic(), 0.0))
            self._thread = None
        for lane in self._lanes:
            lane.worker.shutdown()
        for lane in self._lanes:
            lane.worker.join(deadline - time.monotonic())
        for lane in self._lanes:
            lane.worker.fail_queued()

    def stats(self) -> dict[str, dict[str, int]]:
        """``{channel: {"delivered": n, "failed": n}}`` since this dispatcher was made."""
        with self._counts_lock:
            return {
                channel: {
                    outcome: self._counts[(channel, outcome)] for outcome in ("delivered", "failed")
                }
                for channel in self.channels
            }

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                dues = [lane.grouper.next_due() for lane in self._lanes]
            next_due = min((due for due in dues if due is not None), default=None)
            wait = self._tick if next_due is None else min(self._tick, next_due - self._clock())
            self._wake.wait(max(wait, 0.0))
            self._wake.clear()
            if self._stopping.is_set():
                return
            self.flush()

    def _record(self, record: DeliveryRecord, notification: Notification, grouper: Grouper) -> None:
        """Log, count and keep one outcome; a failing sink is logged, never raised.

        A notification not delivered is said again at its group's next look on that channel
        (unless the dashboard is stopping).
        """
        if record.outcome == "failed" and not self._stopping.is_set():
            with self._lock:
                grouper.undelivered(notification)
        attributes = {
            names.VRP_ALERT_CHANNEL: record.channel,
            names.VRP_ALERT_DELIVERY_OUTCOME: record.outcome,
        }
        if record.outcome == "failed":
            logger.warning(
                "alert notification %s not delivered on %s after %d attempts: %s",
                record.group_key,
                record.channel,
                record.attempts,
                record.error,
                extra=attributes,
            )
        else:
            logger.info(
                "alert notification %s delivered on %s (%d attempts)",
                record.group_key,
                record.channel,
                record.attempts,
                extra=attributes,
            )
        with self._counts_lock:
            self._counts[(record.channel, record.outcome)] += 1
        self._counter.add(1, attributes)
        try:
            self._sink.record_delivery(record)
        except Exception as exc:  # the store's trouble must not end a worker thread
            logger.error(
                "keeping the outcome of alert notification %s on %s failed (%s)",
                record.group_key,
                record.channel,
                type(exc).__name__,
            )
