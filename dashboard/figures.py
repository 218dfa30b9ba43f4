"""Plotly figures built from the JSON API's shapes (see the dashboard contract).

Pure functions: rows in, ``go.Figure`` out, no I/O, so they are tested without a browser. Times
arrive as ISO 8601 UTC strings and are drawn as naive UTC datetimes (Plotly has no time zones);
axes say "UTC". An empty input gives a figure that says there is no data rather than an empty
grid, and percentiles that are null stay gaps, never zeros.

Plotly reads a subset of HTML in every label, legend entry, title and hover text (``<a href>``
becomes a live link, ``<b>`` renders), and span names, statements, routes and service names
come from whoever sends telemetry: every such text goes through :func:`plain` first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

import plotly.graph_objects as go

Row = Mapping[str, Any]

PERCENTILES = (("p50_ms", "p50", "dot"), ("p95_ms", "p95", "solid"), ("p99_ms", "p99", "dash"))
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
N_PLUS_ONE_COLOR = "#d62728"
ERROR_COLOR = "#7f0000"
KIND_COLORS = {
    "SERVER": "#1f77b4",
    "CLIENT": "#2ca02c",
    "INTERNAL": "#9467bd",
    "PRODUCER": "#ff7f0e",
    "CONSUMER": "#8c564b",
}
_MARGIN = {"l": 50, "r": 20, "t": 40, "b": 40}
SINGLE_RUN_SPAN = timedelta(hours=1)


def plain(text: object) -> str:
    """``text`` as Plotly shows it literally: its markup characters as the entities it decodes.

    Plotly decodes ``&amp;``, ``&lt;`` and ``&gt;`` but not ``&quot;``, so quotes stay as they
    are (they mean nothing outside a tag).
    """
    return escape(str(text), quote=False)


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 string from the API as a naive UTC datetime (None stays None)."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def empty_figure(message: str = "No data in this time range") -> go.Figure:
    figure = go.Figure()
    figure.update_layout(
        xaxis={"visible": False},
        yaxis={"visible": False},
        annotations=[
            {"text": message, "showarrow": False, "font": {"size": 14, "color": "#6c757d"}}
        ],
        margin=_MARGIN,
        height=260,
        template="plotly_white",
    )
    return figure


def _time_layout(figure: go.Figure, title: str, y_title: str, height: int = 300) -> go.Figure:
    figure.update_layout(
        title={"text": plain(title), "x": 0.01, "font": {"size": 14}},
        xaxis={"title": {"text": "time (UTC)"}},
        yaxis={"title": {"text": plain(y_title)}, "rangemode": "tozero"},
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
        margin=_MARGIN,
        height=height,
        template="plotly_white",
        hovermode="x unified",
    )
    return figure


def _grouped(rows: Iterable[Row], key: str | None) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        groups[str(row.get(key, "")) if key else ""].append(row)
    for group in groups.values():
        group.sort(key=lambda r: r["t"])
    return dict(sorted(groups.items()))


def percentiles_figure(
    series: Sequence[Row],
    *,
    group_by: str | None = None,
    title: str = "Latency",
    percentiles: Sequence[tuple[str, str, str]] = PERCENTILES,
) -> go.Figure:
    """p50 (dotted), p95 (solid) and p99 (dashed) over time, one colour per group
    (``percentiles`` chooses which of them)."""
    if not series:
        return empty_figure()
    figure = go.Figure()
    for index, (name, rows) in enumerate(_grouped(series, group_by).items()):
        color = PALETTE[index % len(PALETTE)]
        times = [parse_time(r["t"]) for r in rows]
        for field, label, dash in percentiles:
            figure.add_trace(
                go.Scatter(
                    x=times,
                    y=[r.get(field) for r in rows],
                    name=plain(f"{name} {label}".strip()),
                    mode="lines+markers",
                    marker={"size": 4},
                    line={"color": color, "dash": dash, "width": 2},
                    connectgaps=False,
                )
            )
    return _time_layout(figure, title, "ms")


def lines_figure(
    series: Sequence[Row],
    field: str,
    *,
    group_by: str | None = None,
    title: str,
    y_title: str,
    percent: bool = False,
) -> go.Figure:
    """One line per group of ``field`` over time (rates, error rates, pool gauges).

    With ``percent`` the values are ratios (0..1), plotted as they are on an axis whose ticks
    and hover labels Plotly formats as percentages (0.05 reads 5%).
    """
    if not series:
        return empty_figure()
    figure = go.Figure()
    for index, (name, rows) in enumerate(_grouped(series, group_by).items()):
        figure.add_trace(
            go.Scatter(
                x=[parse_time(r["t"]) for r in rows],
                y=[r.get(field) for r in rows],
                name=plain(name or field),
                mode="lines+markers",
                marker={"size": 4},
                line={"color": PALETTE[index % len(PALETTE)], "width": 2},
            )
        )
    _time_layout(figure, title, y_title)
    if percent:
        figure.update_yaxes(tickformat=".1~%", hoverformat=".2%")
    return figure


def pool_figure(series: Sequence[Row]) -> go.Figure:
    """Connections in use, idle and the maximum over time, per pool."""
    if not series:
        return empty_figure("No connection-pool metrics in this time range")
    figure = go.Figure()
    groups = _grouped(
        [{**r, "_pool": f"{r.get('service', '')} {r.get('pool', '')}".strip()} for r in series],
        "_pool",
    )
    for index, (name, rows) in enumerate(groups.items()):
        color = PALETTE[index % len(PALETTE)]
        times = [parse_time(r["t"]) for r in rows]
        for field, dash in (("used", "solid"), ("idle", "dot"), ("max", "dash")):
            figure.add_trace(
                go.Scatter(
                    x=times,
                    y=[r.get(field) for r in rows],
                    name=plain(f"{name} {field}"),
                    mode="lines",
                    line={"color": color, "dash": dash, "width": 2},
                )
            )
    return _time_layout(figure, "Connections", "connections")


def stacked_counts_figure(
    series: Sequence[Row], *, group_by: str, title: str, colors: Mapping[str, str] | None = None
) -> go.Figure:
    """Counts per interval as stacked bars, one colour per value of ``group_by``."""
    if not series:
        return empty_figure()
    figure = go.Figure()
    for index, (name, rows) in enumerate(_grouped(series, group_by).items()):
        figure.add_trace(
            go.Bar(
                x=[parse_time(r["t"]) for r in rows],
                y=[r.get("count", 0) for r in rows],
                name=plain(name),
                marker_color=(colors or {}).get(name, PALETTE[index % len(PALETTE)]),
            )
        )
    figure.update_layout(barmode="stack")
    return _time_layout(figure, title, "count")


def backup_runs_figure(runs: Sequence[Row], field: str, *, title: str, y_title: str) -> go.Figure:
    """One marker per backup run over time, green for success and red for failure."""
    points = [r for r in runs if r.get(field) is not None and r.get("start")]
    if not points:
        return empty_figure("No backup runs in this time range")
    figure = go.Figure()
    for status, color in (("success", "#198754"), ("failed", N_PLUS_ONE_COLOR)):
        chosen = [r for r in points if (r.get("status") == "success") == (status == "success")]
        if not chosen:
            continue
        chosen.sort(key=lambda r: r["start"])
        scale = 1 / 1_000_000 if field.endswith("bytes") else 1 / 1000
        figure.add_trace(
            go.Scatter(
                x=[parse_time(r["start"]) for r in chosen],
                y=[r[field] * scale for r in chosen],
                name=status,
                mode="lines+markers" if status == "success" else "markers",
                marker={"color": color, "size": 9},
                line={"color": color},
                customdata=[plain(r.get("backup_id")) for r in chosen],
                hovertemplate="%{customdata}<br>%{y:.3f} " + plain(y_title) + "<extra></extra>",
            )
        )
    figure = _time_layout(figure, title, y_title, height=280)
    times = [parse_time(r["start"]) for r in points]
    if max(times) - min(times) < SINGLE_RUN_SPAN:
        # One run (or runs seconds apart) would get an axis of milliseconds: show +-1 h around.
        middle = min(times) + (max(times) - min(times)) / 2
        figure.update_xaxes(range=[middle - SINGLE_RUN_SPAN, middle + SINGLE_RUN_SPAN])
    return figure


def n_plus_one_span_ids(findings: Sequence[Row]) -> set[str]:
    """The statement spans of a trace's N+1 findings, as ``/api/traces/<id>`` names them."""
    return {span_id for finding in findings for span_id in finding.get("span_ids") or ()}


def _span_color(span: Row, flagged: set[str]) -> str:
    if span["span_id"] in flagged:
        return N_PLUS_ONE_COLOR
    if span.get("status") == "ERROR" or str(span.get("status", "")).lower() == "error":
        return ERROR_COLOR
    return KIND_COLORS.get(str(span.get("kind", "")).upper(), "#7f7f7f")


def _span_labels(spans: Sequence[Row]) -> list[str]:
    """Span names indented by depth, padded to one width.

    Tick labels are right-aligned against the axis, so indentation only shows when every
    label has the same width in a monospace font; non-breaking spaces, because Plotly trims
    ordinary ones.
    """
    labels = []
    for span in spans:
        name = str(span["name"])
        if len(name) > 48:
            name = name[:47] + "~"
        labels.append("\u00a0\u00a0" * int(span.get("depth", 0)) + name)
    width = max(len(label) for label in labels)
    # Padded before escaping: an entity is one character on the screen.
    return [plain(label + "\u00a0" * (width - len(label))) for label in labels]


def _span_hover(span: Row, flagged: set[str]) -> str:
    attributes = span.get("attributes") or {}
    lines = [
        f"<b>{plain(span['name'])}</b> ({plain(span.get('kind', ''))}, "
        f"{plain(span.get('service', ''))})",
        f"start +{span['offset_ms']:.2f} ms, duration {span['duration_ms']:.2f} ms",
    ]
    text = attributes.get("db.query.text")
    if text:
        lines.append(plain(str(text)[:160]))
    if span["span_id"] in flagged:
        lines.append("<b>N+1</b>: the same statement runs again and again in one session")
    return "<br>".join(lines)


def waterfall_figure(trace: Row) -> go.Figure:
    """The spans of one trace as horizontal bars: start offset and duration, indented by depth.

    Rows keep the API's tree order (parent before children, siblings by start), top to bottom.
    Statement spans of an N+1 finding are red, other spans are coloured by kind, failed ones
    dark red.
    """
    spans = list(trace.get("spans") or [])
    if not spans:
        return empty_figure("This trace has no spans")
    flagged = n_plus_one_span_ids(trace.get("n_plus_one") or [])
    rows = list(range(len(spans)))
    figure = go.Figure(
        go.Bar(
            orientation="h",
            y=rows,
            x=[max(float(s["duration_ms"]), 0.0) for s in spans],
            base=[float(s["offset_ms"]) for s in spans],
            marker={"color": [_span_color(s, flagged) for s in spans]},
            hovertext=[_span_hover(s, flagged) for s in spans],
            hoverinfo="text",
            customdata=[s["span_id"] for s in spans],
            showlegend=False,
        )
    )
    figure.update_layout(
        title={
            "text": f"Trace {plain(trace.get('trace_id', ''))}",
            "x": 0.01,
            "font": {"size": 14},
        },
        xaxis={"title": {"text": "ms since the trace started"}, "rangemode": "tozero"},
        yaxis={
            "tickmode": "array",
            "tickvals": rows,
            "ticktext": _span_labels(spans),
            "autorange": "reversed",
            "tickfont": {"family": "monospace", "size": 11},
        },
        bargap=0.25,
        margin={"l": 20, "r": 20, "t": 40, "b": 40},
        height=max(220, 60 + 22 * len(spans)),
        template="plotly_white",
    )
    figure.update_yaxes(automargin=True)
    return figure
