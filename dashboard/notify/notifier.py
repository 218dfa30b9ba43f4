"""The notifier the dashboard starts: a :class:`Dispatcher`, or one that sends nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from dashboard.alert_events import AlertEvent, AlertNotifier, DeliverySink
from dashboard.notify.dispatcher import Dispatcher
from dashboard.settings import DashboardSettings


class NullNotifier:
    """The notifier when no channel is configured: it takes events and sends nothing."""

    def submit(self, events: Sequence[AlertEvent]) -> None:
        return None

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None


def build_notifier(
    settings: DashboardSettings, sink: DeliverySink, clock: Callable[[], float] = time.time
) -> AlertNotifier:
    """A :class:`Dispatcher` for the channels ``settings`` configure, or a :class:`NullNotifier`.

    Not started: the caller calls ``start()`` with its other background threads and ``stop()``
    when it stops.
    """
    if not settings.notify.has_channels:
        return NullNotifier()
    return Dispatcher(settings.notify, sink, clock)
