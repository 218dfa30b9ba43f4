"""With the default relative paths, the API serves from the folder the command started in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from instrumentation.testing import InMemoryTelemetry
from recorder.config import load_settings
from tests.recorder.fixtures import make_wav, migrated_database, recorder_app, upload


@pytest.fixture
def default_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, telemetry: InMemoryTelemetry
) -> Iterator[FlaskClient]:
    """An app built from no settings at all (``var/vrp.db``, ``var/recordings``, ``var/log``)
    in a fresh working folder, which then changes, as a process may after start-up."""
    start = tmp_path / "start"
    start.mkdir()
    monkeypatch.chdir(start)
    settings = load_settings({})
    database = migrated_database(settings, telemetry)
    monkeypatch.chdir(tmp_path)
    yield recorder_app(settings, database, telemetry).test_client()
    database.dispose()


def test_default_relative_paths_are_resolved_against_the_starting_folder(
    tmp_path: Path, default_client: FlaskClient
) -> None:
    status, body = upload(default_client, make_wav(seconds=0.1))

    assert status == 201, body
    assert (tmp_path / "start" / "var" / "vrp.db").is_file()
    assert list((tmp_path / "start" / "var" / "recordings").rglob(body["sha256"]))
    assert not (tmp_path / "var").exists()


def test_audio_download_works_with_the_default_storage_dir(default_client: FlaskClient) -> None:
    payload = make_wav(seconds=0.2)
    _, body = upload(default_client, payload)
    url = f"/api/recordings/{body['id']}/audio"

    full = default_client.get(url)
    partial = default_client.get(url, headers={"Range": "bytes=4-11"})
    head = default_client.head(url)
    unchanged = default_client.get(url, headers={"If-None-Match": full.headers["ETag"]})

    assert (full.status_code, full.data) == (200, payload)
    assert (partial.status_code, partial.data) == (206, payload[4:12])
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(payload))
    assert unchanged.status_code == 304
