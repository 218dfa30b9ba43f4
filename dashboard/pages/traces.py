"""Traces: search by operation, span attribute, duration and status; one trace as a waterfall.

``/traces?trace=<id>`` opens a trace (the links of the Queries, Logs and search tables point
here) and ``&span=<id>`` highlights the span the link came from; ``/traces?operation=...`` and
``?attribute=key=value`` pre-fill the search. Clicking a bar of the waterfall shows that span's
attributes and events below it; clicking a point of the scatter opens that trace.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, callback_context, dcc, html

from dashboard import components as ui
from dashboard import figures, url_filters
from dashboard.apiclient import ApiClient, ApiReadError
from dashboard.pages.base import FILTERS, REFRESH_ID, URL_ID, Page, view, window, x_range
from dashboard.url_filters import Filters
from instrumentation import conventions as names

PAGE_SIZE = 100
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
ATTRIBUTE_HELP = (
    "key=value or key (the key exists): http.response.status_code=404, "
    "error.type=NotFoundError, http.request.header.x-request-id=..."
)


def layout() -> html.Div:
    return html.Div(
        [
            # Opening a trace from the scatter navigates like the table's links do.
            dcc.Location(id="traces-goto", refresh=True),
            dcc.Store(id="traces-trace-data"),
            dcc.Store(id="traces-offset", data=0),
            html.H3("Traces"),
            _search_row(),
            dcc.Loading(html.Div(id="traces-waterfall"), delay_show=500),
            html.Div(id="traces-span-detail", className="mb-4"),
            dcc.Loading(html.Div(id="traces-results"), delay_show=500),
            _paging_buttons(),
        ]
    )


def _search_row() -> dbc.Row:
    """The search's fields: operation, span attribute, minimum duration and status."""
    return dbc.Row(
        [
            _operation_column(),
            _attribute_column(),
            dbc.Col(
                dbc.Input(
                    id="traces-min-duration",
                    placeholder="min duration ms",
                    debounce=True,
                    type="number",
                    min=0,
                ),
                md=2,
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
    )


def _operation_column() -> dbc.Col:
    """The operation field, suggesting the operations seen (set with the search results)."""
    return dbc.Col(
        [
            dbc.Input(
                id="traces-operation",
                placeholder="operation (root span name, any case)",
                debounce=True,
                type="text",
                list="traces-operations",
                autoComplete="off",
            ),
            html.Datalist(id="traces-operations"),
        ],
        md=3,
    )


def _attribute_column() -> dbc.Col:
    return dbc.Col(
        [
            dbc.Input(
                id="traces-attribute",
                placeholder="attribute: http.response.status_code=404",
                debounce=True,
                type="text",
                autoComplete="off",
            ),
            dbc.FormText(ATTRIBUTE_HELP),
        ],
        md=4,
    )


def _paging_buttons() -> html.Div:
    return html.Div(
        [
            dbc.Button(
                "previous 100",
                id="traces-previous",
                color="secondary",
                outline=True,
                size="sm",
                className="me-2",
                disabled=True,
            ),
            dbc.Button(
                "next 100",
                id="traces-next",
                color="secondary",
                outline=True,
                size="sm",
                disabled=True,
            ),
        ],
        className="mb-4",
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
                "statement": attributes.get(names.DB_QUERY_TEXT, ""),
            }
        )
    return rows


def _waterfall(trace: dict[str, Any], selected: str | None, filters: Filters) -> list[Any]:
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
    logs_href = url_filters.with_view("/logs?" + urlencode({"trace": trace["trace_id"]}), filters)
    return [
        html.Div(
            [
                html.H4("Waterfall", className="d-inline me-3"),
                dcc.Link("logs of this trace", href=logs_href, refresh=True),
                html.Span(
                    "click a bar for the span's attributes and events",
                    className="text-muted ms-3 small",
                ),
            ],
            className="mb-2",
        ),
        *alerts,
        ui.graph(
            id="traces-waterfall-graph", figure=figures.waterfall_figure(trace, selected=selected)
        ),
        html.Details(
            [
                html.Summary("spans as a table"),
                ui.table("traces-spans", SPAN_COLUMNS, _span_rows(trace, flagged), page_size=50),
            ],
            className="mb-4",
        ),
    ]


def _value(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _none() -> html.P:
    return html.P("none", className="text-muted")


def _pairs(attributes: dict[str, Any], table_id: str) -> Any:
    if not attributes:
        return _none()
    return dbc.Table(
        html.Tbody(
            [
                html.Tr([html.Td(html.Code(key)), html.Td(_value(value), className="text-break")])
                for key, value in sorted(attributes.items())
            ]
        ),
        id=table_id,
        size="sm",
        bordered=True,
        className="mb-2",
    )


def _events(events: list[dict[str, Any]]) -> list[Any]:
    return [
        html.Div(
            [
                html.B(event.get("name", "")),
                html.Span(
                    f" at {ui.fmt_time(event.get('time'))}",
                    className="text-muted small",
                ),
                _pairs(event.get("attributes") or {}, f"traces-event-{i}"),
            ]
        )
        for i, event in enumerate(events)
    ] or [_none()]


def _links(links: list[dict[str, Any]], filters: Filters) -> list[Any]:
    return [
        html.Div(
            [
                dcc.Link(
                    f"trace {link['trace_id']} span {link['span_id']}",
                    href=ui.trace_href(link["trace_id"], link["span_id"], view=filters),
                    refresh=True,
                ),
                _pairs(link.get("attributes") or {}, f"traces-link-{i}"),
            ]
        )
        for i, link in enumerate(links)
    ] or [_none()]


def span_detail(span: dict[str, Any], highlighted: bool, filters: Filters) -> dbc.Card:
    """The span's identity, timing, attributes, events and links (each opening the linked
    span in its trace, in the same view), as plain text."""
    events = span.get("events") or []
    links = span.get("links") or []
    facts = (
        f"{span.get('kind', '')} · {span.get('service', '')} · "
        f"+{figures.fmt_duration(span.get('offset_ms'))} · "
        f"{figures.fmt_duration(span.get('duration_ms'))} · status {span.get('status', '')} · "
        f"span {span['span_id']}"
    )
    return dbc.Card(
        dbc.CardBody(
            [
                html.H5(
                    [
                        span["name"],
                        dbc.Badge("linked span", color="warning", className="ms-2")
                        if highlighted
                        else None,
                    ],
                    className="card-title",
                ),
                html.P(facts, className="text-muted small"),
                html.H6("Attributes"),
                _pairs(span.get("attributes") or {}, "traces-span-attributes"),
                html.H6(f"Events ({len(events)})"),
                *_events(events),
                html.H6(f"Links ({len(links)})"),
                *_links(links, filters),
            ]
        ),
        id="traces-span-card",
        className="span-detail",
    )


def _clicked_span(click: dict[str, Any] | None) -> str | None:
    points = (click or {}).get("points") or []
    if not points:
        return None
    span_id = points[0].get("customdata")
    return span_id if isinstance(span_id, str) else None


def _page_offset(triggered: str | None, offset: int | None, has_more: bool) -> int:
    """The offset of the page to show: a new search starts again at the first page, an
    auto-refresh stays on the page shown."""
    offset = offset or 0
    if triggered == "traces-next" and has_more:
        return offset + PAGE_SIZE
    if triggered == "traces-previous":
        return max(0, offset - PAGE_SIZE)
    if triggered == REFRESH_ID:
        return offset
    return 0


def _spans_by_id(trace: Any) -> dict[str, dict[str, Any]]:
    return {span["span_id"]: span for span in (trace or {}).get("spans", [])}


def _result_rows(traces: list[dict[str, Any]], filters: Filters) -> list[dict[str, Any]]:
    return [
        {
            **row,
            "trace": ui.trace_link(row["trace_id"], view=filters),
            "error_flag": "error" if row.get("error") else "",
            "n_plus_one_flag": "N+1" if row.get("n_plus_one") else "",
        }
        for row in traces
    ]


def _scan_notes(found: dict[str, Any]) -> list[Any]:
    """A warning when the attribute search read only the newest spans of the range."""
    searched_since = (found.get("search") or {}).get("searched_since")
    if not searched_since:
        return []
    return [
        ui.notice(
            "This range holds more spans than an attribute search reads "
            f"({found['search']['scan_limit_spans']:,}): searched the spans since "
            f"{ui.fmt_time(searched_since)} UTC.",
            color="warning",
        )
    ]


def _results(found: dict[str, Any], offset: int, range_value: str, service: str) -> Any:
    """One page of found traces: its title, the scatter and the table."""
    rows = _result_rows(found["traces"], view(range_value, service))
    first = offset + 1 if rows else 0
    title = f"Slowest traces {first}-{offset + len(rows)}"
    if found.get("has_more"):
        title += " (more on the next page)"
    table = ui.table("traces-table", RESULT_COLUMNS, rows, page_size=PAGE_SIZE)
    # A page of 100 scrolls within a box of its own, not the whole page.
    table.style_table = {"overflowX": "auto", "overflowY": "auto", "maxHeight": "560px"}
    return ui.section(
        title,
        *_scan_notes(found),
        ui.graph(
            id="traces-scatter",
            figure=figures.trace_scatter_figure(found["traces"], x_range=x_range(range_value)),
        ),
        table,
    )


def register(app: Dash, api: ApiClient) -> None:
    _register_prefill(app, api)
    _register_waterfall(app, api)
    _register_span_detail(app, api)
    _register_open_trace(app, api)
    _register_search(app, api)


def _register_prefill(app: Dash, api: ApiClient) -> None:
    @app.callback(
        Output("traces-operation", "value"),
        Output("traces-attribute", "value"),
        Input(URL_ID, "search"),
    )
    def prefill(search: str | None) -> tuple[str | None, str | None]:
        query = _query(search)
        return query.get("operation"), query.get("attribute")


def _register_waterfall(app: Dash, api: ApiClient) -> None:
    @app.callback(
        Output("traces-waterfall", "children"),
        Output("traces-trace-data", "data"),
        Input(URL_ID, "search"),
    )
    def waterfall(search: str | None) -> tuple[Any, Any]:
        query = _query(search)
        trace_id = query.get("trace")
        if not trace_id:
            return ui.notice("Pick a trace below, or follow a link from Queries or Logs."), None
        try:
            trace = api.get(f"/api/traces/{trace_id}")
        except ApiReadError as exc:
            if exc.status == 404:
                message = f"Trace {trace_id} is not in the store (pruned, or not sampled)."
                return ui.notice(message), None
            return ui.read_error(exc), None
        return _waterfall(trace, query.get("span"), url_filters.from_query(search)), trace


def _register_span_detail(app: Dash, api: ApiClient) -> None:
    @app.callback(
        Output("traces-span-detail", "children"),
        Output("traces-waterfall-graph", "figure"),
        Input("traces-waterfall-graph", "clickData"),
        State("traces-trace-data", "data"),
        State(URL_ID, "search"),
        prevent_initial_call=True,
    )
    def clicked(click: dict[str, Any] | None, trace: Any, search: str | None) -> Any:
        linked = _query(search).get("span")
        chosen = _clicked_span(click) or linked
        by_id = _spans_by_id(trace)
        if chosen not in by_id:
            return None, figures.waterfall_figure(trace or {}, selected=linked)
        detail = span_detail(
            by_id[chosen], highlighted=chosen == linked, filters=url_filters.from_query(search)
        )
        return detail, figures.waterfall_figure(trace, selected=chosen)

    @app.callback(
        Output("traces-span-detail", "children", allow_duplicate=True),
        Input("traces-trace-data", "data"),
        State(URL_ID, "search"),
        prevent_initial_call=True,
    )
    def linked_span(trace: Any, search: str | None) -> Any:
        linked = _query(search).get("span")
        by_id = _spans_by_id(trace)
        if linked in by_id:
            return span_detail(
                by_id[linked], highlighted=True, filters=url_filters.from_query(search)
            )
        if linked and trace:
            return ui.notice(f"Span {linked} is not in this trace.")
        return None


def _register_open_trace(app: Dash, api: ApiClient) -> None:
    @app.callback(
        Output("traces-goto", "href"),
        Input("traces-scatter", "clickData"),
        State(URL_ID, "search"),
        prevent_initial_call=True,
    )
    def open_trace(click: dict[str, Any] | None, search: str | None) -> Any:
        trace_id = _clicked_span(click)
        if trace_id is None:
            return None
        return ui.trace_href(trace_id, view=url_filters.from_query(search))


def _register_search(app: Dash, api: ApiClient) -> None:
    @app.callback(
        Output("traces-results", "children"),
        Output("traces-operations", "children"),
        Output("traces-offset", "data"),
        Output("traces-previous", "disabled"),
        Output("traces-next", "disabled"),
        Input("traces-operation", "value"),
        Input("traces-attribute", "value"),
        Input("traces-min-duration", "value"),
        Input("traces-status", "value"),
        Input("traces-previous", "n_clicks"),
        Input("traces-next", "n_clicks"),
        *FILTERS,
        State("traces-offset", "data"),
        State("traces-next", "disabled"),
    )
    def search(
        operation: str | None,
        attribute: str | None,
        min_duration: float | None,
        status: str | None,
        _previous: int | None,
        _next: int | None,
        range_value: str,
        service: str,
        _tick: int,
        offset: int | None,
        last_page: bool | None,
    ) -> tuple[Any, Any, int, bool, bool]:
        triggered = callback_context.triggered_id
        offset = _page_offset(
            triggered if isinstance(triggered, str) else None, offset, not last_page
        )
        params = {
            **window(range_value, service),
            "operation": (operation or "").strip() or None,
            "attribute": (attribute or "").strip() or None,
            "min_duration_ms": min_duration,
            "status": status,
            "limit": PAGE_SIZE,
            "offset": offset,
        }
        try:
            found = api.get("/api/traces", params)
        except ApiReadError as exc:
            return ui.read_error(exc), [], 0, True, True
        suggestions = [html.Option(value=name) for name in found.get("operations", [])]
        content = _results(found, offset, range_value, service)
        return content, suggestions, offset, offset == 0, not found.get("has_more")


PAGE = Page(path="/traces", title="Traces", layout=layout, register=register)
