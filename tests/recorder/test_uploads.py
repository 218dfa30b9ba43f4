"""The upload and purge protocol (recorder.uploads) without Flask, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import uuid
from typing import BinaryIO

import pytest
from opentelemetry.trace import StatusCode

from instrumentation import conventions
from instrumentation.database import Database
from instrumentation.testing import InMemoryTelemetry
from recorder import services
from recorder.config import Settings
from recorder.errors import IdempotencyKeyReusedError, NotFoundError, UnsupportedMediaError
from recorder.storage import BlobStore, StoredBlob
from recorder.uploads import Upload, Uploads
from tests.recorder.fixtures import make_wav, stored_blobs

KEY = "upload-key-0123456789abcdef0123456789abcdef"


@pytest.fixture
def store(settings: Settings) -> BlobStore:
    return BlobStore(settings.storage_dir, settings.max_upload_bytes)


@pytest.fixture
def uploads(db: Database, store: BlobStore) -> Uploads:
    return Uploads(db, store)


def _upload(payload: bytes, title: str = "memo", key: str | None = None) -> Upload:
    return Upload(
        title=title,
        stream=io.BytesIO(payload),
        original_filename="memo.wav",
        tags=("work",),
        idempotency_key=key,
    )


def test_an_upload_stores_its_blob_and_its_row(
    uploads: Uploads, db: Database, store: BlobStore
) -> None:
    payload = make_wav(seconds=1.0)

    uploaded = uploads.create(_upload(payload))

    assert not uploaded.replayed
    recording = services.get_recording(db, uploaded.recording.public_id)
    assert recording.duration_seconds == 1.0
    assert [tag.name for tag in recording.tags] == ["work"]
    with store.open(recording.sha256) as stored:
        assert stored.read() == payload


def test_a_file_that_is_not_audio_is_refused_before_anything_is_stored(
    uploads: Uploads, settings: Settings
) -> None:
    with pytest.raises(UnsupportedMediaError, match="not audio in a supported format"):
        uploads.create(_upload(b"plain text, not a recording " * 100))

    assert stored_blobs(settings) == []


def test_a_repeated_keyed_upload_is_replayed_and_a_reused_key_leaves_no_blob(
    uploads: Uploads, settings: Settings
) -> None:
    first = uploads.create(_upload(make_wav(seconds=0.3), key=KEY))
    again = uploads.create(_upload(make_wav(seconds=0.3), key=KEY))

    assert again.replayed
    assert again.recording.public_id == first.recording.public_id
    with pytest.raises(IdempotencyKeyReusedError):
        uploads.create(_upload(make_wav(seconds=0.4), key=KEY))
    # The second audio's blob was written before the insert failed, and then removed.
    assert stored_blobs(settings) == [first.recording.sha256]


def test_an_upload_writes_its_blob_again_when_a_purge_removed_it_before_the_lock(
    uploads: Uploads, db: Database, store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = make_wav(seconds=0.3)
    old = uploads.create(_upload(payload))
    real_put = BlobStore.put
    purged: list[uuid.UUID] = []

    def put_then_purge_the_old_row(self: BlobStore, stream: BinaryIO) -> StoredBlob:
        blob = real_put(self, stream)
        if not purged:
            # Another process purges the only other row and deletes the blob just found.
            purged.append(old.recording.public_id)
            uploads.purge(old.recording.public_id)
        return blob

    monkeypatch.setattr(BlobStore, "put", put_then_purge_the_old_row)
    new = uploads.create(_upload(payload))

    assert purged == [old.recording.public_id]
    with store.open(new.recording.sha256) as stored:
        assert stored.read() == payload


def test_a_purge_deletes_the_blob_only_once_no_row_references_it(
    uploads: Uploads, store: BlobStore, settings: Settings
) -> None:
    payload = make_wav(seconds=0.3)
    first = uploads.create(_upload(payload))
    second = uploads.create(_upload(payload, title="the same audio"))

    uploads.purge(first.recording.public_id)
    assert store.exists(second.recording.sha256)

    uploads.purge(second.recording.public_id)
    assert stored_blobs(settings) == []
    with pytest.raises(NotFoundError):
        uploads.purge(second.recording.public_id)


def test_a_purge_keeps_a_blob_an_upload_referenced_after_the_purge_committed(
    uploads: Uploads, store: BlobStore, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = make_wav(seconds=0.3)
    old = uploads.create(_upload(payload))
    real_purge = services.purge_recording
    uploaded = []

    def purge_then_upload_the_same_audio(
        db: Database, recording_id: uuid.UUID
    ) -> services.PurgeResult:
        result = real_purge(db, recording_id)
        assert result.blob_unreferenced  # the purge saw no other reference...
        uploaded.append(uploads.create(_upload(payload)))  # ...then an upload committed one
        return result

    monkeypatch.setattr(services, "purge_recording", purge_then_upload_the_same_audio)
    uploads.purge(old.recording.public_id)

    (new,) = uploaded
    with store.open(new.recording.sha256) as stored:
        assert stored.read() == payload


def test_each_step_of_an_upload_and_a_purge_has_its_span_under_the_caller(
    uploads: Uploads, db: Database, telemetry: InMemoryTelemetry
) -> None:
    with db.tracer.start_as_current_span("vrp import") as parent:
        uploaded = uploads.create(_upload(make_wav(seconds=0.5)))
        uploads.purge(uploaded.recording.public_id)

    children = [
        span.name
        for span in telemetry.spans()
        if span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    ]
    assert children == [
        conventions.AUDIO_PROBE_SPAN,
        conventions.STORAGE_WRITE_SPAN,
        conventions.STORAGE_LOCK_SPAN,
        conventions.DB_SESSION_SPAN,
        conventions.DB_SESSION_SPAN,
        conventions.STORAGE_LOCK_SPAN,
        conventions.DB_SESSION_SPAN,
        conventions.STORAGE_DELETE_SPAN,
    ]


def test_a_refused_upload_marks_its_probe_span_without_an_error_status(
    uploads: Uploads, telemetry: InMemoryTelemetry
) -> None:
    with pytest.raises(UnsupportedMediaError):
        uploads.create(_upload(b"RIFF" + b"\0" * 4096))

    probe = telemetry.span_named(conventions.AUDIO_PROBE_SPAN)
    assert probe.attributes[conventions.ERROR_TYPE] == "recorder.errors.UnsupportedMediaError"
    assert probe.status.status_code is StatusCode.UNSET
