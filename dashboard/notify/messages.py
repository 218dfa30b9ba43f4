"""What every channel says about a notification: title, links, times, the common labels.

The wording follows Alertmanager's default templates (``[FIRING:2] HighErrorRate (...)``), so
that people who read Alertmanager's messages read these at a glance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from dashboard.alert_events import AlertEvent
from dashboard.notify.grouping import ALERTNAME, Notification, alert_labels

# Alertmanager's endsAt of an alert that has not ended (Go's zero time).
ZERO_TIME = "0001-01-01T00:00:00Z"
SUMMARY = "summary"
DESCRIPTION = "description"


def rfc3339(epoch: float | None) -> str:
    """``2026-12-07T05:00:00.123Z`` for epoch seconds; :data:`ZERO_TIME` for None."""
    if epoch is None:
        return ZERO_TIME
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def link(external_url: str, path: str) -> str:
    """The absolute address of a dashboard path (kept as is when already absolute)."""
    if path.startswith(("http://", "https://")):
        return path
    return f"{external_url.rstrip('/')}/{path.lstrip('/')}"


def common(mappings: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """The items every mapping has with the same value."""
    mappings = list(mappings)
    if not mappings:
        return {}
    first = mappings[0]
    return {
        key: value
        for key, value in first.items()
        if all(other.get(key) == value for other in mappings[1:])
    }


def common_labels(notification: Notification) -> dict[str, str]:
    return common(alert_labels(alert) for alert in notification.alerts)


def title(notification: Notification) -> str:
    """``[FIRING:2] rule (label=value ...)`` or ``[RESOLVED] rule (...)``."""
    firing = len(notification.firing)
    head = f"[FIRING:{firing}]" if firing else "[RESOLVED]"
    shown = {key: value for key, value in common_labels(notification).items() if key != ALERTNAME}
    labels = " ".join(f"{key}={value}" for key, value in sorted(shown.items()))
    return f"{head} {notification.rule}" + (f" ({labels})" if labels else "")


def summary(alert: AlertEvent) -> str:
    """One line about an alert: its summary annotation, else its rule and value."""
    text = alert.annotations.get(SUMMARY)
    if text:
        return text
    if alert.value is None:
        return alert.rule
    return f"{alert.rule}: value {alert.value:g}"
