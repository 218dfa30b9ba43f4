"""Alert states, transitions, silences and deliveries in the telemetry store.

Writes go through :meth:`TelemetryStore.transaction` (on SQLite they queue behind the
receiver's writer, as every write of the store does); an evaluation's new states and its
transitions are written in one transaction, so a restart finds them as the last evaluation
left them. Resolved alerts stay :data:`RESOLVED_KEPT_S`, the history and deliveries
:data:`HISTORY_KEPT_S`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from dashboard.alert_events import DeliveryRecord
from dashboard.alerts.state import RESOLVED, Alert, Transition
from dashboard.alerts.tables import alert_deliveries, alert_history, alert_silences, alert_states
from dashboard.store import TelemetryStore

RESOLVED_KEPT_S = 7 * 86400
HISTORY_KEPT_S = 30 * 86400


@dataclass(frozen=True)
class Silence:
    id: str
    rule: str | None
    fingerprint: str | None
    comment: str
    created_at: float
    ends_at: float

    def covers(self, alert: Alert, now: float) -> bool:
        if now >= self.ends_at:
            return False
        return alert.fingerprint == self.fingerprint or alert.rule == self.rule


def _alert(row: Any) -> Alert:
    return Alert(
        fingerprint=row.fingerprint,
        rule=row.rule,
        state=row.state,
        severity=row.severity,
        labels=orjson.loads(row.labels),
        annotations=orjson.loads(row.annotations),
        value=row.value,
        url=row.url,
        active_since=row.active_since,
        fired_at=row.fired_at,
        resolved_at=row.resolved_at,
        evaluated_at=row.evaluated_at,
    )


def _row(alert: Alert) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "rule": alert.rule,
        "state": alert.state,
        "severity": alert.severity,
        "labels": orjson.dumps(dict(alert.labels)).decode(),
        "annotations": orjson.dumps(dict(alert.annotations)).decode(),
        "value": alert.value,
        "url": alert.url,
        "active_since": alert.active_since,
        "fired_at": alert.fired_at,
        "resolved_at": alert.resolved_at,
        "evaluated_at": alert.evaluated_at,
    }


class AlertStore:
    """The alert tables of one telemetry store; also the :class:`DeliverySink` of notifiers."""

    def __init__(self, store: TelemetryStore) -> None:
        self.store = store

    # -- states -------------------------------------------------------------------------------

    def alerts(self) -> list[Alert]:
        with self.store.read() as conn:
            return [_alert(row) for row in conn.execute(sa.select(alert_states)).all()]

    def save(
        self,
        alerts: Sequence[Alert],
        transitions: Sequence[Transition],
        gone: Iterable[str],
        now: float,
    ) -> None:
        """One evaluation's outcome: alerts upserted, gone ones deleted, transitions added."""
        gone = list(gone)
        rows = [_row(alert) for alert in alerts]
        if not rows and not transitions and not gone:
            # A quiet evaluation takes no write lock (on SQLite the receiver's writer waits for
            # it); what it would prune goes with the next one that writes.
            return

        def work(conn: sa.Connection) -> None:
            if self.store.is_postgresql:
                # Dashboards sharing one store save one at a time (the rows they replace are
                # the same alerts'); the store's upgrade holds 8050.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(8051)"))
            if gone:
                conn.execute(alert_states.delete().where(alert_states.c.fingerprint.in_(gone)))
            if rows:
                keys = [row["fingerprint"] for row in rows]
                conn.execute(alert_states.delete().where(alert_states.c.fingerprint.in_(keys)))
                conn.execute(alert_states.insert(), rows)
            if transitions:
                conn.execute(
                    alert_history.insert(),
                    [
                        {
                            "fingerprint": t.fingerprint,
                            "rule": t.rule,
                            "labels": orjson.dumps(dict(t.labels)).decode(),
                            "from_state": t.from_state,
                            "to_state": t.to_state,
                            "value": t.value,
                            "at": t.at,
                        }
                        for t in transitions
                    ],
                )
            conn.execute(
                alert_states.delete().where(
                    alert_states.c.state == RESOLVED,
                    alert_states.c.resolved_at < now - RESOLVED_KEPT_S,
                )
            )
            conn.execute(alert_history.delete().where(alert_history.c.at < now - HISTORY_KEPT_S))
            conn.execute(
                alert_deliveries.delete().where(alert_deliveries.c.at < now - HISTORY_KEPT_S)
            )
            conn.execute(
                alert_silences.delete().where(alert_silences.c.ends_at < now - HISTORY_KEPT_S)
            )

        self.store.transaction(work)

    def history(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.execute(
                sa.select(alert_history).order_by(alert_history.c.at.desc()).limit(limit)
            ).all()
        return [
            {
                "fingerprint": r.fingerprint,
                "rule": r.rule,
                "labels": orjson.loads(r.labels),
                "from": r.from_state,
                "to": r.to_state,
                "value": r.value,
                "at": r.at,
            }
            for r in rows
        ]

    # -- silences -----------------------------------------------------------------------------

    def silences(self, now: float) -> list[Silence]:
        """The silences still in force at ``now``, ending soonest first."""
        with self.store.read() as conn:
            rows = conn.execute(
                sa.select(alert_silences)
                .where(alert_silences.c.ends_at > now)
                .order_by(alert_silences.c.ends_at)
            ).all()
        return [Silence(**row._mapping) for row in rows]

    def add_silence(
        self, rule: str | None, fingerprint: str | None, seconds: float, comment: str, now: float
    ) -> Silence:
        silence = Silence(secrets.token_hex(16), rule, fingerprint, comment, now, now + seconds)
        self.store.transaction(
            lambda conn: conn.execute(alert_silences.insert().values(**silence.__dict__))
        )
        return silence

    def expire_silence(self, silence_id: str, now: float) -> bool:
        """End a silence now; False when no silence in force has that id."""

        def work(conn: sa.Connection) -> int:
            return conn.execute(
                alert_silences.update()
                .where(alert_silences.c.id == silence_id, alert_silences.c.ends_at > now)
                .values(ends_at=now)
            ).rowcount

        return bool(self.store.transaction(work))

    # -- deliveries ---------------------------------------------------------------------------

    def record_delivery(self, record: DeliveryRecord) -> None:
        """Keep one delivery outcome (:class:`~dashboard.alert_events.DeliverySink`)."""
        row = {
            "channel": record.channel,
            "group_key": record.group_key,
            "fingerprints": orjson.dumps(list(record.fingerprints)).decode(),
            "states": orjson.dumps(list(record.states)).decode(),
            "outcome": record.outcome,
            "attempts": record.attempts,
            "at": record.at,
            "error": record.error,
        }
        self.store.transaction(lambda conn: conn.execute(alert_deliveries.insert().values(**row)))

    def failed_deliveries(self, since: float, limit: int = 50) -> list[DeliveryRecord]:
        """Deliveries that failed since ``since``, newest first."""
        with self.store.read() as conn:
            rows = conn.execute(
                sa.select(alert_deliveries)
                .where(alert_deliveries.c.outcome == "failed", alert_deliveries.c.at >= since)
                .order_by(alert_deliveries.c.at.desc())
                .limit(limit)
            ).all()
        return [
            DeliveryRecord(
                channel=r.channel,
                group_key=r.group_key,
                fingerprints=tuple(orjson.loads(r.fingerprints)),
                outcome=r.outcome,
                attempts=r.attempts,
                at=r.at,
                error=r.error,
                states=tuple(orjson.loads(r.states)),
            )
            for r in rows
        ]
