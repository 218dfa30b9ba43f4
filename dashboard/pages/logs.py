"""Logs: the newest records first, filtered by level, text and trace; a trace id opens its trace."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, dcc, html

from dashboard import components as ui
from dashboard.apiclient import ApiClient, ApiReadError
from dashboard.pages.base import FILTERS, URL_ID, Page, window

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
COLUMNS = (
    ui.time("time (UTC)", "time"),
    ui.text("service", "service"),
    ui.text("level", "level"),
    ui.text("message", "message"),
    ui.link("trace", "trace"),
)
LEVEL_STYLES = [
    {"if": {"filter_query": '{level} = "WARNING"'}, "backgroundColor": "#fff3cd"},
    {"if": {"filter_query": '{level} = "WARN"'}, "backgroundColor": "#fff3cd"},
    {"if": {"filter_query": '{level} = "ERROR"'}, "backgroundColor": "#f8d7da"},
    {"if": {"filter_query": '{level} = "CRITICAL"'}, "backgroundColor": "#f1aeb5"},
    {"if": {"filter_query": '{level} = "FATAL"'}, "backgroundColor": "#f1aeb5"},
]


def layout() -> html.Div:
    return html.Div(
        [
            html.H3("Logs"),
            dbc.Row(
                [
                    dbc.Col(
                        dcc.Dropdown(
                            id="logs-level",
                            options=[{"label": f"{lvl} and above", "value": lvl} for lvl in LEVELS],
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
            dcc.Loading(html.Div(id="logs-body"), delay_show=500),
        ]
    )


def _trace_filter(search: str | None) -> str | None:
    values = parse_qs((search or "").lstrip("?")).get("trace")
    return values[0] if values else None


def register(app: Dash, api: ApiClient) -> None:
    @app.callback(
        Output("logs-body", "children"),
        Input("logs-level", "value"),
        Input("logs-q", "value"),
        Input(URL_ID, "search"),
        *FILTERS,
    )
    def refresh(
        level: str, q: str | None, search: str | None, range_value: str, service: str, _tick: int
    ) -> Any:
        trace_id = _trace_filter(search)
        params = {**window(range_value, service), "level": level, "q": q, "trace_id": trace_id}
        try:
            found = api.get("/api/logs", params)
        except ApiReadError as exc:
            return ui.read_error(exc)
        rows = [
            {
                **record,
                "trace": ui.trace_link(record.get("trace_id"), span_id=record.get("span_id")),
            }
            for record in found["logs"]
        ]
        table = ui.table("logs-table", COLUMNS, rows, page_size=25, wrap=("message",))
        table.style_data_conditional = LEVEL_STYLES
        if found.get("truncated"):
            heading = f"newest {len(rows)} shown (more in range: narrow it or filter)"
        else:
            heading = f"{len(rows)} record(s), newest first"
        if trace_id:
            heading += f", trace {trace_id}"
        return [html.P(heading, className="text-muted"), table]


PAGE = Page(path="/logs", title="Logs", layout=layout, register=register)
