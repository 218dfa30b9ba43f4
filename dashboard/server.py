"""The dashboard's Flask server: telemetry store, OTLP receiver, JSON API, background pruning.

:func:`create_server` builds it; the Dash UI (:mod:`dashboard.app`) mounts on it as Dash's
``server=``. Nothing starts at import or construction: :meth:`DashboardServer.start_background`
starts the pruning thread and the alert evaluator (with its notifier), and
:meth:`DashboardServer.stop_background` stops them (and closes the store the server opened
itself).
"""

from __future__ import annotations

from flask import Flask

from dashboard.alert_events import AlertNotifier
from dashboard.alerts import api as alerts_api
from dashboard.alerts.evaluator import AlertEvaluator
from dashboard.api import register_api
from dashboard.attempts import TokenAttempts
from dashboard.auth import HEALTH_PATH
from dashboard.headers import install_security_headers
from dashboard.prometheus import install_metrics
from dashboard.receiver import create_receiver_blueprint
from dashboard.retention import Pruner
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from dashboard.writer import GroupWriter


class DashboardServer(Flask):
    """A Flask app that owns a telemetry store and its pruning thread."""

    store: TelemetryStore
    writer: GroupWriter
    pruner: Pruner
    alerts: AlertEvaluator
    owns_store: bool
    # Wrong tokens per client address, shared by the login, the API's and the receiver's checks.
    token_attempts: TokenAttempts

    def start_background(self) -> None:
        """Start pruning the store and evaluating alert rules (idempotent)."""
        self.pruner.start()
        self.alerts.start()

    def stop_background(self) -> None:
        """Stop evaluating alerts, pruning and writing; close the store if this server opened
        it (idempotent)."""
        self.alerts.stop()
        self.pruner.stop()
        self.writer.close()
        if self.owns_store:
            self.store.dispose()


def create_server(
    settings: DashboardSettings,
    *,
    store: TelemetryStore | None = None,
    notifier: AlertNotifier | None = None,
) -> DashboardServer:
    """The server for ``settings``; opens and upgrades the store unless one is given.

    ``notifier`` receives the firing and resolved alerts of every evaluation; without one, the
    channels ``settings`` configure get them (:func:`dashboard.notify.notifier.build_notifier`).
    """
    app = DashboardServer("dashboard")
    app.owns_store = store is None
    if store is None:
        store = TelemetryStore(settings.store_url)
        store.upgrade()
    app.store = store
    app.writer = GroupWriter(store)
    app.pruner = Pruner(store, settings)
    app.alerts = AlertEvaluator(store, settings, notifier)
    app.alerts.refusals.install(app)
    app.extensions["alert_evaluator"] = app.alerts
    app.extensions["telemetry_store"] = store
    app.extensions["dashboard_settings"] = settings
    app.token_attempts = TokenAttempts()
    app.register_blueprint(create_receiver_blueprint(settings, app.writer, app.token_attempts))
    register_api(app).register_blueprint(alerts_api.blp)
    install_security_headers(app)
    app.add_url_rule(HEALTH_PATH, "healthz", _healthz)
    install_metrics(app, store, settings, app.token_attempts)
    return app


def _healthz() -> dict[str, str]:
    """The process answers (no store access: a health check must stay cheap and open)."""
    return {"status": "ok"}
