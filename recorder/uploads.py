"""Uploading and purging recordings: the protocol that keeps rows and blobs consistent.

A recording is a database row plus the blob its ``sha256`` names in the
:class:`~recorder.storage.BlobStore`. No transaction spans a database and a folder, so an
order and a lock keep the two consistent whatever runs at the same time (other uploads and
purges of the same audio, in this process or another one):

* Upload (:meth:`Uploads.create`): the file is detected and probed before anything is stored
  (415 naming what is missing unless it really holds audio), then written to the store
  (content-addressed, so a retried unit of work finds the same file). From "the blob is on
  disk" to the commit of the row that references it, the blob's lock is held and the blob is
  checked again under it: a purge of the same audio may have removed it after our write, and
  the upload still has the bytes to write it again. If the insert fails, a blob this upload
  created is deleted (the compensation), unless another upload has meanwhile committed a row
  that references it.
* Purge (:meth:`Uploads.purge`): the row is deleted and committed first; then, if no other row
  referenced the blob, the blob's lock is taken and the reference is checked again under it (an
  upload may have committed a row since) before the blob is deleted.

The API's views call these and only translate HTTP; anything else that uploads or purges (a
command, a script) goes through the same code. Each step runs in an INTERNAL span of its own
(``audio.probe``, ``storage.write``, ``storage.lock``, ``storage.delete``; see
:mod:`instrumentation.spans`), from the caller's :class:`~instrumentation.spans.Steps` or else
the database's tracer, so a request's trace explains the time it spends outside the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from instrumentation import Database, Steps, conventions
from recorder import services
from recorder.audio import FORMATS, HEAD_BYTES, AudioFormat, AudioInfo, detect_format, probe
from recorder.errors import UnsupportedMediaError
from recorder.models import Recording
from recorder.storage import BlobStore, StoredBlob

SUPPORTED_FORMATS = ", ".join(sorted({fmt.name.upper() for fmt in FORMATS.values()}))


@dataclass(frozen=True)
class Upload:
    """What a client sends: ``stream`` is seekable and at its start."""

    title: str
    stream: BinaryIO
    original_filename: str | None = None
    tags: Sequence[str] = ()
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Uploaded:
    """The recording an upload created, or (``replayed``) the one an earlier upload with the
    same ``Idempotency-Key`` created."""

    recording: Recording
    replayed: bool


def detect_audio(stream: BinaryIO) -> tuple[AudioFormat, AudioInfo]:
    """The format and stream properties of the audio in ``stream`` (seekable), left at its
    start.

    Raises :class:`UnsupportedMediaError` naming the supported formats, or what is missing,
    unless the file holds audio in a format the service reads.
    """
    stream.seek(0)
    audio_format = detect_format(stream.read(HEAD_BYTES))
    stream.seek(0)
    if audio_format is None:
        raise UnsupportedMediaError(
            f"the file is not audio in a supported format ({SUPPORTED_FORMATS})"
        )
    return audio_format, probe(stream, audio_format)


class Uploads:
    """The upload and purge protocol (see the module doc) over one database and one store."""

    def __init__(self, db: Database, store: BlobStore, steps: Steps | None = None) -> None:
        self.db = db
        self.store = store
        self._steps = steps if steps is not None else Steps(db.tracer)

    def create(self, upload: Upload) -> Uploaded:
        """Store the audio and insert its recording; a repeat of a keyed upload is replayed.

        Raises :class:`UnsupportedMediaError` (not audio), ``PayloadTooLargeError`` and
        ``StorageError`` (the store), :class:`~recorder.errors.IdempotencyKeyReusedError`
        and the database layer's errors; nothing this upload stored outlives a failure.
        """
        stream = upload.stream
        with self._steps(conventions.AUDIO_PROBE_SPAN):
            audio_format, info = detect_audio(stream)
        blob = self._put(stream)
        new = services.NewRecording(
            title=upload.title,
            original_filename=upload.original_filename,
            blob=blob,
            audio_format=audio_format,
            info=info,
            tags=upload.tags,
            idempotency_key=upload.idempotency_key,
        )
        with self._locked(blob.sha256):
            if not self.store.exists(blob.sha256):
                # A purge of the same audio removed it after our put; the upload has the bytes.
                stream.seek(0)
                blob = self._put(stream)
            try:
                recording = services.create_recording(self.db, new)
            except Exception:
                # A blob this upload wrote must not outlive a failed insert, unless another
                # upload of the same audio has committed a row that references it.
                if blob.created and not services.blob_referenced(self.db, blob.sha256):
                    self._delete(blob.sha256)
                raise
        return Uploaded(recording, replayed=recording.public_id != new.public_id)

    def purge(self, public_id: uuid.UUID) -> None:
        """Remove the recording and, once nothing references it any more, its blob.

        Raises :class:`~recorder.errors.NotFoundError` if there is no such recording.
        """
        result = services.purge_recording(self.db, public_id)
        if not result.blob_unreferenced:
            return
        # Checked again under the lock: an upload may have committed a reference since.
        with self._locked(result.sha256):
            if not services.blob_referenced(self.db, result.sha256):
                self._delete(result.sha256)

    def _put(self, stream: BinaryIO) -> StoredBlob:
        with self._steps(conventions.STORAGE_WRITE_SPAN):
            return self.store.put(stream)

    def _delete(self, sha256: str) -> None:
        with self._steps(conventions.STORAGE_DELETE_SPAN):
            self.store.delete(sha256)

    @contextmanager
    def _locked(self, sha256: str) -> Iterator[None]:
        """The blob's lock for the block; the ``storage.lock`` span covers the wait for it."""
        with ExitStack() as held:
            with self._steps(conventions.STORAGE_LOCK_SPAN):
                held.enter_context(self.store.locked(sha256))
            yield
