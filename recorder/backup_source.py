"""What the backup package needs from the recorder: its database, its audio and their link.

The backup package knows nothing of recordings; this module hands it a
:class:`backup.source.BackupSource` built from the recorder's validated settings: the database
URL (``VRP_DATABASE_URL``), the audio folder (``VRP_STORAGE_DIR``), the query listing the
sha256 of every blob a recording row references (run by the backup on its snapshot, so soft-
deleted recordings keep their audio in the backup until they are purged), and the store's
two-level fan-out layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from backup.errors import SourceNotReadyError
from backup.source import BackupSource
from recorder.config import Settings

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


def backup_source(settings: Settings) -> BackupSource:
    """The recorder's database and audio, as the backup package takes them."""
    return BackupSource(
        database_url=settings.database.url,
        storage_dir=settings.storage_dir,
        referenced_blobs=referenced_blobs,
        blob_path=blob_path,
    )
