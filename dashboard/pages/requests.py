"""Requests: every HTTP route (or server span name) with its rate, errors and percentiles, and
its responses per status class (2xx/3xx/4xx/5xx: the RED view); the busiest routes' p50 and p95
over time; backup spans (``backup.*``) in a section of their own, apart from HTTP traffic."""

from __future__ import annotations

from datetime import UTC
from typing import Any
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, dcc, html

from dashboard import components as ui
from dashboard import figures, url_filters
from dashboard.apiclient import ApiClient, ApiReadError
from dashboard.pages.base import FILTERS, Page, switch_in_url, url_switch, view, window
from dashboard.url_filters import Filters

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
COLUMNS = (
    ui.text("service", "service"),
    ui.text("operation", "operation"),
    ui.text("kind", "kind"),
    ui.text("source", "source"),
    ui.number("count", "count", 0),
    ui.significant("rate /s", "rate_per_s"),
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
TOP_ROUTES = 5
PS = ("p50", "p95", "p99")
BACKUP_COLUMNS = (
    ui.text("service", "service"),
    ui.text("operation", "operation"),
    ui.number("count", "count", 0),
    ui.number("failed", "errors", 0),
    ui.seconds("p50", "p50_s"),
    ui.seconds("p95", "p95_s"),
    ui.seconds("p99", "p99_s"),
    ui.link("traces", "traces"),
)


def layout() -> html.Div:
    return html.Div(
        [
            html.Div(
                [
                    html.H3("Requests", className="me-auto"),
                    *url_switch("requests-compare", "compare with previous period"),
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


def _traces_link(row: dict[str, Any], filters: Filters) -> str:
    return ui.page_link("traces", "/traces?" + urlencode({"operation": row["operation"]}), filters)


def register(app: Dash, api: ApiClient) -> None:
    switch_in_url(app, "requests-compare", "compare")

    @app.callback(Output("requests-body", "children"), *FILTERS, Input("requests-compare", "value"))
    def refresh(range_value: str, service: str, _tick: int, compare: bool) -> Any:
        params = window(range_value, service)
        try:
            found = api.get("/api/operations", {**params, "top": TOP_ROUTES})
            summary = api.get("/api/summary", params)
            before, shift = url_filters.previous_window(
                range_value, service, figures.parse_time(summary["until"]).replace(tzinfo=UTC)
            )
            previous = api.get("/api/summary", before)["series"] if compare else []
        except ApiReadError as exc:
            return ui.read_error(exc)
        operations = found["operations"]
        filters = view(range_value, service)
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
                "traces": _traces_link(row, filters),
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
            ui.graph(id="requests-route-latency", figure=_route_latency(found["series"], span)),
            _backups(found["backups"], filters),
        ]


def _route_latency(series: list[dict[str, Any]], span: figures.XRange) -> Any:
    figure = figures.percentiles_figure(
        series,
        group_by="operation",
        title=f"Latency per route, p50 / p95 (the {TOP_ROUTES} busiest)",
        percentiles=figures.PERCENTILES[:2],
        x_range=span,
    )
    # Two lines per route: the legend goes below the plot, where long routes fit.
    figure.update_layout(
        height=420,
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": -0.15, "yanchor": "top"},
        xaxis={"title": {"text": None}},
    )
    return figure


def _backups(backups: list[dict[str, Any]], filters: Filters) -> html.Div:
    rows = [
        {
            **row,
            **{f"{p}_s": None if row[f"{p}_ms"] is None else row[f"{p}_ms"] / 1000 for p in PS},
            "traces": _traces_link(row, filters),
        }
        for row in backups
    ]
    return ui.section(
        "Backup operations",
        html.P(
            "Spans of the backup runs (backup.*), kept apart from the HTTP operations above.",
            className="text-muted",
        ),
        ui.table("requests-backups", BACKUP_COLUMNS, rows)
        if rows
        else ui.notice("No backup spans in this time range."),
    )


PAGE = Page(path="/requests", title="Requests", layout=layout, register=register)
