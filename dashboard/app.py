"""The Dash app: navigation, the shared filters, auto-refresh and the pages, on the dashboard's
Flask server (OTLP receiver and JSON API, see :mod:`dashboard.server`).

A callback router (``dcc.Location`` -> page layout) rather than Dash's pages plugin: the plugin
keeps a process-wide page registry, and the tests run several apps in one process. Bootstrap's
CSS is served from ``assets/`` so the dashboard works without internet access.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dash
import dash_bootstrap_components as dbc
import flask
from dash import Input, Output, dcc, html

from dashboard import components as ui
from dashboard.alert_events import AlertNotifier
from dashboard.apiclient import ApiClient, ApiReadError
from dashboard.auth import LOGOUT_PATH, install_auth
from dashboard.pages import PAGES
from dashboard.pages.base import RANGE_ID, REFRESH_ID, SERVICE_ID, URL_ID
from dashboard.server import create_server
from dashboard.settings import DashboardSettings

ASSETS = Path(__file__).resolve().parent / "assets"
TITLE = "VRP telemetry"
ALERTS_BADGE_ID = "nav-alerts-badge"


def _navbar(token_required: bool) -> dbc.Navbar:
    links = [
        dbc.NavItem(dbc.NavLink(page.title, href=page.path, active="exact", id=f"nav-{index}"))
        for index, page in enumerate(PAGES)
    ]
    filters = [
        dcc.Dropdown(
            id=RANGE_ID,
            options=[{"label": label, "value": value} for value, label in ui.TIME_RANGES],
            value=ui.DEFAULT_RANGE,
            clearable=False,
            persistence=True,
            persistence_type="session",
            className="filter",
        ),
        dcc.Dropdown(
            id=SERVICE_ID,
            options=[{"label": "all services", "value": ui.ALL_SERVICES}],
            value=ui.ALL_SERVICES,
            clearable=False,
            persistence=True,
            persistence_type="session",
            className="filter",
        ),
        dbc.Switch(id="auto-refresh", label="auto-refresh", value=True, className="ms-2 mb-0"),
    ]
    if token_required:
        filters.append(html.A("sign out", href=LOGOUT_PATH, className="ms-3 nav-signout"))
    return dbc.Navbar(
        dbc.Container(
            [
                dbc.NavbarBrand(TITLE, href="/"),
                dbc.Nav(links, navbar=True),
                html.A(
                    dbc.Badge("0", id=ALERTS_BADGE_ID, color="secondary", pill=True),
                    href="/alerts",
                    title="firing alerts not silenced",
                    className="me-auto nav-alerts",
                ),
                html.Div(filters, className="d-flex align-items-center gap-2 filters"),
            ],
            fluid=True,
        ),
        color="dark",
        dark=True,
        className="mb-3",
    )


def _layout(settings: DashboardSettings) -> html.Div:
    return html.Div(
        [
            dcc.Location(id=URL_ID, refresh=False),
            dcc.Interval(id=REFRESH_ID, interval=settings.refresh_seconds * 1000),
            _navbar(bool(settings.token)),
            dbc.Container(id="page", fluid=True, className="pb-4"),
        ]
    )


def _register_shell(app: dash.Dash, api: ApiClient) -> None:
    pages = {page.path: page for page in PAGES}

    @app.callback(Output("page", "children"), Input(URL_ID, "pathname"))
    def route(pathname: str | None) -> Any:
        page = pages.get((pathname or "/").rstrip("/") or "/")
        if page is None:
            return ui.notice(f"No page at {pathname}.", color="warning")
        return page.layout()

    @app.callback(Output(REFRESH_ID, "disabled"), Input("auto-refresh", "value"))
    def toggle_refresh(enabled: bool) -> bool:
        return not enabled

    @app.callback(
        Output(ALERTS_BADGE_ID, "children"),
        Output(ALERTS_BADGE_ID, "color"),
        Input(REFRESH_ID, "n_intervals"),
        Input(URL_ID, "pathname"),
    )
    def firing(_tick: int, _path: str | None) -> tuple[str, str]:
        try:
            counts = api.get("/api/alerts")["counts"]
        except ApiReadError:
            return "?", "secondary"
        shown = counts["firing"] - counts["silenced"]
        return str(shown), "danger" if shown else "secondary"

    @app.callback(
        Output(SERVICE_ID, "options"), Input(REFRESH_ID, "n_intervals"), Input(RANGE_ID, "value")
    )
    def services(_tick: int, range_value: str) -> list[dict[str, str]]:
        options = [{"label": "all services", "value": ui.ALL_SERVICES}]
        try:
            found = api.get("/api/services")["services"]
        except ApiReadError:
            return options
        return options + [{"label": s["name"], "value": s["name"]} for s in found]


def _no_pages_under(server: flask.Flask, prefixes: tuple[str, ...]) -> None:
    """A mistyped ``/api/...`` gets a 404 JSON, not the UI's HTML from Dash's catch-all route."""

    # "/api" itself too, not only what lies under "/api/".
    roots = tuple(prefix.rstrip("/") for prefix in prefixes)

    def not_a_page() -> flask.Response | None:
        rule = flask.request.url_rule
        path = flask.request.path
        under = path.startswith(prefixes) or path in roots
        if under and rule and rule.rule.endswith("<path:path>"):
            response = flask.jsonify(
                code=404, status="Not Found", message=f"no endpoint at {flask.request.path}"
            )
            response.status_code = 404
            return response
        return None

    server.before_request(not_a_page)


def create_app(
    settings: DashboardSettings,
    *,
    store: Any = None,
    server: flask.Flask | None = None,
    notifier: AlertNotifier | None = None,
) -> dash.Dash:
    """The whole dashboard: receiver, JSON API, login and UI on one Flask server.

    ``store`` and ``notifier`` are handed to :func:`dashboard.server.create_server` (tests pass
    their own store);
    ``server`` mounts the UI on a server built elsewhere instead. The server's background work
    is not started here; see :mod:`dashboard.cli`.
    """
    if server is None:
        server = create_server(settings, store=store, notifier=notifier)
    install_auth(server, settings)
    app = dash.Dash(
        __name__,
        server=server,
        assets_folder=str(ASSETS),
        title=TITLE,
        update_title=None,
        suppress_callback_exceptions=True,
        serve_locally=True,
    )
    _no_pages_under(server, ("/api/", "/v1/"))
    app.layout = _layout(settings)
    api = ApiClient(server, settings.token)
    _register_shell(app, api)
    for page in PAGES:
        page.register(app, api)
    return app
