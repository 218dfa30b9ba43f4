"""The generic JSON webhook channel, and the HTTP POST every webhook channel makes.

The body is Alertmanager's webhook payload (version 4), so that a receiver written for
Alertmanager (a ticketing bridge, a pager gateway) takes these notifications unchanged::

    {"version": "4", "groupKey": "{}:{alertname=\\"backup_overdue\\"}", "status": "firing",
     "receiver": "vrp-dashboard", "groupLabels": {...}, "commonLabels": {...},
     "commonAnnotations": {...}, "externalURL": "http://127.0.0.1:8050", "truncatedAlerts": 0,
     "alerts": [{"status": "firing", "labels": {...}, "annotations": {...},
                 "startsAt": "...Z", "endsAt": "0001-01-01T00:00:00Z",
                 "generatorURL": "http://127.0.0.1:8050/backups", "fingerprint": "..."}]}

Redirects are not followed (a webhook that moved is a configuration to fix, and following one
would send the body elsewhere); every request has a timeout.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from dashboard.notify.errors import DeliveryError
from dashboard.notify.grouping import Notification, alert_labels
from dashboard.notify.messages import common, common_labels, link, rfc3339

RECEIVER = "vrp-dashboard"
PAYLOAD_VERSION = "4"
# The answer of a receiver is not used; read a little of it so the connection closes cleanly.
MAX_ANSWER_BYTES = 64 * 1024
_TRANSIENT_STATUS = frozenset({408, 425, 429})
USER_AGENT = "vrp-dashboard-alerts"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


def post_json(url: str, body: Any, *, timeout: float) -> None:
    """POST ``body`` as JSON to ``url``; raises :class:`DeliveryError` unless it answers 2xx.

    The error never holds the URL: its path or query may be the credential.
    """
    data = json.dumps(body, separators=(",", ":")).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
    )
    try:
        # The scheme is http or https: NotifySettingsSchema refuses any other.
        with _OPENER.open(request, timeout=timeout) as answer:  # nosec B310
            answer.read(MAX_ANSWER_BYTES)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _status_error(exc.code) from None
    except urllib.error.URLError as exc:
        raise _connection_error(exc.reason, timeout) from None
    except http.client.HTTPException as exc:
        message = f"not an HTTP answer ({type(exc).__name__})"
        raise DeliveryError(message, transient=True) from None
    except (TimeoutError, OSError) as exc:
        raise _connection_error(exc, timeout) from None


def _status_error(status: int) -> DeliveryError:
    if 300 <= status < 400:
        return DeliveryError(f"HTTP {status}: the receiver redirects", transient=False)
    transient = status >= 500 or status in _TRANSIENT_STATUS
    return DeliveryError(f"HTTP {status} from the receiver", transient=transient)


def _connection_error(reason: object, timeout: float) -> DeliveryError:
    """Words for a failed connection, from the error's class and errno text only (no address)."""
    if isinstance(reason, TimeoutError):
        return DeliveryError(f"no answer within {timeout:g} s", transient=True)
    if isinstance(reason, ssl.SSLError):
        return DeliveryError(f"TLS error ({reason.reason or 'handshake'})", transient=False)
    if isinstance(reason, OSError) and reason.strerror:
        return DeliveryError(f"connection failed ({reason.strerror})", transient=True)
    return DeliveryError(f"connection failed ({type(reason).__name__})", transient=True)


def url_secrets(url: str) -> tuple[str, ...]:
    """The parts of a webhook URL that must never be shown: all of it, and its path and query."""
    parts = urlsplit(url)
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    return (url, tail) if len(tail) > 1 else (url,)


def webhook_payload(notification: Notification, external_url: str) -> dict[str, Any]:
    """Alertmanager's webhook body (version 4) for ``notification``."""
    return {
        "version": PAYLOAD_VERSION,
        "groupKey": notification.group_key,
        "truncatedAlerts": 0,
        "status": notification.status,
        "receiver": RECEIVER,
        "groupLabels": dict(notification.group_labels),
        "commonLabels": common_labels(notification),
        "commonAnnotations": common(dict(alert.annotations) for alert in notification.alerts),
        "externalURL": external_url,
        "alerts": [
            {
                "status": alert.state,
                "labels": alert_labels(alert),
                "annotations": dict(alert.annotations),
                "startsAt": rfc3339(alert.starts_at),
                "endsAt": rfc3339(alert.ends_at),
                "generatorURL": link(external_url, alert.url),
                "fingerprint": alert.fingerprint,
            }
            for alert in notification.alerts
        ],
    }


class WebhookChannel:
    """POSTs Alertmanager's webhook payload to one URL."""

    name = "webhook"

    def __init__(self, url: str, *, external_url: str, timeout: float) -> None:
        self._url = url
        self._external_url = external_url
        self._timeout = timeout

    def __repr__(self) -> str:
        return "WebhookChannel(url='***')"

    def send(self, notification: Notification) -> None:
        post_json(
            self._url, webhook_payload(notification, self._external_url), timeout=self._timeout
        )

    def secrets(self) -> tuple[str, ...]:
        return url_secrets(self._url)
