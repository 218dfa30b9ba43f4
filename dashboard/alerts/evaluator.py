"""The alert evaluator: every rule at each interval, in a background thread of the dashboard.

:meth:`AlertEvaluator.evaluate` runs one evaluation at a given instant (tests call it
directly): it reads the stored alerts, asks every rule for its active samples, advances the
states (:func:`dashboard.alerts.state.advance`), stores states and transitions in one
transaction and hands the notifier every firing alert and every alert this evaluation resolved,
less the silenced ones. Silenced alerts are evaluated and stored as any other; they are only not
notified. A rule that fails to read keeps its alerts as they were (it neither resolves nor
fires them) and is logged; the others go on.

:meth:`AlertEvaluator.start` runs evaluations every ``VRP_DASHBOARD_ALERT_INTERVAL`` until
:meth:`AlertEvaluator.stop`, backing off exponentially while the store fails, as the pruner
does; the notifier is started and stopped with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence

import flask
import sqlalchemy as sa
from werkzeug.wrappers import Response

from dashboard.alert_events import AlertEvent, AlertNotifier
from dashboard.alerts.builtin import builtin_rules
from dashboard.alerts.rules import Context, Rule
from dashboard.alerts.state import FIRING, RESOLVED, Alert, Transition, advance
from dashboard.alerts.store import AlertStore, Silence
from dashboard.notify.notifier import build_notifier
from dashboard.receiver import REJECTED_KEY
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from instrumentation import conventions as names

logger = logging.getLogger(__name__)
RECEIVER_PREFIX = "/v1/"
SIGNALS = frozenset({"traces", "metrics", "logs"})
MAX_BACKOFF_S = 600.0
# Seconds of receiver refusals remembered, at most (one entry per second and signal).
MAX_REFUSAL_SECONDS = 6 * 3600


class ReceiverRefusals:
    """What the OTLP receiver refused, per second and signal: every answer other than 200 to
    an export, and the records refused inside accepted ones (``partial_success``).

    Counted by an ``after_request`` hook (:meth:`install`), in this process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: deque[tuple[int, str, int]] = deque()

    def install(self, server: flask.Flask) -> None:
        server.after_request(self._count)

    def _count(self, response: Response) -> Response:
        path = flask.request.path
        if not path.startswith(RECEIVER_PREFIX):
            return response
        signal = path[len(RECEIVER_PREFIX) :]
        signal = signal if signal in SIGNALS else "other"
        refused = 1 if response.status_code != 200 else int(getattr(flask.g, REJECTED_KEY, 0))
        if refused:
            self.add(signal, refused, time.time())
        return response

    def add(self, signal: str, count: int, at: float) -> None:
        second = int(at)
        with self._lock:
            if self._seconds and self._seconds[-1][:2] == (second, signal):
                self._seconds[-1] = (second, signal, self._seconds[-1][2] + count)
            else:
                self._seconds.append((second, signal, count))
            while self._seconds and self._seconds[0][0] < second - MAX_REFUSAL_SECONDS:
                self._seconds.popleft()

    def over(self, seconds: float, now: float) -> dict[str, int]:
        """Refusals by signal in the ``seconds`` up to ``now``."""
        totals: dict[str, int] = defaultdict(int)
        with self._lock:
            for second, signal, count in self._seconds:
                if now - seconds < second + 1 and second <= now:
                    totals[signal] += count
        return dict(totals)


class AlertEvaluator:
    """Evaluates the built-in rules and ``settings.alerts.rules`` against ``store``."""

    def __init__(
        self,
        store: TelemetryStore,
        settings: DashboardSettings,
        notifier: AlertNotifier | None = None,
        *,
        rules: Sequence[Rule] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.alert_store = AlertStore(store)
        # Without a notifier given, the one the settings configure (none sends nothing).
        self.notifier: AlertNotifier = notifier or build_notifier(settings, self.alert_store)
        self.rules: tuple[Rule, ...] = (
            tuple(rules)
            if rules is not None
            else builtin_rules(settings.alerts) + tuple(settings.alerts.rules)
        )
        self.refusals = ReceiverRefusals()
        self._evaluating = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one evaluation -----------------------------------------------------------------------

    def evaluate(self, now: float | None = None) -> list[AlertEvent]:
        """Evaluate every rule at ``now`` (default: the current time); return what was submitted
        to the notifier."""
        now = time.time() if now is None else now
        with self._evaluating:
            stored = self.alert_store.alerts()
            by_rule: dict[str, list[Alert]] = defaultdict(list)
            for alert in stored:
                by_rule[alert.rule].append(alert)
            window = self.settings.alerts.window_seconds
            context = Context(self.store, self.settings, now, self.refusals.over(window, now))
            kept: list[Alert] = []
            transitions: list[Transition] = []
            gone: list[str] = []
            for rule in self.rules:
                previous = by_rule.pop(rule.name, [])
                try:
                    samples = rule.active(context)
                except (sa.exc.SQLAlchemyError, ValueError, ArithmeticError) as exc:
                    logger.warning(
                        "alert rule %s could not be evaluated (%s); its alerts are kept as "
                        "they were",
                        rule.name,
                        type(exc).__name__,
                    )
                    kept.extend(previous)
                    continue
                rule_kept, rule_transitions, rule_gone = advance(rule, samples, previous, now)
                kept.extend(rule_kept)
                transitions.extend(rule_transitions)
                gone.extend(rule_gone)
            # Alerts of rules no longer configured are forgotten.
            gone.extend(alert.fingerprint for alerts in by_rule.values() for alert in alerts)
            self.alert_store.save(kept, transitions, gone, now)
            silences = self.alert_store.silences(now)
        events = _events(kept, transitions, silences, now)
        if events:
            try:
                self.notifier.submit(events)
            except Exception:  # a notifier must never stop the evaluations
                logger.exception("the alert notifier failed to take %d events", len(events))
        for transition in transitions:
            if transition.to_state in (FIRING, RESOLVED):
                logger.info(
                    "alert %s %s",
                    transition.rule,
                    transition.to_state,
                    extra={
                        names.VRP_ALERT_RULE: transition.rule,
                        names.VRP_ALERT_FINGERPRINT: transition.fingerprint,
                        names.VRP_ALERT_STATE: transition.to_state,
                    },
                )
        return events

    # -- the background thread ----------------------------------------------------------------

    def start(self) -> None:
        """Start evaluating every interval, and the notifier (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.notifier.start()
        self._thread = threading.Thread(target=self._run, name="dashboard-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop evaluating, then the notifier (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
            self.notifier.stop()

    def _run(self) -> None:
        interval = self.settings.alerts.interval_seconds
        failures = 0
        delay = interval
        while not self._stop.wait(delay):
            try:
                self.evaluate()
            except sa.exc.SQLAlchemyError as exc:
                failures += 1
                delay = min(interval * 2**failures, MAX_BACKOFF_S)
                logger.warning(
                    "evaluating alert rules failed (%s); retrying in %.0f s",
                    type(exc).__name__,
                    delay,
                )
                continue
            if failures:
                logger.info("evaluating alert rules works again after %d failures", failures)
            failures, delay = 0, interval


def _silenced(alert: Alert, silences: Sequence[Silence], now: float) -> bool:
    return any(silence.covers(alert, now) for silence in silences)


def _events(
    alerts: Sequence[Alert],
    transitions: Sequence[Transition],
    silences: Sequence[Silence],
    now: float,
) -> list[AlertEvent]:
    resolved_now = {t.fingerprint for t in transitions if t.to_state == RESOLVED}
    events = []
    for alert in alerts:
        if alert.state == FIRING or alert.fingerprint in resolved_now:
            if _silenced(alert, silences, now):
                continue
            events.append(event_of(alert))
    return events


def event_of(alert: Alert) -> AlertEvent:
    state = FIRING if alert.state == FIRING else RESOLVED
    return AlertEvent(
        rule=alert.rule,
        fingerprint=alert.fingerprint,
        state=state,
        severity=alert.severity,
        labels=dict(alert.labels),
        annotations=dict(alert.annotations),
        value=alert.value,
        starts_at=alert.fired_at if alert.fired_at is not None else alert.active_since,
        ends_at=alert.resolved_at if state == RESOLVED else None,
        url=alert.url,
    )


def silenced_fingerprints(
    alerts: Sequence[Alert], silences: Sequence[Silence], now: float
) -> Mapping[str, str]:
    """Fingerprint -> id of the silence that covers it, for the alerts that one covers."""
    found = {}
    for alert in alerts:
        for silence in silences:
            if silence.covers(alert, now):
                found[alert.fingerprint] = silence.id
                break
    return found
