"""Backups: is the last good backup recent enough, and how did the runs go, per repository.

The age of the last good backup is green below the expected interval, amber up to twice it and
red beyond (``VRP_DASHBOARD_BACKUP_INTERVAL``); until any backup telemetry has arrived the page
says so instead of showing an alarming red. Runs name their backup repository and database, so
a dashboard watching several stacks shows each apart: a table of repositories (state, last good
backup, next scheduled run) and a selector that narrows the banner and the runs to one. Without
a choice, the banner is that of the repository needing attention most.
"""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, dcc, html

from dashboard import components as ui
from dashboard import figures
from dashboard.apiclient import ApiClient, ApiReadError
from dashboard.pages.base import FILTERS, Page, view
from dashboard.url_filters import Filters

HISTORY = "30d"
STATES = {
    "ok": ("success", "on time"),
    "late": ("warning", "late"),
    "overdue": ("danger", "overdue"),
}
ALL = "__all__"
# The runs' table; between the two halves, the byte columns in the unit that fits the runs
# shown (see _columns_and_rows).
COLUMNS_BEFORE_SIZES = (
    ui.text("backup", "backup_id"),
    ui.text("repository", "repository"),
    ui.text("trigger", "trigger"),
    ui.text("status", "status"),
    ui.time("start (UTC)", "start"),
    ui.number("duration s", "duration_s"),
)
COLUMNS_AFTER_SIZES = (
    ui.number("files", "files", 0),
    ui.text("verified", "verified_text"),
    ui.link("trace", "trace"),
)
REPOSITORY_COLUMNS = (
    ui.text("repository", "repository"),
    ui.text("database", "database"),
    ui.text("state", "state"),
    ui.time("last good backup (UTC)", "last_success"),
    ui.time("newest offsite copy (UTC)", "offsite_last_success"),
    ui.time("next run (UTC)", "next_run"),
    ui.number("runs", "runs", 0),
)


def _short(repository_id: str | None) -> str:
    """A repository id as people compare them: its first 8 characters, like a git hash."""
    return "(unnamed)" if repository_id is None else repository_id[:8]


def _label(summary: dict[str, Any]) -> str:
    return f"{summary.get('database') or 'unknown database'} ({_short(summary['repository_id'])})"


def layout() -> html.Div:
    return html.Div(
        [
            html.H3("Backups"),
            html.P(
                "Runs of the last 30 days from backup.run spans, whatever the time range and "
                "service chosen above: backups run daily, not by the minute.",
                className="text-muted",
            ),
            dcc.Dropdown(
                id="backups-repository",
                options=[{"label": "All repositories", "value": ALL}],
                value=ALL,
                clearable=False,
                className="mb-3",
            ),
            dcc.Loading(html.Div(id="backups-body"), delay_show=500),
        ]
    )


def _status(body: dict[str, Any]) -> dbc.Alert:
    color, word = STATES.get(body["state"], ("secondary", body["state"]))
    expected = ui.fmt_age(body.get("expected_interval_s"))
    if body.get("last_success") is None:
        message = f"No successful backup yet (one is expected every {expected})."
        color = "danger"
    else:
        age = ui.fmt_age(body.get("last_success_age_s"))
        message = (
            f"Last good backup {age} ago, at {ui.fmt_time(body['last_success'])} UTC: {word} "
            f"(expected every {expected})."
        )
    if body.get("offsite_last_success"):
        offsite_age = ui.fmt_age(body.get("offsite_last_success_age_s"))
        message += (
            f" Newest offsite copy {offsite_age} ago, at "
            f"{ui.fmt_time(body['offsite_last_success'])} UTC."
        )
    if body.get("next_run"):
        message += f" Next scheduled run at {ui.fmt_time(body['next_run'])} UTC."
    return dbc.Alert(
        html.B(message), color=color, id="backups-state", className=f"state-{body['state']}"
    )


def _columns_and_rows(
    runs: list[dict[str, Any]], filters: Filters
) -> tuple[list[dict[str, Any]], list[Any]]:
    """The runs' table: sizes in KiB for small runs, MiB or GiB for larger ones (never 0.00)."""
    columns = list(COLUMNS_BEFORE_SIZES)
    scales = {}
    for name, field in (("size", "bytes"), ("stored", "stored_bytes")):
        column, scales[field] = ui.bytes_column(name, f"_{field}", [r.get(field) for r in runs])
        columns.append(column)
    columns.extend(COLUMNS_AFTER_SIZES)
    rows = [
        {
            **_row(run, filters),
            **{
                f"_{field}": None if run.get(field) is None else run[field] / size
                for field, size in scales.items()
            },
        }
        for run in runs
    ]
    return columns, rows


def _row(run: dict[str, Any], filters: Filters) -> dict[str, Any]:
    duration = run.get("duration_ms")
    return {
        **run,
        "duration_s": None if duration is None else duration / 1000,
        "verified_text": {True: "yes", False: "no"}.get(run.get("verified"), ui.NONE),
        "repository": _short(run.get("repository_id")),
        "trace": ui.trace_link(run.get("trace_id"), view=filters),
    }


def _repository_row(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        **summary,
        "repository": _short(summary["repository_id"]),
        "database": summary.get("database") or ui.NONE,
        "state": STATES.get(summary["state"], ("", "no success yet"))[1],
    }


def register(app: Dash, api: ApiClient) -> None:
    @app.callback(
        Output("backups-body", "children"),
        Output("backups-repository", "options"),
        Input("backups-repository", "value"),
        # Not for the data (always 30 days back): for the links to traces, which keep the view.
        *FILTERS,
    )
    def refresh(chosen: str | None, range_value: str, service: str, _tick: int) -> Any:
        params = {"since": HISTORY}
        if chosen and chosen != ALL:
            params["repository"] = chosen
        try:
            body = api.get("/api/backups", params)
        except ApiReadError as exc:
            return ui.read_error(exc), [{"label": "All repositories", "value": ALL}]
        options = [{"label": "All repositories", "value": ALL}] + [
            {"label": _label(s), "value": s["repository_id"]}
            for s in body["repositories"]
            if s["repository_id"] is not None
        ]
        return _body(body, view(range_value, service)), options


def _body(body: dict[str, Any], filters: Filters) -> Any:
    if not body["has_telemetry"]:
        return ui.notice(
            "No backup telemetry has arrived yet: no backup.run span and no "
            "vrp.backup.last_success metric. Runs appear here once the backup scheduler "
            "(vrp scheduler) or a manual backup exports its telemetry to this dashboard.",
            color="info",
        )
    runs = body["runs"]
    return [
        _status(body),
        ui.section(
            "Repositories",
            ui.table(
                "backups-repositories",
                REPOSITORY_COLUMNS,
                [_repository_row(s) for s in body["repositories"]],
            ),
        ),
        ui.section(
            "Runs",
            ui.table("backups-table", *_columns_and_rows(runs, filters))
            if runs
            else ui.notice("No backup run in this time range."),
        ),
        dbc.Row(
            [
                dbc.Col(
                    ui.graph(
                        id="backups-sizes",
                        figure=figures.backup_runs_figure(runs, "bytes", title="Backup size"),
                        own_range=True,
                    ),
                    lg=6,
                ),
                dbc.Col(
                    ui.graph(
                        id="backups-durations",
                        figure=figures.backup_runs_figure(
                            runs, "duration_ms", title="Backup duration"
                        ),
                        own_range=True,
                    ),
                    lg=6,
                ),
            ]
        ),
    ]


PAGE = Page(path="/backups", title="Backups", layout=layout, register=register)
