"""What every page module provides, and the inputs every page listens to.

A page is a path, a title, a ``layout()`` that builds its components, and ``register(app,
api)`` that adds its callbacks to one Dash app (callbacks are per app, never global, so
several apps can live in one process, as they do in the tests). Every page refreshes on the
shared time range, service and auto-refresh inputs of :data:`FILTERS`; the range and the
service live in the URL (:mod:`dashboard.url_filters`), and :func:`window` turns them into the
JSON API's parameters, whether the range is a preset or absolute (typed, or a drag-to-zoom);
:func:`x_range` into a time chart's axis, and :func:`view` into what a link to another page
carries.

A page's own switch can live in the URL too (:func:`switch_in_url`: Overview's and Requests'
"compare with previous period" is ``?compare=1``), so that a shared URL shows the comparison.

A page may also name a ``badge``: the id of a small counter shown beside its link in the
navigation bar (a page's own callbacks set its text; empty hides it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, dcc

from dashboard import url_filters
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
    badge: str | None = None


def window(range_value: str | None, service: str | None) -> dict[str, str | None]:
    """The common query parameters of the JSON API for the chosen range and service."""
    return url_filters.window(range_value, service)


def view(range_value: str | None, service: str | None) -> url_filters.Filters:
    """The chosen range and service as the links to other pages carry them
    (:func:`dashboard.url_filters.with_view`)."""
    return url_filters.Filters(
        range_value or url_filters.DEFAULT_RANGE, service or url_filters.ALL_SERVICES
    )


def x_range(range_value: str | None) -> tuple[datetime, datetime]:
    """The time axis of a chart of the chosen range: naive UTC, ending now for a preset."""
    since, until = url_filters.bounds(range_value, datetime.now(UTC))
    return since.replace(tzinfo=None), until.replace(tzinfo=None)


def url_switch(switch_id: str, label: str) -> list[Any]:
    """A page's switch kept in the URL by :func:`switch_in_url`, to put in the page's layout.

    Beside it, a store that stays empty until the switch has been set from the URL: Dash counts
    a switch drawn with its page as having fired (its callback also reads the URL, outside the
    page), so without the store the switch's first ``False`` would read as a person turning it
    off and drop ``?compare=1`` from the URL the page was opened with.
    """
    return [
        dbc.Switch(id=switch_id, label=label, value=False),
        dcc.Store(id=_read_id(switch_id)),
    ]


def _read_id(switch_id: str) -> str:
    return f"{switch_id}-read"


def switch_in_url(app: Dash, switch_id: str, key: str) -> None:
    """Keep a page's :func:`url_switch` and ``?<key>=1`` in step: the URL sets the switch when
    the page opens or the URL changes, and turning the switch rewrites the URL (other parameters
    kept). The navigation bar's links do not carry it: it belongs to its page."""

    @app.callback(
        Output(switch_id, "value"),
        Output(URL_ID, "search", allow_duplicate=True),
        Output(_read_id(switch_id), "data"),
        Input(URL_ID, "search"),
        Input(switch_id, "value"),
        State(_read_id(switch_id), "data"),
        prevent_initial_call="initial_duplicate",
    )
    def sync(search: str | None, value: bool | None, read: bool | None) -> tuple[Any, Any, Any]:
        if read and switch_id in dash.ctx.triggered_prop_ids.values():
            wanted = url_filters.with_flag(search, key, bool(value))
            return (
                dash.no_update,
                wanted if wanted != (search or "") else dash.no_update,
                dash.no_update,
            )
        on = url_filters.flag(search, key)
        return (on if on != bool(value) else dash.no_update), dash.no_update, True
