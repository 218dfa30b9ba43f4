"""Alerts: what fires now, what is pending and what resolved lately, each with the page or trace
that explains it; silencing a rule for a time, and ending a silence; notifications that could
not be delivered.

Everything comes from ``/api/alerts`` and ``/api/alerts/rules``; a silence is made with
``POST /api/alerts/silences`` and ended with ``DELETE /api/alerts/silences/<id>``, as a script
would. The navbar's badge (:mod:`dashboard.app`) counts the firing alerts that no silence
covers; it and the page are read again as soon as a silence is made or ended
(:data:`CHANGED_ID`), not at the next refresh.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import components as ui
from dashboard.apiclient import ApiClient, ApiReadError
from dashboard.pages.base import FILTERS, Page, view
from dashboard.url_filters import Filters

DURATIONS = (("1h", "1 hour"), ("4h", "4 hours"), ("24h", "1 day"), ("7d", "7 days"))
STATE_COLORS = {"firing": "danger", "pending": "warning", "resolved": "success"}
COLUMNS = (
    ui.text("state", "state"),
    ui.text("severity", "severity"),
    ui.text("rule", "rule"),
    ui.link("explained by", "link"),
    ui.text("silenced", "silenced_text"),
    ui.time("since (UTC)", "since"),
    ui.text("summary", "summary"),
    ui.number("value", "value", 3),
    ui.text("labels", "labels_text"),
)
SILENCE_HEADERS = ("rule", "alert", "comment", "until (UTC)", "")
# A store in the app's shell (the badge is there too), set when a silence is made or ended.
CHANGED_ID = "alerts-changed"
# The "End" button of each silence: {"type": END_TYPE, "silence": <id>, "of": <what it covers>}.
END_TYPE = "alerts-silence-end"
DELIVERY_COLUMNS = (
    ui.time("at (UTC)", "at"),
    ui.text("channel", "channel"),
    ui.text("alerts", "alerts_text"),
    ui.number("attempts", "attempts", 0),
    ui.text("error", "error"),
)
# Labels every alert carries, left out of the table's labels column (they have columns).
_SHOWN_APART = frozenset({"alertname", "severity"})


def layout() -> html.Div:
    return html.Div(
        [
            html.H3("Alerts"),
            html.P(
                "Firing first, then pending, then resolved in the last 24 hours. Rules are "
                "evaluated by the dashboard from its own store (see /api/alerts/rules).",
                className="text-muted",
            ),
            dbc.Card(
                dbc.CardBody(
                    dbc.Row(
                        [
                            dbc.Col(
                                dbc.Select(id="alerts-silence-rule", placeholder="rule to silence"),
                                md=4,
                            ),
                            dbc.Col(
                                dbc.Select(
                                    id="alerts-silence-duration",
                                    options=[{"label": t, "value": v} for v, t in DURATIONS],
                                    value="1h",
                                ),
                                md=2,
                            ),
                            dbc.Col(
                                dbc.Input(
                                    id="alerts-silence-comment",
                                    placeholder="why (shown with the silence)",
                                    maxLength=1000,
                                ),
                                md=4,
                            ),
                            dbc.Col(
                                dbc.Button("Silence", id="alerts-silence-button", color="primary"),
                                md=2,
                            ),
                        ],
                        className="g-2 align-items-center",
                    )
                ),
                className="mb-2",
            ),
            html.Div(id="alerts-silence-result"),
            dcc.Loading(html.Div(id="alerts-body"), delay_show=500),
        ]
    )


def _labels_text(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in _SHOWN_APART)


def _row(alert: dict[str, Any], filters: Filters) -> dict[str, Any]:
    return {
        **alert,
        "labels_text": _labels_text(alert["labels"]),
        "summary": alert["annotations"].get("summary", ""),
        "link": ui.page_link(_explains(alert["url"]), alert["url"], filters),
        "silenced_text": "silenced" if alert["silenced"] else "",
    }


def _explains(url: str) -> str:
    if url.startswith("/traces?trace="):
        return "trace"
    return url.split("?", 1)[0].strip("/").capitalize() or "Overview"


def _covers(silence: dict[str, Any]) -> str:
    """What a silence covers, as the table and the result line name it."""
    if silence["rule"]:
        return str(silence["rule"])
    return f"alert {(silence['fingerprint'] or ui.NONE)[:16]}"


def _silences(silences: list[dict[str, Any]]) -> dbc.Table:
    """The silences in force, each with a button that ends it (a plain table: a DataTable's
    cells cannot hold buttons, and there are few silences to sort)."""
    rows = [
        html.Tr(
            [
                html.Td(s["rule"] or ui.NONE),
                html.Td((s["fingerprint"] or ui.NONE)[:16]),
                html.Td(s["comment"], className="text-break"),
                html.Td(ui.fmt_time(s["ends_at"])),
                html.Td(
                    dbc.Button(
                        "End",
                        id={"type": END_TYPE, "silence": s["id"], "of": _covers(s)},
                        size="sm",
                        color="secondary",
                        outline=True,
                        title="end this silence now: its alerts are notified again",
                    )
                ),
            ]
        )
        for s in silences
    ]
    return dbc.Table(
        [html.Thead(html.Tr([html.Th(h) for h in SILENCE_HEADERS])), html.Tbody(rows)],
        id="alerts-silences",
        size="sm",
        bordered=True,
        className="alerts-silences",
    )


def _body(body: dict[str, Any], filters: Filters) -> Any:
    counts = body["counts"]
    cards = dbc.Row(
        [
            ui.stat(
                "FIRING",
                str(counts["firing"]),
                color="danger" if counts["firing"] else "success",
                detail=f"{counts['silenced']} silenced" if counts["silenced"] else None,
            ),
            ui.stat(
                "PENDING", str(counts["pending"]), color="warning" if counts["pending"] else "light"
            ),
            ui.stat("RESOLVED (24 h)", str(counts["resolved"])),
        ],
        className="g-2 mb-3",
        id="alerts-counts",
    )
    alerts = body["alerts"]
    parts: list[Any] = [
        cards,
        ui.section(
            "Alerts",
            ui.table(
                "alerts-table",
                COLUMNS,
                [_row(a, filters) for a in alerts],
                wrap=("labels_text",),
            )
            if alerts
            else ui.notice("No alert is firing, pending or recently resolved.", color="success"),
        ),
    ]
    if body["silences"]:
        parts.append(ui.section("Silences", _silences(body["silences"])))
    failed = body["failed_deliveries"]
    parts.append(
        ui.section(
            "Failed notifications (24 h)",
            ui.table(
                "alerts-deliveries",
                DELIVERY_COLUMNS,
                [{**d, "alerts_text": str(len(d["fingerprints"]))} for d in failed],
            )
            if failed
            else ui.notice("Every notification was delivered.", color="light"),
        )
    )
    return parts


def register(app: Dash, api: ApiClient) -> None:
    @app.callback(
        Output("alerts-body", "children"),
        Output("alerts-silence-rule", "options"),
        # The range and service are not the alerts': the links to other pages carry them.
        *FILTERS,
        Input(CHANGED_ID, "data"),
    )
    def refresh(range_value: str, service: str, _tick: int, _changed: Any) -> Any:
        try:
            body = api.get("/api/alerts")
            rules = api.get("/api/alerts/rules")["rules"]
        except ApiReadError as exc:
            return ui.read_error(exc), []
        options = [{"label": r["name"], "value": r["name"]} for r in rules]
        return _body(body, view(range_value, service)), options

    @app.callback(
        Output("alerts-silence-result", "children"),
        Output(CHANGED_ID, "data"),
        Input("alerts-silence-button", "n_clicks"),
        State("alerts-silence-rule", "value"),
        State("alerts-silence-duration", "value"),
        State("alerts-silence-comment", "value"),
        prevent_initial_call=True,
    )
    def silence(clicks: int | None, rule: str | None, duration: str, comment: str | None) -> Any:
        # Dash calls this when the page's layout is drawn (its output, the shell's store, was
        # there first), not only on a click: only a click makes a silence.
        if not clicks:
            raise PreventUpdate
        if not rule:
            warning = dbc.Alert("Choose a rule to silence.", color="warning", className="mb-2")
            return warning, dash.no_update
        try:
            made = api.send(
                "POST",
                "/api/alerts/silences",
                {"rule": rule, "duration": duration, "comment": comment or ""},
            )
        except ApiReadError as exc:
            return ui.read_error(exc), dash.no_update
        done = dbc.Alert(
            f"{rule} silenced until {ui.fmt_time(made['ends_at'])} UTC.",
            color="info",
            className="mb-2",
            id="alerts-silence-done",
        )
        return done, time.time()

    @app.callback(
        Output("alerts-silence-result", "children", allow_duplicate=True),
        Output(CHANGED_ID, "data", allow_duplicate=True),
        Input({"type": END_TYPE, "silence": ALL, "of": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def end(_clicks: list[int | None]) -> Any:
        # The buttons are drawn anew with every refresh of the table: only a click ends.
        if not any(fired["value"] for fired in dash.ctx.triggered):
            raise PreventUpdate
        ended = dash.ctx.triggered_id
        try:
            api.send("DELETE", "/api/alerts/silences/" + quote(str(ended["silence"]), safe=""))
        except ApiReadError as exc:
            if exc.status != 404:
                return ui.read_error(exc), dash.no_update
            message, color = f"The silence of {ended['of']} had already ended.", "warning"
        else:
            message, color = (
                f"The silence of {ended['of']} ended: its alerts are notified again.",
                "info",
            )
        result = dbc.Alert(message, color=color, className="mb-2", id="alerts-silence-ended")
        return result, time.time()


PAGE = Page(
    path="/alerts", title="Alerts", layout=layout, register=register, badge="nav-alerts-badge"
)
