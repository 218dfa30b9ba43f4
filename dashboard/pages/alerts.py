"""Alerts: what fires now, what is pending and what resolved lately, each with the page or trace
that explains it; silencing a rule for a time; notifications that could not be delivered.

Everything comes from ``/api/alerts`` and ``/api/alerts/rules``; a silence is made with
``POST /api/alerts/silences``, as a script would. The navbar's badge (:mod:`dashboard.app`)
counts the firing alerts that no silence covers.
"""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, dcc, html

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
SILENCE_COLUMNS = (
    ui.text("rule", "rule_text"),
    ui.text("alert", "fingerprint_text"),
    ui.text("comment", "comment"),
    ui.time("until (UTC)", "ends_at"),
)
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
        rows = [
            {
                **s,
                "rule_text": s["rule"] or ui.NONE,
                "fingerprint_text": (s["fingerprint"] or ui.NONE)[:16],
            }
            for s in body["silences"]
        ]
        parts.append(ui.section("Silences", ui.table("alerts-silences", SILENCE_COLUMNS, rows)))
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
        Input("alerts-silence-result", "children"),
    )
    def refresh(range_value: str, service: str, _tick: int, _silenced: Any) -> Any:
        try:
            body = api.get("/api/alerts")
            rules = api.get("/api/alerts/rules")["rules"]
        except ApiReadError as exc:
            return ui.read_error(exc), []
        options = [{"label": r["name"], "value": r["name"]} for r in rules]
        return _body(body, view(range_value, service)), options

    @app.callback(
        Output("alerts-silence-result", "children"),
        Input("alerts-silence-button", "n_clicks"),
        State("alerts-silence-rule", "value"),
        State("alerts-silence-duration", "value"),
        State("alerts-silence-comment", "value"),
        prevent_initial_call=True,
    )
    def silence(_clicks: int, rule: str | None, duration: str, comment: str | None) -> Any:
        if not rule:
            return dbc.Alert("Choose a rule to silence.", color="warning", className="mb-2")
        try:
            made = api.send(
                "POST",
                "/api/alerts/silences",
                {"rule": rule, "duration": duration, "comment": comment or ""},
            )
        except ApiReadError as exc:
            return ui.read_error(exc)
        return dbc.Alert(
            f"{rule} silenced until {ui.fmt_time(made['ends_at'])} UTC.",
            color="info",
            className="mb-2",
            id="alerts-silence-done",
        )


PAGE = Page(
    path="/alerts", title="Alerts", layout=layout, register=register, badge="nav-alerts-badge"
)
