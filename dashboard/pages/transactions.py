"""Transactions & pool: how units of work end, why they were retried, how the pools fare."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Output, dcc, html

from dashboard import components as ui
from dashboard import figures
from dashboard.apiclient import ApiClient, ApiReadError
from dashboard.pages.base import FILTERS, Page, window, x_range

OUTCOME_COLUMNS = (
    ui.text("service", "service"),
    ui.text("outcome", "outcome"),
    ui.number("count", "count", 0),
)
RETRY_COLUMNS = (
    ui.text("service", "service"),
    ui.text("error type", "error_type"),
    ui.number("retries", "count", 0),
)
POOL_COLUMNS = (
    ui.text("service", "service"),
    ui.text("pool", "pool"),
    ui.number("used", "used", 0),
    ui.number("idle", "idle", 0),
    ui.number("max", "max", 0),
    ui.number("wait p95 ms", "wait_p95_ms"),
    ui.number("timeouts", "timeouts", 0),
    ui.number("leaks", "leaks", 0),
)
OUTCOME_COLORS = {"commit": "#198754", "rollback": "#fd7e14", "error": "#d62728"}


def layout() -> html.Div:
    return html.Div(
        [
            html.H3("Transactions & pool"),
            html.P(
                "Outcomes of db.transaction spans, retries by error type "
                "(vrp.db.transaction.retries) and the connection pools' metrics.",
                className="text-muted",
            ),
            dcc.Loading(html.Div(id="transactions-body"), delay_show=500),
        ]
    )


def register(app: Dash, api: ApiClient) -> None:
    @app.callback(Output("transactions-body", "children"), *FILTERS)
    def refresh(range_value: str, service: str, _tick: int) -> Any:
        params = window(range_value, service)
        try:
            transactions = api.get("/api/transactions", params)
            pool = api.get("/api/pool", params)
        except ApiReadError as exc:
            return ui.read_error(exc)
        span = x_range(range_value)
        return [
            dbc.Row(
                [
                    dbc.Col(
                        ui.section(
                            "Transaction outcomes",
                            ui.table(
                                "transactions-outcomes", OUTCOME_COLUMNS, transactions["outcomes"]
                            ),
                        ),
                        md=6,
                    ),
                    dbc.Col(
                        ui.section(
                            "Retries",
                            ui.table("transactions-retries", RETRY_COLUMNS, transactions["retries"])
                            if transactions["retries"]
                            else ui.notice("No retried transaction in this range."),
                        ),
                        md=6,
                    ),
                ]
            ),
            ui.graph(
                id="transactions-series",
                figure=figures.stacked_counts_figure(
                    transactions["series"],
                    group_by="outcome",
                    title="Transactions per interval by outcome",
                    colors=OUTCOME_COLORS,
                    x_range=span,
                ),
            ),
            ui.section("Connection pools", ui.table("pool-table", POOL_COLUMNS, pool["pools"])),
            dbc.Row(
                [
                    dbc.Col(
                        ui.graph(
                            id="pool-connections",
                            figure=figures.pool_figure(pool["series"], x_range=span),
                        ),
                        lg=6,
                    ),
                    dbc.Col(
                        ui.graph(
                            figure=figures.lines_figure(
                                [
                                    {**r, "_pool": f"{r['service']} {r['pool']}"}
                                    for r in pool["series"]
                                ],
                                "wait_p95_ms",
                                group_by="_pool",
                                title="Wait for a connection, p95",
                                y_title="ms",
                                x_range=span,
                            )
                        ),
                        lg=6,
                    ),
                ]
            ),
        ]


PAGE = Page(path="/transactions", title="Transactions & pool", layout=layout, register=register)
