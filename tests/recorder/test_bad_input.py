"""Every kind of bad input gets its status and a JSON body naming the field and the problem."""

from __future__ import annotations

import io
import uuid

import pytest
from flask.testing import FlaskClient

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


def test_unknown_route_is_404_json(client: FlaskClient) -> None:
    _error(client.get("/api/nothing-here"), 404)


def test_wrong_method_is_405(client: FlaskClient) -> None:
    _error(client.put("/api/recordings"), 405)
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
