"""``/metrics`` of the dashboard: the numbers an operator alerts on, for a Prometheus server.

Served when ``VRP_DASHBOARD_METRICS_ENABLED`` is true (404 otherwise), behind the bearer token
when ``VRP_DASHBOARD_TOKEN`` is set (401 without it, 429 past the wrong-token limit, counted
with the other checks' wrong tokens). ``docker/prometheus/rules.yml`` alerts on these.

Computed from the store at scrape time (:class:`StoreCollector`), per ``service`` as the
telemetry names it - several stacks reporting to one dashboard under different service names
stay apart:

* ``vrp_backup_last_success_timestamp_seconds``, ``vrp_backup_last_run_timestamp_seconds``,
  ``vrp_backup_last_run_success`` (1 or 0) and ``vrp_backup_expected_interval_seconds``
  (``VRP_DASHBOARD_BACKUP_INTERVAL``), from the ``backup.run`` spans;
* ``vrp_http_server_requests_5m``, ``vrp_http_server_errors_5m`` (5xx) and
  ``vrp_http_server_request_duration_p95_seconds_5m``: the last five minutes of the
  ``http.server.request.duration`` histogram as the dashboard adds it up over every process
  of the service (all gunicorn workers together), or of the SERVER spans for a service that
  sends no metrics.

Counted in this process since it started (:class:`ReceiverCounts`):
``vrp_dashboard_receiver_requests_total{signal, code}`` - the OTLP receiver's answers, every
code other than 200 a refusal - and ``vrp_dashboard_receiver_rejected_items_total{signal}``,
the spans, points and log records refused inside accepted requests (``partial_success``).

The process's own OpenTelemetry metrics and ``process_*`` come first, when the process's
telemetry has a Prometheus reader (:mod:`instrumentation.prometheus`).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from werkzeug.wrappers import Response

from dashboard.attempts import TokenAttempts
from dashboard.auth import too_many, unauthorized
from dashboard.reads import traffic
from dashboard.reads.window import TimeRange
from dashboard.receiver import REJECTED_KEY, check_token
from dashboard.schema import backup_runs
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from instrumentation import conventions as names
from instrumentation.prometheus import CONTENT_TYPE, METRICS_PATH, exposition

RECEIVER_PREFIX = "/v1/"
# The receiver's signals; any other path under /v1/ counts as "other", so that a client cannot
# make a label value per path it tries.
SIGNALS = frozenset({"traces", "metrics", "logs"})
RECENT = timedelta(minutes=5)

logger = logging.getLogger(__name__)


class ReceiverCounts:
    """The OTLP receiver's answers and refused items, counted by an ``after_request`` hook."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.responses: Counter[tuple[str, str]] = Counter()
        self.rejected: Counter[str] = Counter()

    def count(self, response: Response) -> Response:
        path = flask.request.path
        if path.startswith(RECEIVER_PREFIX):
            signal = path[len(RECEIVER_PREFIX) :]
            if signal not in SIGNALS:
                signal = "other"
            rejected = int(getattr(flask.g, REJECTED_KEY, 0))
            with self._lock:
                self.responses[(signal, str(response.status_code))] += 1
                if rejected:
                    self.rejected[signal] += rejected
        return response


class StoreCollector:
    """A ``prometheus_client`` collector reading the store at each scrape (module doc)."""

    def __init__(
        self, store: TelemetryStore, settings: DashboardSettings, receiver: ReceiverCounts
    ) -> None:
        self._store = store
        self._settings = settings
        self._receiver = receiver

    def collect(self) -> Iterator[Metric]:
        yield from self._backups()
        yield from self._requests()
        yield from self._receiver_families()

    def _backups(self) -> Iterator[Metric]:
        last_success = GaugeMetricFamily(
            "vrp_backup_last_success_timestamp_seconds",
            "When the newest successful backup run ended (unix time)",
            labels=["service"],
        )
        last_run = GaugeMetricFamily(
            "vrp_backup_last_run_timestamp_seconds",
            "When the newest backup run ended (unix time)",
            labels=["service"],
        )
        last_ok = GaugeMetricFamily(
            "vrp_backup_last_run_success",
            "1 when the newest backup run succeeded, else 0",
            labels=["service"],
        )
        interval = GaugeMetricFamily(
            "vrp_backup_expected_interval_seconds",
            "How often backups are expected (VRP_DASHBOARD_BACKUP_INTERVAL)",
            labels=["service"],
        )
        runs = backup_runs.c
        end_s = runs.start_ns / 1e9 + runs.duration_ms / 1e3
        newest_start = (
            sa.select(runs.service, sa.func.max(runs.start_ns).label("start_ns"))
            .group_by(runs.service)
            .subquery()
        )
        newest = sa.select(runs.service, runs.status, end_s).join(
            newest_start,
            sa.and_(
                runs.service == newest_start.c.service, runs.start_ns == newest_start.c.start_ns
            ),
        )
        successes = (
            sa.select(runs.service, sa.func.max(end_s))
            .where(runs.status == names.BACKUP_STATUS_SUCCESS)
            .group_by(runs.service)
        )
        with self._store.read() as conn:
            latest = {service: (status, ended) for service, status, ended in conn.execute(newest)}
            succeeded = dict(conn.execute(successes).all())
        for service, (status, ended) in sorted(latest.items()):
            last_run.add_metric([service], float(ended))
            last_ok.add_metric([service], 1.0 if status == names.BACKUP_STATUS_SUCCESS else 0.0)
            interval.add_metric([service], self._settings.backup_interval_seconds)
            if service in succeeded:
                last_success.add_metric([service], float(succeeded[service]))
        yield from (last_success, last_run, last_ok, interval)

    def _requests(self) -> Iterator[Metric]:
        requests = GaugeMetricFamily(
            "vrp_http_server_requests_5m",
            "HTTP requests served in the last 5 minutes, every process of the service",
            labels=["service", "source"],
        )
        errors = GaugeMetricFamily(
            "vrp_http_server_errors_5m",
            "HTTP requests answered with a 5xx in the last 5 minutes",
            labels=["service", "source"],
        )
        p95 = GaugeMetricFamily(
            "vrp_http_server_request_duration_p95_seconds_5m",
            "95th percentile of the HTTP request duration over the last 5 minutes",
            labels=["service", "source"],
        )
        now = datetime.now(UTC)
        summary = traffic.summary(self._store, TimeRange(now - RECENT, now))
        chosen: dict[str, dict[str, Any]] = {}
        for row in summary["services"]:
            # The metrics are true whatever the trace sampler kept; spans only for a service
            # that sends no metrics.
            if row["source"] == "metrics" or row["service"] not in chosen:
                chosen[row["service"]] = row
        for service, row in sorted(chosen.items()):
            labels = [service, str(row["source"])]
            requests.add_metric(labels, float(row["count"]))
            errors.add_metric(labels, float(row["errors"]))
            if row["p95_ms"] is not None:
                p95.add_metric(labels, float(row["p95_ms"]) / 1000)
        yield from (requests, errors, p95)

    def _receiver_families(self) -> Iterator[Metric]:
        responses = CounterMetricFamily(
            "vrp_dashboard_receiver_requests",
            "OTLP export requests answered by the receiver, by signal and HTTP status",
            labels=["signal", "code"],
        )
        rejected = CounterMetricFamily(
            "vrp_dashboard_receiver_rejected_items",
            "Spans, metric points and log records refused inside accepted OTLP requests",
            labels=["signal"],
        )
        with self._receiver._lock:
            for (signal, code), count in sorted(self._receiver.responses.items()):
                responses.add_metric([signal, code], count)
            for signal, count in sorted(self._receiver.rejected.items()):
                rejected.add_metric([signal], count)
        yield from (responses, rejected)


def _not_found() -> Response:
    response = flask.jsonify(
        code=404,
        status="Not Found",
        message="metrics are not served: set VRP_DASHBOARD_METRICS_ENABLED=true",
    )
    response.status_code = 404
    return response


def install_metrics(
    server: flask.Flask,
    store: TelemetryStore,
    settings: DashboardSettings,
    attempts: TokenAttempts,
) -> None:
    """``GET /metrics`` on ``server`` as the module doc says.

    Installed before the UI's login guard (:func:`dashboard.auth.install_auth`): a scraper
    gets 401, never the login page's redirect.
    """
    if not settings.metrics_enabled:
        server.add_url_rule(METRICS_PATH, "prometheus_metrics", _not_found)
        return
    receiver = ReceiverCounts()
    server.after_request(receiver.count)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, settings, receiver))
    token = settings.token

    def guard() -> Response | None:
        if token is None or flask.request.path != METRICS_PATH:
            return None
        authorization = flask.request.headers.get("Authorization", "")
        refused = check_token(token, attempts, authorization, flask.request.remote_addr)
        if refused is None:
            return None
        if refused.status != 429:
            return unauthorized(
                "send Authorization: Bearer <VRP_DASHBOARD_TOKEN> (bearer_token in prometheus.yml)"
            )
        return too_many(int(dict(refused.headers)["Retry-After"]))

    def metrics() -> Response:
        try:
            body = exposition(registry)
        except sa.exc.SQLAlchemyError as exc:
            logger.warning("metrics scrape: telemetry store unavailable: %s", type(exc).__name__)
            response = flask.jsonify(
                code=503, status="Service Unavailable", message="telemetry store unavailable"
            )
            response.status_code = 503
            return response
        return Response(body, content_type=CONTENT_TYPE)

    server.before_request(guard)
    server.add_url_rule(METRICS_PATH, "prometheus_metrics", metrics)
