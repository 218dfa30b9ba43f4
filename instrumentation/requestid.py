"""The id of the request being served, readable from anywhere without importing Flask.

The Flask integration sets it for the length of each WSGI call; the logging filter copies it
into every record as ``request_id``. Kept apart so that processes without Flask (scheduler,
CLI) can log without importing it.
"""

from __future__ import annotations

from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("vrp_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served in this context, or ``None`` outside a request."""
    return REQUEST_ID.get()
