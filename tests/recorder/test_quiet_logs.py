"""Logs and traces keep to what an operator needs: client errors are no warnings, start-up and
migrations leave no library chatter at INFO and no stray root spans."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from opentelemetry.trace import SpanKind, StatusCode

from instrumentation.database import Database
from instrumentation.testing import InMemoryTelemetry
from recorder.config import Settings
from tests.recorder.fixtures import recorder_app, upload

TRANSACTIONS = "instrumentation.transactions"
ERROR = StatusCode.ERROR


def test_client_errors_roll_back_at_debug_and_log_no_warning(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    _, created = upload(client)
    rid = created["id"]
    client.delete(f"/api/recordings/{rid}")
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger=TRANSACTIONS)

    missing = client.get("/api/recordings/00000000-0000-4000-8000-000000000000")
    stale = client.patch(f"/api/recordings/{rid}", json={"title": "x"}, headers={"If-Match": '"9"'})
    deleted = client.patch(f"/api/recordings/{rid}", json={"title": "x"})

    assert (missing.status_code, stale.status_code, deleted.status_code) == (404, 412, 409)
    records = [r for r in caplog.records if r.name == TRANSACTIONS]
    rollbacks = [r for r in records if r.__dict__["vrp.db.transaction.outcome"] == "rollback"]
    assert len(rollbacks) == 3
    assert {r.levelno for r in rollbacks} == {logging.DEBUG}
    assert [r for r in records if r.levelno >= logging.WARNING] == []


def test_client_errors_leave_every_span_of_the_request_without_error_status(
    client: FlaskClient, telemetry: InMemoryTelemetry
) -> None:
    _, created = upload(client)
    rid = created["id"]
    client.delete(f"/api/recordings/{rid}")
    telemetry.clear()

    missing = client.get("/api/recordings/00000000-0000-4000-8000-000000000000")
    stale = client.patch(f"/api/recordings/{rid}", json={"title": "x"}, headers={"If-Match": '"9"'})
    deleted = client.patch(f"/api/recordings/{rid}", json={"title": "x"})

    assert (missing.status_code, stale.status_code, deleted.status_code) == (404, 412, 409)
    spans = telemetry.spans()
    assert {span.name for span in spans} >= {"db.session", "db.transaction"}
    assert [(s.name, s.status.status_code) for s in spans if s.status.status_code is ERROR] == []
    refused = [s for s in spans if s.name in {"db.session", "db.transaction"}]
    assert all(s.attributes and "error.type" in s.attributes for s in refused)


def test_the_start_up_schema_check_runs_under_one_db_migrate_span(
    settings: Settings, db: Database, telemetry: InMemoryTelemetry
) -> None:
    telemetry.clear()

    recorder_app(settings, db, telemetry)

    spans = telemetry.spans()
    roots = [span for span in spans if span.parent is None]
    assert [(span.name, span.kind) for span in roots] == [("db.migrate", SpanKind.INTERNAL)]
    (root,) = roots
    assert root.attributes is not None
    assert root.attributes["db.system.name"] == db.system
    statements = [span for span in spans if span.kind is SpanKind.CLIENT]
    assert statements, "the check ran statements"
    assert {span.context.trace_id for span in statements} == {root.context.trace_id}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_vrp_db_upgrade_logs_no_alembic_or_pool_chatter_at_info(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**os.environ, **settings_env, "VRP_LOG_LEVEL": "INFO", "OTEL_SDK_DISABLED": "true"}
    log_dir = Path(settings_env["VRP_LOG_DIR"])

    finished = subprocess.run(
        [sys.executable, "-m", "recorder.cli", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert finished.returncode == 0, finished.stderr
    records = [
        json.loads(line)
        for path in log_dir.glob("*.log")
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    messages = [record["message"] for record in records]
    assert any("database schema at revision" in message for message in messages), messages
    chatter = [
        record
        for record in records
        if record["logger"].startswith(("alembic", "sqlalchemy")) or "Pool " in record["message"]
    ]
    assert chatter == []
