"""The recorder's referenced-blobs query lists exactly the audio its recordings reference."""

from __future__ import annotations

import io
import uuid

from flask.testing import FlaskClient

from instrumentation.database import Database
from recorder.backup_source import _RECORDINGS, backup_source, blob_path, referenced_blobs
from recorder.config import Settings
from recorder.models import Recording
from tests.recorder.fixtures import make_wav


def test_the_query_names_the_models_table_and_column() -> None:
    assert _RECORDINGS.name == Recording.__tablename__
    assert "sha256" in Recording.__table__.c


def test_referenced_blobs_lists_each_uploaded_audio_once_and_where_it_is(
    client: FlaskClient, db: Database, settings: Settings
) -> None:
    shas = set()
    for freq in (440, 440, 880):
        answer = client.post(
            "/api/recordings",
            data={"file": (io.BytesIO(make_wav(freq=freq)), "a.wav"), "title": str(uuid.uuid4())},
            content_type="multipart/form-data",
        )
        assert answer.status_code == 201
        shas.add(answer.get_json()["sha256"])
    with db.engine.connect() as connection:
        listed = list(referenced_blobs(connection))
    assert sorted(listed) == sorted(shas) and len(shas) == 2
    source = backup_source(settings)
    assert source.database_url == settings.database.url
    for sha256 in shas:
        assert blob_path(source.storage_dir, sha256).is_file()
