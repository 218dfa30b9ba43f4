"""The canonical log line: one INFO record per request, carrying its unit-of-work summary.

A real Flask app instrumented by :func:`instrumentation.flask.instrument_app` runs units of work
on the real databases (a SQLite file and PostgreSQL, through ``db``); records are read with
``caplog`` at DEBUG so that nothing is hidden by a level.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from instrumentation import bound, uow
from instrumentation.database import Database
from instrumentation.flask import instrument_app, uninstrument_app
from instrumentation.testing import InMemoryTelemetry
from tests.instrumentation.conftest import TRANSACTIONS_LOGGER, create_recordings

ACCESS_LOGGER = "instrumentation.access"
OPERATION_DURATION = "db.client.operation.duration"
_ids = itertools.count(1)


def insert(session: Session, title: str) -> None:
    session.execute(
        sa.text("INSERT INTO recordings (id, title) VALUES (:id, :title)"),
        {"id": next(_ids), "title": title},
    )


def build_app(db: Database, telemetry: InMemoryTelemetry) -> Flask:
    app = Flask(__name__)
    failures = {"left": 0}

    def flaky_insert(session: Session) -> None:
        insert(session, "second")
        if failures["left"]:
            failures["left"] -= 1
            raise sqlite3.OperationalError("database is locked")

    @app.post("/two-units")
    def two_units() -> dict[str, str]:
        failures["left"] = 1
        db.run_transaction(insert, "first")
        db.run_transaction(flaky_insert)
        return {"ok": "yes"}

    @app.post("/one-unit")
    def one_unit() -> dict[str, str]:
        db.run_transaction(insert, "only")
        return {"ok": "yes"}

    @app.get("/nothing")
    def nothing() -> dict[str, str]:
        return {"ok": "yes"}

    @app.post("/counted")
    def counted() -> dict[str, int]:
        # How many statement points the unit added, read while the request is still running.
        before = statement_points(telemetry)
        db.run_transaction(insert, "seen")
        return {"points": statement_points(telemetry) - before}

    @app.get("/healthz")
    def healthz() -> str:
        db.run_transaction(insert, "probe")
        return "ok"

    instrument_app(
        app,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        excluded_routes=["/healthz"],
    )
    return app


@pytest.fixture
def client(db: Database, telemetry: InMemoryTelemetry) -> Iterator[FlaskClient]:
    create_recordings(db)
    app = build_app(db, telemetry)
    yield app.test_client()
    uninstrument_app(app)


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    return caplog


def statement_points(telemetry: InMemoryTelemetry) -> int:
    return sum(point.count for point in telemetry.metric_points(OPERATION_DURATION))


def named(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == name]


def test_a_request_with_two_units_one_retried_logs_one_info_record_with_the_summary(
    client: FlaskClient, records: pytest.LogCaptureFixture
) -> None:
    response = client.post("/two-units")

    assert response.status_code == 200
    info = [record for record in records.records if record.levelno == logging.INFO]
    assert [record.name for record in info] == [ACCESS_LOGGER]
    fields = info[0].__dict__
    assert fields["http.response.status_code"] == 200
    assert fields["vrp.db.sessions"] == 2
    assert fields["vrp.db.transactions"] == 2
    assert fields["vrp.db.transactions.commit"] == 2
    assert fields["vrp.db.transactions.rollback"] == 0
    assert fields["vrp.db.transactions.error"] == 0
    assert fields["vrp.db.attempts"] == 3
    assert fields["vrp.db.retries"] == 1
    # One INSERT in the first unit, one in each attempt of the second; BEGIN/COMMIT excluded.
    assert fields["vrp.db.statements"] == 3
    assert 0 < fields["vrp.db.duration_ms"] <= fields["duration_ms"]


def test_the_retry_stays_a_warning_record_of_its_own(
    client: FlaskClient, records: pytest.LogCaptureFixture
) -> None:
    client.post("/two-units")

    warnings = [record for record in records.records if record.levelno >= logging.WARNING]
    assert [record.name for record in warnings] == [TRANSACTIONS_LOGGER]
    assert "retrying" in warnings[0].getMessage()


def test_commit_records_are_debug_inside_a_request(
    client: FlaskClient, records: pytest.LogCaptureFixture
) -> None:
    client.post("/one-unit")

    (commit,) = named(records, TRANSACTIONS_LOGGER)
    assert commit.levelno == logging.DEBUG
    assert "committed" in commit.getMessage()


def test_a_unit_outside_a_request_logs_its_commit_at_info(
    client: FlaskClient, db: Database, records: pytest.LogCaptureFixture
) -> None:
    db.run_transaction(insert, "from a script")

    (commit,) = named(records, TRANSACTIONS_LOGGER)
    assert commit.levelno == logging.INFO
    assert "committed" in commit.getMessage()
    assert uow.current() is None


def test_a_request_without_database_work_reports_zeros(
    client: FlaskClient, records: pytest.LogCaptureFixture
) -> None:
    client.get("/nothing")

    (access,) = named(records, ACCESS_LOGGER)
    assert access.__dict__["vrp.db.sessions"] == 0
    assert access.__dict__["vrp.db.statements"] == 0
    assert access.__dict__["vrp.db.duration_ms"] == 0


def test_an_excluded_route_writes_no_access_record_so_its_commit_stays_info(
    client: FlaskClient, records: pytest.LogCaptureFixture
) -> None:
    client.get("/healthz")

    assert named(records, ACCESS_LOGGER) == []
    (commit,) = named(records, TRANSACTIONS_LOGGER)
    assert commit.levelno == logging.INFO


def test_statement_and_pool_points_wait_for_the_collection_that_reads_them(
    client: FlaskClient, telemetry: InMemoryTelemetry
) -> None:
    def inserts() -> int:
        points = telemetry.metric_points(OPERATION_DURATION)
        return sum(
            p.count for p in points if p.attributes["db.query.summary"] == "INSERT recordings"
        )

    def waits() -> int:
        return sum(p.count for p in telemetry.metric_points("db.client.connection.wait_time"))

    inserts_before, waits_before = inserts(), waits()
    assert bound.pending() == 0
    response = client.post("/one-unit")

    assert response.status_code == 200
    # The request's statement and pool points are queued, not yet aggregated...
    assert bound.pending() >= 3
    # ...and the next collection counts every one of them.
    assert inserts() == inserts_before + 1
    assert waits() == waits_before + 1
    assert bound.pending() == 0


def test_a_collection_during_the_request_sees_its_points_so_far(client: FlaskClient) -> None:
    response = client.post("/counted")

    assert response.get_json()["points"] >= 1


def test_outside_a_request_statement_points_are_recorded_at_once(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    create_recordings(db)
    db.run_transaction(insert, "cli")

    assert uow.current() is None
    summaries = [
        p.attributes["db.query.summary"] for p in telemetry.metric_points(OPERATION_DURATION)
    ]
    assert "INSERT recordings" in summaries


def test_a_point_that_fails_to_aggregate_costs_neither_the_request_nor_the_other_points(
    client: FlaskClient, telemetry: InMemoryTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    def recorded() -> int:
        waits = telemetry.metric_points("db.client.connection.wait_time")
        return statement_points(telemetry) + sum(p.count for p in waits)

    class Refusing:
        def _aggregate(self, *args: object) -> None:
            raise ValueError("refused")

    counted = {OPERATION_DURATION, "db.client.connection.wait_time"}
    before = recorded()
    response = client.post("/one-unit")
    queued = [point._histogram.name in counted for point, *_ in bound._pending]
    _, value, now, context = bound._pending[0]
    bound._pending[0] = (Refusing(), value, now, context)  # type: ignore[assignment]

    assert response.status_code == 200
    assert queued[0]
    assert sum(queued) >= 2
    with caplog.at_level(logging.WARNING, logger="instrumentation.bound"):
        assert recorded() == before + sum(queued) - 1
    assert "1 metric point(s) could not be aggregated" in caplog.text


def test_past_the_queue_bound_the_recording_thread_aggregates(
    client: FlaskClient, telemetry: InMemoryTelemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = statement_points(telemetry)
    assert client.post("/one-unit").status_code == 200
    per_request = statement_points(telemetry) - before
    monkeypatch.setattr(bound, "MAX_PENDING", 2)
    for _ in range(3):
        assert client.post("/one-unit").status_code == 200
        assert bound.pending() <= 2
    # Nothing was lost on the way.
    assert statement_points(telemetry) - before == 4 * per_request
