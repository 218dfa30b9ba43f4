"""The failure of one attempt to deliver a notification."""

from __future__ import annotations

from dashboard.errors import DashboardError


class DeliveryError(DashboardError):
    """One attempt to deliver a notification failed.

    The message says what happened in words that hold no secret (never a webhook URL nor a
    password): it reaches the log and the Alerts page. ``transient`` errors (a timeout, a
    refused connection, an HTTP 5xx or 429, an SMTP 4xx) are retried; others are not.
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
