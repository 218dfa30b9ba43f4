"""The Slack-compatible incoming webhook channel (Slack, Mattermost, Rocket.Chat, Zulip's
Slack-compatible endpoint): ``{"text": ..., "blocks": [...]}``.

``text`` carries the whole message in plain mrkdwn (what a receiver without blocks shows, and
what Slack puts in the notification); ``blocks`` lay it out: a header, one section per alert
(at most :data:`MAX_ALERT_BLOCKS`, then a line saying how many more) and a link to the
dashboard. Slack's limits are kept: 50 blocks, 150 characters in a header, 3000 in a section.
"""

from __future__ import annotations

from typing import Any

from dashboard.alert_events import AlertEvent
from dashboard.notify.grouping import Notification
from dashboard.notify.messages import link, summary, title
from dashboard.notify.webhook import post_json, url_secrets

MAX_ALERT_BLOCKS = 10
MAX_HEADER = 150
MAX_SECTION = 3000
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# In a link's address, the characters that end it in Slack's <address|label> syntax.
_URL_ESCAPES = str.maketrans({"|": "%7C", ">": "%3E", "<": "%3C", " ": "%20"})


def escape(text: str) -> str:
    """``text`` safe in Slack mrkdwn (the three characters Slack asks to escape)."""
    return text.translate(_ESCAPES)


def _alert_text(alert: AlertEvent, external_url: str) -> str:
    address = link(external_url, alert.url).translate(_URL_ESCAPES)
    state = "resolved" if alert.state == "resolved" else "firing"
    labels = ", ".join(f"{key}={value}" for key, value in sorted(alert.labels.items()))
    lines = [f"*{state}* <{address}|{escape(summary(alert))}>"]
    if labels:
        lines.append(escape(labels))
    description = alert.annotations.get("description")
    if description:
        lines.append(escape(description))
    return "\n".join(lines)[:MAX_SECTION]


def slack_payload(notification: Notification, external_url: str) -> dict[str, Any]:
    """The incoming-webhook body for ``notification``."""
    heading = title(notification)
    texts = [_alert_text(alert, external_url) for alert in notification.alerts]
    shown = texts[:MAX_ALERT_BLOCKS]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": heading[:MAX_HEADER]}}
    ]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in shown]
    more = len(texts) - len(shown)
    footer = f"<{external_url.translate(_URL_ESCAPES)}|Open the dashboard>"
    if more:
        footer = f"and {more} more alerts; {footer}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    lines = [escape(heading), *shown] + ([f"and {more} more alerts"] if more else [])
    return {"text": "\n".join(lines), "blocks": blocks}


class SlackChannel:
    """POSTs a Slack message to one incoming-webhook URL."""

    name = "slack"

    def __init__(self, url: str, *, external_url: str, timeout: float) -> None:
        self._url = url
        self._external_url = external_url
        self._timeout = timeout

    def __repr__(self) -> str:
        return "SlackChannel(url='***')"

    def send(self, notification: Notification) -> None:
        post_json(self._url, slack_payload(notification, self._external_url), timeout=self._timeout)

    def secrets(self) -> tuple[str, ...]:
        return url_secrets(self._url)
