"""Overview: per service, how many requests, how fast, how many failed (5xx) and how many
were refused as the client's fault (4xx), at a glance."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Output, dcc, html

from dashboard import components as ui
from dashboard import figures
from dashboard.apiclient import ApiClient, ApiReadError
from dashboard.pages.base import FILTERS, Page, window

ERROR_RATE_RED = 0.05
COLUMNS = (
    ui.text("service", "service"),
    ui.text("source", "source"),
    ui.number("requests", "count", 0),
    ui.number("rate /s", "rate_per_s"),
    ui.number("errors (5xx)", "errors", 0),
    ui.percent("error rate", "error_rate"),
    ui.number("client errors (4xx)", "client_errors", 0),
    ui.percent("4xx rate", "client_error_rate"),
    ui.number("p50 ms", "p50_ms"),
    ui.number("p95 ms", "p95_ms"),
    ui.number("p99 ms", "p99_ms"),
)


def layout() -> html.Div:
    return html.Div(
        [
            html.H3("Overview"),
            html.P(
                "Requests per service from the HTTP duration metrics (or from server spans for "
                "services that send only spans).",
                className="text-muted",
            ),
            dcc.Loading(html.Div(id="overview-body"), delay_show=500),
        ]
    )


def _error_color(error_rate: float | None) -> str:
    """Red from 5% of requests failing, amber for any failure below that."""
    if not error_rate:
        return "light"
    return "danger" if error_rate >= ERROR_RATE_RED else "warning"


def _cards(services: list[dict[str, Any]]) -> dbc.Row:
    count = sum(s.get("count") or 0 for s in services)
    errors = sum(s.get("errors") or 0 for s in services)
    client_errors = sum(s.get("client_errors") or 0 for s in services)
    rate = sum(s.get("rate_per_s") or 0.0 for s in services)
    slowest = max(
        (s for s in services if s.get("p95_ms") is not None),
        key=lambda s: s["p95_ms"],
        default=None,
    )
    error_rate = errors / count if count else None
    client_error_rate = client_errors / count if count else None
    return dbc.Row(
        [
            ui.stat("requests", f"{count:,}", detail=f"{len(services)} service(s)"),
            ui.stat("rate", ui.fmt_rate(rate)),
            ui.stat(
                "error rate",
                ui.fmt_percent(error_rate),
                color=_error_color(error_rate),
                detail=f"{errors:,} failed (5xx)",
            ),
            # Neutral whatever the rate: a 4xx is the client's doing, not an outage.
            ui.stat(
                "4xx rate",
                ui.fmt_percent(client_error_rate),
                detail=f"{client_errors:,} client errors",
            ),
            ui.stat(
                "slowest p95",
                ui.fmt_ms(slowest["p95_ms"] if slowest else None),
                detail=slowest["service"] if slowest else None,
            ),
        ],
        className="g-3 mb-3",
    )


def register(app: Dash, api: ApiClient) -> None:
    @app.callback(Output("overview-body", "children"), *FILTERS)
    def refresh(range_value: str, service: str, _tick: int) -> Any:
        try:
            summary = api.get("/api/summary", window(range_value, service))
        except ApiReadError as exc:
            return ui.read_error(exc)
        services = summary["services"]
        series = summary["series"]
        if not services:
            return ui.notice("No requests in this time range yet.")
        return [
            _cards(services),
            ui.section("Services", ui.table("overview-services", COLUMNS, services, page_size=10)),
            ui.graph(
                id="overview-latency",
                figure=figures.percentiles_figure(
                    series, group_by="service", title="Request latency p50 / p95 / p99"
                ),
            ),
            dbc.Row(
                [
                    dbc.Col(
                        ui.graph(
                            figure=figures.lines_figure(
                                series,
                                "rate_per_s",
                                group_by="service",
                                title="Requests per second",
                                y_title="req/s",
                            )
                        ),
                        md=6,
                    ),
                    dbc.Col(
                        ui.graph(
                            id="overview-error-rate",
                            figure=figures.lines_figure(
                                series,
                                "error_rate",
                                group_by="service",
                                title="Error rate (5xx)",
                                y_title="error rate",
                                percent=True,
                            ),
                        ),
                        md=6,
                    ),
                ]
            ),
        ]


PAGE = Page(path="/", title="Overview", layout=layout, register=register)
