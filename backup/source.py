"""What the application hands the backup package: where its data is and what it references.

The backup package knows nothing of the application's tables. The application supplies a
:class:`BackupSource`: its database URL, its blob folder, the query listing the sha256 of every
blob its rows reference (run on the snapshot, so the manifest lists exactly what the snapshot
references), and where a blob of a given sha256 lives in its folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

ReferencedBlobs = Callable[[sa.Connection], Iterable[str]]
BlobPath = Callable[[Path, str], Path]


def fan_out_path(storage_dir: Path, sha256: str) -> Path:
    """``storage_dir/ab/cd/<sha256>``: the two-level fan-out the recorder's blob store uses."""
    return storage_dir / sha256[:2] / sha256[2:4] / sha256


def no_blobs(connection: sa.Connection) -> Iterable[str]:
    """For a database that references no blobs."""
    return ()


@dataclass(frozen=True)
class BackupSource:
    """One application's data: a database and the content-addressed blobs it references."""

    database_url: str
    storage_dir: Path
    referenced_blobs: ReferencedBlobs = no_blobs
    blob_path: BlobPath = fan_out_path
