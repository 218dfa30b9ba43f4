"""The recorder API end to end through the Flask test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from typing import BinaryIO

import pytest
from flask.testing import FlaskClient

from instrumentation import Database
from recorder import services
from recorder.storage import BlobStore, StoredBlob
from tests.recorder.fixtures import make_wav, stored_blobs, upload


def test_upload_returns_201_with_duration_and_stores_metadata(client: FlaskClient) -> None:
    status, body = upload(client, make_wav(seconds=1.0, rate=16000, channels=2), tags="a, b")
    assert status == 201
    assert body["duration_seconds"] == 1.0
    assert body["sample_rate"] == 16000
    assert body["channels"] == 2
    assert body["mime_type"] == "audio/wav"
    assert body["status"] == "active"
    assert body["original_filename"] == "hello.wav"
    assert sorted(body["tags"]) == ["a", "b"]
    assert body["version"] == 1
    fetched = client.get(f"/api/recordings/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.headers["ETag"] == '"1"'
    assert fetched.get_json() == body


def test_identical_uploads_share_one_blob(client: FlaskClient, settings) -> None:
    payload = make_wav(seconds=0.2)
    _, first = upload(client, payload)
    _, second = upload(client, payload)
    assert first["id"] != second["id"]
    assert first["sha256"] == second["sha256"]
    assert len(stored_blobs(settings)) == 1


def test_client_filename_is_metadata_only(client: FlaskClient, settings) -> None:
    status, body = upload(client, filename="../../etc/passwd.wav")
    assert status == 201
    assert body["original_filename"] == "passwd.wav"
    assert not (settings.storage_dir.parent / "etc").exists()


def test_list_filters_sorts_and_paginates(client: FlaskClient) -> None:
    for index, title in enumerate(["alpha", "beta", "gamma"]):
        upload(client, make_wav(seconds=0.1 * (index + 1)), title=title, tags=["t" + title[0]])
    response = client.get("/api/recordings?sort=title&order=asc&page_size=2")
    assert response.status_code == 200
    assert [r["title"] for r in response.get_json()] == ["alpha", "beta"]
    pagination = json.loads(response.headers["X-Pagination"])
    assert pagination["total"] == 3
    assert pagination["next_page"] == 2
    page2 = client.get("/api/recordings?sort=title&order=asc&page_size=2&page=2").get_json()
    assert [r["title"] for r in page2] == ["gamma"]
    by_tag = client.get("/api/recordings?tag=TB").get_json()
    assert [r["title"] for r in by_tag] == ["beta"]
    by_q = client.get("/api/recordings?q=AMM").get_json()
    assert [r["title"] for r in by_q] == ["gamma"]
    longest = client.get("/api/recordings?sort=duration&order=desc").get_json()
    assert longest[0]["title"] == "gamma"
    future = client.get("/api/recordings?created_after=2999-01-01T00:00:00Z").get_json()
    assert future == []
    past = client.get("/api/recordings?created_before=2000-01-01T00:00:00%2B01:00").get_json()
    assert past == []


def test_soft_delete_hides_and_purge_removes_blob(client: FlaskClient, settings) -> None:
    _, body = upload(client)
    rid = body["id"]
    assert client.delete(f"/api/recordings/{rid}").status_code == 204
    assert client.get("/api/recordings").get_json() == []
    deleted = client.get("/api/recordings?status=deleted").get_json()
    assert [r["id"] for r in deleted] == [rid]
    assert client.delete(f"/api/recordings/{rid}?purge=true").status_code == 204
    assert client.get(f"/api/recordings/{rid}").status_code == 404
    assert stored_blobs(settings) == []


def assert_audio(client: FlaskClient, recording_id: str, payload: bytes) -> None:
    audio = client.get(f"/api/recordings/{recording_id}/audio")
    assert audio.status_code == 200
    assert audio.data == payload


def test_purge_keeps_blob_still_referenced(client: FlaskClient, settings) -> None:
    payload = make_wav(seconds=0.3)
    _, first = upload(client, payload)
    _, second = upload(client, payload)
    assert client.delete(f"/api/recordings/{first['id']}?purge=true").status_code == 204
    assert_audio(client, second["id"], payload)


def test_upload_survives_a_purge_that_deletes_its_blob_before_the_row_commits(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = make_wav(seconds=0.3)
    _, old = upload(client, payload)
    real_put = BlobStore.put
    purged: list[int] = []

    def put_then_purge_the_old_row(store: BlobStore, stream: BinaryIO) -> StoredBlob:
        blob = real_put(store, stream)
        if not purged:
            # Another request purges the only other row and, finding no reference, deletes
            # the blob this upload has just found on disk.
            purged.append(client.delete(f"/api/recordings/{old['id']}?purge=true").status_code)
        return blob

    monkeypatch.setattr(BlobStore, "put", put_then_purge_the_old_row)
    status, new = upload(client, payload)

    assert purged == [204]
    assert status == 201
    assert_audio(client, new["id"], payload)


def test_purge_keeps_a_blob_an_upload_referenced_after_the_purge_committed(
    client: FlaskClient, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = make_wav(seconds=0.3)
    _, old = upload(client, payload)
    real_purge = services.purge_recording
    uploaded: list[dict] = []

    def purge_then_upload_the_same_audio(
        db: Database, recording_id: uuid.UUID
    ) -> services.PurgeResult:
        result = real_purge(db, recording_id)
        assert result.blob_unreferenced  # the purge saw no other reference...
        status, body = upload(client, payload)  # ...then an upload committed one
        assert status == 201
        uploaded.append(body)
        return result

    monkeypatch.setattr(services, "purge_recording", purge_then_upload_the_same_audio)
    assert client.delete(f"/api/recordings/{old['id']}?purge=true").status_code == 204

    (new,) = uploaded
    assert_audio(client, new["id"], payload)
    assert len(stored_blobs(settings)) == 1


def test_audio_streams_with_mime_type_and_ranges(client: FlaskClient) -> None:
    payload = make_wav(seconds=0.2)
    _, body = upload(client, payload)
    full = client.get(f"/api/recordings/{body['id']}/audio")
    assert full.status_code == 200
    assert full.mimetype == "audio/wav"
    assert full.data == payload
    partial = client.get(f"/api/recordings/{body['id']}/audio", headers={"Range": "bytes=4-11"})
    assert partial.status_code == 206
    assert partial.data == payload[4:12]
    assert partial.headers["Content-Range"] == f"bytes 4-11/{len(payload)}"
    unsatisfiable = client.get(
        f"/api/recordings/{body['id']}/audio", headers={"Range": f"bytes={len(payload) + 5}-"}
    )
    assert unsatisfiable.status_code == 416


def test_patch_updates_with_if_match_and_bumps_version(client: FlaskClient) -> None:
    _, body = upload(client, tags=["old"])
    rid = body["id"]
    response = client.patch(
        f"/api/recordings/{rid}",
        json={"title": "  renamed  ", "tags": ["New", "new", "other"]},
        headers={"If-Match": '"1"'},
    )
    assert response.status_code == 200
    updated = response.get_json()
    assert updated["title"] == "renamed"
    assert sorted(updated["tags"]) == ["New", "other"]
    assert updated["version"] == 2
    assert response.headers["ETag"] == '"2"'
    tags = client.get("/api/tags").get_json()
    assert {t["name"]: t["recordings"] for t in tags} == {"New": 1, "other": 1}


def test_tags_are_case_insensitively_unique(client: FlaskClient) -> None:
    upload(client, tags=["Speech"])
    upload(client, tags=["speech"])
    assert client.get("/api/tags").get_json() == [{"name": "Speech", "recordings": 2}]


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": "ok", "storage": "ok"}


def test_openapi_document_is_served(client: FlaskClient) -> None:
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/api/recordings/{recording_id}/audio" in spec["paths"]


def test_unknown_and_malformed_ids_give_404(client: FlaskClient) -> None:
    assert client.get(f"/api/recordings/{uuid.uuid4()}").status_code == 404
    assert client.get("/api/recordings/not-a-uuid").status_code == 404
