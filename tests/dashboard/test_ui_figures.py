"""The plots the pages draw, from rows in the JSON API's shapes (no browser needed)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from dashboard import figures

SESSION = "b" * 16
TEXT = "SELECT tags.name FROM tags WHERE tags.recording_id = ?"


def _span(span_id: str, parent: str | None, name: str, kind: str, depth: int, **extra: Any) -> dict:
    return {
        "span_id": span_id,
        "parent_span_id": parent,
        "service": "vrp-api",
        "name": name,
        "kind": kind,
        "start": "2026-11-28T20:00:00+00:00",
        "offset_ms": extra.pop("offset_ms", 0.0),
        "duration_ms": extra.pop("duration_ms", 1.0),
        "status": extra.pop("status", "UNSET"),
        "attributes": extra.pop("attributes", {}),
        "events": [],
        "depth": depth,
    }


def _trace() -> dict[str, Any]:
    spans = [
        _span("a" * 16, None, "GET /api/tags", "SERVER", 0, duration_ms=30.0),
        _span(SESSION, "a" * 16, "db.session", "INTERNAL", 1, offset_ms=1.0, duration_ms=25.0),
        _span("c" * 16, SESSION, "db.transaction", "INTERNAL", 2, offset_ms=2.0),
    ]
    spans += [
        _span(
            f"{i:016x}",
            "c" * 16,
            "SELECT tags",
            "CLIENT",
            3,
            offset_ms=3.0 + i,
            attributes={"db.query.text": TEXT},
        )
        for i in range(5)
    ]
    spans.append(
        _span(
            "d" * 16,
            "c" * 16,
            "SELECT recordings",
            "CLIENT",
            3,
            offset_ms=9.0,
            status="ERROR",
            attributes={"db.query.text": "SELECT recordings.id FROM recordings"},
        )
    )
    finding = {
        "trace_id": "e" * 32,
        "session_span_id": SESSION,
        "query_text": TEXT,
        "count": 5,
        "service": "vrp-api",
        "start": "2026-11-28T20:00:00+00:00",
        "span_ids": [f"{i:016x}" for i in range(5)],
    }
    return {"trace_id": "e" * 32, "spans": spans, "n_plus_one": [finding]}


def test_n_plus_one_spans_are_the_ones_the_api_names() -> None:
    trace = _trace()
    flagged = figures.n_plus_one_span_ids(trace["n_plus_one"])
    assert flagged == {f"{i:016x}" for i in range(5)}


def _bars_by_row(figure: Any) -> dict[int, dict[str, Any]]:
    """Each row's bar, whichever legend entry (trace of the figure) draws it."""
    rows = {}
    for bar in figure.data:
        for i, row in enumerate(bar.y):
            rows[row] = {
                "base": bar.base[i],
                "x": bar.x[i],
                "text": bar.text[i],
                "color": bar.marker.color,
                "legend": bar.name,
                "span_id": bar.customdata[i],
                "line": bar.marker.line.width[i],
                "hover": bar.hovertext[i],
            }
    return rows


def test_waterfall_keeps_tree_order_offsets_durations_and_colours() -> None:
    trace = _trace()
    figure = figures.waterfall_figure(trace)
    assert {bar.orientation for bar in figure.data} == {"h"}
    rows = _bars_by_row(figure)
    assert sorted(rows) == list(range(len(trace["spans"])))
    assert [rows[r]["base"] for r in sorted(rows)] == [s["offset_ms"] for s in trace["spans"]]
    assert [rows[r]["x"] for r in sorted(rows)] == [s["duration_ms"] for s in trace["spans"]]
    assert [rows[r]["span_id"] for r in sorted(rows)] == [s["span_id"] for s in trace["spans"]]
    colors = [rows[r]["color"] for r in sorted(rows)]
    assert colors.count(figures.N_PLUS_ONE_COLOR) == 5
    assert colors[-1] == figures.ERROR_COLOR
    assert colors[0] == figures.KIND_COLORS["SERVER"]


def test_waterfall_has_a_legend_entry_per_colour() -> None:
    figure = figures.waterfall_figure(_trace())
    assert [bar.name for bar in figure.data] == ["SERVER", "INTERNAL", "error", "N+1 statement"]
    assert all(bar.showlegend is not False for bar in figure.data)
    assert figure.layout.legend.title.text == "span kind"


def test_waterfall_bars_say_their_duration_in_a_unit_that_fits() -> None:
    spans = [
        _span("a" * 16, None, "GET /slow", "SERVER", 0, duration_ms=2310.0),
        _span("b" * 16, "a" * 16, "db.session", "INTERNAL", 1, duration_ms=12.44),
        _span("c" * 16, "b" * 16, "SELECT 1", "CLIENT", 2, duration_ms=0.02),
        _span("d" * 16, "b" * 16, "SELECT 2", "CLIENT", 2, duration_ms=0.85),
    ]
    rows = _bars_by_row(figures.waterfall_figure({"trace_id": "e" * 32, "spans": spans}))
    assert [rows[r]["text"] for r in range(4)] == ["2.31 s", "12.4 ms", "20 µs", "850 µs"]


def test_sub_millisecond_spans_get_a_visible_bar_but_keep_their_label() -> None:
    spans = [
        _span("a" * 16, None, "GET /slow", "SERVER", 0, duration_ms=300.0),
        _span("c" * 16, "a" * 16, "SELECT 1", "CLIENT", 1, offset_ms=5.0, duration_ms=0.02),
    ]
    rows = _bars_by_row(figures.waterfall_figure({"trace_id": "e" * 32, "spans": spans}))
    assert rows[1]["x"] == 300.0 * figures.MIN_BAR_FRACTION
    assert rows[1]["base"] == 5.0
    assert rows[1]["text"] == "20 µs"
    assert rows[0]["x"] == 300.0


def test_the_selected_span_is_outlined_shaded_and_marked() -> None:
    trace = _trace()
    figure = figures.waterfall_figure(trace, selected=SESSION)
    rows = _bars_by_row(figure)
    assert [r for r in rows if rows[r]["line"]] == [1]
    (shape,) = figure.layout.shapes
    assert (shape.y0, shape.y1) == (0.5, 1.5)
    labels = figure.layout.yaxis.ticktext
    assert labels[1].startswith(figures.HIGHLIGHT_MARK)
    assert not any(
        label.startswith(figures.HIGHLIGHT_MARK) for i, label in enumerate(labels) if i != 1
    )
    assert not figures.waterfall_figure(trace).layout.shapes


def test_trace_scatter_plots_duration_over_time_with_trace_ids_to_open() -> None:
    traces = [
        {
            "trace_id": "a" * 32,
            "root_name": "GET /x",
            "start": "2026-11-28T20:00:00+00:00",
            "duration_ms": 12.0,
            "error": False,
            "service": "vrp-api",
        },
        {
            "trace_id": "b" * 32,
            "root_name": "GET /y",
            "start": "2026-11-28T20:01:00+00:00",
            "duration_ms": 40.0,
            "error": True,
            "service": "vrp-api",
        },
    ]
    figure = figures.trace_scatter_figure(traces)
    by_name = {scatter.name: scatter for scatter in figure.data}
    assert list(by_name["ok"].customdata) == ["a" * 32]
    assert list(by_name["error"].y) == [40.0]
    assert figures.trace_scatter_figure([]).layout.annotations


def test_waterfall_labels_are_indented_by_depth_and_of_one_width() -> None:
    figure = figures.waterfall_figure(_trace())
    labels = list(figure.layout.yaxis.ticktext)
    assert len({len(label) for label in labels}) == 1
    assert labels[0].startswith("GET")
    assert labels[3].startswith("\u00a0" * 6 + "SELECT tags")
    assert figure.layout.yaxis.autorange == "reversed"


def test_missing_percentiles_stay_gaps_not_zeros() -> None:
    series = [
        {"t": "2026-11-28T20:00:00Z", "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0},
        {"t": "2026-11-28T20:01:00Z", "p50_ms": None, "p95_ms": None, "p99_ms": None},
    ]
    figure = figures.percentiles_figure(series)
    assert [trace.name for trace in figure.data] == ["p50", "p95", "p99"]
    assert list(figure.data[1].y) == [2.0, None]


def test_times_are_drawn_as_utc() -> None:
    parsed = figures.parse_time("2026-11-28T21:00:00+01:00")
    assert parsed is not None and parsed.hour == 20 and parsed.tzinfo is None


def test_no_data_says_so() -> None:
    figure = figures.percentiles_figure([])
    assert figure.layout.annotations[0].text == "No data in this time range"
    assert not figure.data


NOW = datetime(2026, 11, 28, 22, 0)


def test_backup_run_axes_end_now_and_begin_before_the_first_run() -> None:
    runs = [{"backup_id": "b1", "status": "success", "start": "2026-11-28T21:09:01.9475Z"}]
    runs[0]["duration_ms"] = 1200.0
    figure = figures.backup_runs_figure(runs, "duration_ms", title="duration", now=NOW)
    low, high = (figures.parse_time(str(v)) for v in figure.layout.xaxis.range)
    assert high == NOW, "the axis ends now, not an hour after the run"
    assert low == datetime(2026, 11, 28, 20, 39, 1, 947500), "30 minutes before the only run"
    two_days = [
        {**runs[0], "start": "2026-11-26T22:00:00Z"},
        {**runs[0], "start": "2026-11-27T22:00:00Z"},
    ]
    figure = figures.backup_runs_figure(two_days, "duration_ms", title="duration", now=NOW)
    low, high = (figures.parse_time(str(v)) for v in figure.layout.xaxis.range)
    assert (low, high) == (datetime(2026, 11, 26, 19, 36), NOW), "a twentieth of the span before"
    assert figure.layout.yaxis.title.text == "s"


def test_backup_runs_draw_one_line_per_repository_and_failures_as_red_crosses() -> None:
    first, second = "1" * 32, "2" * 32
    runs = [
        {"backup_id": f"b{hour}", "status": "success", "start": f"2026-11-28T{hour:02d}:00:00Z"}
        | {"bytes": 2e6 + hour, "repository_id": first if hour % 2 else second}
        for hour in range(1, 9)
    ]
    runs.append({**runs[0], "backup_id": "b9", "status": "failed", "start": "2026-11-28T10:00Z"})
    figure = figures.backup_runs_figure(runs, "bytes", title="size", now=NOW)
    by_name = {trace.name: trace for trace in figure.data}
    assert set(by_name) == {"11111111", "22222222", "failed"}
    assert list(by_name["11111111"].customdata) == ["b1", "b3", "b5", "b7"]
    assert list(by_name["22222222"].customdata) == ["b2", "b4", "b6", "b8"]
    assert by_name["failed"].marker.symbol == "x" and by_name["failed"].marker.color == "#d62728"
    assert figure.layout.yaxis.title.text == "MiB", "2 MB is 1.9 MiB"
    assert by_name["11111111"].y[0] == (2e6 + 1) / 1024**2


def test_backup_sizes_are_in_the_unit_that_fits_the_largest_run() -> None:
    def unit(largest: float) -> str:
        runs = [{"backup_id": "b", "status": "success", "start": "2026-11-28T21:00Z"}]
        runs[0]["stored_bytes"] = largest
        figure = figures.backup_runs_figure(runs, "stored_bytes", title="stored", now=NOW)
        return str(figure.layout.yaxis.title.text)

    assert [unit(v) for v in (0, 900, 40 * 1024, 12 * 1024**2, 3 * 1024**3)] == [
        "B",
        "B",
        "KiB",
        "MiB",
        "GiB",
    ]


def test_time_charts_span_the_chosen_range_up_to_now() -> None:
    series = [{"t": "2026-11-28T21:10:00Z", "service": "api", "rate_per_s": 1.0, "p95_ms": 2.0}]
    chosen = (datetime(2026, 11, 28, 21, 0), NOW)
    built = [
        figures.percentiles_figure(series, x_range=chosen),
        figures.lines_figure(series, "rate_per_s", title="r", y_title="req/s", x_range=chosen),
        figures.pool_figure([{**series[0], "used": 1, "pool": "p"}], x_range=chosen),
        figures.stacked_counts_figure(
            [{**series[0], "count": 1}], group_by="service", title="t", x_range=chosen
        ),
        figures.trace_scatter_figure(
            [{"trace_id": "a" * 32, "start": series[0]["t"], "duration_ms": 3.0}], x_range=chosen
        ),
    ]
    for figure in built:
        assert tuple(figures.parse_time(str(v)) for v in figure.layout.xaxis.range) == chosen


def test_the_previous_period_is_drawn_dashed_over_the_same_moments() -> None:
    current = [{"t": "2026-11-28T21:10:00Z", "service": "api", "rate_per_s": 3.0}]
    previous = [
        {"t": "2026-11-28T20:10:00Z", "service": "api", "rate_per_s": 1.0},
        {"t": "2026-11-28T20:10:00Z", "service": "gone", "rate_per_s": 2.0},
    ]
    figure = figures.lines_figure(current, "rate_per_s", group_by="service", title="r", y_title="")
    figures.add_previous(
        figure,
        previous,
        "rate_per_s",
        current=current,
        shift=timedelta(hours=1),
        group_by="service",
    )
    added = {trace.name: trace for trace in figure.data[1:]}
    assert set(added) == {"api previous period", "gone previous period"}
    api = added["api previous period"]
    assert api.line.dash == "longdash" and api.line.color == figure.data[0].line.color
    assert list(api.x) == [datetime(2026, 11, 28, 21, 10)] and list(api.y) == [1.0]
    assert added["gone previous period"].line.color == figures.PREVIOUS_COLOR


LINK = '<a href="https://evil.example/">click</a>'


def test_span_names_and_statements_are_shown_as_text_not_markup() -> None:
    spans = [
        _span("a" * 16, None, f"GET {LINK}", "SERVER", 0, duration_ms=30.0),
        _span(
            "b" * 16,
            "a" * 16,
            "SELECT <b>x</b>",
            "CLIENT",
            1,
            attributes={"db.query.text": f"SELECT 1 -- {LINK} & <b>bold</b>"},
        ),
    ]
    spans[0]["service"] = "<i>api</i>"
    figure = figures.waterfall_figure({"trace_id": "<b>t</b>", "spans": spans})
    hover = [bar["hover"] for _, bar in sorted(_bars_by_row(figure).items())]
    shown = [*hover, *figure.layout.yaxis.ticktext, figure.layout.title.text]
    for text in shown:
        # Only the figure's own markup is left: <b> around the name, <br> between lines.
        markup = text.replace("<b>", "").replace("</b>", "").replace("<br>", "")
        assert "<" not in markup and ">" not in markup, text
    assert '&lt;a href="https://evil.example/"&gt;click&lt;/a&gt;' in hover[0]
    assert "&lt;i&gt;api&lt;/i&gt;" in hover[0]
    assert "SELECT 1 -- &lt;a href" in hover[1] and "&amp; &lt;b&gt;bold&lt;/b&gt;" in hover[1]
    assert figure.layout.yaxis.ticktext[1].strip("\u00a0") == "SELECT &lt;b&gt;x&lt;/b&gt;"
    assert figure.layout.title.text == "Trace &lt;b&gt;t&lt;/b&gt;"


def test_labels_of_untrusted_groups_are_escaped_in_every_figure() -> None:
    row = {"t": "2026-11-28T20:00:00+00:00", "p50_ms": 1.0, "count": 1, "rps": 1.0}
    hostile = {**row, "service": LINK, "outcome": LINK, "pool": LINK}
    built = [
        figures.percentiles_figure([hostile], group_by="service", title=f"{LINK}: p50"),
        figures.lines_figure([hostile], "rps", group_by="service", title="r", y_title="req/s"),
        figures.pool_figure([{**hostile, "used": 1, "idle": 1, "max": 2}]),
        figures.stacked_counts_figure([hostile], group_by="outcome", title="t"),
        figures.backup_runs_figure(
            [{"start": row["t"], "status": "failed", "bytes": 1, "backup_id": LINK}],
            "bytes",
            title="size",
        ),
    ]
    for figure in built:
        texts = [trace.name for trace in figure.data]
        texts += [str(trace.customdata) for trace in figure.data if trace.customdata is not None]
        texts.append(figure.layout.title.text)
        assert all("<a" not in text for text in texts), texts
        assert any("&lt;a href" in text for text in texts), texts
