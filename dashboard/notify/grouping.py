"""Alertmanager's grouping, in memory: which notifications are due, and when.

Events are grouped by rule: the group key is the rule's name (``alertname``) and the values of
the ``group_by`` labels. The timings are Alertmanager's:

* a new group waits ``group_wait`` before its first notification, so that alerts that fire
  together go out in one message;
* after that the group is looked at every ``group_interval``: a change (an alert started firing
  or resolved) is sent then;
* a group still firing with no change is sent again once ``repeat_interval`` has passed since
  its last notification;
* a resolved alert is sent once, in the next notification of its group, and then forgotten; an
  alert that resolved before any notification said it fired is dropped without a message (but
  see :meth:`Grouper._resolves_unseen` for alerts resolved across a restart);
* an alert stays in its group, firing, until an event resolves it: the evaluator submits every
  firing alert after each evaluation and each resolve once;
* a group with no alert left is forgotten (the next event starts a new group, with its wait).

A notification holds every alert of its group (firing first, then the ones it resolves), as
Alertmanager's do. :class:`Grouper` does no I/O and takes the time as an argument; it is not
thread-safe (the dispatcher holds a lock around it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dashboard.alert_events import AlertEvent, AlertState

ALERTNAME = "alertname"
FIRING: AlertState = "firing"
RESOLVED: AlertState = "resolved"


@dataclass(frozen=True)
class Notification:
    """One message about one group, the same on every channel."""

    group_key: str
    rule: str
    group_labels: Mapping[str, str]
    alerts: tuple[AlertEvent, ...]
    at: float

    @property
    def status(self) -> AlertState:
        """``firing`` while any of its alerts fires, ``resolved`` when it only resolves."""
        return FIRING if any(alert.state == FIRING for alert in self.alerts) else RESOLVED

    @property
    def firing(self) -> tuple[AlertEvent, ...]:
        return tuple(alert for alert in self.alerts if alert.state == FIRING)

    @property
    def resolved(self) -> tuple[AlertEvent, ...]:
        return tuple(alert for alert in self.alerts if alert.state == RESOLVED)

    @property
    def fingerprints(self) -> tuple[str, ...]:
        return tuple(alert.fingerprint for alert in self.alerts)

    @property
    def states(self) -> tuple[AlertState, ...]:
        return tuple(alert.state for alert in self.alerts)


def alert_labels(event: AlertEvent) -> dict[str, str]:
    """The labels of an alert as receivers see them: its own plus ``alertname`` and ``severity``."""
    labels = {ALERTNAME: event.rule, "severity": event.severity}
    labels.update(event.labels)
    return labels


def group_labels(event: AlertEvent, group_by: Iterable[str]) -> dict[str, str]:
    """``alertname`` and the ``group_by`` labels the event has."""
    labels = alert_labels(event)
    grouped = {ALERTNAME: event.rule}
    grouped.update({name: labels[name] for name in group_by if name in labels})
    return grouped


def group_key(labels: Mapping[str, str]) -> str:
    """Alertmanager's spelling of a group key: ``{}:{alertname="...", service="..."}``."""
    inner = ", ".join(f"{name}={json.dumps(value)}" for name, value in sorted(labels.items()))
    return "{}:{" + inner + "}"


@dataclass
class _Group:
    key: str
    rule: str
    labels: dict[str, str]
    next_flush: float
    alerts: dict[str, AlertEvent] = field(default_factory=dict)
    # The fingerprints the last notification said were firing.
    notified: frozenset[str] = frozenset()
    last_sent: float | None = None


class Grouper:
    """Groups of alerts and their timers (see the module docstring for the rules)."""

    def __init__(
        self,
        *,
        group_by: Iterable[str] = (),
        group_wait: float,
        group_interval: float,
        repeat_interval: float,
    ) -> None:
        self._group_by = tuple(group_by)
        self._group_wait = group_wait
        self._group_interval = group_interval
        self._repeat_interval = repeat_interval
        self._groups: dict[str, _Group] = {}
        # Fingerprints whose resolve went out, and when: kept one repeat_interval.
        self._resolved_sent: dict[str, float] = {}

    def add(self, events: Iterable[AlertEvent], now: float) -> None:
        """Take the events of one evaluation into their groups."""
        for event in events:
            labels = group_labels(event, self._group_by)
            key = group_key(labels)
            group = self._groups.get(key)
            unknown = group is None or event.fingerprint not in group.alerts
            if event.state == FIRING:
                self._resolved_sent.pop(event.fingerprint, None)
            elif unknown and not self._resolves_unseen(event):
                continue
            if group is None:
                group = _Group(key, event.rule, labels, next_flush=now + self._group_wait)
                self._groups[key] = group
            if event.state == RESOLVED and unknown:
                group.notified |= {event.fingerprint}
            group.alerts[event.fingerprint] = event

    def _resolves_unseen(self, event: AlertEvent) -> bool:
        """Whether to send the resolve of an alert this process has not seen firing.

        After a restart the evaluator may resolve an alert whose firing message went out before
        it: without a notification log on disk (Alertmanager keeps one), an alert that fired
        for ``group_wait`` or longer is taken as notified, so its resolve is sent rather than
        lost. A resolve already sent (the same event submitted again) is not sent twice.
        """
        if event.fingerprint in self._resolved_sent or event.ends_at is None:
            return False
        return event.ends_at - event.starts_at >= self._group_wait

    def undelivered(self, notification: Notification) -> None:
        """Say again what ``notification`` said, at its group's next look: it was not delivered.

        Alertmanager does the same (its notification log records only what was delivered): a
        channel that was down gets the group's state once it is back, every
        ``group_interval``, instead of only at the next ``repeat_interval``.
        """
        group = self._groups.get(notification.group_key)
        if group is None:
            if not notification.resolved:
                return
            group = _Group(
                notification.group_key,
                notification.rule,
                dict(notification.group_labels),
                next_flush=notification.at + self._group_interval,
            )
            self._groups[notification.group_key] = group
        for alert in notification.resolved:
            group.alerts.setdefault(alert.fingerprint, alert)
            self._resolved_sent.pop(alert.fingerprint, None)
        # Firing alerts count as not notified; the resolves as notified, so they go out again.
        group.notified = frozenset(
            alert.fingerprint
            for alert in notification.resolved
            if group.alerts[alert.fingerprint].state == RESOLVED
        )

    def next_due(self) -> float | None:
        """When the earliest group is next looked at, or None without any group."""
        return min((group.next_flush for group in self._groups.values()), default=None)

    def __len__(self) -> int:
        return len(self._groups)

    def due(self, now: float) -> list[Notification]:
        """The notifications due at ``now``; advances the timers of the groups looked at."""
        notifications = []
        forget = now - self._repeat_interval
        for fingerprint in [fp for fp, at in self._resolved_sent.items() if at < forget]:
            del self._resolved_sent[fingerprint]
        for key in [key for key, group in self._groups.items() if group.next_flush <= now]:
            group = self._groups[key]
            notification = self._flush(group, now)
            if notification is not None:
                notifications.append(notification)
            if group.alerts:
                group.next_flush = now + self._group_interval
            else:
                del self._groups[key]
        return notifications

    def _flush(self, group: _Group, now: float) -> Notification | None:
        firing = [alert for alert in group.alerts.values() if alert.state == FIRING]
        resolved = [
            alert
            for alert in group.alerts.values()
            if alert.state == RESOLVED and alert.fingerprint in group.notified
        ]
        for fingerprint in [fp for fp, alert in group.alerts.items() if alert.state == RESOLVED]:
            del group.alerts[fingerprint]
        firing_now = frozenset(alert.fingerprint for alert in firing)
        changed = firing_now != group.notified
        repeat = (
            bool(firing)
            and group.last_sent is not None
            and now - group.last_sent >= self._repeat_interval
        )
        if not (changed or repeat) or not (firing or resolved):
            return None
        group.notified = firing_now
        group.last_sent = now
        self._resolved_sent.update((alert.fingerprint, now) for alert in resolved)
        alerts = tuple(sorted(firing, key=_order)) + tuple(sorted(resolved, key=_order))
        return Notification(group.key, group.rule, dict(group.labels), alerts, now)


def _order(alert: AlertEvent) -> tuple[float, str]:
    return (alert.starts_at, alert.fingerprint)
