"""Alert notifications: Alertmanager-style grouping and delivery to webhooks, Slack and e-mail.

The alert evaluator (:mod:`dashboard.alerts`) hands its events to an
:class:`~dashboard.alert_events.AlertNotifier` made by :func:`build_notifier`, and gets every
delivery outcome back through its :class:`~dashboard.alert_events.DeliverySink`.

Modules: :mod:`~dashboard.notify.settings` (the ``VRP_DASHBOARD_ALERT_*`` variables),
:mod:`~dashboard.notify.grouping` (groups and their timers), :mod:`~dashboard.notify.dispatcher`
(the notifier), :mod:`~dashboard.notify.delivery` (a worker per channel, retries),
:mod:`~dashboard.notify.messages` (titles, links, times), and one module per channel:
:mod:`~dashboard.notify.webhook`, :mod:`~dashboard.notify.slack`, :mod:`~dashboard.notify.smtp`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dashboard.alert_events import AlertEvent, AlertNotifier, DeliverySink
from dashboard.notify.dispatcher import Dispatcher

if TYPE_CHECKING:
    from dashboard.settings import DashboardSettings

__all__ = ["Dispatcher", "NullNotifier", "build_notifier"]


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
