"""Requests: every HTTP route (or server span name) with its rate, errors and percentiles, and
its responses per status class (2xx/3xx/4xx/5xx: the RED view)."""

from __future__ import annotations

from datetime import UTC
from typing import Any
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, dcc, html

from dashboard import components as ui
from dashboard import figures, url_filters
from dashboard.apiclient import ApiClient, ApiReadError
from dashboard.pages.base import FILTERS, Page, switch_in_url, window

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
COLUMNS = (
    ui.text("service", "service"),
    ui.text("operation", "operation"),
    ui.text("kind", "kind"),
    ui.text("source", "source"),
    ui.number("count", "count", 0),
    ui.number("rate /s", "rate_per_s"),
    ui.number("errors (5xx)", "errors", 0),
    ui.percent("error rate", "error_rate"),
    ui.number("client errors (4xx)", "client_errors", 0),
    ui.percent("4xx rate", "client_error_rate"),
    *(ui.number(name, f"status_{name}", 0) for name in STATUS_CLASSES),
    ui.number("p50 ms", "p50_ms"),
    ui.number("p95 ms", "p95_ms"),
    ui.number("p99 ms", "p99_ms"),
    ui.link("traces", "traces"),
)


def layout() -> html.Div:
    return html.Div(
        [
            html.Div(
                [
                    html.H3("Requests", className="me-auto"),
                    dbc.Switch(
                        id="requests-compare",
                        label="compare with previous period",
                        value=False,
                    ),
                ],
                className="d-flex align-items-center flex-wrap gap-2",
            ),
            html.P(
                "Per route from http.server.request.duration; services that send only spans "
                "are rolled up per span name (source: spans).",
                className="text-muted",
            ),
            dcc.Loading(html.Div(id="requests-body"), delay_show=500),
        ]
    )


def _traces_link(row: dict[str, Any]) -> str:
    return f"[traces](/traces?{urlencode({'operation': row['operation']})})"


def register(app: Dash, api: ApiClient) -> None:
    switch_in_url(app, "requests-compare", "compare")

    @app.callback(Output("requests-body", "children"), *FILTERS, Input("requests-compare", "value"))
    def refresh(range_value: str, service: str, _tick: int, compare: bool) -> Any:
        params = window(range_value, service)
        try:
            operations = api.get("/api/operations", params)["operations"]
            summary = api.get("/api/summary", params)
            before, shift = url_filters.previous_window(
                range_value, service, figures.parse_time(summary["until"]).replace(tzinfo=UTC)
            )
            previous = api.get("/api/summary", before)["series"] if compare else []
        except ApiReadError as exc:
            return ui.read_error(exc)
        series = summary["series"]
        span = (figures.parse_time(summary["since"]), figures.parse_time(summary["until"]))
        latency = figures.percentiles_figure(
            series, group_by="service", title="Latency p50 / p95 / p99", x_range=span
        )
        rates = figures.lines_figure(
            series,
            "rate_per_s",
            group_by="service",
            title="Requests per second",
            y_title="req/s",
            x_range=span,
        )
        for figure, field, label in ((latency, "p95_ms", "p95"), (rates, "rate_per_s", "")):
            figures.add_previous(
                figure,
                previous,
                field,
                current=series,
                shift=shift,
                group_by="service",
                label=label,
            )
        rows = [
            {
                **row,
                **{f"status_{name}": row["status_classes"][name] for name in STATUS_CLASSES},
                "traces": _traces_link(row),
            }
            for row in operations
        ]
        return [
            ui.section("Operations", ui.table("requests-table", COLUMNS, rows)),
            dbc.Row(
                [
                    dbc.Col(ui.graph(id="requests-latency", figure=latency), lg=7),
                    dbc.Col(ui.graph(id="requests-rate", figure=rates), lg=5),
                ]
            ),
        ]


PAGE = Page(path="/requests", title="Requests", layout=layout, register=register)
