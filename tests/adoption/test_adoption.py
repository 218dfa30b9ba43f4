"""The third-party app of tests/adoption/app.py adopts the instrumentation in two lines.

Each test runs the app as its own process twice on the same database - without the
instrumentation, then with it, exporting to a real OTLP/HTTP receiver - on SQLite, the real
PostgreSQL and the real MariaDB. The responses (bodies, status codes, content types; the HTML
404 and 500 pages included) and the app's own log file must be the same; the receiver must hold
the request and statement spans, the HTTP, statement and pool metrics, and the app's log records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.adoption.otlp_receiver import running_receiver
from tests.conftest import reset_postgres

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).with_name("app.py")

SYSTEMS = {"sqlite": "sqlite", "postgresql": "postgresql", "mariadb": "mariadb"}


@dataclass(frozen=True)
class Run:
    answers: list[dict[str, object]]
    app_log: str


def run_app(
    python: str,
    url: str,
    app_log: Path,
    *,
    endpoint: str | None = None,
    cwd: Path | None = None,
    from_source: bool = True,
) -> Run:
    """Run the app once; ``from_source=False`` imports the instrumentation as installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    env.pop("PYTHONPATH", None)
    if from_source:
        env["PYTHONPATH"] = str(ROOT)
    arguments = [python, str(APP), "--database-url", url, "--app-log", str(app_log)]
    if endpoint is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        arguments.append("--instrument")
    done = subprocess.run(
        arguments, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return Run(json.loads(done.stdout), app_log.read_text())


@pytest.fixture(params=list(SYSTEMS))
def adoption_database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """``(system, URL)`` of an empty database, as the app itself would be configured."""
    system: str = request.param
    if system == "sqlite":
        return system, f"sqlite:///{tmp_path / 'notes.db'}"
    if system == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        reset_postgres(url)
        return system, url.replace("postgresql://", "postgresql+psycopg://", 1)
    return system, str(request.getfixturevalue("mariadb_url"))


def without_instrumentation_frames(log: str) -> str:
    """``log`` less the traceback frames of the instrumentation's own code: the step spans
    around the view wrap ``dispatch_request``, so a traceback the app logs has one frame more
    (docs/adopting.md says so); every line the app writes is otherwise the same."""
    kept: list[str] = []
    skipping = False
    for line in log.splitlines(keepends=True):
        if line.startswith('  File "'):
            skipping = f"{os.sep}instrumentation{os.sep}" in line
        elif not line.startswith("    "):
            skipping = False
        if not skipping:
            kept.append(line)
    return "".join(kept)


def test_adopting_changes_no_response_and_no_line_of_the_apps_own_log(
    adoption_database: tuple[str, str], tmp_path: Path
) -> None:
    _, url = adoption_database
    plain = run_app(sys.executable, url, tmp_path / "plain.log")
    with running_receiver() as receiver:
        adopted = run_app(sys.executable, url, tmp_path / "adopted.log", endpoint=receiver.endpoint)

    assert adopted.answers == plain.answers
    statuses = [answer["status"] for answer in plain.answers]
    assert statuses == [200, 201, 201, 200, 404, 404, 500, 200]
    assert "<h1>Sorry</h1>" in str(plain.answers[6]["body"])
    assert "<h1>No such page</h1>" in str(plain.answers[4]["body"])
    assert without_instrumentation_frames(adopted.app_log) == plain.app_log
    assert "INFO notes note 2 created\n" in plain.app_log
    assert "ERROR notes Exception on /crash [GET]" in plain.app_log


def test_the_adopted_app_exports_its_spans_metrics_and_logs(
    adoption_database: tuple[str, str], tmp_path: Path
) -> None:
    system, url = adoption_database
    with running_receiver() as receiver:
        run_app(sys.executable, url, tmp_path / "adopted.log", endpoint=receiver.endpoint)

    spans = receiver.spans()
    names = {name for name, _ in spans}
    assert {"GET /notes", "POST /notes", "GET /notes/<int:note_id>", "GET /crash", "GET"} <= names
    assert {"INSERT notes", "SELECT notes"} <= names
    [crash] = [attrs for name, attrs in spans if name == "GET /crash"]
    assert crash["http.response.status_code"] == 500
    assert "RuntimeError" in str(crash["error.type"])
    [insert, *_] = [attrs for name, attrs in spans if name == "INSERT notes"]
    assert insert["db.system.name"] == SYSTEMS[system]
    assert insert["db.collection.name"] == "notes"
    if system != "sqlite":
        assert insert["server.address"] == "127.0.0.1"
    assert receiver.service_names() == {"notes"}

    assert {
        "http.server.request.duration",
        "db.client.operation.duration",
        "db.client.connection.count",
        "db.client.connection.max",
        "db.client.connection.wait_time",
    } <= receiver.metric_names()
    logs = receiver.log_bodies()
    assert "note 1 created" in logs
    assert "note 999 not found" in logs
