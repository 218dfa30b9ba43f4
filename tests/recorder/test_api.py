"""The recorder API end to end through the Flask test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
from pathlib import Path
from typing import BinaryIO

import pytest
from flask.testing import FlaskClient

from instrumentation import Database
from recorder import services
from recorder.storage import BlobStore, StoredBlob
from tests.recorder.fixtures import make_wav, stored_blobs, upload

DATA = Path(__file__).parent / "data"


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


def tag_counts(client: FlaskClient) -> dict[str, int]:
    return {t["name"]: t["recordings"] for t in client.get("/api/tags").get_json()}


def test_tags_count_only_recordings_not_deleted_and_drop_tags_left_unused(
    client: FlaskClient,
) -> None:
    _, first = upload(client, tags="solo, shared")
    _, second = upload(client, make_wav(freq=660), tags="shared")
    assert tag_counts(client) == {"shared": 2, "solo": 1}

    assert client.delete(f"/api/recordings/{first['id']}").status_code == 204
    assert tag_counts(client) == {"shared": 1}

    restored = client.patch(f"/api/recordings/{first['id']}", json={"status": "active"})
    assert restored.status_code == 200
    assert tag_counts(client) == {"shared": 2, "solo": 1}

    assert client.delete(f"/api/recordings/{second['id']}?purge=true").status_code == 204
    assert tag_counts(client) == {"shared": 1, "solo": 1}


def fan_out_folders(settings) -> list[str]:
    return sorted(
        str(path.relative_to(settings.storage_dir))
        for path in settings.storage_dir.glob("*")
        if path.is_dir() and re.fullmatch(r"[0-9a-f]{2}", path.name)
    )


def test_purge_removes_the_fan_out_folders_it_leaves_empty(client: FlaskClient, settings) -> None:
    _, body = upload(client)
    assert fan_out_folders(settings) == [body["sha256"][:2]]

    assert client.delete(f"/api/recordings/{body['id']}?purge=true").status_code == 204

    assert fan_out_folders(settings) == []
    assert stored_blobs(settings) == []


def test_deleting_a_blob_keeps_the_fan_out_folders_another_blob_still_uses(
    settings,
) -> None:
    store = BlobStore(settings.storage_dir, settings.max_upload_bytes)
    kept = store.put(io.BytesIO(make_wav()))
    # A second blob in the same two folders (the store never checks the content of a name).
    neighbour = (
        kept.sha256[:4] + "0" * 60 if kept.sha256[4:] != "0" * 60 else kept.sha256[:4] + "1" * 60
    )
    store.path_for(neighbour).write_bytes(b"neighbour")

    assert store.delete(kept.sha256)

    assert list(store.iter_blobs()) == [neighbour]
    assert store.delete(neighbour)
    assert fan_out_folders(settings) == []


def test_an_upload_into_a_fan_out_folder_a_purge_just_removed_still_lands(
    settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(settings.storage_dir, settings.max_upload_bytes)
    payload = make_wav()
    target = store.path_for(hashlib.sha256(payload).hexdigest())
    real_replace = os.replace
    raced: list[bool] = []

    def replace_after_a_purge_pruned_the_folder(src: str, dst: str) -> None:
        if not raced:
            raced.append(True)
            target.parent.rmdir()
            target.parent.parent.rmdir()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_after_a_purge_pruned_the_folder)

    blob = store.put(io.BytesIO(payload))

    assert raced == [True]
    assert blob.created
    assert blob.path.read_bytes() == payload


def disposition(client: FlaskClient, recording_id: str) -> str:
    response = client.get(f"/api/recordings/{recording_id}/audio")
    assert response.status_code == 200
    return response.headers["Content-Disposition"]


def test_audio_carries_the_original_file_name_with_the_detected_extension(
    client: FlaskClient,
) -> None:
    _, body = upload(client, filename="Réunion d'équipe.mp3")

    assert disposition(client, body["id"]) == (
        'inline; filename="Reunion d\'equipe.wav"; '
        "filename*=UTF-8''R%C3%A9union%20d%27%C3%A9quipe.wav"
    )


@pytest.mark.parametrize(
    ("filename", "data_file", "expected"),
    [
        ("..\\..\\bad:na*me?|.wav", None, "filename=badname.wav; filename*=UTF-8''badname.wav"),
        ("", None, "filename=recording.wav; filename*=UTF-8''recording.wav"),
        (
            "日本語.wav",
            None,
            "filename=recording.wav; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.wav",
        ),
        ("memo.mp3", "tone_mono_16k.mp2", "filename=memo.mp2; filename*=UTF-8''memo.mp2"),
        ("voice", "tone_mono_8k.opus", "filename=voice.opus; filename*=UTF-8''voice.opus"),
    ],
    ids=["hostile", "nameless", "non-latin", "mp2-named-mp3", "no-extension"],
)
def test_audio_file_names_are_sanitised_and_take_the_format_extension(
    client: FlaskClient, filename: str, data_file: str | None, expected: str
) -> None:
    payload = (DATA / data_file).read_bytes() if data_file else make_wav()
    status, body = upload(client, payload, filename=filename)
    assert status == 201, body

    assert disposition(client, body["id"]) == f"inline; {expected}"


def test_openapi_lists_every_status_an_operation_answers(client: FlaskClient) -> None:
    paths = client.get("/api/openapi.json").get_json()["paths"]
    one = paths["/api/recordings/{recording_id}"]
    assert {"400", "404", "409", "412", "415", "422", "428"} <= set(one["patch"]["responses"])
    assert "404" in one["delete"]["responses"]
    audio = paths["/api/recordings/{recording_id}/audio"]["get"]["responses"]
    assert {"200", "206", "304", "404", "416"} <= set(audio)
