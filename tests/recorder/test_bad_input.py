"""Every kind of bad input gets its status and a JSON body naming the field and the problem."""

from __future__ import annotations

import io
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from opentelemetry.trace import SpanKind
from sqlalchemy.orm import Session

from instrumentation import Database
from instrumentation.testing import InMemoryTelemetry
from recorder import services
from recorder.models import Recording
from tests.recorder.fixtures import MakeClient, make_wav, upload


def _error(response, code: int) -> dict:
    assert response.status_code == code, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == code
    assert body["status"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def test_missing_title_is_422_naming_the_field(client: FlaskClient) -> None:
    response = client.post(
        "/api/recordings",
        data={"file": (io.BytesIO(make_wav()), "a.wav")},
        content_type="multipart/form-data",
    )
    body = _error(response, 422)
    assert body["errors"]["form"]["title"] == ["Missing data for required field."]


def test_missing_file_is_422(client: FlaskClient) -> None:
    response = client.post(
        "/api/recordings", data={"title": "x"}, content_type="multipart/form-data"
    )
    assert "file" in _error(response, 422)["errors"]["files"]


def test_unknown_form_field_is_422(client: FlaskClient) -> None:
    response = client.post(
        "/api/recordings",
        data={"file": (io.BytesIO(make_wav()), "a.wav"), "title": "x", "owner": "me"},
        content_type="multipart/form-data",
    )
    assert _error(response, 422)["errors"]["form"]["owner"] == ["Unknown field."]


@pytest.mark.parametrize(
    ("title", "problem"),
    [
        ("   ", "Length must be between 1 and 200."),
        ("x" * 201, "Length must be between 1 and 200."),
        ("bad\x07title", "Must not contain control characters."),
        ("bad\x9b31mtitle", "Must not contain control characters."),  # C1: a terminal's CSI
    ],
)
def test_bad_titles_are_422(client: FlaskClient, title: str, problem: str) -> None:
    response = client.post(
        "/api/recordings",
        data={"file": (io.BytesIO(make_wav()), "a.wav"), "title": title},
        content_type="multipart/form-data",
    )
    assert _error(response, 422)["errors"]["form"]["title"] == [problem]


def test_bad_tag_is_422(client: FlaskClient) -> None:
    status, body = upload(client, tags=["ok", "<script>"])
    assert status == 422
    assert "tags" in body["errors"]["form"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page_size=101", "page_size"),
        ("page=0", "page"),
        ("page=abc", "page"),
        ("status=gone", "status"),
        ("sort=size", "sort"),
        ("order=up", "order"),
        ("created_after=2024-01-01", "created_after"),
        ("created_after=2024-13-01T00:00:00Z", "created_after"),
        ("created_after=2025-01-02T00:00:00Z&created_before=2025-01-01T00:00:00Z", "created_after"),
        ("colour=red", "colour"),
        ("q=" + "x" * 201, "q"),
        # In range as written, out of Python's datetime range once moved to UTC.
        ("created_after=0001-01-01T00:00:00%2B14:00", "created_after"),
        ("created_before=9999-12-31T23:59:59-14:00", "created_before"),
    ],
)
def test_bad_list_query_is_422(client: FlaskClient, query: str, field: str) -> None:
    body = _error(client.get(f"/api/recordings?{query}"), 422)
    assert field in body["errors"]["query"]


def test_unknown_recording_is_404(client: FlaskClient) -> None:
    body = _error(client.get(f"/api/recordings/{uuid.uuid4()}"), 404)
    assert "does not exist" in body["message"]
    _error(client.patch(f"/api/recordings/{uuid.uuid4()}", json={"title": "x"}), 404)
    _error(client.delete(f"/api/recordings/{uuid.uuid4()}"), 404)
    _error(client.get(f"/api/recordings/{uuid.uuid4()}/audio"), 404)


def test_unknown_route_is_404_json_with_a_message(client: FlaskClient) -> None:
    assert "/api/nothing-here" in _error(client.get("/api/nothing-here"), 404)["message"]
    assert "not-a-uuid" in _error(client.get("/api/recordings/not-a-uuid"), 404)["message"]


def test_wrong_method_is_405_with_a_message_and_allow(client: FlaskClient) -> None:
    response = client.put("/api/recordings")
    assert "GET, HEAD, OPTIONS, POST" in _error(response, 405)["message"]
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}


def test_body_over_the_request_limit_is_413_with_a_message(client: FlaskClient, settings) -> None:
    # Refused from its Content-Length before the form is read, by the server's request limit.
    response = client.post(
        "/api/recordings",
        data={"file": (io.BytesIO(bytes(settings.max_upload_bytes * 2)), "a.wav"), "title": "x"},
        content_type="multipart/form-data",
    )
    assert str(settings.max_upload_bytes) in _error(response, 413)["message"]
    _error(client.post(f"/api/recordings/{uuid.uuid4()}"), 405)


def test_malformed_json_is_400(client: FlaskClient) -> None:
    _, created = upload(client)
    response = client.patch(
        f"/api/recordings/{created['id']}", data="{not json", content_type="application/json"
    )
    _error(response, 400)


def test_patch_unknown_field_and_bad_status_are_422(client: FlaskClient) -> None:
    _, created = upload(client)
    url = f"/api/recordings/{created['id']}"
    assert _error(client.patch(url, json={"size_bytes": 1}), 422)["errors"]["json"] == {
        "size_bytes": ["Unknown field."]
    }
    assert "status" in _error(client.patch(url, json={"status": "gone"}), 422)["errors"]["json"]
    assert "_schema" in _error(client.patch(url, json={}), 422)["errors"]["json"]
    assert "json" in _error(client.patch(url, json=["title"]), 422)["errors"]


def test_patch_title_with_a_lone_surrogate_is_422_not_500(client: FlaskClient) -> None:
    # "\\ud800" is valid JSON but no Unicode text: it cannot be encoded to store or log.
    _, created = upload(client)
    url = f"/api/recordings/{created['id']}"
    response = client.patch(url, data='{"title": "a\\ud800b"}', content_type="application/json")
    assert _error(response, 422)["errors"]["json"]["title"] == [
        "Must be valid Unicode text (no lone surrogate code points)."
    ]
    assert client.get(url).get_json()["title"] == created["title"]


def test_patch_without_json_content_type_is_415(client: FlaskClient) -> None:
    _, created = upload(client)
    response = client.patch(f"/api/recordings/{created['id']}", data="title=x")
    assert "application/json" in _error(response, 415)["message"]


def test_changing_a_deleted_recording_is_409(client: FlaskClient) -> None:
    _, created = upload(client)
    url = f"/api/recordings/{created['id']}"
    client.delete(url)
    assert "deleted" in _error(client.patch(url, json={"title": "x"}), 409)["message"]
    restored = client.patch(url, json={"status": "active"})
    assert restored.status_code == 200


def test_stale_if_match_is_412_and_changes_nothing(client: FlaskClient) -> None:
    _, created = upload(client)
    url = f"/api/recordings/{created['id']}"
    response = client.patch(url, json={"title": "new"}, headers={"If-Match": '"7"'})
    assert "version 1" in _error(response, 412)["message"]
    garbage = client.patch(url, json={"title": "new"}, headers={"If-Match": "nonsense"})
    _error(garbage, 412)
    assert client.get(url).get_json()["title"] == "hello"


def test_missing_if_match_is_428_when_required(make_client: MakeClient) -> None:
    client, _ = make_client(VRP_REQUIRE_IF_MATCH="true")
    _, created = upload(client)
    _error(client.patch(f"/api/recordings/{created['id']}", json={"title": "x"}), 428)


def test_oversized_upload_is_413_and_stores_nothing(client: FlaskClient, settings) -> None:
    status, body = upload(client, make_wav(seconds=20, rate=8000))  # 320 KB > 256 KiB limit
    assert status == 413
    assert body["code"] == 413
    assert client.get("/api/recordings").get_json() == []
    leftovers = [p for p in settings.storage_dir.rglob("*") if p.is_file()]
    assert leftovers == []


@pytest.mark.parametrize(
    "payload",
    [b"just some text, not audio", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, b"%PDF-1.7\n", b""],
)
def test_non_audio_upload_is_415(client: FlaskClient, payload: bytes) -> None:
    status, body = upload(client, payload or b"\0", filename="fake.wav")
    assert status == 415
    assert "supported format" in body["message"]
    assert client.get("/api/recordings").get_json() == []


def _error_type_of_the_503(telemetry: InMemoryTelemetry) -> object:
    """``error.type`` of the one server span that answered 503."""
    (span,) = [
        span
        for span in telemetry.span_exporter.get_finished_spans()
        if span.kind is SpanKind.SERVER and span.attributes["http.response.status_code"] == 503
    ]
    return span.attributes["error.type"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_update_is_409_and_keeps_the_other_change(
    client: FlaskClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL only: on SQLite write units begin IMMEDIATE, so no second writer can slip in.
    _, created = upload(client)
    real_load = services._load

    def load_then_another_request_updates(session: Session, public_id: uuid.UUID) -> Recording:
        recording = real_load(session, public_id)
        other = sa.create_engine(db.engine.url)
        try:
            with other.begin() as conn:
                conn.execute(
                    sa.update(Recording)
                    .where(Recording.public_id == public_id)
                    .values(title="theirs", version=Recording.version + 1)
                )
        finally:
            other.dispose()
        return recording

    monkeypatch.setattr(services, "_load", load_then_another_request_updates)
    response = client.patch(f"/api/recordings/{created['id']}", json={"title": "mine"})
    monkeypatch.undo()

    body = _error(response, 409)
    assert "another request" in body["message"]
    assert client.get(f"/api/recordings/{created['id']}").get_json()["title"] == "theirs"


def test_pool_exhausted_is_503_with_retry_after_within_the_timeout(
    make_client: MakeClient, telemetry: InMemoryTelemetry
) -> None:
    client, db = make_client(
        VRP_DB_POOL_SIZE="1", VRP_DB_MAX_OVERFLOW="0", VRP_DB_POOL_TIMEOUT="0.3"
    )
    with db.engine.connect():
        started = time.monotonic()
        response = client.get("/api/recordings")
        elapsed = time.monotonic() - started

    _error(response, 503)
    assert response.headers["Retry-After"]
    assert 0.25 <= elapsed < 2.0
    timeouts = telemetry.metric_points("db.client.connection.timeouts")
    assert sum(p.value for p in timeouts) == 1
    assert client.get("/api/recordings").status_code == 200


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_retries_exhausted_is_503_with_retry_after(
    make_client: MakeClient, telemetry: InMemoryTelemetry
) -> None:
    client, db = make_client(
        VRP_DB_BUSY_TIMEOUT_MS="10", VRP_DB_RETRY_ATTEMPTS="3", VRP_DB_RETRY_DEADLINE="2"
    )
    _, created = upload(client)
    path = f"/api/recordings/{created['id']}"
    holder = sqlite3.connect(str(db.engine.url.database))
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock throughout
        response = client.patch(path, json={"title": "blocked"})
    finally:
        holder.rollback()
        holder.close()

    body = _error(response, 503)
    assert response.headers["Retry-After"]
    assert "busy" in body["message"]
    assert _error_type_of_the_503(telemetry) == "instrumentation.errors.TransactionRetryError"
    assert client.patch(path, json={"title": "free"}).status_code == 200


def test_storage_down_is_503_with_retry_after_and_stores_nothing(
    make_client: MakeClient, telemetry: InMemoryTelemetry, tmp_path: Path
) -> None:
    blocked = tmp_path / "storage-is-a-file"
    blocked.write_text("a file where the storage directory should be")
    client, _ = make_client(VRP_STORAGE_DIR=str(blocked))

    response = client.post(
        "/api/recordings",
        data={"title": "x", "file": (io.BytesIO(make_wav()), "x.wav")},
        content_type="multipart/form-data",
    )

    body = _error(response, 503)
    assert response.headers["Retry-After"]
    assert str(blocked) not in body["message"]
    assert client.get("/api/recordings").get_json() == []
    assert _error_type_of_the_503(telemetry) == "recorder.errors.StorageError"
