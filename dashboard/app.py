"""The Dash app: navigation, the shared filters, auto-refresh and the pages, on the dashboard's
Flask server (OTLP receiver and JSON API, see :mod:`dashboard.server`).

The time range and the service live in the URL's query string, so that a URL shared is the
view seen (:mod:`dashboard.url_filters`, kept in step with the filters by one callback here).
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
from dash import Input, Output, State, dcc, html

from dashboard import components as ui
from dashboard import url_filters
from dashboard.alert_events import AlertNotifier
from dashboard.apiclient import ApiClient, ApiReadError
from dashboard.auth import LOGOUT_PATH, install_auth
from dashboard.pages import PAGES
from dashboard.pages.alerts import CHANGED_ID as ALERTS_CHANGED_ID
from dashboard.pages.alerts import PAGE as ALERTS_PAGE
from dashboard.pages.base import RANGE_ID, REFRESH_ID, SERVICE_ID, URL_ID, Page
from dashboard.server import create_server
from dashboard.settings import DashboardSettings

ASSETS = Path(__file__).resolve().parent / "assets"
TITLE = "VRP telemetry"
# The navbar badge beside the Alerts link: firing alerts not silenced.
ALERTS_BADGE_ID = ALERTS_PAGE.badge or ""


# The navigation bar's controls, by id: the tests check that each one fits a 1024-pixel window.
CUSTOM_TOGGLE_ID = "filter-custom-toggle"
CUSTOM_PANEL_ID = "filter-custom"
FROM_ID = "filter-from"
TO_ID = "filter-to"
APPLY_ID = "filter-apply"
RESET_ID = "filter-reset"
CUSTOM_ERROR_ID = "filter-custom-error"
PRESET_ID = "filter-preset"
AUTO_REFRESH_ID = "auto-refresh"
NAV_CONTROLS = (RANGE_ID, CUSTOM_TOGGLE_ID, RESET_ID, SERVICE_ID, AUTO_REFRESH_ID)
HIDDEN = {"display": "none"}


def _range_options(range_value: str | None) -> list[dict[str, str]]:
    """The presets, and the absolute range when one is chosen (a zoom or typed times)."""
    options = [{"label": label, "value": value} for value, label, _ in url_filters.PRESETS]
    if url_filters.absolute_range(range_value) is not None:
        options.append({"label": url_filters.describe(range_value), "value": str(range_value)})
    return options


def _service_options(found: list[str], chosen: str | None) -> list[dict[str, str]]:
    """Every service seen, and the chosen one even before (or after) it sends anything: a
    dropdown drops a value that is not among its options, and a shared URL must keep it."""
    names = sorted(set(found) | ({chosen} if chosen else set()))
    return [{"label": "all services", "value": url_filters.ALL_SERVICES}] + [
        {"label": name, "value": name} for name in names
    ]


def _nav_item(index: int, page: Page) -> dbc.NavItem:
    """A page's link (its ``href`` carries the view along, see ``nav_links``), and its badge."""
    children: list[Any] = [page.title]
    if page.badge:
        children.append(dbc.Badge("", id=page.badge, color="danger", pill=True, className="ms-1"))
    return dbc.NavItem(dbc.NavLink(children, href=page.path, id=f"nav-{index}"))


def _custom_range() -> dbc.Collapse:
    """Typed absolute times: a row under the navigation bar, opened by the clock button."""
    return dbc.Collapse(
        html.Div(
            [
                html.Label("from", htmlFor=FROM_ID, className="mb-0"),
                dcc.Input(
                    id=FROM_ID,
                    type="text",
                    placeholder="2026-12-07T04:00:00Z",
                    debounce=True,
                    className="form-control form-control-sm time-input",
                ),
                html.Label("to", htmlFor=TO_ID, className="mb-0"),
                dcc.Input(
                    id=TO_ID,
                    type="text",
                    placeholder="2026-12-07T05:00:00Z",
                    debounce=True,
                    className="form-control form-control-sm time-input",
                ),
                dbc.Button("apply", id=APPLY_ID, size="sm", color="primary"),
                html.Span("UTC, ISO 8601", className="custom-hint"),
                html.Span(id=CUSTOM_ERROR_ID, className="custom-error"),
            ],
            className="custom-range",
        ),
        id=CUSTOM_PANEL_ID,
        is_open=False,
        className="w-100",
    )


def _filters(token_required: bool) -> list[Any]:
    """The navigation bar's filters and auto-refresh, and sign out when a token is required."""
    filters = [
        dcc.Dropdown(
            id=RANGE_ID,
            options=_range_options(url_filters.DEFAULT_RANGE),
            value=url_filters.DEFAULT_RANGE,
            clearable=False,
            searchable=False,
            className="filter filter-range",
        ),
        dbc.Button(
            "from-to",
            id=CUSTOM_TOGGLE_ID,
            size="sm",
            color="light",
            outline=True,
            title="an absolute range: type the from and to times",
            className="filter-button",
        ),
        dbc.Button(
            "reset",
            id=RESET_ID,
            size="sm",
            color="warning",
            title="back to the last relative range",
            style=HIDDEN,
            className="filter-button",
        ),
        dcc.Dropdown(
            id=SERVICE_ID,
            options=_service_options([], None),
            value=url_filters.ALL_SERVICES,
            clearable=False,
            className="filter filter-service",
        ),
        dbc.Switch(id=AUTO_REFRESH_ID, label="auto-refresh", value=True, className="mb-0"),
    ]
    if token_required:
        filters.append(html.A("sign out", href=LOGOUT_PATH, className="nav-signout"))
    return filters


def _navbar(token_required: bool) -> dbc.Navbar:
    return dbc.Navbar(
        dbc.Container(
            [
                dbc.NavbarBrand(TITLE, href="/", id="nav-brand"),
                dbc.Nav(
                    [_nav_item(index, page) for index, page in enumerate(PAGES)],
                    navbar=True,
                    className="me-auto nav-pages",
                ),
                html.Div(_filters(token_required), className="filters"),
                _custom_range(),
            ],
            fluid=True,
            className="navbar-shell",
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
            dcc.Store(id=PRESET_ID, storage_type="session", data=url_filters.DEFAULT_RANGE),
            dcc.Store(id=ALERTS_CHANGED_ID),
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

    @app.callback(Output(REFRESH_ID, "disabled"), Input(AUTO_REFRESH_ID, "value"))
    def toggle_refresh(enabled: bool) -> bool:
        return not enabled

    @app.callback(
        Output(ALERTS_BADGE_ID, "children"),
        Output(ALERTS_BADGE_ID, "color"),
        Input(REFRESH_ID, "n_intervals"),
        Input(URL_ID, "pathname"),
        Input(ALERTS_CHANGED_ID, "data"),
    )
    def firing(_tick: int, _path: str | None, _changed: Any) -> tuple[str, str]:
        try:
            counts = api.get("/api/alerts")["counts"]
        except ApiReadError:
            return "?", "secondary"
        shown = counts["firing"] - counts["silenced"]
        return str(shown), "danger" if shown else "secondary"

    @app.callback(
        Output(CUSTOM_PANEL_ID, "is_open"),
        Input(CUSTOM_TOGGLE_ID, "n_clicks"),
        State(CUSTOM_PANEL_ID, "is_open"),
        prevent_initial_call=True,
    )
    def toggle_custom(_clicks: int | None, is_open: bool) -> bool:
        return not is_open

    @app.callback(
        Output("nav-brand", "href"),
        [Output(f"nav-{index}", "href") for index in range(len(PAGES))],
        [Output(f"nav-{index}", "active") for index in range(len(PAGES))],
        Input(URL_ID, "pathname"),
        Input(URL_ID, "search"),
    )
    def nav_links(pathname: str | None, search: str | None) -> list[str | bool]:
        """Links that keep the view's range and service (not a page's own ``?trace=``)."""
        view = url_filters.from_query(search)
        here = (pathname or "/").rstrip("/") or "/"
        hrefs = [url_filters.with_view(page.path, view) for page in PAGES]
        return [url_filters.with_view("/", view), *hrefs, *(page.path == here for page in PAGES)]

    _register_view_sync(app, api)


def _register_view_sync(app: dash.Dash, api: ApiClient) -> None:
    """The URL and the navigation bar's filters kept in step, in one callback.

    The URL is the truth: loading or navigating to one sets the filters; a filter chosen, an
    absolute range applied or a reset writes the URL (``dcc.Location`` with ``refresh=False``
    pushes it into the history without a reload, so Back returns to the previous view). A
    drag-to-zoom writes the URL from the browser (``assets/zoom.js``) and arrives here as a
    navigation. One callback, because each side is the other's input (Dash allows that circle
    only within one callback); the service list is refreshed here too, as the dropdown drops a
    chosen value that its options lack.
    """

    @app.callback(
        Output(URL_ID, "search"),
        Output(RANGE_ID, "value"),
        Output(RANGE_ID, "options"),
        Output(SERVICE_ID, "value"),
        Output(SERVICE_ID, "options"),
        Output(PRESET_ID, "data"),
        Output(RESET_ID, "style"),
        Output(CUSTOM_ERROR_ID, "children"),
        Output(FROM_ID, "value"),
        Output(TO_ID, "value"),
        Input(URL_ID, "search"),
        Input(RANGE_ID, "value"),
        Input(SERVICE_ID, "value"),
        Input(APPLY_ID, "n_clicks"),
        Input(FROM_ID, "n_submit"),
        Input(TO_ID, "n_submit"),
        Input(RESET_ID, "n_clicks"),
        Input(REFRESH_ID, "n_intervals"),
        State(FROM_ID, "value"),
        State(TO_ID, "value"),
        State(PRESET_ID, "data"),
        State(RANGE_ID, "options"),
    )
    def sync(
        search: str | None,
        range_value: str | None,
        service: str | None,
        _apply: int | None,
        _from_entered: int | None,
        _to_entered: int | None,
        _reset: int | None,
        _tick: int | None,
        typed_from: str | None,
        typed_to: str | None,
        preset: str | None,
        range_options: list[dict[str, str]] | None,
    ) -> tuple[Any, ...]:
        # Enter in either time field applies them, as the button does.
        fired = {
            APPLY_ID if name in (FROM_ID, TO_ID) else name
            for name in dash.ctx.triggered_prop_ids.values()
        }
        trigger = _trigger(fired)
        current = url_filters.Filters(range_value or url_filters.DEFAULT_RANGE, service or "")
        chosen, error = _chosen_filters(trigger, search, current, typed_from, typed_to, preset)
        service_options = (
            _service_options(_services(api), chosen.service)
            if trigger in (None, URL_ID, REFRESH_ID)
            else dash.no_update
        )
        if trigger == REFRESH_ID:
            return (*(dash.no_update,) * 4, service_options, *(dash.no_update,) * 5)
        return _view_outputs(
            chosen,
            error,
            service_options,
            search=search,
            range_value=range_value,
            range_options=range_options,
            service=service,
        )


def _chosen_filters(
    trigger: str | None,
    search: str | None,
    current: url_filters.Filters,
    typed_from: str | None,
    typed_to: str | None,
    preset: str | None,
) -> tuple[url_filters.Filters, str]:
    """The filters to show after ``trigger``, and the error to show beside the typed times."""
    if trigger in (None, URL_ID):
        return url_filters.from_query(search), ""
    if trigger == APPLY_ID:
        return _applied_range(current, typed_from, typed_to)
    if trigger == RESET_ID:
        back = preset if url_filters.is_preset(preset) else url_filters.DEFAULT_RANGE
        return url_filters.Filters(str(back), current.service), ""
    return current, ""


def _applied_range(
    current: url_filters.Filters, typed_from: str | None, typed_to: str | None
) -> tuple[url_filters.Filters, str]:
    """The typed times as an absolute range, or the current filters and what is wrong."""
    since = url_filters.parse_instant(typed_from)
    until = url_filters.parse_instant(typed_to)
    if since is None or until is None:
        bad = "from" if since is None else "to"
        return current, f"{bad}: not a time; type ISO 8601 such as 2026-12-07T04:00:00Z"
    if since >= until:
        return current, "to: must be after from"
    return url_filters.Filters(url_filters.absolute_value(since, until), current.service), ""


def _changed(new: Any, old: Any) -> Any:
    # An output set to its own value still fires every page's callback again.
    return dash.no_update if new == old else new


def _view_outputs(
    chosen: url_filters.Filters,
    error: str,
    service_options: Any,
    *,
    search: str | None,
    range_value: str | None,
    range_options: list[dict[str, str]] | None,
    service: str | None,
) -> tuple[Any, ...]:
    """The view sync's outputs for the filters chosen; the URL's query, the range, its options
    and the service (as shown now) are sent only when they change."""
    new_search = url_filters.to_query(chosen, search)
    absolute = chosen.absolute
    options = _range_options(chosen.range_value)
    return (
        # The same parameters in another order are the same view: rewriting the URL would
        # re-render the page and reset its own controls (a switch read from ``?compare=1``).
        dash.no_update if url_filters.same_query(new_search, search) else new_search,
        _changed(chosen.range_value, range_value),
        _changed(options, range_options),
        _changed(chosen.service, service),
        service_options,
        dash.no_update if absolute else chosen.range_value,
        {} if absolute else HIDDEN,
        error,
        url_filters.iso_utc(absolute[0]) if absolute else dash.no_update,
        url_filters.iso_utc(absolute[1]) if absolute else dash.no_update,
    )


# What one run of the URL callback acts on when several inputs fired at once (Dash batches
# them): a person's click or choice over the URL it is about to change, and either over the
# refresh timer.
_TRIGGER_ORDER = (RESET_ID, APPLY_ID, RANGE_ID, SERVICE_ID, URL_ID, REFRESH_ID)


def _trigger(fired: set[str]) -> str | None:
    """The input to act on among those that fired; None on the first (initial) call."""
    return next((name for name in _TRIGGER_ORDER if name in fired), None)


def _services(api: ApiClient) -> list[str]:
    try:
        return [s["name"] for s in api.get("/api/services")["services"]]
    except ApiReadError:
        return []


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
