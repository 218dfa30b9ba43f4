"""Logs: the newest records first, filtered by level, text and trace, a page at a time.

Above the records, their volume per level over the range; clicking a record shows every
attribute it carries; a trace id opens its trace. Levels are spelled as Python spells them
(WARNING, CRITICAL), in the filter and in the rows alike, whatever the sender wrote.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import dash_bootstrap_components as dbc
import orjson
from dash import Dash, Input, Output, State, callback_context, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import components as ui
from dashboard import figures
from dashboard.apiclient import ApiClient, ApiReadError
from dashboard.levels import LEVELS
from dashboard.pages.base import FILTERS, REFRESH_ID, URL_ID, Page, view, window, x_range
from dashboard.url_filters import Filters

PAGE_SIZE = 100
CHOICES = LEVELS[1:]  # TRACE records are kept, but nobody filters for "TRACE and above"
COLUMNS = (
    ui.time("time (UTC)", "time"),
    ui.text("service", "service"),
    ui.text("level", "level"),
    ui.text("message", "message"),
    ui.link("trace", "trace"),
)
DETAIL_COLUMNS = (ui.text("field", "field"), ui.text("value", "value"))
LEVEL_COLORS = {
    "TRACE": "#adb5bd",
    "DEBUG": "#6c757d",
    "INFO": "#0d6efd",
    "WARNING": "#ffc107",
    "ERROR": "#dc3545",
    "CRITICAL": "#842029",
}
LEVEL_STYLES = [
    {"if": {"filter_query": '{level} = "WARNING"'}, "backgroundColor": "#fff3cd"},
    {"if": {"filter_query": '{level} = "ERROR"'}, "backgroundColor": "#f8d7da"},
    {"if": {"filter_query": '{level} = "CRITICAL"'}, "backgroundColor": "#f1aeb5"},
]
OLDER, NEWER = "logs-older", "logs-newer"


def layout() -> html.Div:
    return html.Div(
        [
            html.H3("Logs"),
            dbc.Row(
                [
                    dbc.Col(
                        dcc.Dropdown(
                            id="logs-level",
                            options=[{"label": f"{c} and above", "value": c} for c in CHOICES],
                            value="INFO",
                            clearable=False,
                        ),
                        md=3,
                    ),
                    dbc.Col(
                        dbc.Input(
                            id="logs-q",
                            placeholder="text in the message",
                            debounce=True,
                            type="text",
                        ),
                        md=5,
                    ),
                ],
                className="g-2 mb-3",
            ),
            dcc.Store(id="logs-offset", data=0),
            dcc.Loading(html.Div(id="logs-volume-body"), delay_show=500),
            html.Div(
                [
                    dbc.Button("newer", id=NEWER, size="sm", color="secondary", disabled=True),
                    html.Span(id="logs-position", className="text-muted mx-3"),
                    dbc.Button("older", id=OLDER, size="sm", color="secondary", disabled=True),
                ],
                className="d-flex align-items-center my-2",
            ),
            dcc.Loading(html.Div(id="logs-body"), delay_show=500),
            html.Div(id="logs-detail", className="mt-3"),
        ]
    )


def _trace_filter(search: str | None) -> str | None:
    values = parse_qs((search or "").lstrip("?")).get("trace")
    return values[0] if values else None


def next_offset(trigger: str | None, offset: int | None) -> int:
    """The first record to show after ``trigger``: a page further or back for the buttons, the
    same page on an auto-refresh, the newest records on any new filter."""
    current = offset or 0
    if trigger == OLDER:
        return current + PAGE_SIZE
    if trigger == NEWER:
        return max(current - PAGE_SIZE, 0)
    if trigger == REFRESH_ID:
        return current
    return 0


def _position(found: dict[str, Any], trace_id: str | None) -> str:
    shown = len(found["logs"])
    if not shown:
        text = f"no record on this page ({found['total']} in range)"
    else:
        first = found["offset"] + 1
        text = f"records {first}-{first + shown - 1} of {found['total']}, newest first"
    if trace_id:
        text += f", trace {trace_id}"
    return text


def detail_rows(record: dict[str, Any]) -> list[dict[str, str]]:
    """Every field of a record, then every attribute, as (field, value) rows of text."""
    rows = [
        {"field": name, "value": "" if record.get(name) is None else str(record[name])}
        for name in (
            "time",
            "service",
            "level",
            "severity_text",
            "severity_number",
            "message",
            "trace_id",
            "span_id",
        )
    ]
    for key, value in sorted((record.get("attributes") or {}).items()):
        shown = value if isinstance(value, str) else orjson.dumps(value).decode()
        rows.append({"field": key, "value": shown})
    return rows


def _record_rows(logs: list[dict[str, Any]], filters: Filters) -> list[dict[str, Any]]:
    """The page's records as table rows, each with a link to its trace and span."""
    return [
        {
            **record,
            "id": str(index),
            "trace": ui.trace_link(
                record.get("trace_id"), view=filters, span_id=record.get("span_id")
            ),
            "attributes": orjson.dumps(record["attributes"]).decode(),
        }
        for index, record in enumerate(logs)
    ]


def _records(rows: list[dict[str, Any]]) -> list[Any]:
    table = ui.table(
        "logs-table", COLUMNS, rows, page_size=PAGE_SIZE, selectable=True, wrap=("message",)
    )
    table.style_data_conditional = [*table.style_data_conditional, *LEVEL_STYLES]
    # A page of records scrolls in its own box, so the detail below stays in view.
    table.style_table = {**table.style_table, "maxHeight": "560px", "overflowY": "auto"}
    return [html.P("Click a record for all its attributes.", className="text-muted"), table]


def _volume(histogram: list[dict[str, Any]], range_value: str) -> Any:
    return ui.graph(
        id="logs-volume",
        figure=figures.stacked_counts_figure(
            histogram,
            group_by="level",
            title="Records per level",
            colors=LEVEL_COLORS,
            x_range=x_range(range_value),
        ),
    )


def register(app: Dash, api: ApiClient) -> None:
    _register_records(app, api)
    _register_detail(app, api)


def _register_records(app: Dash, api: ApiClient) -> None:
    @app.callback(
        Output("logs-body", "children"),
        Output("logs-volume-body", "children"),
        Output("logs-position", "children"),
        Output("logs-offset", "data"),
        Output(NEWER, "disabled"),
        Output(OLDER, "disabled"),
        Input("logs-level", "value"),
        Input("logs-q", "value"),
        Input(URL_ID, "search"),
        Input(OLDER, "n_clicks"),
        Input(NEWER, "n_clicks"),
        *FILTERS,
        State("logs-offset", "data"),
    )
    def refresh(
        level: str,
        q: str | None,
        search: str | None,
        _older: int | None,
        _newer: int | None,
        range_value: str,
        service: str,
        _tick: int,
        offset: int | None,
    ) -> Any:
        triggered = callback_context.triggered_id
        offset = next_offset(str(triggered) if triggered else None, offset)
        trace_id = _trace_filter(search)
        params = {
            **window(range_value, service),
            "level": level,
            "q": q,
            "trace_id": trace_id,
            "limit": PAGE_SIZE,
            "offset": offset,
        }
        try:
            found = api.get("/api/logs", params)
        except ApiReadError as exc:
            return ui.read_error(exc), None, "", offset, True, True
        return (
            _records(_record_rows(found["logs"], view(range_value, service))),
            _volume(found["histogram"], range_value),
            _position(found, trace_id),
            offset,
            offset == 0,
            not found["truncated"],
        )


def _register_detail(app: Dash, api: ApiClient) -> None:
    @app.callback(
        Output("logs-detail", "children"),
        Input("logs-table", "active_cell"),
        State("logs-table", "data"),
    )
    def detail(active_cell: dict[str, Any] | None, rows: list[dict[str, Any]] | None) -> Any:
        # An auto-refresh draws the table anew, without a clicked cell: the detail stays.
        if not active_cell or not rows:
            raise PreventUpdate
        chosen = next((r for r in rows if r.get("id") == active_cell.get("row_id")), None)
        if chosen is None:
            raise PreventUpdate
        record = {**chosen, "attributes": orjson.loads(chosen.get("attributes") or "{}")}
        return ui.section(
            f"{record['level']} record of {record['service']}",
            ui.table(
                "logs-detail-table",
                DETAIL_COLUMNS,
                detail_rows(record),
                page_size=200,
                wrap=("value",),
            ),
        )


PAGE = Page(path="/logs", title="Logs", layout=layout, register=register)
