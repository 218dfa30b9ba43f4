"""``Idempotency-Key`` on uploads: a repeat returns the first recording, another body is a 422."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from recorder.config import Settings
from tests.recorder.fixtures import make_wav, stored_blobs

KEY = "order-7f3a 2026-11-28"


def post(
    client: FlaskClient,
    key: str | None,
    *,
    title: str = "standup",
    tags: str | None = "team, daily",
    payload: bytes | None = None,
) -> TestResponse:
    data: dict[str, Any] = {"title": title, "file": (io.BytesIO(payload or make_wav()), "a.wav")}
    if tags is not None:
        data["tags"] = tags
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(
        "/api/recordings", data=data, headers=headers, content_type="multipart/form-data"
    )


def listed(client: FlaskClient) -> list[dict[str, Any]]:
    body: list[dict[str, Any]] = client.get("/api/recordings?status=active").get_json()
    return body


def test_a_repeated_key_returns_the_original_recording_and_creates_nothing(
    client: FlaskClient,
) -> None:
    first = post(client, KEY)
    second = post(client, KEY, tags="Daily, TEAM")

    assert first.status_code == second.status_code == 201
    assert second.get_json() == first.get_json()
    assert second.headers["Location"] == first.headers["Location"]
    assert second.headers["ETag"] == first.headers["ETag"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert [r["id"] for r in listed(client)] == [first.get_json()["id"]]


def test_uploads_without_a_key_or_with_different_keys_each_create_a_recording(
    client: FlaskClient,
) -> None:
    ids = {
        post(client, None).get_json()["id"],
        post(client, None).get_json()["id"],
        post(client, "key-1").get_json()["id"],
        post(client, "key-2").get_json()["id"],
    }

    assert len(ids) == 4
    assert len(listed(client)) == 4


@pytest.mark.parametrize(
    "change",
    [{"title": "another title"}, {"tags": "team"}, {"payload": make_wav(freq=880)}],
    ids=["title", "tags", "audio"],
)
def test_the_same_key_with_a_different_body_is_422_naming_the_header(
    client: FlaskClient, settings: Settings, change: dict[str, Any]
) -> None:
    original = post(client, KEY).get_json()

    response = post(client, KEY, **change)

    assert response.status_code == 422
    body = response.get_json()
    assert "Idempotency-Key" in body["message"]
    assert [r["id"] for r in listed(client)] == [original["id"]]
    # The refused upload's audio is not kept.
    assert stored_blobs(settings) == [original["sha256"]]


@pytest.mark.parametrize(
    "key",
    ["", "k" * 256, "caf\u00e9", "tab\there"],
    ids=["empty", "too-long", "non-ascii", "control-character"],
)
def test_an_invalid_key_is_422_naming_the_header(client: FlaskClient, key: str) -> None:
    response = post(client, key)

    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert "Idempotency-Key" in errors["headers"]
    assert listed(client) == []


def test_the_longest_printable_key_is_accepted(client: FlaskClient) -> None:
    key = "".join(chr(c) for c in range(0x20, 0x7F)) * 3
    key = key[:255]

    first = post(client, key)
    second = post(client, key)

    assert first.status_code == second.status_code == 201
    assert second.get_json()["id"] == first.get_json()["id"]


def test_concurrent_uploads_with_one_key_create_one_recording(client: FlaskClient) -> None:
    start = threading.Barrier(4, timeout=10)
    responses: list[TestResponse] = []
    lock = threading.Lock()

    def upload_once() -> None:
        thread_client = client.application.test_client()
        start.wait()
        response = post(thread_client, KEY)
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=upload_once) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert [r.status_code for r in responses] == [201] * 4
    assert len({r.get_json()["id"] for r in responses}) == 1
    assert len(listed(client)) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 3


def test_a_repeat_after_the_recording_changed_returns_it_as_it_is_now(
    client: FlaskClient,
) -> None:
    original = post(client, KEY).get_json()
    client.patch(f"/api/recordings/{original['id']}", json={"title": "renamed"})

    repeat = post(client, KEY)

    assert repeat.status_code == 201
    assert repeat.get_json()["id"] == original["id"]
    assert repeat.get_json()["title"] == "renamed"
    assert repeat.get_json()["version"] == 2
