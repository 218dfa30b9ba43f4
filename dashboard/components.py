"""Building blocks shared by the pages: tables, stat cards, alerts, number formats, links.

Links from one page to another (:func:`page_link`, :func:`trace_link`) carry the view's range
and service, so that the page they open shows the same time.

Every table is a ``dash_table.DataTable`` sorted in the browser (``sort_action="native"``);
numbers are sent as numbers so that they sort as numbers, and formatted by the column's
``format`` rather than turned into strings here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
from dash import dash_table, dcc, html
from dash.dash_table.Format import Format, Scheme, Symbol, Trim

from dashboard import url_filters
from dashboard.apiclient import ApiReadError
from dashboard.figures import byte_unit, parse_time
from dashboard.url_filters import Filters

NONE = "-"  # shown for a missing number


def number(name: str, column_id: str, decimals: int = 2) -> dict[str, Any]:
    """A numeric column with fixed decimals."""
    return {
        "name": name,
        "id": column_id,
        "type": "numeric",
        "format": Format(precision=decimals, scheme=Scheme.fixed),
    }


def significant(name: str, column_id: str, digits: int = 3) -> dict[str, Any]:
    """A numeric column rounded to ``digits`` significant digits: 0.00167 stays 0.00167."""
    return {
        "name": name,
        "id": column_id,
        "type": "numeric",
        "format": Format(precision=digits, scheme=Scheme.decimal).trim(Trim.yes),
    }


def seconds(name: str, column_id: str) -> dict[str, Any]:
    """A duration column of seconds, in the unit that fits each value: 37µs, 1.25ms, 2.4s.

    The value stays a number (it sorts as one); d3's SI prefixes pick the unit.
    """
    return {
        "name": name,
        "id": column_id,
        "type": "numeric",
        "format": Format(precision=3, scheme=Scheme.decimal_si_prefix, symbol_suffix="s")
        .trim(Trim.yes)
        .symbol(Symbol.yes),
    }


def percent(name: str, column_id: str) -> dict[str, Any]:
    """A ratio column (0..1) shown as a percentage."""
    return {
        "name": name,
        "id": column_id,
        "type": "numeric",
        "format": Format(precision=2, scheme=Scheme.percentage),
    }


def text(name: str, column_id: str) -> dict[str, Any]:
    return {"name": name, "id": column_id, "type": "text"}


def time(name: str, column_id: str) -> dict[str, Any]:
    """A UTC time column: ISO 8601 from the API, shown to the second (it still sorts as text)."""
    return {"name": name, "id": column_id, "type": "datetime"}


def fmt_time(value: str | None) -> str:
    """``2026-11-28T20:09:52.477716+00:00`` as ``2026-11-28 20:09:52``."""
    if not value:
        return NONE
    parsed = parse_time(value)
    return parsed.strftime("%Y-%m-%d %H:%M:%S") if parsed else NONE


def link(name: str, column_id: str) -> dict[str, Any]:
    """A column of Markdown links (see :func:`page_link`)."""
    return {"name": name, "id": column_id, "type": "text", "presentation": "markdown"}


def page_link(label: str, href: str, view: Filters) -> str:
    """A Markdown link to another page (``href``: its path and own parameters) that keeps the
    view's range and service, as the navigation bar's links do."""
    return f"[{label}]({url_filters.with_view(href, view)})"


def trace_href(trace_id: str, span_id: str | None = None, *, view: Filters) -> str:
    """The Traces page's URL of one trace in ``view``; ``span_id`` is highlighted in its
    waterfall."""
    query = {"trace": trace_id} if not span_id else {"trace": trace_id, "span": span_id}
    return url_filters.with_view("/traces?" + urlencode(query), view)


def trace_link(
    trace_id: str | None,
    label: str | None = None,
    *,
    view: Filters,
    span_id: str | None = None,
) -> str:
    """A Markdown link that opens the trace's waterfall ('' when there is no trace), with the
    span ``span_id`` (the row's own: a statement, a log record's span) highlighted."""
    if not trace_id:
        return ""
    return f"[{label or trace_id[:16]}]({trace_href(trace_id, span_id, view=view)})"


def table(
    table_id: str,
    columns: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    *,
    page_size: int = 15,
    selectable: bool = False,
    wrap: Sequence[str] = (),
) -> dash_table.DataTable:
    """A sortable table; ``selectable`` highlights the clicked row (rows then need an ``id``)."""
    times = [c["id"] for c in columns if c.get("type") == "datetime"]
    data = [{**r, **{t: fmt_time(r.get(t)) for t in times}} for r in rows]
    return dash_table.DataTable(
        id=table_id,
        columns=list(columns),
        data=data,
        sort_action="native",
        sort_mode="single",
        # Auto-refresh re-renders the tables: keep the reader's sort across refreshes.
        persistence=True,
        persisted_props=["sort_by"],
        persistence_type="session",
        page_action="native",
        page_size=page_size,
        markdown_options={"link_target": "_self"},
        cell_selectable=selectable or any(c.get("presentation") == "markdown" for c in columns),
        style_table={"overflowX": "auto"},
        # Bootstrap's variables, so that the tables follow the light or dark theme.
        style_header={
            "fontWeight": "600",
            "backgroundColor": "var(--bs-tertiary-bg)",
            "color": "var(--bs-body-color)",
        },
        style_data={"backgroundColor": "var(--bs-body-bg)", "color": "var(--bs-body-color)"},
        style_cell={
            "borderColor": "var(--bs-border-color)",
            "fontFamily": "system-ui, sans-serif",
            "fontSize": "13px",
            "padding": "4px 8px",
            "textAlign": "left",
            "maxWidth": "480px",
            "overflow": "hidden",
            "textOverflow": "ellipsis",
        },
        style_cell_conditional=[
            {"if": {"column_id": c}, "whiteSpace": "normal", "fontFamily": "monospace"}
            for c in wrap
        ],
        style_data_conditional=(
            [
                {
                    "if": {"state": "active"},
                    "backgroundColor": "var(--vrp-selected-bg)",
                    "border": "1px solid var(--bs-primary)",
                }
            ]
            if selectable
            else []
        ),
    )


def stat(
    label: str,
    value: str,
    *,
    color: str = "light",
    detail: Any = None,
    over: str | None = None,
    card_id: str | None = None,
) -> dbc.Col:
    """A small card holding one number; ``over`` says what it is over (``over 1 h``)."""
    body = [html.Div(label, className="stat-label"), html.Div(value, className="stat-value")]
    if detail:
        body.append(html.Div(detail, className="stat-detail"))
    if over:
        body.append(html.Div(over, className="stat-over"))
    inverse = color not in ("light", "warning")
    # "light" is the neutral card: the theme's tertiary background, light or dark.
    neutral = color == "light"
    return dbc.Col(
        dbc.Card(
            dbc.CardBody(body),
            color=None if neutral else color,
            inverse=inverse,
            # Amber cards keep dark text in the dark theme too (light text on amber is unreadable).
            className="stat-card bg-body-tertiary"
            if neutral
            else f"stat-card{' text-dark' if color == 'warning' else ''}",
            **({"id": card_id} if card_id else {}),
        ),
        xs=6,
        md=4,
        lg=True,  # one row of equal cards from 992 px up
    )


OWN_RANGE = "own-range"


def graph(figure: Any, *, own_range: bool = False, **kwargs: Any) -> dcc.Graph:
    """A plot without Plotly's tool bar.

    Dragging across a time chart zooms the whole view: the range becomes that absolute range,
    in the URL and on every page (``assets/zoom.js``). A chart whose axis is not the shared
    range (Backups' 30 days) passes ``own_range`` and zooms only itself.
    """
    if own_range:
        kwargs["className"] = f"{kwargs.get('className', '')} {OWN_RANGE}".strip()
    return dcc.Graph(figure=figure, config={"displayModeBar": False}, **kwargs)


def section(title: str, *children: Any) -> html.Div:
    return html.Div([html.H5(title, className="section-title"), *children], className="section")


def read_error(exc: ApiReadError) -> dbc.Alert:
    return dbc.Alert(f"Could not read {exc.path}: {exc}", color="danger", className="read-error")


def notice(message: str, color: str = "secondary") -> dbc.Alert:
    return dbc.Alert(message, color=color, className="notice")


def fmt_ms(value: float | None) -> str:
    if value is None:
        return NONE
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


def fmt_rate(value: float | None) -> str:
    return NONE if value is None else f"{value:.2f}/s"


def fmt_percent(value: float | None) -> str:
    return NONE if value is None else f"{100 * value:.2f}%"


def bytes_column(
    name: str, column_id: str, values: Sequence[float | None]
) -> tuple[dict[str, Any], int]:
    """A numeric column for byte counts, and the size of its unit to divide them by.

    The unit fits the column's largest value and the header names it (``stored KiB``), with
    enough decimals that the smallest non-zero value does not read 0.00; the numbers still
    sort as numbers.
    """
    present = [abs(v) for v in values if v]
    unit, size = byte_unit(max(present, default=0))
    smallest = min(present, default=size) / size
    decimals = 0 if size == 1 else 2
    while decimals and decimals < 6 and smallest < 10 ** (1 - decimals):
        decimals += 1
    return number(f"{name} {unit}", column_id, decimals), size


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
