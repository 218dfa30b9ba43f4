"""What the backup package needs from the recorder: its database, its audio and their link.

The backup package knows nothing of recordings; this module hands it a
:class:`backup.source.BackupSource` built from the recorder's validated settings: the database
URL (``VRP_DATABASE_URL``), the audio folder (``VRP_STORAGE_DIR``), the query listing the
sha256 of every blob a recording row references (run by the backup on its snapshot, so soft-
deleted recordings keep their audio in the backup until they are purged), the store's
two-level fan-out layout, and the store's snapshot hold: while a backup holds it, a purge
keeps the blob it deletes in ``retained/``, so every blob the snapshot references can still be
copied (see :mod:`recorder.storage`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from backup.errors import BlobSourceError, SourceNotReadyError
from backup.source import BackupSource, BlobHold
from recorder.config import Settings
from recorder.errors import StorageError
from recorder.storage import RETAINED, BlobStore

# SQLAlchemy Core rather than recorder.models: the ORM import would cost every `vrp backup run`
# about 0.1 s of start-up, and the query needs one column. test_backup_source checks that the
# two agree.
_RECORDINGS = sa.table("recordings", sa.column("sha256", sa.String))


def referenced_blobs(connection: sa.Connection) -> Iterator[str]:
    """The distinct sha256 values of the audio that recording rows reference.

    A database without the ``recordings`` table (created but never migrated) is refused with
    :class:`~backup.errors.SourceNotReadyError`, which the backup turns into one line.
    """
    if not sa.inspect(connection).has_table(_RECORDINGS.name):
        raise SourceNotReadyError(
            f"is not migrated (no {_RECORDINGS.name} table); run `vrp db upgrade` first"
        )
    sha256 = _RECORDINGS.c.sha256
    query = sa.select(sha256).distinct().where(sha256.is_not(None))
    for (value,) in connection.execute(query):
        yield value


def blob_path(storage_dir: Path, sha256: str) -> Path:
    """Where :class:`recorder.storage.BlobStore` keeps a blob (``ab/cd/<sha256>``)."""
    return storage_dir / sha256[:2] / sha256[2:4] / sha256


def retained_blob_path(storage_dir: Path, sha256: str) -> Path:
    """Where the store keeps a blob purged while a backup held it (``retained/<sha256>``)."""
    return storage_dir / RETAINED / sha256


def _snapshot_hold(store: BlobStore) -> BlobHold:
    @contextmanager
    def hold() -> Iterator[None]:
        try:
            held = store.snapshot_hold()
        except StorageError as e:
            raise BlobSourceError(str(e)) from e
        with held:
            yield

    return hold


def backup_source(settings: Settings) -> BackupSource:
    """The recorder's database and audio, as the backup package takes them."""
    return BackupSource(
        database_url=settings.database.url,
        storage_dir=settings.storage_dir,
        referenced_blobs=referenced_blobs,
        blob_path=blob_path,
        hold_blobs=_snapshot_hold(BlobStore(settings.storage_dir, settings.max_upload_bytes)),
        retained_blob_path=retained_blob_path,
    )
