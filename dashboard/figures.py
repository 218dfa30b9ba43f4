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

from instrumentation import conventions as names

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
RUNS_MARGIN = timedelta(minutes=30)
PREVIOUS_COLOR = "#868e96"
BYTE_UNITS = (("B", 1), ("KiB", 1024), ("MiB", 1024**2), ("GiB", 1024**3), ("TiB", 1024**4))
XRange = tuple[datetime, datetime]


def byte_unit(largest: float | None) -> tuple[str, int]:
    """The binary unit (name, size) in which ``largest`` reads as 1 to 1023.9."""
    size = abs(largest or 0)
    found = BYTE_UNITS[0]
    for unit in BYTE_UNITS:
        if size >= unit[1]:
            found = unit
    return found


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


def _time_layout(
    figure: go.Figure,
    title: str,
    y_title: str,
    height: int = 300,
    x_range: XRange | None = None,
) -> go.Figure:
    """Titles, legend and size of a chart over time; with ``x_range`` the axis spans exactly
    the chosen range (ending now for a preset), not the data's first to last point."""
    xaxis: dict[str, Any] = {"title": {"text": "time (UTC)"}}
    if x_range is not None:
        xaxis["range"] = list(x_range)
    figure.update_layout(
        title={"text": plain(title), "x": 0.01, "font": {"size": 14}},
        xaxis=xaxis,
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
    x_range: XRange | None = None,
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
    return _time_layout(figure, title, "ms", x_range=x_range)


def lines_figure(
    series: Sequence[Row],
    field: str,
    *,
    group_by: str | None = None,
    title: str,
    y_title: str,
    percent: bool = False,
    x_range: XRange | None = None,
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
    _time_layout(figure, title, y_title, x_range=x_range)
    if percent:
        figure.update_yaxes(tickformat=".1~%", hoverformat=".2%")
    return figure


def pool_figure(series: Sequence[Row], *, x_range: XRange | None = None) -> go.Figure:
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
    return _time_layout(figure, "Connections", "connections", x_range=x_range)


def stacked_counts_figure(
    series: Sequence[Row],
    *,
    group_by: str,
    title: str,
    colors: Mapping[str, str] | None = None,
    x_range: XRange | None = None,
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
    return _time_layout(figure, title, "count", x_range=x_range)


def add_previous(
    figure: go.Figure,
    previous: Sequence[Row],
    field: str,
    *,
    current: Sequence[Row],
    shift: timedelta,
    group_by: str | None = None,
    label: str = "",
) -> go.Figure:
    """The previous period's ``field`` drawn over ``figure`` as thin, faint long-dashed lines
    (p99 has the short dashes), shifted by ``shift`` (the range's length) so that each point
    lies over the same moment of the current period; one line per group, in the group's colour
    when the current period has it."""
    if not previous:
        return figure
    colors = {
        name: PALETTE[index % len(PALETTE)]
        for index, name in enumerate(_grouped(current, group_by))
    }
    for name, rows in _grouped(previous, group_by).items():
        figure.add_trace(
            go.Scatter(
                x=[parse_time(r["t"]) + shift for r in rows],
                y=[r.get(field) for r in rows],
                name=plain(f"{name} {label} previous period".replace("  ", " ").strip()),
                mode="lines",
                line={"color": colors.get(name, PREVIOUS_COLOR), "dash": "longdash", "width": 1.5},
                opacity=0.7,
                meta="previous",
            )
        )
    return figure


def backup_runs_figure(
    runs: Sequence[Row],
    field: str,
    *,
    title: str,
    y_title: str | None = None,
    now: datetime | None = None,
) -> go.Figure:
    """One marker per backup run over time: a line per repository through its successful runs
    (two repositories never zigzag into one line), failed runs as red crosses.

    Byte counts are shown in the binary unit that fits the largest run (B, KiB, MiB, GiB);
    durations in seconds. The time axis ends now and begins a little before the first run.
    """
    points = [r for r in runs if r.get(field) is not None and r.get("start")]
    if not points:
        return empty_figure("No backup runs in this time range")
    if field.endswith("bytes"):
        unit, size = byte_unit(max(abs(r[field]) for r in points))
    else:
        unit, size = "s", 1000
    figure = go.Figure()
    repositories = _grouped(
        [{**r, "t": r["start"], "_repo": str(r.get("repository_id") or "")[:8]} for r in points],
        "_repo",
    )
    for index, (repository, rows) in enumerate(repositories.items()):
        good = [r for r in rows if r.get("status") == "success"]
        if not good:
            continue
        color = PALETTE[index % len(PALETTE)]
        figure.add_trace(
            go.Scatter(
                x=[parse_time(r["start"]) for r in good],
                y=[r[field] / size for r in good],
                name=plain(repository or "(unnamed)"),
                legendgroup=repository,
                mode="lines+markers",
                marker={"color": color, "size": 9},
                line={"color": color},
                customdata=[plain(r.get("backup_id")) for r in good],
                hovertemplate="%{customdata}<br>%{y:.3~f} " + unit + "<extra></extra>",
            )
        )
    failed = sorted((r for r in points if r.get("status") != "success"), key=lambda r: r["start"])
    if failed:
        figure.add_trace(
            go.Scatter(
                x=[parse_time(r["start"]) for r in failed],
                y=[r[field] / size for r in failed],
                name="failed",
                mode="markers",
                marker={"color": N_PLUS_ONE_COLOR, "size": 11, "symbol": "x"},
                customdata=[
                    plain(f"{r.get('backup_id')} ({str(r.get('repository_id') or '')[:8]})")
                    for r in failed
                ],
                hovertemplate="%{customdata} failed<br>%{y:.3~f} " + unit + "<extra></extra>",
            )
        )
    times = [t for t in (parse_time(r["start"]) for r in points) if t is not None]
    end = max(max(times), (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None))
    start = min(times)
    start -= max((end - start) / 20, RUNS_MARGIN)
    figure = _time_layout(figure, title, f"{y_title or ''} {unit}".strip(), 280, (start, end))
    return figure


def n_plus_one_span_ids(findings: Sequence[Row]) -> set[str]:
    """The statement spans of a trace's N+1 findings, as ``/api/traces/<id>`` names them."""
    return {span_id for finding in findings for span_id in finding.get("span_ids") or ()}


# Legend entries of the waterfall, in the order shown: bars are coloured by span kind, except
# the statements of an N+1 finding and failed spans, which stand out whatever their kind.
N_PLUS_ONE_LABEL = "N+1 statement"
ERROR_LABEL = "error"
_LEGEND_ORDER = (*KIND_COLORS, "UNSPECIFIED", ERROR_LABEL, N_PLUS_ONE_LABEL)
# A bar is at least this share of the trace's duration wide, so that a 20 us statement in a
# 300 ms request stays visible (its label still says 20 us).
MIN_BAR_FRACTION = 0.004
HIGHLIGHT_COLOR = "rgba(255, 193, 7, 0.35)"
HIGHLIGHT_MARK = "\u25b6 "


def _span_category(span: Row, flagged: set[str]) -> str:
    if span["span_id"] in flagged:
        return N_PLUS_ONE_LABEL
    if str(span.get("status", "")).lower() == "error":
        return ERROR_LABEL
    kind = str(span.get("kind", "")).upper()
    return kind if kind in KIND_COLORS else "UNSPECIFIED"


def _category_color(category: str) -> str:
    if category == N_PLUS_ONE_LABEL:
        return N_PLUS_ONE_COLOR
    if category == ERROR_LABEL:
        return ERROR_COLOR
    return KIND_COLORS.get(category, "#7f7f7f")


def fmt_duration(ms: float | None) -> str:
    """A duration in the unit that fits: ``850 µs``, ``12.4 ms``, ``2.31 s``."""
    if ms is None:
        return "-"
    if ms < 1:
        return f"{ms * 1000:.0f} µs" if ms >= 0.01 else f"{ms * 1000:.1f} µs"
    if ms < 1000:
        return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s"


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
        f"start +{fmt_duration(span['offset_ms'])}, duration {fmt_duration(span['duration_ms'])}",
    ]
    text = attributes.get(names.DB_QUERY_TEXT)
    if text:
        lines.append(plain(str(text)[:160]))
    if span["span_id"] in flagged:
        lines.append("<b>N+1</b>: the same statement runs again and again in one session")
    lines.append("click for its attributes and events")
    return "<br>".join(lines)


def waterfall_figure(trace: Row, selected: str | None = None) -> go.Figure:
    """The spans of one trace as horizontal bars: start offset and duration, indented by depth.

    Rows keep the API's tree order (parent before children, siblings by start), top to bottom.
    Each bar is labelled with its duration and is at least :data:`MIN_BAR_FRACTION` of the
    trace wide. Bars are coloured by span kind (the legend says which), statement spans of an
    N+1 finding red, failed spans dark red. The ``selected`` span (the one a link arrived
    from, or the last clicked) has its row shaded and its label marked.
    Every bar carries its span id as ``customdata``, for click handlers.
    """
    spans = list(trace.get("spans") or [])
    if not spans:
        return empty_figure("This trace has no spans")
    flagged = n_plus_one_span_ids(trace.get("n_plus_one") or [])
    end = max(float(s["offset_ms"]) + max(float(s["duration_ms"]), 0.0) for s in spans)
    least = max(end, 1e-6) * MIN_BAR_FRACTION
    figure = go.Figure()
    for category, rows in _rows_by_category(spans, flagged).items():
        figure.add_trace(
            _category_bars(category, rows, spans, least=least, selected=selected, flagged=flagged)
        )
    _waterfall_layout(
        figure,
        f"Trace {plain(trace.get('trace_id', ''))}",
        _marked_labels(spans, selected),
        _highlight_shapes(spans, selected),
        end,
    )
    return figure


def _rows_by_category(spans: Sequence[Row], flagged: set[str]) -> dict[str, list[int]]:
    """The rows of the spans of each legend category, the categories in the legend's order."""
    categories: dict[str, list[int]] = defaultdict(list)
    for row, span in enumerate(spans):
        categories[_span_category(span, flagged)].append(row)
    return {
        category: categories[category] for category in sorted(categories, key=_LEGEND_ORDER.index)
    }


def _category_bars(
    category: str,
    rows: list[int],
    spans: Sequence[Row],
    *,
    least: float,
    selected: str | None,
    flagged: set[str],
) -> go.Bar:
    """The bars of one category, the spans on its ``rows``: each at least ``least`` wide and
    labelled with its duration, the ``selected`` span's outlined."""
    chosen = [spans[row] for row in rows]
    return go.Bar(
        orientation="h",
        y=rows,
        x=[max(float(s["duration_ms"]), least) for s in chosen],
        base=[float(s["offset_ms"]) for s in chosen],
        name=category,
        marker={
            "color": _category_color(category),
            "line": {
                "color": "#000000",
                "width": [2 if s["span_id"] == selected else 0 for s in chosen],
            },
        },
        text=[fmt_duration(float(s["duration_ms"])) for s in chosen],
        textposition="outside",
        cliponaxis=False,
        textfont={"size": 11},
        hovertext=[_span_hover(s, flagged) for s in chosen],
        hoverinfo="text",
        customdata=[s["span_id"] for s in chosen],
    )


def _marked_labels(spans: Sequence[Row], selected: str | None) -> list[str]:
    """The rows' labels (:func:`_span_labels`), the ``selected`` span's marked."""
    return [
        HIGHLIGHT_MARK + label if span["span_id"] == selected else label
        for span, label in zip(spans, _span_labels(spans), strict=True)
    ]


def _highlight_shapes(spans: Sequence[Row], selected: str | None) -> list[dict[str, Any]]:
    """A shaded band across the plot behind the row of the ``selected`` span."""
    return [
        {
            "type": "rect",
            "xref": "paper",
            "yref": "y",
            "x0": 0,
            "x1": 1,
            "y0": row - 0.5,
            "y1": row + 0.5,
            "fillcolor": HIGHLIGHT_COLOR,
            "line": {"width": 0},
            "layer": "below",
            "name": "highlighted span",
        }
        for row, span in enumerate(spans)
        if span["span_id"] == selected
    ]


def _waterfall_layout(
    figure: go.Figure, title: str, labels: list[str], shapes: list[dict[str, Any]], end: float
) -> None:
    """Title, axes, legend and size of a waterfall of one row per label, ``end`` ms long."""
    figure.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 14}},
        # Room on the right for the duration labels of the bars that end last.
        xaxis={"title": {"text": "ms since the trace started"}, "range": [0, end * 1.12]},
        yaxis={
            "tickmode": "array",
            "tickvals": list(range(len(labels))),
            "ticktext": labels,
            "autorange": "reversed",
            "tickfont": {"family": "monospace", "size": 11},
        },
        legend={
            "title": {"text": "span kind"},
            "orientation": "h",
            "x": 1,
            "xanchor": "right",
            "y": 1.02,
            "yanchor": "bottom",
        },
        shapes=shapes,
        barmode="overlay",
        bargap=0.25,
        margin={"l": 20, "r": 20, "t": 60, "b": 40},
        height=max(240, 80 + 22 * len(labels)),
        template="plotly_white",
    )
    figure.update_yaxes(automargin=True)


def trace_scatter_figure(traces: Sequence[Row], *, x_range: XRange | None = None) -> go.Figure:
    """The duration of each trace over its start time (errors red); a point's ``customdata``
    is its trace id, so a click opens it."""
    points = [t for t in traces if t.get("start")]
    if not points:
        return empty_figure("No trace matches this search")
    figure = go.Figure()
    for failed, name, color in ((False, "ok", PALETTE[0]), (True, "error", N_PLUS_ONE_COLOR)):
        chosen = [t for t in points if bool(t.get("error")) == failed]
        if not chosen:
            continue
        figure.add_trace(
            go.Scatter(
                x=[parse_time(t["start"]) for t in chosen],
                y=[t["duration_ms"] for t in chosen],
                name=name,
                mode="markers",
                marker={"color": color, "size": 8, "opacity": 0.8},
                customdata=[t["trace_id"] for t in chosen],
                hovertext=[
                    f"{plain(t.get('root_name', ''))}<br>{fmt_duration(t['duration_ms'])}"
                    f"<br>{plain(t.get('service', ''))} · click to open"
                    for t in chosen
                ],
                hoverinfo="text",
            )
        )
    figure = _time_layout(
        figure, "Duration of the matching traces", "ms", height=280, x_range=x_range
    )
    figure.update_layout(hovermode="closest")
    return figure
