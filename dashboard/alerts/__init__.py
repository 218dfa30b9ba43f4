"""Alerts: rules evaluated by the dashboard from its own store, with Prometheus's semantics.

* :mod:`dashboard.alerts.rules` - what a rule is, and the user's rules read from the YAML file
  named by ``VRP_DASHBOARD_ALERT_RULES``;
* :mod:`dashboard.alerts.builtin` - the rules that are on by default (backups, 5xx rate, p95
  per route, pool, receiver, silent services);
* :mod:`dashboard.alerts.state` - the inactive -> pending -> firing -> resolved transitions;
* :mod:`dashboard.alerts.tables` and :mod:`dashboard.alerts.store` - states, their history,
  silences and notification deliveries, in the telemetry store (revision 0004);
* :mod:`dashboard.alerts.evaluator` - the background thread that evaluates every rule at each
  interval and hands firing and resolved alerts to an
  :class:`~dashboard.alert_events.AlertNotifier`;
* :mod:`dashboard.alerts.api` - ``/api/alerts``, ``/api/alerts/rules`` and the silences.

Delivery of notifications is :mod:`dashboard.notify`'s; the two meet in
:mod:`dashboard.alert_events`.
"""
