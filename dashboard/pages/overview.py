"""Overview: per service, how many requests, how fast, how many failed (5xx) and how many
were refused as the client's fault (4xx), at a glance.

Each card says what its number is over: the range's totals ("over 1 h"), and the rate as it is
now (the last whole rollup bucket, "last 1 min"), with the range's average beside it. "Compare
with previous period" draws the period of the same length just before as dashed lines and
shows each card's change against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, dcc, html

from dashboard import components as ui
from dashboard import figures, url_filters
from dashboard.apiclient import ApiClient, ApiReadError
from dashboard.pages.base import FILTERS, Page, switch_in_url, url_switch, window

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


COMPARE_ID = "overview-compare"
DEFAULT_BUCKET_S = 60
MINUTE_BUCKETS_UP_TO = timedelta(hours=6)  # the API's minute rollups serve ranges up to 6 h


def layout() -> html.Div:
    return html.Div(
        [
            html.Div(
                [
                    html.H3("Overview", className="me-auto"),
                    *url_switch(COMPARE_ID, "compare with previous period"),
                ],
                className="d-flex align-items-center flex-wrap gap-2",
            ),
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


@dataclass(frozen=True)
class Totals:
    """The cards' numbers for one period."""

    count: int
    errors: int
    client_errors: int
    rate: float
    slowest: dict[str, Any] | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.count if self.count else None

    @property
    def client_error_rate(self) -> float | None:
        return self.client_errors / self.count if self.count else None


def _totals(services: list[dict[str, Any]]) -> Totals:
    return Totals(
        count=sum(s.get("count") or 0 for s in services),
        errors=sum(s.get("errors") or 0 for s in services),
        client_errors=sum(s.get("client_errors") or 0 for s in services),
        rate=sum(s.get("rate_per_s") or 0.0 for s in services),
        slowest=max(
            (s for s in services if s.get("p95_ms") is not None),
            key=lambda s: s["p95_ms"],
            default=None,
        ),
    )


def bucket_seconds(series: list[dict[str, Any]], span: timedelta) -> int:
    """The series' time step: the smallest gap between its points (the API's rollup
    resolution), or what the API would use for a range this long when there is one point."""
    times = sorted({figures.parse_time(p["t"]) for p in series} - {None})
    gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
    if gaps:
        return int(min(gaps))
    return DEFAULT_BUCKET_S if span <= MINUTE_BUCKETS_UP_TO else 3600


def current_rate(
    series: list[dict[str, Any]], until: datetime, step: int
) -> tuple[float, datetime]:
    """Requests per second in the last whole bucket before ``until`` (all services), and when
    that bucket began: the rate now, where the range's average would smooth a burst away."""
    end = int(until.replace(tzinfo=UTC).timestamp()) // step * step
    start = datetime.fromtimestamp(end - step, UTC).replace(tzinfo=None)
    rate = sum(p.get("rate_per_s") or 0.0 for p in series if figures.parse_time(p["t"]) == start)
    return rate, start


def _change(now: float | None, before: float | None, *, points: bool = False) -> str | None:
    """``+12% vs previous`` (or percentage points for rates); None without both numbers."""
    if now is None or before is None:
        return None
    if points:
        return f"{100 * (now - before):+.2f} pp vs previous"
    if before == 0:
        return "new: none in the previous period" if now else "= previous"
    return f"{100 * (now - before) / before:+.0f}% vs previous"


def _cards(
    services: list[dict[str, Any]],
    series: list[dict[str, Any]],
    span: tuple[datetime, datetime],
    previous: Totals | None,
) -> dbc.Row:
    now = _totals(services)
    length = span[1] - span[0]
    over = f"over {url_filters.duration_text(length)}"
    step = bucket_seconds(series, length)
    rate, bucket_start = current_rate(series, span[1], step)
    last = f"last {url_filters.duration_text(timedelta(seconds=step))}"
    slowest = now.slowest

    def delta(text: str | None) -> Any:
        return html.Div(text, className="stat-delta") if previous and text else None

    return dbc.Row(
        [
            ui.stat(
                "requests",
                f"{now.count:,}",
                detail=[
                    html.Div(f"{len(services)} service(s)"),
                    delta(_change(now.count, previous.count if previous else None)),
                ],
                over=over,
                card_id="overview-card-requests",
            ),
            ui.stat(
                "rate",
                ui.fmt_rate(rate),
                detail=[
                    html.Div(f"{last}, from {bucket_start:%H:%M} UTC"),
                    html.Div(f"average {ui.fmt_rate(now.rate)} {over}"),
                    delta(_change(now.rate, previous.rate if previous else None)),
                ],
                card_id="overview-card-rate",
            ),
            ui.stat(
                "error rate",
                ui.fmt_percent(now.error_rate),
                color=_error_color(now.error_rate),
                detail=[
                    html.Div(f"{now.errors:,} failed (5xx)"),
                    delta(
                        _change(
                            now.error_rate, previous.error_rate if previous else None, points=True
                        )
                    ),
                ],
                over=over,
                card_id="overview-card-errors",
            ),
            # Neutral whatever the rate: a 4xx is the client's doing, not an outage.
            ui.stat(
                "4xx rate",
                ui.fmt_percent(now.client_error_rate),
                detail=[
                    html.Div(f"{now.client_errors:,} client errors"),
                    delta(
                        _change(
                            now.client_error_rate,
                            previous.client_error_rate if previous else None,
                            points=True,
                        )
                    ),
                ],
                over=over,
                card_id="overview-card-client-errors",
            ),
            ui.stat(
                "slowest p95",
                ui.fmt_ms(slowest["p95_ms"] if slowest else None),
                detail=[
                    html.Div(slowest["service"] if slowest else None),
                    delta(
                        _change(
                            slowest["p95_ms"] if slowest else None,
                            previous.slowest["p95_ms"] if previous and previous.slowest else None,
                        )
                    ),
                ],
                over=over,
                card_id="overview-card-p95",
            ),
        ],
        className="g-3 mb-3",
    )


def _read(api: ApiClient, range_value: str, service: str, compare: bool) -> tuple[Any, Any]:
    """This period's summary, and the previous period's (with its shift) when comparing."""
    summary = api.get("/api/summary", window(range_value, service))
    if not compare:
        return summary, None
    params, shift = url_filters.previous_window(
        range_value, service, figures.parse_time(summary["until"]).replace(tzinfo=UTC)
    )
    return summary, (api.get("/api/summary", params), shift)


def register(app: Dash, api: ApiClient) -> None:
    switch_in_url(app, COMPARE_ID, "compare")

    @app.callback(Output("overview-body", "children"), *FILTERS, Input(COMPARE_ID, "value"))
    def refresh(range_value: str, service: str, _tick: int, compare: bool) -> Any:
        try:
            summary, previous = _read(api, range_value, service, bool(compare))
        except ApiReadError as exc:
            return ui.read_error(exc)
        services = summary["services"]
        series = summary["series"]
        if not services:
            return ui.notice("No requests in this time range yet.")
        span = (figures.parse_time(summary["since"]), figures.parse_time(summary["until"]))
        before = _totals(previous[0]["services"]) if previous else None
        latency = figures.percentiles_figure(
            series, group_by="service", title="Request latency p50 / p95 / p99", x_range=span
        )
        rates = figures.lines_figure(
            series,
            "rate_per_s",
            group_by="service",
            title="Requests per second",
            y_title="req/s",
            x_range=span,
        )
        error_rates = figures.lines_figure(
            series,
            "error_rate",
            group_by="service",
            title="Error rate (5xx)",
            y_title="error rate",
            percent=True,
            x_range=span,
        )
        if previous:
            body, shift = previous
            for figure, field, label in (
                (latency, "p95_ms", "p95"),
                (rates, "rate_per_s", ""),
                (error_rates, "error_rate", ""),
            ):
                figures.add_previous(
                    figure,
                    body["series"],
                    field,
                    current=series,
                    shift=shift,
                    group_by="service",
                    label=label,
                )
        return [
            _cards(services, series, span, before),
            ui.section("Services", ui.table("overview-services", COLUMNS, services, page_size=10)),
            ui.graph(id="overview-latency", figure=latency),
            dbc.Row(
                [
                    dbc.Col(ui.graph(id="overview-rate", figure=rates), md=6),
                    dbc.Col(ui.graph(id="overview-error-rate", figure=error_rates), md=6),
                ]
            ),
        ]


PAGE = Page(path="/", title="Overview", layout=layout, register=register)
