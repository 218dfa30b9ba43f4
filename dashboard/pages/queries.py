"""Queries: every statement shape (``db.query.summary``) with its rate, percentiles and total
time (count x mean), most total time first: what the database costs most.

Durations are shown in the unit that fits each (a 37 µs statement reads "37µs", not "0.04 ms");
rates keep three significant digits, so a rare statement never reads 0.00/s.

Clicking a row shows that query's latency over time and its slowest examples; each example
links to its trace's waterfall. Traces where one database session ran the same statement five
or more times (N+1) are listed above the table.
"""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, State, dcc, html

from dashboard import components as ui
from dashboard import figures
from dashboard.apiclient import ApiClient, ApiReadError
from dashboard.pages.base import FILTERS, Page, view, window, x_range
from dashboard.url_filters import Filters

COLUMNS = (
    ui.text("query", "summary"),
    ui.text("service", "service"),
    ui.seconds("total time", "total_s"),
    ui.number("count", "count", 0),
    ui.significant("rate /s", "rate_per_s"),
    ui.number("errors", "errors", 0),
    ui.seconds("mean", "mean_s"),
    ui.seconds("p50", "p50_s"),
    ui.seconds("p95", "p95_s"),
    ui.seconds("p99", "p99_s"),
)
DEFAULT_SORT = [{"column_id": "total_s", "direction": "desc"}]
# The API's milliseconds, as seconds for the columns of ui.seconds.
MS_FIELDS = {
    name: name.removesuffix("_ms") + "_s"
    for name in ("total_ms", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "duration_ms")
}
EXAMPLE_COLUMNS = (
    ui.link("trace", "trace"),
    ui.seconds("duration", "duration_s"),
    ui.text("query", "summary"),
    ui.text("statement", "query_text"),
    ui.text("service", "service"),
    ui.time("start (UTC)", "start"),
)
N_PLUS_ONE_COLUMNS = (
    ui.link("trace", "trace"),
    ui.number("repeats", "count", 0),
    ui.text("statement", "query_text"),
    ui.text("service", "service"),
    ui.time("start (UTC)", "start"),
)


def layout() -> html.Div:
    return html.Div(
        [
            html.H3("Queries"),
            html.P(
                "Per statement shape, from the db.client.operation.duration metric. "
                "Click a row for its latency over time and its slowest examples.",
                className="text-muted",
            ),
            dcc.Store(id="queries-selected"),
            html.Div(id="queries-n-plus-one"),
            _queries_table(),
            dcc.Loading(html.Div(id="queries-detail", className="mt-3"), delay_show=500),
        ]
    )


def _queries_table() -> Any:
    table = ui.table("queries-table", COLUMNS, [], selectable=True)
    table.sort_by = DEFAULT_SORT
    return table


def in_seconds(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its millisecond fields added as seconds (None stays None)."""
    return row | {
        to: None if row.get(field) is None else row[field] / 1000
        for field, to in MS_FIELDS.items()
        if field in row
    }


def _with_links(rows: list[dict[str, Any]], filters: Filters) -> list[dict[str, Any]]:
    return [
        in_seconds(
            {
                **row,
                "trace": ui.trace_link(
                    row.get("trace_id"),
                    view=filters,
                    span_id=row.get("span_id") or row.get("session_span_id"),
                ),
            }
        )
        for row in rows
    ]


def _n_plus_one(findings: list[dict[str, Any]], filters: Filters) -> Any:
    if not findings:
        return None
    return ui.section(
        f"N+1 suspects ({len(findings)})",
        html.P(
            "Traces in which one database session ran the same statement five or more times.",
            className="text-muted",
        ),
        ui.table(
            "queries-n-plus-one-table",
            N_PLUS_ONE_COLUMNS,
            _with_links(findings, filters),
            wrap=("query_text",),
        ),
    )


def _detail(summary: str | None, body: dict[str, Any], filters: Filters) -> list[Any]:
    examples = _with_links(body["examples"], filters)
    if summary is None:
        return [
            ui.section(
                "Slowest statements in this range",
                ui.table("queries-examples", EXAMPLE_COLUMNS, examples, wrap=("query_text",)),
            )
        ]
    return [
        html.H4(summary, id="queries-detail-title", className="mt-2"),
        ui.graph(
            id="queries-latency",
            figure=figures.percentiles_figure(
                body["series"],
                title=f"{summary}: p50 / p95 / p99",
                x_range=x_range(filters.range_value),
            ),
        ),
        ui.section(
            "Slowest examples",
            ui.table("queries-examples", EXAMPLE_COLUMNS, examples, wrap=("query_text",)),
        ),
    ]


def register(app: Dash, api: ApiClient) -> None:
    @app.callback(
        Output("queries-table", "data"),
        Output("queries-n-plus-one", "children"),
        *FILTERS,
    )
    def refresh(range_value: str, service: str, _tick: int) -> Any:
        try:
            body = api.get("/api/queries", window(range_value, service))
        except ApiReadError as exc:
            return [], ui.read_error(exc)
        rows = [in_seconds({**row, "id": row["summary"]}) for row in body["queries"]]
        return rows, _n_plus_one(body["n_plus_one"], view(range_value, service))

    @app.callback(
        Output("queries-selected", "data"),
        Input("queries-table", "active_cell"),
        State("queries-selected", "data"),
    )
    def select(active_cell: dict[str, Any] | None, current: str | None) -> str | None:
        if active_cell and active_cell.get("row_id"):
            return str(active_cell["row_id"])
        return current

    @app.callback(Output("queries-detail", "children"), Input("queries-selected", "data"), *FILTERS)
    def detail(summary: str | None, range_value: str, service: str, _tick: int) -> Any:
        params = {**window(range_value, service), "summary": summary}
        try:
            body = api.get("/api/queries", params)
        except ApiReadError as exc:
            return ui.read_error(exc)
        return _detail(summary, body, view(range_value, service))


PAGE = Page(path="/queries", title="Queries", layout=layout, register=register)
