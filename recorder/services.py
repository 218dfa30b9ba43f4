"""The recorder's operations on recordings and tags.

Every operation takes the SQLAlchemy session as its first argument and never reaches for a
global one. Decorated with :func:`instrumentation.transactions.transactional`, an operation
called with a ``Database`` runs as one retried unit of work (commit on success, rollback on any
error, retry on transient database errors); called with a ``Session`` it joins the caller's
unit through a SAVEPOINT. The views hand in the ``Database``.

Blob files are written before the unit of work (content-addressed, so a retried unit finds the
same file) and removed only after the unit that dropped their last reference has committed;
:mod:`recorder.uploads` holds that protocol (and the blob lock around it) for every caller.

Creating a recording is safe to repeat: its public id is chosen before the insert, so when a
COMMIT fails without saying whether it landed, the retry looks the row up by that id first
(a landed check, see :mod:`instrumentation.transactions`). A client's ``Idempotency-Key`` is
stored with the row; a repeat finds it, and the same key with another upload is refused.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from instrumentation import transactional
from recorder.audio import AudioFormat, AudioInfo
from recorder.errors import (
    ConflictError,
    IdempotencyKeyReusedError,
    NotFoundError,
    PreconditionFailedError,
)
from recorder.models import Recording, RecordingStatus, Tag, recording_tags, utcnow
from recorder.storage import StoredBlob

SORT_COLUMNS = {
    "created_at": Recording.created_at,
    "title": Recording.title,
    "duration": Recording.duration_seconds,
}


@dataclass(frozen=True)
class NewRecording:
    """What an upload creates; ``public_id`` is chosen here, before any attempt to insert it."""

    title: str
    original_filename: str | None
    blob: StoredBlob
    audio_format: AudioFormat
    info: AudioInfo
    tags: Sequence[str] = ()
    idempotency_key: str | None = None
    public_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def fingerprint(self) -> str:
        """A digest of what the client sent (title, tags in any order or case, the audio)."""
        body = [self.title, sorted(tag.casefold() for tag in self.tags), self.blob.sha256]
        return hashlib.sha256(json.dumps(body).encode()).hexdigest()


@dataclass(frozen=True)
class RecordingQuery:
    page: int = 1
    page_size: int = 20
    status: RecordingStatus | None = None
    tag: str | None = None
    q: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    sort: str = "created_at"
    order: str = "desc"


@dataclass(frozen=True)
class Page:
    items: list[Recording]
    total: int
    page: int
    page_size: int


@dataclass(frozen=True)
class RecordingChanges:
    """Fields a PATCH may set; ``None`` leaves the field as it is."""

    title: str | None = None
    tags: Sequence[str] | None = None
    status: RecordingStatus | None = None


@dataclass(frozen=True)
class TagCount:
    name: str
    recordings: int


@dataclass(frozen=True)
class PurgeResult:
    sha256: str
    blob_unreferenced: bool


def _get_tags(session: Session, names: Sequence[str]) -> list[Tag]:
    """The tags named (case-insensitively), creating the missing ones.

    A concurrent unit may create the same new tag first; the insert then runs inside a
    SAVEPOINT so that the unique-index violation costs only that insert, and the tag is re-read.
    """
    if not names:
        return []
    keys = [name.casefold() for name in names]
    found = {
        tag.name.casefold(): tag
        for tag in session.scalars(sa.select(Tag).where(sa.func.lower(Tag.name).in_(keys)))
    }
    for name, key in zip(names, keys, strict=True):
        if key in found:
            continue
        tag = Tag(name=name)
        try:
            with session.begin_nested():
                session.add(tag)
        except IntegrityError:
            tag = session.scalars(sa.select(Tag).where(sa.func.lower(Tag.name) == key)).one()
        found[key] = tag
    return [found[key] for key in keys]


def _load(session: Session, public_id: uuid.UUID) -> Recording:
    recording = session.scalars(
        sa.select(Recording).where(Recording.public_id == public_id)
    ).one_or_none()
    if recording is None:
        raise NotFoundError(f"recording {public_id} does not exist")
    return recording


def _created(session: Session, new: NewRecording) -> Recording | None:
    """The row an earlier attempt of :func:`create_recording` committed, if any."""
    return session.scalars(
        sa.select(Recording).where(Recording.public_id == new.public_id)
    ).one_or_none()


def _by_idempotency_key(session: Session, new: NewRecording) -> Recording | None:
    """The recording created under ``new``'s key; refuses it if that held another upload."""
    recording = session.scalars(
        sa.select(Recording).where(Recording.idempotency_key == new.idempotency_key)
    ).one_or_none()
    if recording is not None and recording.idempotency_fingerprint != new.fingerprint():
        raise IdempotencyKeyReusedError()
    return recording


@transactional(landed=_created)
def create_recording(session: Session, new: NewRecording) -> Recording:
    """Insert ``new``, or return the recording an earlier upload with its key created.

    The caller tells a repeat by its ``public_id``, which differs from ``new.public_id``.
    Raises :class:`IdempotencyKeyReusedError` if the key names a different upload.
    """
    if new.idempotency_key is not None:
        earlier = _by_idempotency_key(session, new)
        if earlier is not None:
            return earlier
    recording = Recording(
        public_id=new.public_id,
        title=new.title,
        original_filename=new.original_filename,
        sha256=new.blob.sha256,
        mime_type=new.audio_format.mime,
        audio_format=new.audio_format.name,
        size_bytes=new.blob.size,
        duration_seconds=new.info.duration_seconds,
        sample_rate=new.info.sample_rate,
        channels=new.info.channels,
        status=RecordingStatus.ACTIVE,
        tags=_get_tags(session, new.tags),
        idempotency_key=new.idempotency_key,
        idempotency_fingerprint=None if new.idempotency_key is None else new.fingerprint(),
    )
    if new.idempotency_key is None:
        session.add(recording)
        session.flush()
    else:
        try:
            # A concurrent upload with the same key may commit first: the unique index refuses
            # this insert, and that upload's row is the answer.
            with session.begin_nested():
                session.add(recording)
        except IntegrityError:
            earlier = _by_idempotency_key(session, new)
            if earlier is None:
                raise
            return earlier
    # Tags in the order every read gives them (the database's), so that the answer to this
    # upload, a repeat of it and a GET are the same document.
    session.refresh(recording, ["tags"])
    return recording


@transactional(readonly=True)
def get_recording(session: Session, public_id: uuid.UUID) -> Recording:
    return _load(session, public_id)


@transactional(readonly=True)
def list_recordings(session: Session, query: RecordingQuery) -> Page:
    stmt = sa.select(Recording)
    if query.status is None:
        stmt = stmt.where(Recording.status != RecordingStatus.DELETED)
    else:
        stmt = stmt.where(Recording.status == query.status)
    if query.tag:
        stmt = stmt.where(Recording.tags.any(sa.func.lower(Tag.name) == query.tag.casefold()))
    if query.q:
        pattern = query.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(Recording.title.ilike(f"%{pattern}%", escape="\\"))
    if query.created_after:
        stmt = stmt.where(Recording.created_at >= query.created_after)
    if query.created_before:
        stmt = stmt.where(Recording.created_at <= query.created_before)
    total = session.scalar(sa.select(sa.func.count()).select_from(stmt.subquery())) or 0
    column = SORT_COLUMNS[query.sort]
    ordered = column.asc() if query.order == "asc" else column.desc()
    tie_break = Recording.id.asc() if query.order == "asc" else Recording.id.desc()
    items = session.scalars(
        stmt.order_by(ordered.nulls_last(), tie_break)
        .limit(query.page_size)
        .offset((query.page - 1) * query.page_size)
    ).all()
    return Page(items=list(items), total=total, page=query.page, page_size=query.page_size)


@transactional
def update_recording(
    session: Session,
    public_id: uuid.UUID,
    changes: RecordingChanges,
    expected_version: int | None = None,
) -> Recording:
    """Apply ``changes`` (title, tags, status); ``expected_version`` guards lost updates."""
    recording = _load(session, public_id)
    if expected_version is not None and expected_version != recording.version:
        raise PreconditionFailedError(
            f"recording {public_id} is at version {recording.version}, not {expected_version}; "
            "fetch it again and retry with the current ETag"
        )
    restoring = changes.status not in (None, RecordingStatus.DELETED)
    if recording.status == RecordingStatus.DELETED and not restoring:
        raise ConflictError(
            f"recording {public_id} is deleted; restore it with status 'active' or 'archived' "
            "before changing it"
        )
    # Tags first: their lookup autoflushes, and one flush must carry the whole change so the
    # version moves by exactly one.
    if changes.tags is not None:
        recording.tags = _get_tags(session, changes.tags)
    if changes.title is not None:
        recording.title = changes.title
    if changes.status is not None:
        recording.status = changes.status
    # A change to the tags alone touches no column of the row; bump the version anyway.
    recording.updated_at = utcnow()
    session.flush()
    return recording


@transactional
def delete_recording(session: Session, public_id: uuid.UUID) -> Recording:
    """Soft delete: the row and its audio stay, hidden from listings unless asked for."""
    recording = _load(session, public_id)
    if recording.status != RecordingStatus.DELETED:
        recording.status = RecordingStatus.DELETED
        session.flush()
    return recording


@transactional
def purge_recording(session: Session, public_id: uuid.UUID) -> PurgeResult:
    """Remove the row; tell the caller whether its blob had no other reference left.

    The caller deletes the blob after the commit, under the blob's lock and after checking
    :func:`blob_referenced` again there (an upload of the same audio may have committed a row
    in between): :meth:`recorder.uploads.Uploads.purge` does all of that.
    """
    recording = _load(session, public_id)
    sha256 = recording.sha256
    session.delete(recording)
    session.flush()
    others = session.scalar(
        sa.select(sa.func.count()).select_from(Recording).where(Recording.sha256 == sha256)
    )
    return PurgeResult(sha256=sha256, blob_unreferenced=not others)


@transactional(readonly=True)
def blob_referenced(session: Session, sha256: str) -> bool:
    """Whether any recording (deleted ones included) still points at the blob."""
    stmt = sa.select(Recording.id).where(Recording.sha256 == sha256).limit(1)
    return session.scalar(stmt) is not None


@transactional(readonly=True)
def list_tags(session: Session) -> list[TagCount]:
    """Tags in use by at least one recording that is not deleted, with that count."""
    rows = session.execute(
        sa.select(Tag.name, sa.func.count(Recording.id))
        .join(recording_tags, recording_tags.c.tag_id == Tag.id)
        .join(
            Recording,
            sa.and_(
                Recording.id == recording_tags.c.recording_id,
                Recording.status != RecordingStatus.DELETED,
            ),
        )
        .group_by(Tag.id, Tag.name)
        .order_by(sa.func.lower(Tag.name))
    ).all()
    return [TagCount(name=name, recordings=count) for name, count in rows]
