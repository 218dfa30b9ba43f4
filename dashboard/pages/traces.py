"""Traces: search by operation, duration and status; one trace as a waterfall of its spans.

``/traces?trace=<id>`` opens a trace (the links of the Queries, Logs and search tables point
here); ``/traces?operation=...`` pre-fills the search.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, dcc, html

from dashboard import components as ui
from dashboard import figures
from dashboard.apiclient import ApiClient, ApiReadError
from dashboard.pages.base import FILTERS, URL_ID, Page, window

RESULT_COLUMNS = (
    ui.link("trace", "trace"),
    ui.text("service", "service"),
    ui.text("root span", "root_name"),
    ui.time("start (UTC)", "start"),
    ui.number("duration ms", "duration_ms"),
    ui.number("spans", "span_count", 0),
    ui.text("error", "error_flag"),
    ui.text("N+1", "n_plus_one_flag"),
)
SPAN_COLUMNS = (
    ui.text("span", "label"),
    ui.text("kind", "kind"),
    ui.text("service", "service"),
    ui.number("offset ms", "offset_ms"),
    ui.number("duration ms", "duration_ms"),
    ui.text("status", "status"),
    ui.text("statement", "statement"),
)


def layout() -> html.Div:
    return html.Div(
        [
            html.H3("Traces"),
            dbc.Row(
                [
                    dbc.Col(
                        dbc.Input(
                            id="traces-operation",
                            placeholder="operation (root span name)",
                            debounce=True,
                            type="text",
                        ),
                        md=4,
                    ),
                    dbc.Col(
                        dbc.Input(
                            id="traces-min-duration",
                            placeholder="min duration ms",
                            debounce=True,
                            type="number",
                            min=0,
                        ),
                        md=3,
                    ),
                    dbc.Col(
                        dcc.Dropdown(
                            id="traces-status",
                            options=[
                                {"label": "any status", "value": ""},
                                {"label": "ok", "value": "ok"},
                                {"label": "error", "value": "error"},
                            ],
                            value="",
                            clearable=False,
                        ),
                        md=2,
                    ),
                ],
                className="g-2 mb-3",
            ),
            dcc.Loading(html.Div(id="traces-waterfall"), delay_show=500),
            dcc.Loading(html.Div(id="traces-results"), delay_show=500),
        ]
    )


def _query(search: str | None) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items() if v}


def _span_rows(trace: dict[str, Any], flagged: set[str]) -> list[dict[str, Any]]:
    rows = []
    for span in trace["spans"]:
        attributes = span.get("attributes") or {}
        rows.append(
            {
                "label": ("· " * int(span.get("depth", 0))) + span["name"],
                "kind": span.get("kind"),
                "service": span.get("service"),
                "offset_ms": span.get("offset_ms"),
                "duration_ms": span.get("duration_ms"),
                "status": ("N+1 " if span["span_id"] in flagged else "") + str(span.get("status")),
                "statement": attributes.get("db.query.text", ""),
            }
        )
    return rows


def _waterfall(trace: dict[str, Any]) -> list[Any]:
    findings = trace.get("n_plus_one") or []
    flagged = figures.n_plus_one_span_ids(findings)
    alerts = [
        dbc.Alert(
            [
                html.B("N+1: "),
                f"one database session ran this statement {finding['count']} times: ",
                html.Code(finding["query_text"]),
            ],
            color="danger",
            className="n-plus-one",
        )
        for finding in findings
    ]
    logs_href = "/logs?" + urlencode({"trace": trace["trace_id"]})
    return [
        html.Div(
            [
                html.H4("Waterfall", className="d-inline me-3"),
                dcc.Link("logs of this trace", href=logs_href, refresh=True),
            ],
            className="mb-2",
        ),
        *alerts,
        ui.graph(id="traces-waterfall-graph", figure=figures.waterfall_figure(trace)),
        html.Details(
            [
                html.Summary("spans as a table"),
                ui.table("traces-spans", SPAN_COLUMNS, _span_rows(trace, flagged), page_size=50),
            ],
            className="mb-4",
        ),
    ]


def register(app: Dash, api: ApiClient) -> None:
    @app.callback(Output("traces-operation", "value"), Input(URL_ID, "search"))
    def prefill(search: str | None) -> str | None:
        return _query(search).get("operation")

    @app.callback(Output("traces-waterfall", "children"), Input(URL_ID, "search"))
    def waterfall(search: str | None) -> Any:
        trace_id = _query(search).get("trace")
        if not trace_id:
            return ui.notice("Pick a trace below, or follow a link from Queries or Logs.")
        try:
            trace = api.get(f"/api/traces/{trace_id}")
        except ApiReadError as exc:
            if exc.status == 404:
                return ui.notice(f"Trace {trace_id} is not in the store (pruned, or not sampled).")
            return ui.read_error(exc)
        return _waterfall(trace)

    @app.callback(
        Output("traces-results", "children"),
        Input("traces-operation", "value"),
        Input("traces-min-duration", "value"),
        Input("traces-status", "value"),
        *FILTERS,
    )
    def search(
        operation: str | None,
        min_duration: float | None,
        status: str | None,
        range_value: str,
        service: str,
        _tick: int,
    ) -> Any:
        params = {
            **window(range_value, service),
            "operation": operation,
            "min_duration_ms": min_duration,
            "status": status,
            "limit": 100,
        }
        try:
            traces = api.get("/api/traces", params)["traces"]
        except ApiReadError as exc:
            return ui.read_error(exc)
        rows = [
            {
                **row,
                "trace": ui.trace_link(row["trace_id"]),
                "error_flag": "error" if row.get("error") else "",
                "n_plus_one_flag": "N+1" if row.get("n_plus_one") else "",
            }
            for row in traces
        ]
        return ui.section(
            f"Slowest traces ({len(rows)})", ui.table("traces-table", RESULT_COLUMNS, rows)
        )


PAGE = Page(path="/traces", title="Traces", layout=layout, register=register)
