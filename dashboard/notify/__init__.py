"""Alert notifications: Alertmanager-style grouping and delivery to webhooks, Slack and e-mail.

The alert evaluator (:mod:`dashboard.alerts`) hands its events to an
:class:`~dashboard.alert_events.AlertNotifier` made by
:func:`dashboard.notify.notifier.build_notifier`, and gets every delivery outcome back through
its :class:`~dashboard.alert_events.DeliverySink`. This module imports nothing, so that the
dashboard's settings can read :mod:`~dashboard.notify.settings` without loading the channels.

Modules: :mod:`~dashboard.notify.settings` (the ``VRP_DASHBOARD_ALERT_*`` variables),
:mod:`~dashboard.notify.notifier` (:func:`~dashboard.notify.notifier.build_notifier`),
:mod:`~dashboard.notify.grouping` (groups and their timers), :mod:`~dashboard.notify.dispatcher`
(the notifier), :mod:`~dashboard.notify.delivery` (a worker per channel, retries),
:mod:`~dashboard.notify.messages` (titles, links, times), and one module per channel:
:mod:`~dashboard.notify.webhook`, :mod:`~dashboard.notify.slack`, :mod:`~dashboard.notify.smtp`.
"""
