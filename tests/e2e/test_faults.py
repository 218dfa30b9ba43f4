"""Faults under the running API: the data stays intact and the service carries on."""

from __future__ import annotations

import sqlite3
import threading
import time

import psycopg
import pytest
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url

from instrumentation.database import Database
from instrumentation.testing import InMemoryTelemetry
from tests.recorder.fixtures import MakeClient, upload


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_held_sqlite_write_lock_is_retried_and_the_update_commits_once(
    make_client: MakeClient, settings_env: dict[str, str], telemetry: InMemoryTelemetry
) -> None:
    client, _ = make_client(VRP_DB_BUSY_TIMEOUT_MS="50")
    _, created = upload(client)
    locker = sqlite3.connect(
        make_url(settings_env["VRP_DATABASE_URL"]).database,
        isolation_level=None,
        check_same_thread=False,
    )
    locker.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, locker.rollback)
    release.start()
    try:
        response = client.patch(
            f"/api/recordings/{created['id']}", json={"title": "after the lock"}
        )
    finally:
        release.join()
        locker.close()
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["version"] == 2
    retries = telemetry.metric_points("vrp.db.transaction.retries")
    assert sum(point.value for point in retries) >= 1
    retried = [
        span
        for span in telemetry.spans("db.transaction")
        if span.attributes["vrp.db.transaction.attempts"] > 1
    ]
    assert retried, "the unit that met the lock was retried"
    listed = client.get("/api/recordings").get_json()
    assert [r["title"] for r in listed] == ["after the lock"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_server_side_dropped_connections_do_not_fail_the_next_requests(
    client: FlaskClient, database_url: str, db: Database
) -> None:
    status, created = upload(client)
    assert status == 201
    assert db.pool_status().checked_in >= 1
    name = make_url(database_url).database
    with psycopg.connect(
        make_url(database_url).set(database="postgres").render_as_string(hide_password=False),
        autocommit=True,
    ) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    time.sleep(0.1)
    for _ in range(3):
        response = client.get(f"/api/recordings/{created['id']}")
        assert response.status_code == 200
    assert client.get("/readyz").status_code == 200
