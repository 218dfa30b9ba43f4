"""What every page module provides, and the inputs every page listens to.

A page is a path, a title, a ``layout()`` that builds its components, and ``register(app,
api)`` that adds its callbacks to one Dash app (callbacks are per app, never global, so
several apps can live in one process, as they do in the tests). Every page refreshes on the
shared time range, service and auto-refresh inputs of :data:`FILTERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dash import Dash, Input

from dashboard.apiclient import ApiClient

RANGE_ID = "filter-range"
SERVICE_ID = "filter-service"
REFRESH_ID = "refresh"
URL_ID = "url"

FILTERS = (
    Input(RANGE_ID, "value"),
    Input(SERVICE_ID, "value"),
    Input(REFRESH_ID, "n_intervals"),
)


@dataclass(frozen=True)
class Page:
    path: str
    title: str
    layout: Callable[[], Any]
    register: Callable[[Dash, ApiClient], None]


def window(range_value: str | None, service: str | None) -> dict[str, str | None]:
    """The common query parameters of the JSON API for the chosen range and service."""
    return {"since": range_value or "1h", "service": service or None}
